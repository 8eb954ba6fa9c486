use super::*;
use rollout_core::model::{Failure, RollbackPoint, TargetKind};

fn target(reference: VersionReference) -> Target {
    Target {
        kind: TargetKind::AutoScalingGroup,
        group: "web".into(),
        rollback_point: RollbackPoint {
            launch_template_id: "lt-1".into(),
            version: 3,
            image_id: "ami-00000001".into(),
            reference,
            default_version: 1,
        },
        mixed_instances: false,
        ecs: None,
    }
}

fn refresh(status: &str, version: &str) -> Option<RefreshInfo> {
    Some(RefreshInfo {
        id: "r-1".into(),
        status: RefreshStatus::parse(status),
        percentage: 40,
        reason: Some("boom".into()),
        desired: Some(("lt-1".into(), version.into())),
        started_at: None,
        ended_at: None,
    })
}

/// The group pinned at the rollback point (version 3), our version 4 made, fleet on the old AMI.
fn at_point() -> TargetState {
    TargetState {
        ours: vec![4],
        group_version: 3,
        group_reference: "3".into(),
        template_latest: 4,
        template_default: 1,
        latest_refresh: None,
        refresh_back: None,
        instances_on_new_ami: 0,
        rollback_ami_refusal: None,
    }
}

#[test]
fn rollback_decisions() {
    type Change = fn(&mut TargetState);
    let cases: Vec<(&str, VersionReference, Change, Action)> = vec![
        (
            "our refresh running",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("InProgress", "4"),
            Action::RollbackNatively("r-1".into()),
        ),
        (
            "our refresh pending",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("Pending", "4"),
            Action::RollbackNatively("r-1".into()),
        ),
        (
            "our refresh baking",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("Baking", "4"),
            Action::RollbackNatively("r-1".into()),
        ),
        (
            "native rollback running",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("RollbackInProgress", "4"),
            Action::Wait("Auto Scaling is rolling refresh r-1 back (40%)".into()),
        ),
        (
            "cancelling",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("Cancelling", "4"),
            Action::Wait("refresh r-1 is cancelling".into()),
        ),
        (
            "refresh back running",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("InProgress", "3"),
            Action::Wait("refresh r-1 to version 3 is at 40%".into()),
        ),
        (
            "someone else's refresh",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("InProgress", "7"),
            Action::Failed(
                "refresh r-1 to another configuration is running; it was left alone".into(),
            ),
        ),
        (
            "refresh succeeded, group on ours",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Successful", "4");
                s.group_version = 4;
                s.group_reference = "4".into();
                s.instances_on_new_ami = 2;
            },
            Action::RefreshToRollbackPoint,
        ),
        (
            "refresh failed, some instances new",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Failed", "4");
                s.instances_on_new_ami = 1;
            },
            Action::RefreshToRollbackPoint,
        ),
        (
            "native rollback failed",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("RollbackFailed", "4");
                s.instances_on_new_ami = 1;
            },
            Action::RefreshToRollbackPoint,
        ),
        (
            "refresh back failed",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Failed", "3");
                s.refresh_back = refresh("Failed", "3");
                s.instances_on_new_ami = 1;
            },
            Action::Failed("refresh r-1 back to version 3 ended Failed: boom".into()),
        ),
        (
            "only a refresh back that this execution started can fail the rollback",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Successful", "4");
                s.group_version = 4;
                s.group_reference = "4".into();
                s.instances_on_new_ami = 2;
            },
            Action::RefreshToRollbackPoint,
        ),
        (
            "our refresh back finished with the fleet back: done, not restarted",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Successful", "3");
                s.refresh_back = refresh("Successful", "3");
            },
            Action::Done("back on version 3 (ami-00000001)".into()),
        ),
        (
            "our refresh back succeeded, fleet back, group still on our version: references restored",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Successful", "3");
                s.refresh_back = refresh("Successful", "3");
                s.group_version = 4;
                s.group_reference = "4".into();
            },
            Action::RestoreReferences,
        ),
        (
            "our refresh back succeeded but left an instance on the new AMI: judged, not restarted",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Successful", "3");
                s.refresh_back = refresh("Successful", "3");
                s.instances_on_new_ami = 1;
            },
            Action::Failed(
                "refresh r-1 back to version 3 succeeded but 1 instance(s) still run the new AMI (scale-in protected or in standby?)"
                    .into(),
            ),
        ),
        (
            "rollback point AMI deregistered",
            VersionReference::Pinned,
            |s| {
                s.latest_refresh = refresh("Successful", "4");
                s.instances_on_new_ami = 2;
                s.rollback_ami_refusal = Some("is deregistered".into());
            },
            Action::Failed(
                "its rollback point AMI ami-00000001 is deregistered, so it cannot be brought back onto it"
                    .into(),
            ),
        ),
        (
            "native rollback succeeded",
            VersionReference::Pinned,
            |s| s.latest_refresh = refresh("RollbackSuccessful", "4"),
            Action::Done("back on version 3 (ami-00000001)".into()),
        ),
        (
            "untouched fleet, pinned",
            VersionReference::Pinned,
            |_| {},
            Action::Done("back on version 3 (ami-00000001)".into()),
        ),
        (
            "$Latest group still pinned",
            VersionReference::Latest,
            |_| {},
            Action::RestoreReferences,
        ),
        (
            "$Latest group, our version gone",
            VersionReference::Latest,
            |s| {
                s.group_reference = "$Latest".into();
                s.template_latest = 3;
            },
            Action::Done("back on version 3 (ami-00000001)".into()),
        ),
        (
            "$Default group pinned",
            VersionReference::Default,
            |_| {},
            Action::RestoreReferences,
        ),
        (
            "default moved to ours",
            VersionReference::Default,
            |s| {
                s.group_reference = "$Default".into();
                s.template_default = 4;
                s.group_version = 4;
                s.instances_on_new_ami = 2;
            },
            Action::RefreshToRollbackPoint,
        ),
        (
            "default still ours after refresh back",
            VersionReference::Default,
            |s| {
                s.group_reference = "3".into();
                s.template_default = 4;
            },
            Action::RestoreReferences,
        ),
    ];
    for (name, reference, change, expected) in cases {
        let mut state = at_point();
        change(&mut state);
        assert_eq!(decide(&target(reference), &state), expected, "{name}");
    }
}

fn plan(waves: &[&[&str]]) -> Plan {
    let t = |g: &str| Target {
        group: g.into(),
        ..target(VersionReference::Pinned)
    };
    Plan {
        trigger: "test".into(),
        ami: rollout_core::model::Ami {
            id: "ami-00000002".into(),
            name: "n".into(),
            architecture: "x86_64".into(),
            owner_id: "1".into(),
        },
        waves: waves
            .iter()
            .map(|w| w.iter().map(|g| t(g)).collect())
            .collect(),
        settings: Default::default(),
        skipped: vec![],
        skipped_count: 0,
        target_count: 0,
        max_concurrency: 5,
        rollback_scope: RollbackScope::Execution,
    }
}

#[test]
fn scope_is_every_touched_target_or_only_the_failed_wave() {
    let p = plan(&[&["canary"], &["a", "b", "c"], &["d"]]);
    let touched: HashSet<String> = ["canary", "a", "b"].iter().map(|s| s.to_string()).collect();
    let names = |ts: Vec<&Target>| ts.iter().map(|t| t.group.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(in_scope(&p, RollbackScope::Execution, Some(1), &touched)),
        ["canary", "a", "b"]
    );
    assert_eq!(
        names(in_scope(&p, RollbackScope::Wave, Some(1), &touched)),
        ["a", "b"]
    );
    assert_eq!(
        names(in_scope(&p, RollbackScope::Wave, None, &touched)),
        ["a", "b"]
    );
    assert!(in_scope(&p, RollbackScope::Execution, None, &HashSet::new()).is_empty());
}

#[test]
fn wave_scope_rolls_back_nothing_when_the_failed_wave_failed_at_its_first_step() {
    let p = plan(&[&["canary"], &["a", "b"]]);
    // The canary wave succeeded; wave 1 failed before it changed anything.
    let touched: HashSet<String> = ["canary".to_string()].into();
    assert!(in_scope(&p, RollbackScope::Wave, Some(1), &touched).is_empty());
    assert_eq!(
        in_scope(&p, RollbackScope::Execution, Some(1), &touched).len(),
        1
    );
}

#[test]
fn the_cause_names_the_failure_and_what_was_rolled_back() {
    let request = RollbackRequest {
        execution: "exec".into(),
        execution_start_time: 1_000,
        plan: plan(&[&["web"]]),
        failure: Failure { error: "TargetUnhealthy".into(), cause: r#"{"errorType":"TargetUnhealthy","errorMessage":"web: unhealthy on ami-00000002: alarm web-5xx is in ALARM"}"#.into() },
    };
    let done = vec![TargetRollback {
        group: "web".into(),
        refresh_id: None,
        action: "back on version 3 (ami-00000001)".into(),
        done: true,
        failed: false,
    }];
    let r = report(&request, done);
    assert!(r.complete && !r.failed);
    assert_eq!(
        r.cause,
        "TargetUnhealthy: web: unhealthy on ami-00000002: alarm web-5xx is in ALARM. rolled back: web (back on version 3 (ami-00000001))."
    );
    let pending = report(
        &request,
        vec![TargetRollback {
            group: "web".into(),
            refresh_id: Some("r-2".into()),
            action: "refresh r-2 back to version 3".into(),
            done: false,
            failed: false,
        }],
    );
    assert_eq!(
        (pending.complete, pending.next_wait_seconds),
        (false, ROLLBACK_WAIT_SECONDS)
    );
    let nothing = report(&request, vec![]);
    assert!(
        nothing.complete
            && nothing
                .cause
                .ends_with("nothing had been changed, so nothing was rolled back."),
        "{}",
        nothing.cause
    );
}

#[tokio::test]
async fn malformed_request_is_invalid_input_without_aws_calls() {
    let clients = rollout_core::aws::mock::Rules::default().clients();
    let event = lambda_runtime::LambdaEvent::new(
        serde_json::json!({"execution": "x"}),
        lambda_runtime::Context::default(),
    );
    assert_eq!(
        handle(&clients, event).await.unwrap_err().error_type,
        "InvalidInput"
    );
}

#[test]
fn a_failure_handed_on_by_its_wave_names_the_wave_and_keeps_the_steps_message() {
    let step_cause = r#"{"errorType":"TargetUnhealthy","errorMessage":"b: unhealthy on ami-00000002: alarm b-5xx is in ALARM"}"#;
    // What the wave's Fail state produces: States.JsonToString of {error, wave, cause}.
    let cause =
        serde_json::json!({"error": "TargetUnhealthy", "wave": 1, "cause": step_cause}).to_string();
    let failure = Failure {
        error: "TargetUnhealthy".into(),
        cause,
    };
    assert_eq!(failure.wave(), Some(1));
    assert_eq!(
        failure.message(),
        "b: unhealthy on ami-00000002: alarm b-5xx is in ALARM"
    );
    let direct = Failure {
        error: "TargetUnhealthy".into(),
        cause: step_cause.into(),
    };
    assert_eq!(direct.wave(), None);
    assert_eq!(direct.message(), failure.message());
}
