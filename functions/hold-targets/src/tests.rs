use super::*;
use rollout_core::model::{Ami, RollbackScope, WaveRef};

pub(crate) const EXECUTION: &str =
    "arn:aws:states:eu-west-1:111122223333:execution:ami-rollout:rollout-2026-12-01";

use rollout_core::samples::target;

pub(crate) fn plan(waves: &[usize]) -> PlanSummary {
    PlanSummary {
        trigger: "test".into(),
        ami: Ami {
            id: "ami-00000002".into(),
            name: "n".into(),
            architecture: "x86_64".into(),
            owner_id: "111122223333".into(),
        },
        regional_amis: Default::default(),
        copies: Vec::new(),
        settings: Default::default(),
        max_concurrency: 5,
        instance_concurrency: 1,
        rollback_scope: RollbackScope::Execution,
        bucket: "plans".into(),
        key: "plans/rollout-2026-12-01/plan.json".into(),
        waves: waves
            .iter()
            .enumerate()
            .map(|(index, &targets)| WaveRef {
                index,
                key: format!("plans/rollout-2026-12-01/wave-{index:03}.json"),
                results_prefix: format!("results/rollout-2026-12-01/wave-{index:03}"),
                targets,
                approval: None,
            })
            .collect(),
        target_count: waves.iter().sum(),
        skipped_count: 1,
        skipped_by_reason: [("excluded (EXCLUDED_ASGS)".to_string(), 1)].into(),
        undo: None,
    }
}

#[test]
fn keys_name_the_account_region_and_target() {
    let (account, region) = execution_home(EXECUTION).unwrap();
    assert_eq!(
        (account.as_str(), region.as_str()),
        ("111122223333", "eu-west-1")
    );
    let home = Home { account, region };
    let key = target_key(&home, &target("web"));
    assert_eq!(key, "target#asg#111122223333#eu-west-1#web");
    assert_eq!(key_parts(&key), Some(("111122223333", "eu-west-1", "web")));
    assert_eq!(released_name(&home, &key), "web");
    let elsewhere = Target {
        account: Some("444455556666".into()),
        region: Some("us-west-2".into()),
        ..target("a#b")
    };
    let key = target_key(&home, &elsewhere);
    assert_eq!(key, "target#asg#444455556666#us-west-2#a#b");
    assert_eq!(key_parts(&key), Some(("444455556666", "us-west-2", "a#b")));
    assert_eq!(released_name(&home, &key), "444455556666/us-west-2/a#b");
    assert_eq!(
        key_parts(&ami_key("111122223333", "eu-west-1", "ami-1")),
        Some(("111122223333", "eu-west-1", "ami-1"))
    );
    assert_eq!(execution_name(EXECUTION), "rollout-2026-12-01");
    for bad in [
        "",
        "rollout-1",
        "arn:aws:states:eu-west-1:1:stateMachine:x",
        "arn:aws:sqs:eu-west-1:1:execution:x:y",
    ] {
        assert_eq!(
            execution_home(bad).unwrap_err().name(),
            "InvalidInput",
            "{bad}"
        );
    }
}

#[test]
fn a_holder_keeps_its_targets_while_it_can_come_back() {
    use ExecutionRedriveStatus as R;
    use ExecutionStatus as S;
    for (status, redrive, expected) in [
        (S::Running, None, HolderState::Alive),
        (S::PendingRedrive, None, HolderState::Alive),
        (S::Failed, Some(R::Redrivable), HolderState::Alive),
        (S::Failed, Some(R::NotRedrivable), HolderState::Ended),
        (S::Failed, None, HolderState::Ended),
        (S::Succeeded, None, HolderState::Ended),
        (S::Aborted, Some(R::Redrivable), HolderState::Ended),
        (S::TimedOut, Some(R::Redrivable), HolderState::Ended),
    ] {
        assert_eq!(
            holder_state(&status, redrive.as_ref()),
            expected,
            "{status:?} {redrive:?}"
        );
    }
}

#[test]
fn a_duplicate_leaves_the_whole_plan_to_the_first_execution() {
    let p = end_as_duplicate(plan(&[1, 2]), EXECUTION);
    assert!(p.waves.is_empty());
    assert_eq!((p.target_count, p.skipped_count), (0, 4));
    assert_eq!(
        p.skipped_by_reason["execution rollout-2026-12-01 is rolling the same AMI out (a duplicate trigger); left to it"],
        3
    );
}

#[test]
fn requests_parse_from_the_state_machine_and_from_eventbridge() {
    let take: HoldRequest = serde_json::from_value(serde_json::json!({
        "action": "take", "execution": EXECUTION, "plan": serde_json::to_value(plan(&[1])).unwrap()
    }))
    .unwrap();
    assert!(matches!(take, HoldRequest::Take { .. }));
    // What a failed child passes ("Stop the wave"), and what the parent asks after each wave.
    let stop: HoldRequest = serde_json::from_value(serde_json::json!({
        "action": "stopWave", "execution": EXECUTION,
        "stop": {"group": "web", "wave": 1, "failure": {"Error": "TargetUnhealthy", "Cause": "{}"}}
    }))
    .unwrap();
    assert!(
        matches!(stop, HoldRequest::StopWave { stop, .. } if stop.group == "web" && stop.wave == 1)
    );
    let outcome: HoldRequest = serde_json::from_value(
        serde_json::json!({"action": "waveOutcome", "execution": EXECUTION}),
    )
    .unwrap();
    assert!(matches!(outcome, HoldRequest::WaveOutcome { .. }));
    let release: HoldRequest =
        serde_json::from_value(serde_json::json!({"action": "release", "execution": EXECUTION}))
            .unwrap();
    assert_eq!(
        release,
        HoldRequest::Release {
            execution: EXECUTION.into()
        }
    );
    let event: StatusChange = serde_json::from_str(include_str!(
        "../../../tests/fixtures/sfn-execution-status-change-aborted.json"
    ))
    .unwrap();
    assert_eq!(event.detail.status.as_str(), "ABORTED");
    assert!(event.detail.execution_arn.starts_with("arn:aws:states:"));
}
