//! rollback: brings every touched target back to its rollback point. It converges: each call
//! looks at where a target is and takes the next step, so the state machine calls it again
//! (after a wait) until the report says `complete`. Safe under Retry and redrive.

use std::collections::HashSet;

use rollout_core::ami;
use rollout_core::fleet::{
    describe_group, group_version, in_service_instances, instance_images, set_group_version,
};
use rollout_core::launch_template::{self, Marker};
use rollout_core::model::{
    Plan, RollbackReport, RollbackRequest, RollbackScope, Target, TargetRollback, VersionReference,
};
use rollout_core::refresh::{self, Purpose, RefreshInfo, RefreshStatus, recent_refreshes};
use rollout_core::{Clients, StepError, StepResult};
use serde_json::Value;

/// Wait between rollback progress checks.
pub const ROLLBACK_WAIT_SECONDS: i64 = 30;

pub async fn handle(
    clients: &Clients,
    event: lambda_runtime::LambdaEvent<Value>,
) -> Result<RollbackReport, lambda_runtime::Diagnostic> {
    let request: RollbackRequest = rollout_core::error::parse_input("rollback", event.payload)?;
    let report = rollback(clients, &request).await?;
    tracing::info!(complete = report.complete, failed = report.failed, targets = ?report.targets, "rollback");
    Ok(report)
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
    use RefreshStatus as S;
    let point = &target.rollback_point;
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

/// The targets to roll back: those this execution touched, in scope.
fn in_scope<'a>(
    plan: &'a Plan,
    scope: RollbackScope,
    failed_wave: Option<usize>,
    touched: &HashSet<String>,
) -> Vec<&'a Target> {
    let waves: Vec<&Vec<Target>> = match (scope, failed_wave) {
        (RollbackScope::Execution, _) => plan.waves.iter().collect(),
        // Only the wave that failed, even if it failed before touching anything: the waves
        // before it succeeded and stay rolled out.
        (RollbackScope::Wave, Some(wave)) => plan.waves.get(wave).into_iter().collect(),
        // Not told which wave failed: waves run in order and a failed wave stops the next ones,
        // so the last touched one failed.
        (RollbackScope::Wave, None) => plan
            .waves
            .iter()
            .rfind(|w| w.iter().any(|t| touched.contains(&t.group)))
            .into_iter()
            .collect(),
    };
    waves
        .into_iter()
        .flatten()
        .filter(|t| touched.contains(&t.group))
        .collect()
}

pub async fn rollback(clients: &Clients, request: &RollbackRequest) -> StepResult<RollbackReport> {
    if request.execution.trim().is_empty() {
        return Err(StepError::invalid("execution is empty"));
    }
    let mut ours_by_group = std::collections::HashMap::new();
    for target in request.plan.waves.iter().flatten() {
        let ours = our_versions(clients, &request.execution, target).await?;
        if !ours.is_empty() {
            ours_by_group.insert(target.group.clone(), ours);
        }
    }
    let mut touched: HashSet<String> = ours_by_group.keys().cloned().collect();
    // update-template pins a $Latest/$Default group before it creates the version: a failure in
    // between leaves a group changed with no version of ours on it.
    let unpinned: Vec<&Target> = request
        .plan
        .waves
        .iter()
        .flatten()
        .filter(|t| t.rollback_point.reference != VersionReference::Pinned)
        .filter(|t| !touched.contains(&t.group))
        .collect();
    for target in unpinned {
        let group = describe_group(clients, &target.group).await?;
        if group_version(&group) == Some(target.rollback_point.version.to_string()) {
            touched.insert(target.group.clone());
        }
    }
    let mut results = Vec::new();
    for target in in_scope(
        &request.plan,
        request.plan.rollback_scope,
        request.failure.wave(),
        &touched,
    ) {
        let state = target_state(
            clients,
            target,
            ours_by_group
                .get(&target.group)
                .cloned()
                .unwrap_or_default(),
            &request.plan.ami.id,
            request.execution_start_time,
        )
        .await?;
        let action = decide(target, &state);
        results.push(act(clients, request, target, &state, action).await?);
    }
    Ok(report(request, results))
}

fn report(request: &RollbackRequest, targets: Vec<TargetRollback>) -> RollbackReport {
    let complete = targets.iter().all(|t| t.done || t.failed);
    let failed = targets.iter().any(|t| t.failed);
    let what = if targets.is_empty() {
        "nothing had been changed, so nothing was rolled back".to_string()
    } else {
        let verb = if !complete {
            "rolling back"
        } else if failed {
            "rollback incomplete"
        } else {
            "rolled back"
        };
        format!(
            "{verb}: {}",
            targets
                .iter()
                .map(|t| format!("{} ({})", t.group, t.action))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let failure = if request.failure.error.is_empty() {
        "the rollout failed".to_string()
    } else {
        format!("{}: {}", request.failure.error, request.failure.message())
    };
    RollbackReport {
        complete,
        failed,
        next_wait_seconds: if complete { 0 } else { ROLLBACK_WAIT_SECONDS },
        cause: format!("{}. {what}.", failure.trim_end_matches('.')),
        targets,
    }
}

async fn act(
    clients: &Clients,
    request: &RollbackRequest,
    target: &Target,
    state: &TargetState,
    action: Action,
) -> StepResult<TargetRollback> {
    let group = target.group.clone();
    let point = &target.rollback_point;
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
                request.execution_start_time,
                &request.plan.settings.for_group(&group),
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
    Ok(TargetRollback {
        group,
        refresh_id,
        action,
        done,
        failed,
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
        .launch_template_id(&target.rollback_point.launch_template_id)
        .min_version((target.rollback_point.version + 1).to_string())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::from_sdk("DescribeLaunchTemplateVersions", e))?;
        for v in page.launch_template_versions() {
            let described_by_us = v
                .version_description()
                .and_then(Marker::parse)
                .is_some_and(|m| m.is(execution, &target.group));
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
    let point = &target.rollback_point;
    // The refreshes first: whatever they say has ended is then visible in the group and its
    // instances read after them (read the other way round, a refresh back could end in between
    // and look as if it had left the fleet behind).
    let (refreshes, rollback_ami_refusal) = tokio::try_join!(
        recent_refreshes(clients, &target.group),
        ami::cannot_launch(clients, &point.image_id),
    )?;
    let asg = describe_group(clients, &target.group).await?;
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
    })
}

#[cfg(test)]
mod tests;
