//! rollback: brings every touched target back to its rollback point, one child execution per
//! target. Three actions:
//! - `plan`: the targets in scope (every wave up to the failed one, or only the failed wave),
//!   written to S3 for the rollback's Distributed Map;
//! - `converge`: one target, from its child: each call looks at where the target is and takes the
//!   next step, so the child calls it again (after a wait) until it is `complete`. Safe under
//!   Retry and redrive;
//! - `planUndo`: the same for an undo execution: every target of the plan (resolve-ami checked
//!   each can go back), whose rollout changes are the undone execution's;
//! - `summarize`: every child's outcome, read from the Map Run's results, in one Cause;
//! - `deleteKeptRoots`: once the rollout succeeded, the roots standalone instances had before it.
//!
//! A group goes back to its launch template version (here); a standalone instance to its previous
//! root volume (`instance`).

pub mod instance;

use rollout_core::FromSdk;
use rollout_core::ami;
use rollout_core::fleet::{
    describe_group, group_version, in_service_instances, instance_images, set_group_version,
    suspended_processes, suspension_refusal,
};
use rollout_core::launch_template::{self, Marker};
use rollout_core::model::{
    CaughtError, ExecutionStatus, PlanSummary, Purpose, RollbackPlan, RollbackReport,
    RollbackScope, RollbackStatus, RollbackStep, Target, TargetKind, TargetRollback, TargetRun,
    UndoOf, VersionReference, WaveStop,
};
use rollout_core::refresh::{self, RefreshInfo, RefreshStatus, recent_refreshes};
use rollout_core::store::{ChildResult, ResultWriterDetails, plan_prefix, results_prefix};
use rollout_core::{Clients, StepError, StepResult};
use serde::Deserialize;
use serde_json::Value;

/// Wait between rollback progress checks.
pub const ROLLBACK_WAIT_SECONDS: i64 = 30;

/// How many targets the Cause names in each list; the counts cover them all.
pub const NAMED_IN_CAUSE: usize = 10;

#[derive(Deserialize, Debug)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum RollbackRequest {
    Plan {
        execution: String,
        plan: Box<PlanSummary>,
        stop: WaveStop,
    },
    PlanUndo {
        execution: String,
        plan: Box<PlanSummary>,
    },
    Converge {
        run: Box<TargetRun>,
    },
    Summarize {
        /// Why the targets were rolled back: the plan's `reason`.
        reason: String,
        results: ResultWriterDetails,
    },
    DeleteKeptRoots {
        execution: String,
        plan: Box<PlanSummary>,
    },
}

pub async fn handle(clients: &Clients, payload: Value) -> StepResult<Value> {
    let request: RollbackRequest = rollout_core::error::parse_input("rollback", payload)?;
    let out = match request {
        RollbackRequest::Plan {
            execution,
            plan,
            stop,
        } => serde_json::to_value(plan_rollback(clients, &execution, &plan, &stop).await?),
        RollbackRequest::PlanUndo { execution, plan } => {
            serde_json::to_value(plan_undo(clients, &execution, &plan).await?)
        }
        RollbackRequest::Converge { run } => {
            let step = converge(clients, &run).await?;
            tracing::info!(group = run.resource(), complete = step.complete, target = ?step.target, "rollback");
            serde_json::to_value(step)
        }
        RollbackRequest::Summarize { reason, results } => {
            let outcomes = clients.store()?.lane_results(&results).await?;
            serde_json::to_value(summarize(&reason, &outcomes))
        }
        RollbackRequest::DeleteKeptRoots { execution, plan } => {
            serde_json::to_value(instance::delete_kept_roots(clients, &execution, &plan).await?)
        }
    };
    out.map_err(|e| StepError::invalid(format!("rollback output: {e}")))
}

/// Where a touched target stands now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetState {
    /// Versions this execution created (found by their description).
    pub ours: Vec<i64>,
    /// The group's version, resolved to a number.
    pub group_version: i64,
    /// The group's version string (`$Latest`, `$Default` or a number).
    pub group_reference: String,
    pub template_latest: i64,
    pub template_default: i64,
    /// The group's newest refresh, whoever started it (only one can be active).
    pub latest_refresh: Option<RefreshInfo>,
    /// The newest refresh back to the rollback point that this execution started (one that began
    /// after the execution did; refreshes to that version from the fleet's past never count).
    pub refresh_back: Option<RefreshInfo>,
    /// In-service instances running the AMI this execution rolled out.
    pub instances_on_new_ami: usize,
    /// Why the rollback point's AMI can no longer launch (deregistered, disabled), if it cannot.
    pub rollback_ami_refusal: Option<String>,
    /// Why no refresh replaces the group's instances now (a process suspended), if none does.
    pub suspension: Option<String>,
}

/// The next step for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Our refresh still runs: Auto Scaling rolls it back to the group's saved configuration.
    RollbackNatively(String),
    /// Refresh to the recorded version (the rollout's refresh had already ended).
    RefreshToRollbackPoint,
    /// Fleet is back; give the group and template back their references.
    RestoreReferences,
    Wait(String),
    Done(String),
    Failed(String),
}

pub fn decide(target: &Target, state: &TargetState) -> Action {
    let action = decide_way_back(target, state);
    match (&action, &state.suspension) {
        // Both ways back replace instances: say so now rather than start what would sit.
        (Action::RollbackNatively(_) | Action::RefreshToRollbackPoint, Some(reason)) => {
            Action::Failed(format!("it cannot be brought back now: {reason}"))
        }
        _ => action,
    }
}

fn decide_way_back(target: &Target, state: &TargetState) -> Action {
    use RefreshStatus as S;
    let point = match target.template_point() {
        Ok(point) => point,
        Err(wrong_kind) => return Action::Failed(wrong_kind.to_string()),
    };
    if let Some(reason) = &state.rollback_ami_refusal {
        // Every way back launches this AMI: say so now rather than report a rollback that cannot be.
        return Action::Failed(format!(
            "its rollback point AMI {} {reason}, so it cannot be brought back onto it",
            point.image_id
        ));
    }
    let ours = |v: &i64| state.ours.contains(v);
    if let Some(r) = state.latest_refresh.as_ref().filter(|r| r.is_active()) {
        let our_rollout = r.desired_version().is_some_and(|v| ours(&v));
        let back = r.targets(&point.launch_template_id, point.version);
        return match &r.status {
            S::RollbackInProgress if our_rollout => Action::Wait(format!(
                "Auto Scaling is rolling refresh {} back ({}%)",
                r.id, r.percentage
            )),
            S::Cancelling if our_rollout => Action::Wait(format!("refresh {} is cancelling", r.id)),
            _ if our_rollout => Action::RollbackNatively(r.id.clone()),
            _ if back => Action::Wait(format!(
                "refresh {} to version {} is at {}%",
                r.id, point.version, r.percentage
            )),
            _ => Action::Failed(format!(
                "refresh {} to another configuration is running; it was left alone",
                r.id
            )),
        };
    }
    if state.instances_on_new_ami > 0 || ours(&state.group_version) {
        // A finished refresh back is judged, never started again: one that succeeded and still
        // left instances on the new AMI would leave them there every time.
        return match state.refresh_back.as_ref().filter(|r| !r.is_active()) {
            // The fleet is back; the group still names our version: give it its own back.
            Some(r) if r.status == S::Successful && state.instances_on_new_ami == 0 => {
                Action::RestoreReferences
            }
            Some(r) if r.status == S::Successful => Action::Failed(format!(
                "refresh {} back to version {} succeeded but {} instance(s) still run the new AMI (scale-in protected or in standby?)",
                r.id, point.version, state.instances_on_new_ami
            )),
            Some(r) => Action::Failed(format!(
                "refresh {} back to version {} ended {}: {}",
                r.id,
                point.version,
                r.status,
                r.reason.as_deref().unwrap_or("no reason given")
            )),
            None => Action::RefreshToRollbackPoint,
        };
    }
    let reference_right = state.group_reference == point.reference.spec(point.version);
    let default_right = !ours(&state.template_default);
    let latest_right = point.reference != VersionReference::Latest || !ours(&state.template_latest);
    if reference_right && default_right && latest_right {
        Action::Done(format!(
            "back on version {} ({})",
            point.version, point.image_id
        ))
    } else {
        Action::RestoreReferences
    }
}

/// The waves a rollback covers: every wave up to the failed one (the later ones never started),
/// or only the failed wave, whose predecessors succeeded and stay rolled out.
pub fn waves_in_scope(
    scope: RollbackScope,
    failed_wave: usize,
    waves: usize,
) -> std::ops::Range<usize> {
    let end = (failed_wave + 1).min(waves);
    match scope {
        RollbackScope::Execution => 0..end,
        RollbackScope::Wave => failed_wave.min(end)..end,
    }
}

/// Writes the targets in scope for the rollback's Distributed Map, in lanes per account-region
/// like a wave's. Targets that were never touched are in it too: their child finds nothing of this execution's on them and ends.
pub async fn plan_rollback(
    clients: &Clients,
    execution: &str,
    plan: &PlanSummary,
    stop: &WaveStop,
) -> StepResult<RollbackPlan> {
    // A rejected or unanswered approval undoes the whole rollout, whatever the scope set.
    let scope = match stop.failure.is_approval_refused() {
        true => RollbackScope::Execution,
        false => plan.rollback_scope,
    };
    let waves = waves_in_scope(scope, stop.wave, plan.waves.len());
    write_rollback(
        clients,
        execution,
        plan,
        waves,
        stop.failure.describe(),
        None,
    )
    .await
}

/// Writes every target of an undo's plan for the rollback's Distributed Map.
pub async fn plan_undo(
    clients: &Clients,
    execution: &str,
    plan: &PlanSummary,
) -> StepResult<RollbackPlan> {
    let undoing = plan
        .undo
        .clone()
        .ok_or_else(|| StepError::invalid("planUndo: the plan is not an undo's"))?;
    let reason = format!("Undo of {}", undoing.execution);
    write_rollback(
        clients,
        execution,
        plan,
        0..plan.waves.len(),
        reason,
        Some(undoing),
    )
    .await
}

async fn write_rollback(
    clients: &Clients,
    execution: &str,
    plan: &PlanSummary,
    waves: std::ops::Range<usize>,
    reason: String,
    undoing: Option<UndoOf>,
) -> StepResult<RollbackPlan> {
    if execution.trim().is_empty() {
        return Err(StepError::invalid("execution is empty"));
    }
    let store = clients.store()?;
    let mut targets: Vec<Target> = Vec::new();
    for index in waves {
        targets.append(&mut store.wave_targets(plan, &plan.waves[index]).await?);
    }
    let key = format!("{}rollback.json", plan_prefix(execution));
    let results_prefix = results_prefix(execution, "rollback");
    store
        .write_lanes(&key, &results_prefix, &targets, plan.lane_concurrency())
        .await?;
    Ok(RollbackPlan {
        bucket: store.bucket,
        key,
        results_prefix,
        targets: targets.len(),
        reason,
        undoing,
    })
}

/// One call of one target's rollback: what it touched, where it stands, the next step.
pub async fn converge(clients: &Clients, run: &TargetRun) -> StepResult<RollbackStep> {
    if run.execution.trim().is_empty() {
        return Err(StepError::invalid("execution is empty"));
    }
    // Only what this execution holds: a redriven execution whose holds were released leaves its
    // targets as their new holder (or nobody) has them.
    if let Some(refused) = clients.hold_refusal(run).await? {
        return Ok(step(TargetRollback {
            group: run.target.name(),
            status: RollbackStatus::Failed,
            refresh_id: None,
            action: format!("not brought back, and left as it is: {refused}"),
        }));
    }
    let clients = &clients.for_run(run).await?;
    let target = &run.target;
    if target.kind == TargetKind::Instance {
        return Ok(step(instance::converge(clients, run).await?));
    }
    let point = target.template_point()?;
    let ours = our_versions(clients, run.changed_by().0, target).await?;
    // update-template pins a $Latest/$Default group before it creates the version: a failure in
    // between leaves a group changed with no version of ours on it.
    let touched = !ours.is_empty()
        || (point.reference != VersionReference::Pinned && {
            let group = describe_group(clients, &target.resource).await?;
            group_version(&group) == Some(point.version.to_string())
        });
    let result = if touched {
        let state =
            target_state(clients, target, ours, &run.ami.id, run.execution_start_time).await?;
        let action = decide(target, &state);
        act(clients, run, &state, action).await?
    } else {
        TargetRollback {
            group: target.name(),
            status: RollbackStatus::Untouched,
            refresh_id: None,
            action: "nothing of this execution's was on it".into(),
        }
    };
    Ok(step(result))
}

fn step(result: TargetRollback) -> RollbackStep {
    let complete = result.status.is_over();
    RollbackStep {
        complete,
        next_wait_seconds: if complete { 0 } else { ROLLBACK_WAIT_SECONDS },
        target: result,
    }
}

/// `a (what), b (what)`, naming at most `NAMED_IN_CAUSE`, then how many more.
fn listed(targets: &[&TargetRollback]) -> String {
    let mut text = targets
        .iter()
        .take(NAMED_IN_CAUSE)
        .map(|t| format!("{} ({})", t.group, t.action))
        .collect::<Vec<_>>()
        .join(", ");
    if targets.len() > NAMED_IN_CAUSE {
        text.push_str(&format!(" and {} more", targets.len() - NAMED_IN_CAUSE));
    }
    text
}

/// What one rollback child came to. A child that failed (AWS did not answer past every retry)
/// or never started is a target not rolled back.
fn outcome(result: &ChildResult) -> TargetRollback {
    // Named from the input: a group name alone is ambiguous across accounts and regions.
    let group = result
        .input_as::<TargetRun>()
        .map(|run| run.target.name())
        .unwrap_or_else(|| result.execution_arn.clone());
    match (result.status, result.output_as::<TargetRollback>()) {
        (ExecutionStatus::Succeeded, Some(mut done)) => {
            done.group = group;
            // The child's catch hands the step's Cause on: keep its message.
            done.action = CaughtError {
                error: String::new(),
                cause: done.action,
            }
            .message();
            done
        }
        (status, _) => TargetRollback {
            group,
            status: RollbackStatus::Failed,
            refresh_id: None,
            action: match (&result.error, &result.cause) {
                (Some(error), Some(cause)) => CaughtError {
                    error: error.clone(),
                    cause: cause.clone(),
                }
                .describe(),
                _ => format!("its rollback ended {status}"),
            },
        },
    }
}

/// The rollback in one paragraph: why it ran (`reason`: why the rollout failed, or the undo),
/// what was rolled back, what was not.
pub fn summarize(reason: &str, results: &[ChildResult]) -> RollbackReport {
    let outcomes: Vec<TargetRollback> = results.iter().map(outcome).collect();
    let rolled_back: Vec<&TargetRollback> = outcomes
        .iter()
        .filter(|t| t.status == RollbackStatus::RolledBack)
        .collect();
    let not_rolled_back: Vec<&TargetRollback> = outcomes
        .iter()
        .filter(|t| t.status == RollbackStatus::Failed)
        .collect();
    let untouched = outcomes
        .iter()
        .filter(|t| t.status == RollbackStatus::Untouched)
        .count();
    let mut parts = Vec::new();
    if !rolled_back.is_empty() {
        parts.push(format!("rolled back: {}", listed(&rolled_back)));
    }
    if !not_rolled_back.is_empty() {
        parts.push(format!(
            "rollback incomplete, {} target(s) not brought back: {}",
            not_rolled_back.len(),
            listed(&not_rolled_back)
        ));
    }
    if parts.is_empty() {
        parts.push("nothing had been changed, so nothing was rolled back".into());
    }
    RollbackReport {
        failed: !not_rolled_back.is_empty(),
        rolled_back: rolled_back.len(),
        untouched,
        not_rolled_back: not_rolled_back.len(),
        cause: format!("{}. {}.", reason.trim_end_matches('.'), parts.join("; ")),
    }
}

async fn act(
    clients: &Clients,
    run: &TargetRun,
    state: &TargetState,
    action: Action,
) -> StepResult<TargetRollback> {
    let target = &run.target;
    let group = target.resource.clone();
    let point = target.template_point()?;
    // The refresh this call acted on or waits for, shown in the report.
    let mut refresh_id = state
        .latest_refresh
        .as_ref()
        .filter(|r| r.is_active())
        .map(|r| r.id.clone());
    let (action, done, failed) = match action {
        Action::Done(what) => (what, true, false),
        Action::Wait(what) => (what, false, false),
        Action::Failed(what) => (what, false, true),
        Action::RollbackNatively(id) => {
            let result = clients
                .autoscaling
                .rollback_instance_refresh()
                .auto_scaling_group_name(&group)
                .send()
                .await;
            match result {
                Ok(_) => (
                    format!("native rollback of refresh {id} started"),
                    false,
                    false,
                ),
                // AWS refuses native rollback in some cases: cancel, then refresh back on the next call.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_irreversible_instance_refresh_fault()) =>
                {
                    clients
                        .autoscaling
                        .cancel_instance_refresh()
                        .auto_scaling_group_name(&group)
                        .send()
                        .await
                        .map_err(|e| StepError::from_sdk("CancelInstanceRefresh", e))?;
                    (
                        format!("refresh {id} cannot be rolled back natively; cancelled it"),
                        false,
                        false,
                    )
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_active_instance_refresh_not_found_fault()) =>
                {
                    ("refresh ended meanwhile".into(), false, false)
                }
                Err(err) => return Err(StepError::from_sdk("RollbackInstanceRefresh", err)),
            }
        }
        Action::RefreshToRollbackPoint => {
            let asg = describe_group(clients, &group).await?;
            let started = refresh::start(
                clients,
                &asg,
                target,
                point.version,
                Purpose::Rollback,
                run.execution_start_time,
                &run.settings.for_group(&group),
            )
            .await?;
            refresh_id = Some(started.id().to_string());
            (
                format!(
                    "refresh {} back to version {} ({})",
                    started.id(),
                    point.version,
                    point.image_id
                ),
                false,
                false,
            )
        }
        Action::RestoreReferences => {
            if state.ours.contains(&state.template_default) {
                clients
                    .ec2
                    .modify_launch_template()
                    .launch_template_id(&point.launch_template_id)
                    .default_version(point.default_version.to_string())
                    .send()
                    .await
                    .map_err(|e| StepError::from_sdk("ModifyLaunchTemplate", e))?;
            }
            if point.reference == VersionReference::Latest {
                // $Latest must resolve to the rollback point again: remove the versions we made.
                delete_versions(clients, &point.launch_template_id, &state.ours).await?;
            }
            let asg = describe_group(clients, &group).await?;
            let reference = point.reference.spec(point.version);
            if group_version(&asg).as_deref() != Some(reference.as_str()) {
                set_group_version(clients, &asg, &point.launch_template_id, &reference).await?;
            }
            (
                format!(
                    "back on version {} ({}), group references {reference} again",
                    point.version, point.image_id
                ),
                true,
                false,
            )
        }
    };
    let status = match (done, failed) {
        (_, true) => RollbackStatus::Failed,
        (true, false) => RollbackStatus::RolledBack,
        (false, false) => RollbackStatus::Rolling,
    };
    Ok(TargetRollback {
        group: target.name(),
        status,
        refresh_id,
        action,
    })
}

async fn delete_versions(clients: &Clients, template_id: &str, versions: &[i64]) -> StepResult<()> {
    if versions.is_empty() {
        return Ok(());
    }
    clients
        .ec2
        .delete_launch_template_versions()
        .launch_template_id(template_id)
        .set_versions(Some(versions.iter().map(i64::to_string).collect()))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DeleteLaunchTemplateVersions", e))?;
    Ok(())
}

/// Versions of the target's template that this execution created, newest last.
async fn our_versions(clients: &Clients, execution: &str, target: &Target) -> StepResult<Vec<i64>> {
    let mut ours = Vec::new();
    let mut pages = clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&target.template_point()?.launch_template_id)
        .min_version((target.template_point()?.version + 1).to_string())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::from_sdk("DescribeLaunchTemplateVersions", e))?;
        for v in page.launch_template_versions() {
            let described_by_us = v
                .version_description()
                .and_then(Marker::parse)
                .is_some_and(|m| m.is(execution, &target.resource));
            if let (true, Some(n)) = (described_by_us, v.version_number()) {
                ours.push(n);
            }
        }
    }
    ours.sort_unstable();
    Ok(ours)
}

async fn target_state(
    clients: &Clients,
    target: &Target,
    ours: Vec<i64>,
    new_ami: &String,
    execution_start: rollout_core::model::Epoch,
) -> StepResult<TargetState> {
    let point = target.template_point()?;
    // The refreshes first: whatever they say has ended is then visible in the group and its
    // instances read after them (read the other way round, a refresh back could end in between
    // and look as if it had left the fleet behind).
    let (refreshes, rollback_ami_refusal) = tokio::try_join!(
        recent_refreshes(clients, &target.resource),
        ami::cannot_launch(clients, &point.image_id),
    )?;
    let asg = describe_group(clients, &target.resource).await?;
    let template = clients
        .ec2
        .describe_launch_templates()
        .launch_template_ids(&point.launch_template_id)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeLaunchTemplates", e))?;
    let template = template.launch_templates().first();
    let template_latest = template
        .and_then(|t| t.latest_version_number())
        .unwrap_or(0);
    let template_default = template
        .and_then(|t| t.default_version_number())
        .unwrap_or(0);
    let group_reference = group_version(&asg).unwrap_or_default();
    let group_version =
        launch_template::resolve_version(&group_reference, template_latest, template_default);
    let ids = in_service_instances(&asg);
    let images = instance_images(clients, &ids).await?;
    let refresh_back = refreshes
        .iter()
        .find(|r| r.is_ours(&point.launch_template_id, point.version, execution_start))
        .cloned();
    Ok(TargetState {
        ours,
        group_version,
        group_reference,
        template_latest,
        template_default,
        latest_refresh: refreshes.into_iter().next(),
        refresh_back,
        instances_on_new_ami: ids
            .iter()
            .filter(|id| images.get(*id) == Some(new_ami))
            .count(),
        rollback_ami_refusal,
        suspension: suspension_refusal(&target.resource, &suspended_processes(&asg)),
    })
}

#[cfg(test)]
mod tests;
