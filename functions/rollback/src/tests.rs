use super::*;
use rollout_core::model::{RollbackPoint, TargetKind, TemplatePoint};

fn target(reference: VersionReference) -> Target {
    Target {
        kind: TargetKind::AutoScalingGroup,
        account: None,
        region: None,
        resource: "web".into(),
        instance_name: None,
        ami: rollout_core::samples::target_run().ami,
        rollback_point: RollbackPoint::Template(TemplatePoint {
            launch_template_id: "lt-1".into(),
            version: 3,
            image_id: "ami-00000001".into(),
            reference,
            default_version: 1,
        }),
        mixed_instances: false,
        ecs: None,
        window: None,
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
        suspension: None,
    }
}

#[test]
fn a_group_whose_launch_is_suspended_is_not_refreshed_back_but_failed_with_the_reason() {
    let target = target(VersionReference::Pinned);
    let suspended = TargetState {
        group_version: 4,
        group_reference: "4".into(),
        suspension: rollout_core::fleet::suspension_refusal("web", &["Launch".into()]),
        ..at_point()
    };
    match decide(&target, &suspended) {
        Action::Failed(reason) => assert!(
            reason.contains("its Launch process is suspended"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Restoring references replaces no instance: it goes on.
    let refs = TargetState {
        group_version: 3,
        group_reference: "4".into(),
        ..suspended
    };
    assert_eq!(decide(&target, &refs), Action::RestoreReferences);
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

#[test]
fn scope_is_every_wave_up_to_the_failed_one_or_only_the_failed_wave() {
    assert_eq!(waves_in_scope(RollbackScope::Execution, 1, 3), 0..2);
    assert_eq!(waves_in_scope(RollbackScope::Wave, 1, 3), 1..2);
    assert_eq!(waves_in_scope(RollbackScope::Execution, 0, 3), 0..1);
    assert_eq!(waves_in_scope(RollbackScope::Wave, 2, 3), 2..3);
    // A wave index past the plan (a plan emptied meanwhile) rolls back nothing beyond it.
    assert_eq!(waves_in_scope(RollbackScope::Wave, 5, 2), 2..2);
}

fn child(status: &str, group: &str, output: Option<TargetRollback>) -> ChildResult {
    let run = TargetRun {
        target: Target {
            resource: group.into(),
            ..target(VersionReference::Pinned)
        },
        ..rollout_core::samples::target_run()
    };
    ChildResult {
        execution_arn: format!("arn:aws:states:us-east-1:1:execution:ami-rollout/rollback:{group}"),
        status: ExecutionStatus::parse(status),
        input: Some(serde_json::to_string(&run).unwrap()),
        output: output.map(|o| serde_json::to_string(&o).unwrap()),
        error: (status == "FAILED").then(|| "AwsThrottled".to_string()),
        cause: (status == "FAILED").then(|| {
            r#"{"errorType":"AwsThrottled","errorMessage":"StartInstanceRefresh throttled"}"#
                .to_string()
        }),
    }
}

fn rolled(group: &str, action: &str, untouched: bool, failed: bool) -> TargetRollback {
    let status = match (untouched, failed) {
        (_, true) => RollbackStatus::Failed,
        (true, false) => RollbackStatus::Untouched,
        (false, false) => RollbackStatus::RolledBack,
    };
    TargetRollback {
        group: group.into(),
        status,
        refresh_id: None,
        action: action.into(),
    }
}

#[test]
fn the_cause_names_the_failure_and_what_was_rolled_back() {
    let failure = CaughtError { error: "TargetUnhealthy".into(), cause: r#"{"errorType":"TargetUnhealthy","errorMessage":"web: unhealthy on ami-00000002: alarm web-5xx is in ALARM"}"#.into() };
    let r = summarize(
        &failure.describe(),
        &[
            child(
                "SUCCEEDED",
                "web",
                Some(rolled(
                    "web",
                    "back on version 3 (ami-00000001)",
                    false,
                    false,
                )),
            ),
            child(
                "SUCCEEDED",
                "api",
                Some(rolled(
                    "api",
                    "nothing of this execution's was on it",
                    true,
                    false,
                )),
            ),
        ],
    );
    assert!(!r.failed);
    assert_eq!((r.rolled_back, r.untouched, r.not_rolled_back), (1, 1, 0));
    assert_eq!(
        r.cause,
        "TargetUnhealthy: web: unhealthy on ami-00000002: alarm web-5xx is in ALARM. rolled back: web (back on version 3 (ami-00000001))."
    );

    let nothing = summarize(&failure.describe(), &[]);
    assert!(
        !nothing.failed
            && nothing
                .cause
                .ends_with("nothing had been changed, so nothing was rolled back."),
        "{}",
        nothing.cause
    );
}

#[test]
fn a_target_not_brought_back_fails_the_rollback_and_is_named_beside_the_others() {
    let failure = CaughtError {
        error: "TargetUnhealthy".into(),
        cause: "b: unhealthy".into(),
    };
    // The child's catch hands the step's Cause (a Lambda error payload) on as its action.
    let caught =
        r#"{"errorType":"TargetNotFound","errorMessage":"no rollout target: c was deleted"}"#;
    let r = summarize(
        &failure.describe(),
        &[
            child(
                "SUCCEEDED",
                "b",
                Some(rolled(
                    "b",
                    "back on version 3 (ami-00000001)",
                    false,
                    false,
                )),
            ),
            child("SUCCEEDED", "c", Some(rolled("c", caught, false, true))),
            child("FAILED", "d", None),
            child("PENDING", "e", None),
        ],
    );
    assert!(r.failed);
    assert_eq!((r.rolled_back, r.not_rolled_back), (1, 3));
    assert!(
        r.cause.contains("rolled back: b (back on version 3"),
        "{}",
        r.cause
    );
    assert!(r.cause.contains("3 target(s) not brought back: c (no rollout target: c was deleted), d (AwsThrottled: StartInstanceRefresh throttled), e (its rollback ended PENDING)"), "{}", r.cause);
}

#[test]
fn a_wide_rollback_names_ten_targets_and_counts_the_rest() {
    let results: Vec<ChildResult> = (0..25)
        .map(|i| {
            let g = format!("g{i:02}");
            child("SUCCEEDED", &g, Some(rolled(&g, "back", false, false)))
        })
        .collect();
    let r = summarize(&CaughtError::default().describe(), &results);
    assert_eq!(r.rolled_back, 25);
    assert!(r.cause.contains("g09 (back) and 15 more"), "{}", r.cause);
    assert!(!r.cause.contains("g10"), "{}", r.cause);
}

#[tokio::test]
async fn malformed_request_is_invalid_input_without_aws_calls() {
    let clients = rollout_core::aws::mock::Rules::default().clients();
    for payload in [
        serde_json::json!({"execution": "x"}),
        serde_json::json!({"action": "converge"}),
        serde_json::json!({"action": "summarize", "stop": {}}),
        serde_json::json!({"action": "summarize", "reason": "x"}),
        serde_json::json!({"action": "planUndo", "execution": "x"}),
    ] {
        let err = handle(&clients, payload.clone()).await.unwrap_err();
        assert_eq!(err.name(), "InvalidInput", "{payload}: {err}");
    }
}
