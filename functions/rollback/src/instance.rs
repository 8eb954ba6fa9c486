//! Rolling a standalone instance back: its previous root, the very volume the rollout's
//! replacement kept, goes back in place, so what was on the root before the rollout is on it
//! again. Data volumes are never touched. Only when that volume is gone does the instance get a
//! fresh root from its previous AMI, and the report says so.
//!
//! An ECS container instance is set DRAINING before its root goes back (without waiting: the AMI
//! being rolled back is what failed). Once it is back, the container instance its agent connects
//! as is set ACTIVE again, and those left by the roots it no longer has are deregistered; a drain
//! the rollout began on a root it never replaced is undone the same way.

use rollout_core::ecs::{self, Identity};
use rollout_core::instance::{self, RootSource, StatusChecks, Task, TaskState};
use rollout_core::model::{
    Epoch, KeptRoots, PlanSummary, Purpose, RollbackStatus, RootPoint, Target, TargetKind,
    TargetRollback, TargetRun,
};
use rollout_core::{Clients, StepError, StepResult};

/// The next step for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PutBack(Source),
    /// The root is as it should be; its ECS container instances are not yet.
    SettleEcs(EcsFix),
    Wait(String),
    Done(String),
    Failed(String),
}

/// What brings a container instance's ECS identities back to where they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsFix {
    /// Set ACTIVE again: the container instance its agent is connected as, left DRAINING.
    pub activate: Option<String>,
    /// Deregistered: container instances of roots it no longer has.
    pub deregister: Vec<String>,
    /// What is done once they are.
    pub done: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The root the rollout's replacement kept.
    KeptRoot,
    /// A fresh root from the previous AMI, the kept one being gone.
    PreviousImage,
}

/// Where one instance stands, as the rollback sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceState {
    /// This execution's replacement with the new AMI, if it started one.
    pub rollout: Option<Task>,
    /// This execution's replacement back, if it started one.
    pub rollback: Option<Task>,
    /// The volume at the root device now; none when the instance is gone.
    pub current_root: Option<String>,
    pub kept_root_available: bool,
    /// The instance's state (`running`, `stopped`, ...); none when it is gone.
    pub instance_state: Option<String>,
    pub status_checks: StatusChecks,
    /// A container instance's ECS identities; the stale ones only those this execution's
    /// replacements left.
    pub ecs: Option<Identity>,
}

/// How long after its root is back an instance's ECS agent may take to connect again.
pub const AGENT_RECONNECT_SECONDS: i64 = 600;

pub fn decide(point: &RootPoint, state: &InstanceState, now: Epoch) -> Action {
    let action = decide_root(point, state);
    let Action::Done(done) = action else {
        return action;
    };
    let Some(identity) = &state.ecs else {
        return Action::Done(done);
    };
    let Some(live) = &identity.live else {
        if state.rollout.is_none() {
            return Action::Done(done);
        }
        let since = state
            .rollback
            .as_ref()
            .or(state.rollout.as_ref())
            .and_then(|t| t.ended_at);
        if since.is_some_and(|t| now - t > AGENT_RECONNECT_SECONDS) {
            return Action::Failed(format!(
                "{done}, but its ECS agent has not connected again in {}s",
                now - since.unwrap_or(now)
            ));
        }
        return Action::Wait(format!(
            "{done}; waiting for its ECS agent to connect again"
        ));
    };
    let activate = (live.status == "DRAINING").then(|| live.arn.clone());
    let deregister: Vec<String> = identity.stale.iter().map(|v| v.arn.clone()).collect();
    if activate.is_none() && deregister.is_empty() {
        return Action::Done(done);
    }
    let done = match (&state.rollout, &activate) {
        (None, Some(arn)) => format!(
            "its drain is undone: container instance {arn} is ACTIVE again (its root was never replaced)"
        ),
        (_, Some(arn)) => format!("{done}; container instance {arn} is ACTIVE again"),
        (_, None) => done,
    };
    Action::SettleEcs(EcsFix {
        activate,
        deregister,
        done,
    })
}

/// The next step for the root volume alone.
fn decide_root(point: &RootPoint, state: &InstanceState) -> Action {
    let Some(rollout) = &state.rollout else {
        return Action::Done("nothing of this execution's was on it".into());
    };
    let Some(current_root) = &state.current_root else {
        return Action::Failed("the instance no longer exists".into());
    };
    if let Some(back) = &state.rollback {
        return match &back.state {
            TaskState::Pending | TaskState::InProgress => Action::Wait(format!(
                "putting its previous root back (replacement {})",
                back.id
            )),
            TaskState::Succeeded => checked(
                state,
                if *current_root == point.root_volume_id {
                    format!(
                        "its previous root {} is back in place",
                        point.root_volume_id
                    )
                } else {
                    format!(
                        "its previous root {} was gone: it got a fresh root from {}",
                        point.root_volume_id, point.image_id
                    )
                },
            ),
            TaskState::Failed(how) => Action::Failed(format!(
                "putting its previous root {} back failed (replacement {} {how})",
                point.root_volume_id, back.id
            )),
            TaskState::FailedDetached => Action::Failed(format!(
                "putting its previous root back left it without a root volume (replacement {}); attach {} at {} by hand",
                back.id, point.root_volume_id, point.root_device_name
            )),
        };
    }
    match &rollout.state {
        // A task cannot be cancelled: wait for it to end, then undo what it did.
        TaskState::Pending | TaskState::InProgress => Action::Wait(format!(
            "its root volume replacement {} is still running",
            rollout.id
        )),
        TaskState::FailedDetached => Action::Failed(format!(
            "the replacement {} left it without a root volume; attach {} at {} by hand",
            rollout.id, point.root_volume_id, point.root_device_name
        )),
        _ if *current_root == point.root_volume_id => checked(
            state,
            format!(
                "its root was never replaced (replacement {} failed)",
                rollout.id
            ),
        ),
        // Starting: look again once it runs.
        _ if state.instance_state.as_deref() == Some("pending") => {
            Action::Wait("it is starting".into())
        }
        // EC2 replaces the root of a running instance only: an operator stopped it.
        _ if state
            .instance_state
            .as_deref()
            .is_some_and(|s| s != "running") =>
        {
            Action::Failed(format!(
                "it is {}, and a stopped instance's root cannot be replaced: its previous root {} is kept (start it and redrive, or attach it by hand)",
                state.instance_state.as_deref().unwrap_or_default(),
                point.root_volume_id
            ))
        }
        _ if state.kept_root_available => Action::PutBack(Source::KeptRoot),
        _ => Action::PutBack(Source::PreviousImage),
    }
}

/// Done once the instance passes its status checks on the root it has back.
fn checked(state: &InstanceState, done: String) -> Action {
    let checks = &state.status_checks;
    if !checks.impaired.is_empty() {
        Action::Failed(format!(
            "{done}, but its {} status check(s) fail",
            checks.impaired.join(", ")
        ))
    } else if !checks.pending.is_empty() {
        Action::Wait(format!(
            "{done}; waiting for its {} status check(s)",
            checks.pending.join(", ")
        ))
    } else {
        Action::Done(done)
    }
}

async fn state(clients: &Clients, run: &TargetRun, point: &RootPoint) -> StepResult<InstanceState> {
    let id = run.target.resource.as_str();
    let tasks = instance::tasks(clients, id).await?;
    let (current, kept) = tokio::try_join!(
        instance::describe(clients, id),
        instance::volume_state(clients, &point.root_volume_id)
    )?;
    let (changed_by, changed_since) = run.changed_by();
    let rollback = instance::newest_of(&tasks, &run.execution, Purpose::Rollback).cloned();
    let rollout = match (
        instance::newest_of(&tasks, changed_by, Purpose::Rollout),
        &run.undoing,
    ) {
        (Some(task), _) => Some(task.clone()),
        // AWS does not say how long it lists finished replacement tasks: the undo's plan checked
        // that the instance still runs the rolled-out AMI, which only the rollout's replacement
        // gave it.
        (None, Some(undone)) => Some(Task {
            id: format!("the rollout of {}", undone.execution),
            state: TaskState::Succeeded,
            started_at: Some(undone.start_time),
            ended_at: Some(undone.start_time),
            execution: Some(undone.execution.clone()),
            purpose: Some(Purpose::Rollout.as_str().to_string()),
        }),
        (None, None) => None,
    };
    let status_checks = match (&rollback, &current) {
        (Some(_), Some(_)) => instance::status_checks(clients, id).await?,
        _ => StatusChecks::default(),
    };
    let ecs = match &run.target.ecs {
        Some(ecs) if current.is_some() => {
            let views = ecs::of_instance(clients, &ecs.cluster, id).await?;
            let mut identity = ecs::identity(&views, id, &point.image_id);
            // Only what this execution's replacements left: the fleet's past is not ours to clean.
            identity.stale.retain(|v| {
                v.registered_at.is_some_and(|t| t > changed_since)
                    && Some(&v.arn) != point.container_instance_arn.as_ref()
            });
            Some(identity)
        }
        _ => None,
    };
    Ok(InstanceState {
        rollout,
        rollback,
        instance_state: current.as_ref().map(|c| c.state.clone()),
        current_root: current.and_then(|c| c.root_volume_id),
        kept_root_available: kept.as_deref() == Some("available"),
        status_checks,
        ecs,
    })
}

/// One call of one instance's rollback: where it stands, and the next step.
pub async fn converge(clients: &Clients, run: &TargetRun) -> StepResult<TargetRollback> {
    let point = run.target.root_point()?;
    let state = state(clients, run, point).await?;
    let action = decide(point, &state, rollout_core::clock::now());
    // Nothing of this execution's on it (no replacement of its root): a finished rollback of it
    // is no rollback at all.
    let untouched = state.rollout.is_none() && !matches!(action, Action::SettleEcs(_));
    let mut report = TargetRollback {
        group: run.target.name(),
        status: RollbackStatus::Rolling,
        refresh_id: state
            .rollback
            .as_ref()
            .or(state.rollout.as_ref())
            .map(|t| t.id.clone()),
        action: String::new(),
    };
    match action {
        Action::PutBack(source) => {
            let (from, said) = match source {
                Source::KeptRoot => (
                    RootSource::Volume(&point.root_volume_id),
                    format!("putting its previous root {} back", point.root_volume_id),
                ),
                Source::PreviousImage => (
                    RootSource::Image(&point.image_id),
                    format!(
                        "its previous root {} is gone: giving it a fresh root from {}",
                        point.root_volume_id, point.image_id
                    ),
                ),
            };
            // The root that replaced it came from the AMI being rolled back: not worth keeping. It
            // is tagged like every root a replacement discards, which is what the roles may delete.
            if let Some(failed_root) = &state.current_root {
                instance::tag_root(clients, failed_root, &run.target.resource, &run.execution)
                    .await?;
            }
            // The reboot would stop its tasks where they run: ECS starts them elsewhere at once.
            if let (Some(ecs), Some(live)) = (
                &run.target.ecs,
                state.ecs.as_ref().and_then(|i| i.live.as_ref()),
            ) && live.status == "ACTIVE"
            {
                ecs::set_status(clients, &ecs.cluster, &live.arn, true).await?;
            }
            let task = instance::replace_root(
                clients,
                &run.target.resource,
                from,
                true,
                &run.execution,
                Purpose::Rollback,
            )
            .await?;
            report.refresh_id = Some(task.id);
            report.action = said;
        }
        Action::SettleEcs(fix) => {
            let cluster = run
                .target
                .ecs
                .as_ref()
                .map(|e| e.cluster.as_str())
                .unwrap_or_default();
            if let Some(arn) = &fix.activate {
                ecs::set_status(clients, cluster, arn, false).await?;
            }
            for arn in &fix.deregister {
                ecs::deregister(clients, cluster, arn).await?;
            }
            report.action = fix.done;
            report.status = RollbackStatus::RolledBack;
        }
        Action::Wait(why) => report.action = why,
        Action::Done(what) => {
            report.action = what;
            report.status = match untouched {
                true => RollbackStatus::Untouched,
                false => RollbackStatus::RolledBack,
            };
        }
        Action::Failed(why) => {
            report.action = why;
            report.status = RollbackStatus::Failed;
        }
    }
    Ok(report)
}

/// After a successful rollout: deletes the roots its replacements kept, one per rolled-out
/// instance, unless the instance's `keepReplacedRoot` setting keeps it. Only lanes of instances
/// are read.
pub async fn delete_kept_roots(
    clients: &Clients,
    execution: &str,
    plan: &PlanSummary,
) -> StepResult<KeptRoots> {
    if execution.trim().is_empty() {
        return Err(StepError::invalid("execution is empty"));
    }
    let store = clients.store()?;
    let mut done = KeptRoots::default();
    for wave in &plan.waves {
        for lane in store.lanes(&plan.bucket, &wave.key).await? {
            if lane.kind != TargetKind::Instance {
                continue;
            }
            let place = clients
                .at(lane.account.as_deref(), lane.region.as_deref(), execution)
                .await?;
            let targets: Vec<Target> = store.get_json(&plan.bucket, &lane.key).await?;
            for target in targets {
                let volume = target.root_point()?.root_volume_id.clone();
                if plan
                    .settings
                    .for_group(&target.resource)
                    .keep_replaced_root
                    .unwrap_or(false)
                {
                    done.kept.push(volume);
                } else if instance::delete_kept_root(&place, &volume).await? {
                    done.deleted.push(volume);
                    done.deregistered
                        .extend(forget_identity(&place, &target).await?);
                }
            }
        }
    }
    tracing::info!(execution, deleted = ?done.deleted, kept = ?done.kept, deregistered = ?done.deregistered, "kept roots");
    Ok(done)
}

/// Deregisters the container instance whose identity lived on a root just deleted, unless an
/// agent connects as it (the root was put back by hand). Its ARN, when it was deregistered.
async fn forget_identity(clients: &Clients, target: &Target) -> StepResult<Option<String>> {
    let (Some(ecs), Some(arn)) = (&target.ecs, &target.root_point()?.container_instance_arn) else {
        return Ok(None);
    };
    let views = ecs::of_instance(clients, &ecs.cluster, &target.resource).await?;
    if !views.iter().any(|v| v.arn == *arn && !v.agent_connected) {
        return Ok(None);
    }
    ecs::deregister(clients, &ecs.cluster, arn).await?;
    Ok(Some(arn.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> RootPoint {
        RootPoint {
            root_volume_id: "vol-old".into(),
            root_device_name: "/dev/xvda".into(),
            image_id: "ami-00000001".into(),
            container_instance_arn: Some("ci/old".into()),
        }
    }

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            state,
            started_at: Some(1),
            ended_at: None,
            execution: Some("e".into()),
            purpose: None,
        }
    }

    fn replaced() -> InstanceState {
        InstanceState {
            rollout: Some(task("replacevol-1", TaskState::Succeeded)),
            rollback: None,
            current_root: Some("vol-new".into()),
            kept_root_available: true,
            instance_state: Some("running".into()),
            status_checks: StatusChecks::default(),
            ecs: None,
        }
    }

    #[test]
    fn a_stopped_instance_keeps_its_new_root_and_its_previous_root_is_named() {
        let stopped = InstanceState {
            instance_state: Some("stopped".into()),
            ..replaced()
        };
        assert!(matches!(
            decide(&point(), &stopped, 0),
            Action::Failed(why) if why.starts_with("it is stopped") && why.contains("vol-old is kept")
        ));
    }

    #[test]
    fn a_replaced_root_is_put_back_exactly() {
        assert_eq!(
            decide(&point(), &replaced(), 0),
            Action::PutBack(Source::KeptRoot)
        );
        let gone = InstanceState {
            kept_root_available: false,
            ..replaced()
        };
        assert_eq!(
            decide(&point(), &gone, 0),
            Action::PutBack(Source::PreviousImage)
        );
    }

    #[test]
    fn an_instance_this_execution_never_touched_is_left_alone() {
        let untouched = InstanceState {
            current_root: Some("vol-old".into()),
            ..Default::default()
        };
        assert!(matches!(decide(&point(), &untouched, 0), Action::Done(_)));
    }

    #[test]
    fn a_running_replacement_is_waited_for_and_a_failed_one_changed_nothing() {
        let running = InstanceState {
            rollout: Some(task("replacevol-1", TaskState::InProgress)),
            current_root: Some("vol-old".into()),
            ..replaced()
        };
        assert!(matches!(decide(&point(), &running, 0), Action::Wait(_)));
        let failed = InstanceState {
            rollout: Some(task("replacevol-1", TaskState::Failed("failed".into()))),
            current_root: Some("vol-old".into()),
            ..replaced()
        };
        assert!(
            matches!(decide(&point(), &failed, 0), Action::Done(what) if what.contains("never replaced"))
        );
    }

    #[test]
    fn the_way_back_ends_once_the_instance_passes_its_status_checks() {
        let back = |state: TaskState, root: &str, checks: StatusChecks| InstanceState {
            rollback: Some(task("replacevol-2", state)),
            current_root: Some(root.into()),
            status_checks: checks,
            ..replaced()
        };
        let initializing = StatusChecks {
            pending: vec!["instance".into()],
            ..StatusChecks::default()
        };
        assert!(matches!(
            decide(
                &point(),
                &back(TaskState::Succeeded, "vol-old", initializing),
                0
            ),
            Action::Wait(_)
        ));
        assert_eq!(
            decide(
                &point(),
                &back(TaskState::Succeeded, "vol-old", StatusChecks::default()),
                0
            ),
            Action::Done("its previous root vol-old is back in place".into())
        );
        assert!(matches!(
            decide(&point(), &back(TaskState::Succeeded, "vol-fresh", StatusChecks::default()), 0),
            Action::Done(what) if what.contains("fresh root from ami-00000001")
        ));
        assert!(matches!(
            decide(&point(), &back(TaskState::Failed("failed".into()), "vol-new", StatusChecks::default()), 0),
            Action::Failed(why) if why.contains("failed")
        ));
        let impaired = StatusChecks {
            impaired: vec!["instance".into()],
            ..StatusChecks::default()
        };
        assert!(matches!(
            decide(&point(), &back(TaskState::Succeeded, "vol-old", impaired), 0),
            Action::Failed(why) if why.contains("instance status check")
        ));
    }

    fn container(arn: &str, status: &str, connected: bool) -> ecs::ContainerInstanceView {
        ecs::ContainerInstanceView {
            arn: arn.into(),
            ec2_instance_id: "i-1".into(),
            status: status.into(),
            agent_connected: connected,
            ami: Some("ami-00000001".into()),
            running_tasks: 0,
            registered_at: Some(500),
        }
    }

    fn back_on(identity: Identity) -> InstanceState {
        InstanceState {
            rollback: Some(Task {
                ended_at: Some(1_000),
                ..task("replacevol-2", TaskState::Succeeded)
            }),
            current_root: Some("vol-old".into()),
            ecs: Some(identity),
            ..replaced()
        }
    }

    #[test]
    fn a_container_instance_back_on_its_root_is_active_again_and_the_new_identity_is_forgotten() {
        let state = back_on(Identity {
            live: Some(container("ci/old", "DRAINING", true)),
            stale: vec![container("ci/new", "ACTIVE", false)],
        });
        let Action::SettleEcs(fix) = decide(&point(), &state, 1_010) else {
            panic!("{:?}", decide(&point(), &state, 1_010));
        };
        assert_eq!(fix.activate.as_deref(), Some("ci/old"));
        assert_eq!(fix.deregister, ["ci/new"]);
        assert!(
            fix.done.contains(
                "previous root vol-old is back in place; container instance ci/old is ACTIVE again"
            ),
            "{}",
            fix.done
        );
        let settled = back_on(Identity {
            live: Some(container("ci/old", "ACTIVE", true)),
            stale: vec![],
        });
        assert!(matches!(decide(&point(), &settled, 1_010), Action::Done(_)));
    }

    #[test]
    fn an_agent_that_does_not_connect_again_is_waited_for_then_reported() {
        let state = back_on(Identity::default());
        assert!(
            matches!(decide(&point(), &state, 1_100), Action::Wait(why) if why.contains("ECS agent"))
        );
        assert!(matches!(
            decide(&point(), &state, 1_000 + AGENT_RECONNECT_SECONDS + 1),
            Action::Failed(why) if why.contains("has not connected again")
        ));
    }

    #[test]
    fn a_drain_on_a_root_never_replaced_is_undone() {
        let drained = InstanceState {
            current_root: Some("vol-old".into()),
            ecs: Some(Identity {
                live: Some(container("ci/old", "DRAINING", true)),
                stale: vec![],
            }),
            ..Default::default()
        };
        let Action::SettleEcs(fix) = decide(&point(), &drained, 10) else {
            panic!("not settled");
        };
        assert_eq!(
            (fix.activate.as_deref(), fix.deregister.len()),
            (Some("ci/old"), 0)
        );
        assert!(fix.done.contains("its drain is undone"), "{}", fix.done);
    }
}
