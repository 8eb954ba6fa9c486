//! update-template: creates the launch template version that carries the new AMI, and after a
//! healthy rollout restores the way the group refers to its template.
//!
//! It never points the group at the new version before the refresh: the refresh's desired
//! configuration does that, so Auto Scaling's native rollback returns to the rollback point.

use rollout_core::FromSdk;
use rollout_core::fleet::{describe_group, group_version, set_group_version};
use rollout_core::launch_template;
use rollout_core::model::{TargetRun, VersionReference};
use rollout_core::refresh::recent_refreshes;
use rollout_core::{Clients, StepError, StepResult};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum TemplateAction {
    /// Before the refresh: a new version with only the ImageId changed.
    #[default]
    CreateVersion,
    /// After the target proved healthy: give the group back its `$Latest`/`$Default` reference.
    RestoreReference,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRequest {
    #[serde(default)]
    pub action: TemplateAction,
    pub run: TargetRun,
}

pub async fn handle(clients: &Clients, payload: Value) -> StepResult<TargetRun> {
    let request: TemplateRequest = rollout_core::error::parse_input("update-template", payload)?;
    let run = match request.action {
        TemplateAction::CreateVersion => create_version(clients, request.run).await?,
        TemplateAction::RestoreReference => restore_reference(clients, request.run).await?,
    };
    Ok(run)
}

/// Creates (or, on a retry, finds again) the version of the target's template with the new AMI.
pub async fn create_version(clients: &Clients, mut run: TargetRun) -> StepResult<TargetRun> {
    run.validate()?;
    clients.ensure_wave_going(&run).await?;
    let clients = &clients.for_run(&run).await?;
    let point = run.target.template_point()?.clone();
    let group = describe_group(clients, run.resource()).await?;
    // Nothing has been started for this target yet, so any running refresh belongs to someone else.
    if let Some(other) = recent_refreshes(clients, run.resource())
        .await?
        .into_iter()
        .find(|r| r.is_active())
    {
        return Err(StepError::RefreshConflict {
            group: run.target.name(),
            refresh_id: other.id,
        });
    }
    // A group on $Latest would launch the new version the moment it exists, and native rollback
    // needs a numbered version: pin the number its reference resolves to now (same configuration).
    if point.reference != VersionReference::Pinned
        && group_version(&group).as_deref() != Some(&point.version.to_string())
    {
        set_group_version(
            clients,
            &group,
            &point.launch_template_id,
            &point.version.to_string(),
        )
        .await?;
        tracing::info!(
            group = run.resource(),
            version = point.version,
            "pinned the group's launch template version"
        );
    }
    let out = clients
        .ec2
        .create_launch_template_version()
        .launch_template_id(&point.launch_template_id)
        .source_version(point.version.to_string())
        .version_description(launch_template::version_description(
            &run.execution,
            &run.target,
            &run.ami.id,
        ))
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(&run.ami.id)
                .build(),
        )
        .client_token(launch_template::client_token(
            &run.execution,
            run.resource(),
            &run.ami.id,
        ))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("CreateLaunchTemplateVersion", e))?;
    let version = out
        .launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or_else(|| StepError::AwsTransient {
            operation: "CreateLaunchTemplateVersion".into(),
            message: "the answer carried no version number".into(),
        })?;
    tracing::info!(group = run.resource(), template = %point.launch_template_id, version, ami = %run.ami.id, "created launch template version");
    run.new_version = Some(version);
    Ok(run)
}

/// After a healthy rollout the group points at the new version by number (the refresh set it);
/// give it back `$Latest` or `$Default` (moving the default to the new version) as it had.
pub async fn restore_reference(clients: &Clients, run: TargetRun) -> StepResult<TargetRun> {
    run.validate()?;
    clients.ensure_wave_going(&run).await?;
    let clients = &clients.for_run(&run).await?;
    let version = run.require_new_version()?;
    let point = run.target.template_point()?;
    if point.reference == VersionReference::Pinned {
        return Ok(run);
    }
    let group = describe_group(clients, run.resource()).await?;
    if point.reference == VersionReference::Default {
        clients
            .ec2
            .modify_launch_template()
            .launch_template_id(&point.launch_template_id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(|e| StepError::from_sdk("ModifyLaunchTemplate", e))?;
    } else {
        let latest = clients
            .ec2
            .describe_launch_templates()
            .launch_template_ids(&point.launch_template_id)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeLaunchTemplates", e))?
            .launch_templates()
            .first()
            .and_then(|t| t.latest_version_number());
        if latest != Some(version) {
            // Someone made a newer version meanwhile: $Latest would launch that, not what we proved.
            tracing::warn!(
                group = run.resource(),
                version,
                ?latest,
                "left the group pinned: $Latest is no longer the rolled-out version"
            );
            return Ok(run);
        }
    }
    let reference = point.reference.spec(version);
    if group_version(&group).as_deref() != Some(reference.as_str()) {
        set_group_version(clients, &group, &point.launch_template_id, &reference).await?;
    }
    tracing::info!(
        group = run.resource(),
        reference,
        "restored the group's launch template reference"
    );
    Ok(run)
}

#[cfg(test)]
mod tests;
