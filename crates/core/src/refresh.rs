//! Instance refreshes: the preferences we send, how we recognise our own refresh, and starting
//! one safely when a retry or redrive may already have started it.

use crate::error::FromSdk;
use aws_sdk_autoscaling::types::{
    AlarmSpecification, AutoScalingGroup, InstanceRefresh, RefreshPreferences, RefreshStrategy,
    ScaleInProtectedInstances, StandbyInstances,
};

use crate::aws::Clients;
use crate::error::{StepError, StepResult};
use crate::fleet;
use crate::model::{Epoch, Purpose, Target};
use crate::settings::RefreshSettings;

/// A refresh's status. Our own exhaustive enum (the SDK's is `#[non_exhaustive]`), so every step
/// must say what it does with each status; one AWS adds later is `Unknown` and counts as active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStatus {
    Pending,
    InProgress,
    Baking,
    Successful,
    Failed,
    Cancelling,
    Cancelled,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
    Unknown(String),
}

impl RefreshStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "Pending" => Self::Pending,
            "InProgress" => Self::InProgress,
            "Baking" => Self::Baking,
            "Successful" => Self::Successful,
            "Failed" => Self::Failed,
            "Cancelling" => Self::Cancelling,
            "Cancelled" => Self::Cancelled,
            "RollbackInProgress" => Self::RollbackInProgress,
            "RollbackSuccessful" => Self::RollbackSuccessful,
            "RollbackFailed" => Self::RollbackFailed,
            other => Self::Unknown(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Baking => "Baking",
            Self::Successful => "Successful",
            Self::Failed => "Failed",
            Self::Cancelling => "Cancelling",
            Self::Cancelled => "Cancelled",
            Self::RollbackInProgress => "RollbackInProgress",
            Self::RollbackSuccessful => "RollbackSuccessful",
            Self::RollbackFailed => "RollbackFailed",
            Self::Unknown(other) => other,
        }
    }

    /// Auto Scaling allows one active refresh per group; these statuses hold that slot. A status
    /// we do not know yet may hold it too, so it is treated as active (wait, never start another).
    pub fn is_active(&self) -> bool {
        match self {
            Self::Pending
            | Self::InProgress
            | Self::Baking
            | Self::Cancelling
            | Self::RollbackInProgress
            | Self::Unknown(_) => true,
            Self::Successful
            | Self::Failed
            | Self::Cancelled
            | Self::RollbackSuccessful
            | Self::RollbackFailed => false,
        }
    }
}

impl std::fmt::Display for RefreshStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refresh as the decision functions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshInfo {
    pub id: String,
    pub status: RefreshStatus,
    pub percentage: i32,
    pub reason: Option<String>,
    /// The launch template id and version the refresh converges to.
    pub desired: Option<(String, String)>,
    pub started_at: Option<Epoch>,
    pub ended_at: Option<Epoch>,
}

impl RefreshInfo {
    pub fn from_sdk(r: &InstanceRefresh) -> Self {
        let desired = r.desired_configuration().and_then(|d| {
            d.launch_template()
                .or_else(|| {
                    d.mixed_instances_policy()
                        .and_then(|p| p.launch_template())
                        .and_then(|lt| lt.launch_template_specification())
                })
                .map(|s| {
                    (
                        s.launch_template_id().unwrap_or_default().to_string(),
                        s.version().unwrap_or_default().to_string(),
                    )
                })
        });
        Self {
            id: r.instance_refresh_id().unwrap_or_default().to_string(),
            status: RefreshStatus::parse(r.status().map_or("", |s| s.as_str())),
            percentage: r.percentage_complete().unwrap_or(0),
            reason: r.status_reason().map(str::to_string),
            desired,
            started_at: r.start_time().map(|t| t.secs()),
            ended_at: r.end_time().map(|t| t.secs()),
        }
    }

    /// Whether the refresh converges to `version` of `template_id`.
    pub fn targets(&self, template_id: &str, version: i64) -> bool {
        self.desired
            .as_ref()
            .is_some_and(|(id, v)| id == template_id && *v == version.to_string())
    }

    /// The version the refresh converges to, when it names a number.
    pub fn desired_version(&self) -> Option<i64> {
        self.desired.as_ref().and_then(|(_, v)| v.parse().ok())
    }

    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// Whether this is a refresh to `version` that the execution started at `since` can have
    /// started: it began after the execution's first second. (The execution holds the group
    /// meanwhile, so no one else starts one to a version of its; and it takes its holds and makes
    /// its version before it starts a refresh, so one begun in the second it started, which is as
    /// precise as both times are read, is from the fleet's past.)
    pub fn is_ours(&self, template_id: &str, version: i64, since: Epoch) -> bool {
        self.targets(template_id, version) && self.started_at.is_some_and(|t| t > since)
    }
}

/// The preferences of a refresh of `target` with `settings`.
///
/// A rollout refresh rolls itself back (`AutoRollback`) and fails on the target's alarms. A
/// rollback refresh does neither: its alarms may still be firing from the bad AMI, and rolling it
/// "back" would return to the bad version.
pub fn preferences(
    target: &Target,
    settings: &RefreshSettings,
    purpose: Purpose,
) -> RefreshPreferences {
    let mut prefs = RefreshPreferences::builder()
        .skip_matching(true)
        .set_min_healthy_percentage(settings.min_healthy_percentage)
        .set_max_healthy_percentage(settings.max_healthy_percentage)
        .set_instance_warmup(settings.instance_warmup_seconds);
    let protected = if target
        .ecs
        .as_ref()
        .is_some_and(|e| e.managed_termination_protection)
    {
        // ECS protects instances that run tasks; anything but Refresh waits an hour, then fails.
        Some(ScaleInProtectedInstances::Refresh)
    } else {
        // The SDK's enums read AWS's names: the model's choices are those names.
        settings
            .scale_in_protected_instances
            .map(|choice| ScaleInProtectedInstances::from(choice.as_str()))
    };
    prefs = prefs
        .set_scale_in_protected_instances(protected)
        .set_standby_instances(
            settings
                .standby_instances
                .map(|choice| StandbyInstances::from(choice.as_str())),
        );
    if purpose == Purpose::Rollout {
        prefs = prefs
            .auto_rollback(true)
            .set_checkpoint_percentages(settings.checkpoint_percentages.clone())
            .set_checkpoint_delay(settings.checkpoint_delay_seconds);
        if !settings.alarm_names().is_empty() {
            prefs = prefs.alarm_specification(
                AlarmSpecification::builder()
                    .set_alarms(Some(settings.alarm_names().to_vec()))
                    .build(),
            );
        }
    }
    prefs.build()
}

/// The group's refreshes, newest first (AWS keeps six weeks of them).
pub async fn recent_refreshes(clients: &Clients, group: &str) -> StepResult<Vec<RefreshInfo>> {
    let out = clients
        .autoscaling
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .max_records(20)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeInstanceRefreshes", e))?;
    Ok(out
        .instance_refreshes()
        .iter()
        .map(RefreshInfo::from_sdk)
        .collect())
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new refresh.
    New(String),
    /// This execution's refresh already existed (a retry or redrive got here twice).
    Adopted(RefreshInfo),
}

impl Started {
    pub fn id(&self) -> &str {
        match self {
            Self::New(id) => id,
            Self::Adopted(r) => &r.id,
        }
    }
}

/// Decides, from the group's refreshes, whether to adopt one, refuse, or start a new one.
///
/// `StartInstanceRefresh` takes no client token, so a retry that lost the answer recognises its
/// refresh by what it converges to and when it began: to `version`, started no earlier than this
/// execution (`since`), which held the group all that time. A fleet with a past has finished
/// refreshes to the same version from earlier runs; those are never ours. A rollback adopts only
/// a running refresh: a finished one back to the point did not bring the group back, or rollback
/// would not be starting one.
pub fn adopt_or_refuse(
    group: &str,
    refreshes: &[RefreshInfo],
    template_id: &str,
    version: i64,
    since: Epoch,
    purpose: Purpose,
) -> StepResult<Option<RefreshInfo>> {
    let ours = refreshes.iter().find(|r| {
        r.is_ours(template_id, version, since) && (purpose == Purpose::Rollout || r.is_active())
    });
    if let Some(ours) = ours {
        return Ok(Some(ours.clone()));
    }
    match refreshes.iter().find(|r| r.is_active()) {
        Some(other) => Err(StepError::RefreshConflict {
            group: group.to_string(),
            refresh_id: other.id.clone(),
        }),
        None => Ok(None),
    }
}

/// Starts a refresh of `group` to `version` for `purpose`, or adopts the one this execution
/// (started at `since`) already started.
pub async fn start(
    clients: &Clients,
    group: &AutoScalingGroup,
    target: &Target,
    version: i64,
    purpose: Purpose,
    since: Epoch,
    settings: &RefreshSettings,
) -> StepResult<Started> {
    let name = target.resource.as_str();
    let point = target.template_point()?;
    let template_id = point.launch_template_id.as_str();
    // ReplaceRootVolume names the AMI the roots are replaced from: the new one, or the one before.
    let root_image = settings.replaces_roots().then(|| match purpose {
        Purpose::Rollout => target.ami.id.clone(),
        Purpose::Rollback => point.image_id.clone(),
    });
    let decide = |refreshes: Vec<RefreshInfo>| {
        adopt_or_refuse(name, &refreshes, template_id, version, since, purpose)
    };
    if let Some(existing) = decide(recent_refreshes(clients, name).await?)? {
        return Ok(Started::Adopted(existing));
    }
    let result = clients
        .autoscaling
        .start_instance_refresh()
        .auto_scaling_group_name(name)
        .desired_configuration(fleet::desired_configuration(
            group,
            template_id,
            version,
            root_image.as_deref(),
        ))
        .set_strategy(
            root_image
                .is_some()
                .then_some(RefreshStrategy::ReplaceRootVolume),
        )
        .preferences(preferences(target, settings, purpose))
        .send()
        .await;
    match result {
        Ok(out) => Ok(Started::New(
            out.instance_refresh_id().unwrap_or_default().to_string(),
        )),
        // Someone started one between our describe and our start: decide again on fresh data.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_instance_refresh_in_progress_fault()) =>
        {
            match decide(recent_refreshes(clients, name).await?)? {
                Some(existing) => Ok(Started::Adopted(existing)),
                None => Err(StepError::AwsTransient {
                    operation: "StartInstanceRefresh".into(),
                    message: format!("{name}: a refresh was in progress and has ended; retry"),
                }),
            }
        }
        Err(err) => Err(StepError::from_sdk("StartInstanceRefresh", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EcsCapacity, RollbackPoint, TargetKind, TemplatePoint, VersionReference};

    /// A refresh to version `version` of lt-1, started at `started`.
    fn refresh(id: &str, status: &str, version: &str, started: Epoch) -> RefreshInfo {
        RefreshInfo {
            id: id.into(),
            status: RefreshStatus::parse(status),
            percentage: 0,
            reason: None,
            desired: Some(("lt-1".into(), version.into())),
            started_at: Some(started),
            ended_at: None,
        }
    }

    pub(crate) fn target(ecs_mtp: bool) -> Target {
        Target {
            kind: TargetKind::AutoScalingGroup,
            account: None,
            region: None,
            resource: "web".into(),
            instance_name: None,
            ami: crate::samples::target_run().ami,
            rollback_point: RollbackPoint::Template(TemplatePoint {
                launch_template_id: "lt-1".into(),
                version: 3,
                image_id: "ami-00000001".into(),
                reference: VersionReference::Pinned,
                default_version: 3,
            }),
            mixed_instances: false,
            ecs: ecs_mtp.then(|| EcsCapacity {
                cluster: "c".into(),
                capacity_provider: Some("cp".into()),
                managed_termination_protection: true,
            }),
            window: None,
        }
    }

    #[test]
    fn every_aws_refresh_status_is_classified_and_unknown_ones_hold_the_group() {
        for (status, active) in [
            ("Pending", true),
            ("InProgress", true),
            ("Baking", true),
            ("Cancelling", true),
            ("RollbackInProgress", true),
            ("Successful", false),
            ("Failed", false),
            ("Cancelled", false),
            ("RollbackSuccessful", false),
            ("RollbackFailed", false),
            ("WarmingUpSomethingNew", true),
        ] {
            let parsed = RefreshStatus::parse(status);
            assert_eq!(parsed.is_active(), active, "{status}");
            assert_eq!(parsed.as_str(), status);
        }
        assert_eq!(
            RefreshStatus::parse("Later"),
            RefreshStatus::Unknown("Later".into())
        );
    }

    const SINCE: Epoch = 1_000;

    #[test]
    fn a_rollout_adopts_only_its_own_refresh_whatever_its_status() {
        let ours = refresh("r-ours", "Successful", "4", SINCE + 5);
        let history = [
            refresh("r-ours", "Successful", "4", SINCE + 5),
            refresh("r-old", "Successful", "3", SINCE - 500),
        ];
        assert_eq!(
            adopt_or_refuse("web", &history, "lt-1", 4, SINCE, Purpose::Rollout).unwrap(),
            Some(ours)
        );
        // A refresh to the same version from before this execution is someone else's past.
        let before = [refresh("r-before", "Successful", "4", SINCE - 1)];
        assert_eq!(
            adopt_or_refuse("web", &before, "lt-1", 4, SINCE, Purpose::Rollout).unwrap(),
            None
        );
        assert_eq!(
            adopt_or_refuse("web", &[], "lt-1", 4, SINCE, Purpose::Rollout).unwrap(),
            None
        );
    }

    #[test]
    fn a_rollback_never_adopts_a_finished_refresh_to_the_rollback_point() {
        // The group was refreshed to version 3 by an earlier rollout; this one moved it to 4.
        let history = [
            refresh("r-out", "Successful", "4", SINCE + 10),
            refresh("r-earlier-rollout", "Successful", "3", SINCE - 86_400),
        ];
        assert_eq!(
            adopt_or_refuse("web", &history, "lt-1", 3, SINCE, Purpose::Rollback).unwrap(),
            None,
            "the earlier rollout's refresh to the rollback point is not ours: start one"
        );
        let back_running = [refresh("r-back", "InProgress", "3", SINCE + 60)];
        assert_eq!(
            adopt_or_refuse("web", &back_running, "lt-1", 3, SINCE, Purpose::Rollback)
                .unwrap()
                .map(|r| r.id),
            Some("r-back".into())
        );
        let back_finished = [refresh("r-back", "Successful", "3", SINCE + 60)];
        assert_eq!(
            adopt_or_refuse("web", &back_finished, "lt-1", 3, SINCE, Purpose::Rollback).unwrap(),
            None
        );
    }

    #[test]
    fn ours_means_to_this_version_and_begun_after_the_executions_first_second() {
        let r = refresh("r", "Successful", "3", SINCE + 1);
        assert!(r.is_ours("lt-1", 3, SINCE));
        assert!(
            !r.is_ours("lt-1", 3, SINCE + 1),
            "begun in the second the execution started: a past refresh that finished just before it"
        );
        assert!(
            !r.is_ours("lt-1", 3, SINCE + 2),
            "started before the execution"
        );
        assert!(!r.is_ours("lt-1", 4, SINCE), "another version");
        assert!(!r.is_ours("lt-2", 3, SINCE), "another template");
        let unknown_start = RefreshInfo {
            started_at: None,
            ..r
        };
        assert!(!unknown_start.is_ours("lt-1", 3, SINCE));
    }

    #[test]
    fn another_active_refresh_conflicts_and_a_finished_one_does_not() {
        for since in [SINCE, SINCE + 100] {
            let err = adopt_or_refuse(
                "web",
                &[refresh("r-other", "InProgress", "9", SINCE + 50)],
                "lt-1",
                4,
                since,
                Purpose::Rollout,
            )
            .unwrap_err();
            assert_eq!(
                err,
                StepError::RefreshConflict {
                    group: "web".into(),
                    refresh_id: "r-other".into()
                }
            );
        }
        let done = [refresh("r-done", "Failed", "9", SINCE + 50)];
        assert_eq!(
            adopt_or_refuse("web", &done, "lt-1", 4, SINCE, Purpose::Rollout).unwrap(),
            None
        );
    }

    #[test]
    fn rollout_preferences_roll_back_on_alarms_and_protect_ecs_capacity() {
        let settings = RefreshSettings {
            min_healthy_percentage: Some(50),
            alarm_names: Some(vec!["api-5xx".into()]),
            checkpoint_percentages: Some(vec![20, 100]),
            checkpoint_delay_seconds: Some(60),
            ..Default::default()
        };
        let p = preferences(&target(true), &settings, Purpose::Rollout);
        assert_eq!(
            (
                p.skip_matching(),
                p.auto_rollback(),
                p.min_healthy_percentage()
            ),
            (Some(true), Some(true), Some(50))
        );
        assert_eq!(
            p.scale_in_protected_instances(),
            Some(&ScaleInProtectedInstances::Refresh)
        );
        assert_eq!(p.alarm_specification().unwrap().alarms(), ["api-5xx"]);
        assert_eq!(
            (p.checkpoint_percentages(), p.checkpoint_delay()),
            (&[20, 100][..], Some(60))
        );
    }

    #[test]
    fn rollback_preferences_ignore_alarms_and_never_roll_back_themselves() {
        let settings = RefreshSettings {
            alarm_names: Some(vec!["api-5xx".into()]),
            checkpoint_percentages: Some(vec![50]),
            ..Default::default()
        };
        let p = preferences(&target(false), &settings, Purpose::Rollback);
        assert_eq!((p.skip_matching(), p.auto_rollback()), (Some(true), None));
        assert!(p.alarm_specification().is_none());
        assert!(p.checkpoint_percentages().is_empty());
        assert_eq!(p.scale_in_protected_instances(), None);
    }
}
