//! Draining a standalone ECS container instance before its root is replaced: replacing the root
//! reboots the instance, which would stop its tasks where they run. Set DRAINING, ECS stops its
//! service tasks and starts them elsewhere; the replacement starts once none runs there. Tasks no
//! service started are not drained by ECS: past `drainTimeoutSeconds` the target fails, with
//! nothing replaced (the rollback sets the container instance ACTIVE again).

use rollout_core::ecs::{self, ContainerInstanceView};
use rollout_core::model::{Drain, EcsCapacity, Epoch, TargetRun};
use rollout_core::{Clients, StepError, StepResult};

/// Bounds of the wait between two looks at a drain. It grows with the drain's age, so even a
/// drain of many hours costs a few hundred polls in the child's history.
pub const MIN_DRAIN_WAIT_SECONDS: i64 = 15;
pub const MAX_DRAIN_WAIT_SECONDS: i64 = 900;

/// What a drain calls for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Not drained by us yet: set it DRAINING.
    Start,
    /// Tasks still run on it: look again later.
    Wait(Drain),
    /// Nothing runs on it any more: replace the root.
    Drained(Drain),
    /// Tasks still run on it past the timeout: why.
    TooLong(String),
}

/// The next step of the drain of `live` (the container instance the agent is connected as), given
/// the drain so far.
pub fn next(
    previous: Option<&Drain>,
    live: &ContainerInstanceView,
    now: Epoch,
    timeout: i64,
) -> Next {
    // DRAINING at the first look is ours too: the plan took only ACTIVE ones, the instance is
    // held, and a retry may follow a call that set it DRAINING but did not return.
    if previous.is_none() && live.status == "ACTIVE" {
        return Next::Start;
    }
    let started_at = previous.map_or(now, |d| d.started_at);
    let drain = Drain {
        container_instance_arn: live.arn.clone(),
        started_at,
        running_tasks: live.running_tasks,
        next_wait_seconds: ((now - started_at) / 2)
            .clamp(MIN_DRAIN_WAIT_SECONDS, MAX_DRAIN_WAIT_SECONDS),
    };
    if live.running_tasks == 0 {
        return Next::Drained(Drain {
            next_wait_seconds: 0,
            ..drain
        });
    }
    if now - started_at > timeout {
        return Next::TooLong(format!(
            "container instance {} still runs {} task(s) {}s after it was set DRAINING (drainTimeoutSeconds {timeout}); ECS does not drain tasks that no service started: stop them, or raise drainTimeoutSeconds",
            live.arn,
            live.running_tasks,
            now - started_at
        ));
    }
    Next::Wait(drain)
}

/// Drains the instance of `run`: the drain while tasks still run on it, or the finished drain.
pub async fn drain(
    clients: &Clients,
    run: &TargetRun,
    ecs: &EcsCapacity,
    now: Epoch,
) -> StepResult<(Drain, bool)> {
    let id = run.resource();
    let views = ecs::of_instance(clients, &ecs.cluster, id).await?;
    let Some(live) = ecs::identity(&views, id, &run.ami.id).live else {
        return Err(StepError::TargetUnhealthy {
            group: run.target.name(),
            ami: run.ami.id.clone(),
            reasons: format!(
                "its ECS agent is not connected to cluster {}: its tasks cannot be drained (nothing was replaced)",
                ecs.cluster
            ),
        });
    };
    let timeout = run.settings.for_group(id).drain_timeout_seconds();
    match next(run.drain.as_ref(), &live, now, timeout) {
        Next::Start => {
            ecs::set_status(clients, &ecs.cluster, &live.arn, true).await?;
            tracing::info!(
                instance = id,
                container_instance = live.arn,
                tasks = live.running_tasks,
                "draining"
            );
            let drain = Drain {
                container_instance_arn: live.arn,
                started_at: now,
                running_tasks: live.running_tasks,
                next_wait_seconds: MIN_DRAIN_WAIT_SECONDS,
            };
            Ok((drain, false))
        }
        Next::Wait(drain) => Ok((drain, false)),
        Next::Drained(drain) => Ok((drain, true)),
        Next::TooLong(reason) => Err(StepError::TargetUnhealthy {
            group: run.target.name(),
            ami: run.ami.id.clone(),
            reasons: reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(status: &str, tasks: i32) -> ContainerInstanceView {
        ContainerInstanceView {
            arn: "arn:aws:ecs:us-east-1:111111111111:container-instance/prod/abc".into(),
            ec2_instance_id: "i-1".into(),
            status: status.into(),
            agent_connected: true,
            ami: Some("ami-old".into()),
            running_tasks: tasks,
            registered_at: None,
        }
    }

    fn draining_since(started_at: Epoch) -> Drain {
        Drain {
            container_instance_arn: live("DRAINING", 2).arn,
            started_at,
            running_tasks: 2,
            next_wait_seconds: 15,
        }
    }

    #[test]
    fn an_active_container_instance_is_set_draining_first() {
        assert_eq!(next(None, &live("ACTIVE", 3), 100, 1800), Next::Start);
    }

    #[test]
    fn a_drain_waits_longer_as_it_ages_and_ends_when_no_task_runs() {
        let early = next(Some(&draining_since(100)), &live("DRAINING", 2), 110, 1800);
        assert!(
            matches!(early, Next::Wait(d) if d.next_wait_seconds == MIN_DRAIN_WAIT_SECONDS && d.started_at == 100)
        );
        let later = next(Some(&draining_since(100)), &live("DRAINING", 1), 700, 1800);
        assert!(
            matches!(later, Next::Wait(d) if d.next_wait_seconds == 300 && d.running_tasks == 1)
        );
        let hours = next(
            Some(&draining_since(0)),
            &live("DRAINING", 1),
            40_000,
            172_800,
        );
        assert!(matches!(hours, Next::Wait(d) if d.next_wait_seconds == MAX_DRAIN_WAIT_SECONDS));
        assert!(matches!(
            next(Some(&draining_since(100)), &live("DRAINING", 0), 200, 1800),
            Next::Drained(d) if d.running_tasks == 0
        ));
    }

    #[test]
    fn draining_at_the_first_look_is_a_retry_of_our_own_drain() {
        assert!(
            matches!(next(None, &live("DRAINING", 1), 100, 1800), Next::Wait(d) if d.started_at == 100)
        );
        assert!(matches!(
            next(None, &live("DRAINING", 0), 100, 1800),
            Next::Drained(_)
        ));
    }

    #[test]
    fn tasks_that_never_leave_fail_the_target_past_the_timeout_with_the_reason() {
        let Next::TooLong(reason) =
            next(Some(&draining_since(0)), &live("DRAINING", 1), 1801, 1800)
        else {
            panic!("not timed out");
        };
        assert!(
            reason.contains("still runs 1 task(s) 1801s after it was set DRAINING"),
            "{reason}"
        );
        assert!(reason.contains("drainTimeoutSeconds 1800"), "{reason}");
    }
}
