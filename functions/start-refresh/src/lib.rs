//! start-refresh: starts the instance refresh to the new version, passed as the desired
//! configuration so Auto Scaling can roll it back natively, or adopts the one a retry already started.
//! A standalone instance gets its root volume replaced with one from the new AMI instead, once
//! drained if it is an ECS container instance (`drain`).

pub mod drain;

use rollout_core::fleet::describe_group;
use rollout_core::instance::{self, RootSource};
use rollout_core::model::Purpose;
use rollout_core::model::{Epoch, RefreshRef, TargetKind, TargetRun};
use rollout_core::refresh::{self, Started};
use rollout_core::{Clients, StepError, StepResult};
use serde_json::Value;

pub async fn handle(clients: &Clients, payload: Value) -> StepResult<TargetRun> {
    let run = rollout_core::error::parse_input("start-refresh", payload)?;
    start_refresh(clients, run, rollout_core::clock::now()).await
}

pub async fn start_refresh(
    clients: &Clients,
    mut run: TargetRun,
    now: Epoch,
) -> StepResult<TargetRun> {
    run.validate()?;
    clients.ensure_wave_going(&run).await?;
    let clients = &clients.for_run(&run).await?;
    if run.target.kind == TargetKind::Instance {
        return replace_root(clients, run, now).await;
    }
    let version = run.require_new_version()?;
    let group = describe_group(clients, run.resource()).await?;
    let settings = run.settings.for_group(run.resource());
    let started = refresh::start(
        clients,
        &group,
        &run.target,
        version,
        Purpose::Rollout,
        run.execution_start_time,
        &settings,
    )
    .await?;
    let started_at = match &started {
        Started::New(_) => now,
        Started::Adopted(existing) => existing.started_at.unwrap_or(now),
    };
    tracing::info!(
        group = run.resource(),
        refresh = started.id(),
        adopted = matches!(started, Started::Adopted(_)),
        version,
        "instance refresh running"
    );
    run.refresh = Some(RefreshRef {
        id: started.id().to_string(),
        started_at,
    });
    Ok(run)
}

/// Replaces a standalone instance's root with one from the new AMI, keeping the replaced root for
/// a rollback; or adopts the replacement a retry or redrive already started.
async fn replace_root(clients: &Clients, mut run: TargetRun, now: Epoch) -> StepResult<TargetRun> {
    let point = run.target.root_point()?.clone();
    let id = run.resource().to_string();
    let tasks = instance::tasks(clients, &id).await?;
    let task = match instance::newest_of(&tasks, &run.execution, Purpose::Rollout) {
        Some(ours) => ours.clone(),
        None => {
            let refuse = |reason: String| StepError::PreflightFailed {
                group: run.target.name(),
                reason,
            };
            if let Some(other) = tasks.iter().find(|t| t.is_running()) {
                return Err(refuse(format!(
                    "another root volume replacement ({}) is running on it",
                    other.id
                )));
            }
            let current = instance::describe(clients, &id).await?.ok_or_else(|| {
                StepError::TargetNotFound(format!("instance {id} no longer exists"))
            })?;
            if current.root_volume_id.as_deref() != Some(point.root_volume_id.as_str()) {
                return Err(refuse(format!(
                    "its root volume is {}, not {} as when the rollout was planned",
                    current.root_volume_id.as_deref().unwrap_or("none"),
                    point.root_volume_id
                )));
            }
            if let Some(ecs) = run.target.ecs.clone() {
                let (drain, drained) = drain::drain(clients, &run, &ecs, now).await?;
                run.drain = Some(drain);
                if !drained {
                    return Ok(run);
                }
            }
            instance::tag_root(clients, &point.root_volume_id, &id, &run.execution).await?;
            instance::replace_root(
                clients,
                &id,
                RootSource::Image(&run.ami.id),
                false,
                &run.execution,
                Purpose::Rollout,
            )
            .await?
        }
    };
    tracing::info!(instance = id, task = task.id, state = ?task.state, kept_root = point.root_volume_id, "root volume replacement running");
    run.refresh = Some(RefreshRef {
        id: task.id,
        started_at: task.started_at.unwrap_or(now),
    });
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
    use aws_sdk_autoscaling::operation::start_instance_refresh::{
        StartInstanceRefreshError, StartInstanceRefreshOutput,
    };
    use aws_sdk_autoscaling::types::{
        AutoScalingGroup, DesiredConfiguration, InstanceRefresh, InstanceRefreshStatus,
        LaunchTemplateSpecification, ScaleInProtectedInstances,
    };
    use rollout_core::StepError;
    use rollout_core::aws::mock::{Rule, Rules, mock};
    use rollout_core::samples::target_run;

    fn run() -> TargetRun {
        let mut run = target_run();
        run.new_version = Some(4);
        run
    }

    fn group() -> Rule {
        mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(|| {
            aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(
                    AutoScalingGroup::builder()
                        .auto_scaling_group_name("ecs-prod-a")
                        .launch_template(LaunchTemplateSpecification::builder().launch_template_id("lt-0123456789abcdef0").version("3").build())
                        .build(),
                )
                .build()
        })
    }

    /// When the sample execution started.
    fn execution_start() -> i64 {
        run().execution_start_time
    }

    /// A refresh already on the group, started `offset` seconds after the execution.
    fn existing(status: InstanceRefreshStatus, version: &'static str, offset: i64) -> Rule {
        let started = execution_start() + offset;
        mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes).then_output(move || {
            let desired = DesiredConfiguration::builder()
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id("lt-0123456789abcdef0")
                        .version(version)
                        .build(),
                )
                .build();
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(
                    InstanceRefresh::builder()
                        .instance_refresh_id("r-existing")
                        .status(status.clone())
                        .desired_configuration(desired)
                        .start_time(aws_smithy_types::DateTime::from_secs(started))
                        .build(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn starts_with_the_new_version_as_desired_configuration_and_safe_preferences() {
        let none = mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes)
            .then_output(|| DescribeInstanceRefreshesOutput::builder().build());
        let start = mock!(aws_sdk_autoscaling::Client::start_instance_refresh)
            .match_requests(|r| {
                let desired = r
                    .desired_configuration()
                    .and_then(|d| d.launch_template())
                    .unwrap();
                let p = r.preferences().unwrap();
                desired.launch_template_id() == Some("lt-0123456789abcdef0")
                    && desired.version() == Some("4")
                    && p.skip_matching() == Some(true)
                    && p.auto_rollback() == Some(true)
                    && p.min_healthy_percentage() == Some(90)
                    && p.scale_in_protected_instances() == Some(&ScaleInProtectedInstances::Refresh)
                    && p.alarm_specification().map(|a| a.alarms())
                        == Some(&["ecs-prod-a-5xx".to_string()][..])
            })
            .then_output(|| {
                StartInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-new")
                    .build()
            });
        let g = group();
        let clients = Rules {
            autoscaling: vec![&g, &none, &start],
            ..Default::default()
        }
        .clients();
        let out = start_refresh(&clients, run(), 42).await.unwrap();
        assert_eq!(
            out.refresh,
            Some(RefreshRef {
                id: "r-new".into(),
                started_at: 42
            })
        );
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_retry_adopts_the_refresh_it_already_started() {
        let ours = existing(InstanceRefreshStatus::InProgress, "4", 30);
        let g = group();
        // No StartInstanceRefresh rule: starting a second refresh would fail the test.
        let clients = Rules {
            autoscaling: vec![&g, &ours],
            ..Default::default()
        }
        .clients();
        let out = start_refresh(&clients, run(), 42).await.unwrap();
        assert_eq!(
            out.refresh,
            Some(RefreshRef {
                id: "r-existing".into(),
                started_at: execution_start() + 30
            })
        );
    }

    #[tokio::test]
    async fn a_finished_refresh_to_the_same_version_from_before_the_execution_is_not_ours() {
        // A fleet with a past: an earlier run refreshed the group to a version numbered 4 too.
        let before = existing(InstanceRefreshStatus::Successful, "4", -3_600);
        let start = mock!(aws_sdk_autoscaling::Client::start_instance_refresh).then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-new")
                .build()
        });
        let g = group();
        let clients = Rules {
            autoscaling: vec![&g, &before, &start],
            ..Default::default()
        }
        .clients();
        let out = start_refresh(&clients, run(), 42).await.unwrap();
        assert_eq!(out.refresh.unwrap().id, "r-new");
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn another_running_refresh_is_a_conflict() {
        let other = existing(InstanceRefreshStatus::InProgress, "9", -60);
        let g = group();
        let clients = Rules {
            autoscaling: vec![&g, &other],
            ..Default::default()
        }
        .clients();
        let err = start_refresh(&clients, run(), 42).await.unwrap_err();
        assert_eq!(
            err,
            StepError::RefreshConflict {
                group: "ecs-prod-a".into(),
                refresh_id: "r-existing".into()
            }
        );
    }

    #[tokio::test]
    async fn throttling_maps_to_the_retryable_name() {
        let none = mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes)
            .then_output(|| DescribeInstanceRefreshesOutput::builder().build());
        let throttled =
            mock!(aws_sdk_autoscaling::Client::start_instance_refresh).then_error(|| {
                StartInstanceRefreshError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("Throttling")
                        .message("Rate exceeded")
                        .build(),
                )
            });
        let g = group();
        let clients = Rules {
            autoscaling: vec![&g, &none, &throttled],
            ..Default::default()
        }
        .clients();
        let err = start_refresh(&clients, run(), 42).await.unwrap_err();
        assert_eq!(err.name(), "AwsThrottled");
        assert!(err.to_string().contains("Rate exceeded"), "{err}");
    }

    #[tokio::test]
    async fn missing_new_version_is_invalid_input_without_aws_calls() {
        let err = start_refresh(&Rules::default().clients(), target_run(), 42)
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("newVersion is missing"), "{err}");
    }
}
