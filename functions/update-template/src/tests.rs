use super::*;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, InstanceRefresh, InstanceRefreshStatus, LaunchTemplateSpecification,
};
use aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput;
use aws_sdk_ec2::types::LaunchTemplateVersion;
use rollout_core::aws::mock::{Rule, Rules, mock};
use rollout_core::samples::target_run;

fn group_on(version: &'static str) -> Rule {
    mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(move || {
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(
                AutoScalingGroup::builder()
                    .auto_scaling_group_name("ecs-prod-a")
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_id("lt-0123456789abcdef0")
                            .version(version)
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

fn refreshes(status: Option<InstanceRefreshStatus>) -> Rule {
    mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes).then_output(move || {
        let out = DescribeInstanceRefreshesOutput::builder();
        match &status {
            Some(s) => out
                .instance_refreshes(
                    InstanceRefresh::builder()
                        .instance_refresh_id("r-other")
                        .status(s.clone())
                        .build(),
                )
                .build(),
            None => out.build(),
        }
    })
}

#[tokio::test]
async fn creates_a_version_from_the_rollback_point_with_only_the_image_changed() {
    let run = target_run();
    let token =
        rollout_core::launch_template::client_token(&run.execution, "ecs-prod-a", &run.ami.id);
    let pin = mock!(aws_sdk_autoscaling::Client::update_auto_scaling_group)
        .match_requests(|r| r.launch_template().and_then(|t| t.version()) == Some("3"))
        .then_output(|| aws_sdk_autoscaling::operation::update_auto_scaling_group::UpdateAutoScalingGroupOutput::builder().build());
    let create = mock!(aws_sdk_ec2::Client::create_launch_template_version)
        .match_requests(move |r| {
            let data = r.launch_template_data().unwrap();
            r.source_version() == Some("3")
                && r.client_token() == Some(token.as_str())
                && data.image_id() == Some("ami-0a1b2c3d4e5f60718")
                && data.instance_type().is_none()
                && r.version_description().unwrap().starts_with("ami-rollout rollout-2026-11-20-golden-linux-1.0.4; ecs-prod-a ami-00000000000000001 -> ami-0a1b2c3d4e5f60718; rollback point: version 3")
        })
        .then_output(|| CreateLaunchTemplateVersionOutput::builder().launch_template_version(LaunchTemplateVersion::builder().version_number(4).build()).build());
    let (group, none) = (group_on("$Latest"), refreshes(None));
    let clients = Rules {
        autoscaling: vec![&group, &none, &pin],
        ec2: vec![&create],
        ..Default::default()
    }
    .clients();
    let out = create_version(&clients, run).await.unwrap();
    assert_eq!(out.new_version, Some(4));
    assert_eq!((pin.num_calls(), create.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_pinned_group_is_not_touched() {
    let mut run = target_run();
    set_reference(&mut run, VersionReference::Pinned);
    let create = mock!(aws_sdk_ec2::Client::create_launch_template_version).then_output(|| {
        CreateLaunchTemplateVersionOutput::builder()
            .launch_template_version(LaunchTemplateVersion::builder().version_number(4).build())
            .build()
    });
    // No UpdateAutoScalingGroup rule: calling it would fail the test.
    let (group, none) = (group_on("3"), refreshes(None));
    let clients = Rules {
        autoscaling: vec![&group, &none],
        ec2: vec![&create],
        ..Default::default()
    }
    .clients();
    assert_eq!(
        create_version(&clients, run).await.unwrap().new_version,
        Some(4)
    );
}

#[tokio::test]
async fn a_running_refresh_is_a_conflict_and_nothing_is_created() {
    let (group, busy) = (
        group_on("$Latest"),
        refreshes(Some(InstanceRefreshStatus::InProgress)),
    );
    let clients = Rules {
        autoscaling: vec![&group, &busy],
        ..Default::default()
    }
    .clients();
    let err = create_version(&clients, target_run()).await.unwrap_err();
    assert_eq!(
        err,
        StepError::RefreshConflict {
            group: "ecs-prod-a".into(),
            refresh_id: "r-other".into()
        }
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_input_without_aws_calls() {
    let clients = Rules::default().clients();
    let mut no_group = serde_json::to_value(target_run()).unwrap();
    no_group["target"]["group"] = "".into();
    for payload in [
        serde_json::json!({}),
        serde_json::json!({"run": {"execution": "x"}}),
        serde_json::json!({"action": "explode", "run": target_run()}),
        serde_json::json!({"run": no_group}),
    ] {
        let err = handle(&clients, payload.clone()).await.unwrap_err();
        assert_eq!(err.name(), "InvalidInput", "{payload}: {err}");
    }
}

#[tokio::test]
async fn restoring_a_default_reference_moves_the_default_then_the_group() {
    let mut run = target_run();
    set_reference(&mut run, VersionReference::Default);
    run.new_version = Some(4);
    let modify = mock!(aws_sdk_ec2::Client::modify_launch_template)
        .match_requests(|r| r.default_version() == Some("4"))
        .then_output(|| {
            aws_sdk_ec2::operation::modify_launch_template::ModifyLaunchTemplateOutput::builder()
                .build()
        });
    let update = mock!(aws_sdk_autoscaling::Client::update_auto_scaling_group)
        .match_requests(|r| r.launch_template().and_then(|t| t.version()) == Some("$Default"))
        .then_output(|| aws_sdk_autoscaling::operation::update_auto_scaling_group::UpdateAutoScalingGroupOutput::builder().build());
    let group = group_on("4");
    let clients = Rules {
        autoscaling: vec![&group, &update],
        ec2: vec![&modify],
        ..Default::default()
    }
    .clients();
    restore_reference(&clients, run).await.unwrap();
    assert_eq!((modify.num_calls(), update.num_calls()), (1, 1));
}

fn set_reference(run: &mut TargetRun, reference: VersionReference) {
    match &mut run.target.rollback_point {
        rollout_core::model::RollbackPoint::Template(point) => point.reference = reference,
        other => panic!("not a group's rollback point: {other:?}"),
    }
}
