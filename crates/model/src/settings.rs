//! Per-group rollout settings: one default layer (`"*"`) and per-group overrides, as operators
//! write them in the settings document (`ami-rollout settings put`, store.rs) or in a manual start's `settings`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::gate::{
    DEFAULT_APPROVAL_TIMEOUT_MINUTES, MAX_APPROVAL_TIMEOUT_MINUTES, OnApprovalTimeout,
};
use crate::window::{DEFAULT_WINDOW_HORIZON_DAYS, MaintenanceWindow};

/// Bake window after a successful refresh when nothing is configured.
pub const DEFAULT_BAKE_SECONDS: i64 = 300;
/// How long ECS may take to settle after the refresh before the target counts as unhealthy
/// (the ECS `services-stable` waiter gives up after 10 minutes).
pub const DEFAULT_VERIFY_TIMEOUT_SECONDS: i64 = 600;
/// How long a refresh may stay Pending or InProgress before the target counts as unhealthy, when
/// nothing is configured, beside its checkpoint pauses. AWS's own stall rule fails a refresh only
/// after an hour without progress, and lets one run 14 days.
pub const DEFAULT_REFRESH_TIMEOUT_SECONDS: i64 = 3 * 3600;
/// How long a standalone ECS container instance may take to drain before its root is replaced,
/// when nothing is configured. ECS's own managed draining waits up to 48 hours; a standalone host
/// whose service tasks have somewhere to go drains in minutes.
pub const DEFAULT_DRAIN_TIMEOUT_SECONDS: i64 = 1800;
/// AWS's limits (RefreshPreferences).
const MAX_DELAY_SECONDS: i64 = 172_800;
const MAX_ALARMS: usize = 10;
/// A plan looks at most this far ahead for a maintenance window.
const MAX_WINDOW_HORIZON_DAYS: u32 = 366;

/// Settings for one group; every field is optional so layers can be merged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_percentage: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_healthy_percentage: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_warmup_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_percentages: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_delay_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_timeout_seconds: Option<i64>,
    /// Past this, a refresh still Pending or InProgress fails the target (and rolls it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_timeout_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_names: Option<Vec<String>>,
    /// The ECS cluster this group serves when no capacity provider links them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs_cluster: Option<String>,
    /// Waves run in ascending order; default 1 (give a canary 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    /// ECS capacity with managed termination protection always gets `Refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_protected_instances: Option<ScaleInProtectedInstances>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_instances: Option<StandbyInstances>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_strategy: Option<RefreshStrategy>,
    /// A standalone instance's root that the rollout replaced is kept after success (tagged with
    /// the instance and the execution) instead of deleted; default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_replaced_root: Option<bool>,
    /// Past this, a standalone ECS container instance that still runs tasks after being set
    /// DRAINING fails the target (nothing replaced; it is set ACTIVE again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<i64>,
    /// The target's change starts only inside this window (a rollback never waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// A plan is refused when the target's window does not open within this many days; default 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_horizon_days: Option<u32>,
    /// The execution pauses after this target's wave until someone approves the next wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_after_wave: Option<bool>,
    /// How long that pause waits for an answer; default 1440 (a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_minutes: Option<u32>,
    /// What an unanswered pause does: `stop` (default: the execution fails and keeps its holds,
    /// for a redrive) or `rollback` (every touched target is rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_approval_timeout: Option<OnApprovalTimeout>,
    /// What a plan does with a group whose suspended processes stop a refresh: `refuse`
    /// (default) or `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_suspended_processes: Option<OnSuspendedProcesses>,
}

/// A setting that takes one of AWS's names: read and written as that name, and refused by the
/// setting's name when it is none of them.
macro_rules! named_choice {
    ($(#[$doc:meta])* $name:ident, $setting:literal, { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$(stringify!($variant)),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant)),+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                match text.as_str() {
                    $(stringify!($variant) => Ok(Self::$variant),)+
                    _ => Err(format!("{} {text:?} is not one of {:?}", $setting, Self::ALL)),
                }
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_choice!(
    /// What a refresh does with instances protected from scale in (AWS's RefreshPreferences).
    ScaleInProtectedInstances, "scaleInProtectedInstances", { Refresh, Ignore, Wait }
);
named_choice!(
    /// What a refresh does with instances in Standby (AWS's RefreshPreferences).
    StandbyInstances, "standbyInstances", { Terminate, Ignore, Wait }
);
named_choice!(
    /// How a group's instances get the new AMI.
    RefreshStrategy, "refreshStrategy", {
        /// Instances are replaced by new ones (the default).
        Rolling,
        /// Each instance keeps its id, network interfaces and data volumes; only its root is
        /// replaced.
        ReplaceRootVolume,
    }
);

/// What a plan does with a group that has `Launch`, `Terminate` or `InstanceRefresh` suspended
/// (no refresh would replace an instance of it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnSuspendedProcesses {
    /// The plan is refused, naming the group and the processes.
    #[default]
    Refuse,
    /// The group is left out of the rollout; the plan lists it as skipped, with the processes.
    Skip,
}

impl RefreshSettings {
    /// `self` with every field `over` sets replaced.
    pub fn overlay(&self, over: &RefreshSettings) -> RefreshSettings {
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        RefreshSettings {
            min_healthy_percentage: pick(
                &over.min_healthy_percentage,
                &self.min_healthy_percentage,
            ),
            max_healthy_percentage: pick(
                &over.max_healthy_percentage,
                &self.max_healthy_percentage,
            ),
            instance_warmup_seconds: pick(
                &over.instance_warmup_seconds,
                &self.instance_warmup_seconds,
            ),
            checkpoint_percentages: pick(
                &over.checkpoint_percentages,
                &self.checkpoint_percentages,
            ),
            checkpoint_delay_seconds: pick(
                &over.checkpoint_delay_seconds,
                &self.checkpoint_delay_seconds,
            ),
            bake_seconds: pick(&over.bake_seconds, &self.bake_seconds),
            verify_timeout_seconds: pick(
                &over.verify_timeout_seconds,
                &self.verify_timeout_seconds,
            ),
            refresh_timeout_seconds: pick(
                &over.refresh_timeout_seconds,
                &self.refresh_timeout_seconds,
            ),
            alarm_names: pick(&over.alarm_names, &self.alarm_names),
            ecs_cluster: pick(&over.ecs_cluster, &self.ecs_cluster),
            wave: pick(&over.wave, &self.wave),
            scale_in_protected_instances: pick(
                &over.scale_in_protected_instances,
                &self.scale_in_protected_instances,
            ),
            standby_instances: pick(&over.standby_instances, &self.standby_instances),
            refresh_strategy: pick(&over.refresh_strategy, &self.refresh_strategy),
            keep_replaced_root: pick(&over.keep_replaced_root, &self.keep_replaced_root),
            drain_timeout_seconds: pick(&over.drain_timeout_seconds, &self.drain_timeout_seconds),
            maintenance_window: pick(&over.maintenance_window, &self.maintenance_window),
            window_horizon_days: pick(&over.window_horizon_days, &self.window_horizon_days),
            approve_after_wave: pick(&over.approve_after_wave, &self.approve_after_wave),
            approval_timeout_minutes: pick(
                &over.approval_timeout_minutes,
                &self.approval_timeout_minutes,
            ),
            on_approval_timeout: pick(&over.on_approval_timeout, &self.on_approval_timeout),
            on_suspended_processes: pick(
                &over.on_suspended_processes,
                &self.on_suspended_processes,
            ),
        }
    }

    pub fn bake_seconds(&self) -> i64 {
        self.bake_seconds.unwrap_or(DEFAULT_BAKE_SECONDS)
    }

    pub fn verify_timeout_seconds(&self) -> i64 {
        self.verify_timeout_seconds
            .unwrap_or(DEFAULT_VERIFY_TIMEOUT_SECONDS)
    }

    pub fn drain_timeout_seconds(&self) -> i64 {
        self.drain_timeout_seconds
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECONDS)
    }

    /// The configured timeout, or three hours plus every checkpoint pause the refresh will take.
    pub fn refresh_timeout_seconds(&self) -> i64 {
        self.refresh_timeout_seconds.unwrap_or_else(|| {
            let checkpoints = self.checkpoint_percentages.as_ref().map_or(0, Vec::len) as i64;
            let delay = i64::from(self.checkpoint_delay_seconds.unwrap_or(3600));
            DEFAULT_REFRESH_TIMEOUT_SECONDS + checkpoints * delay
        })
    }

    /// Whether the group's refresh replaces only each instance's root volume.
    pub fn replaces_roots(&self) -> bool {
        self.refresh_strategy == Some(RefreshStrategy::ReplaceRootVolume)
    }

    pub fn wave(&self) -> u32 {
        self.wave.unwrap_or(1)
    }

    pub fn window_horizon_days(&self) -> u32 {
        self.window_horizon_days
            .unwrap_or(DEFAULT_WINDOW_HORIZON_DAYS)
    }

    pub fn approval_timeout_minutes(&self) -> u32 {
        self.approval_timeout_minutes
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_MINUTES)
    }

    pub fn alarm_names(&self) -> &[String] {
        self.alarm_names.as_deref().unwrap_or_default()
    }

    /// Checks the values against AWS's documented ranges; `scope` names where they came from.
    pub fn validate(&self, scope: &str) -> StepResult<()> {
        let bad = |what: String| Err(StepError::invalid(format!("settings for {scope}: {what}")));
        if let Some(min) = self.min_healthy_percentage
            && !(0..=100).contains(&min)
        {
            return bad(format!("minHealthyPercentage {min} is outside 0-100"));
        }
        if let Some(max) = self.max_healthy_percentage {
            if !(100..=200).contains(&max) {
                return bad(format!("maxHealthyPercentage {max} is outside 100-200"));
            }
            let min = self.min_healthy_percentage.unwrap_or(90);
            if max - min > 100 {
                return bad(format!(
                    "maxHealthyPercentage {max} minus minHealthyPercentage {min} exceeds 100"
                ));
            }
        }
        if let Some(warmup) = self.instance_warmup_seconds
            && warmup < 0
        {
            return bad(format!("instanceWarmupSeconds {warmup} is negative"));
        }
        if let Some(points) = &self.checkpoint_percentages {
            let ascending = points.windows(2).all(|w| w[0] < w[1]);
            if !ascending || points.iter().any(|p| !(1..=100).contains(p)) {
                return bad(format!(
                    "checkpointPercentages {points:?} must ascend within 1-100"
                ));
            }
        }
        for (name, value) in [
            (
                "checkpointDelaySeconds",
                self.checkpoint_delay_seconds.map(i64::from),
            ),
            ("bakeSeconds", self.bake_seconds),
            ("verifyTimeoutSeconds", self.verify_timeout_seconds),
            ("drainTimeoutSeconds", self.drain_timeout_seconds),
        ] {
            if let Some(v) = value
                && !(0..=MAX_DELAY_SECONDS).contains(&v)
            {
                return bad(format!("{name} {v} is outside 0-{MAX_DELAY_SECONDS}"));
            }
        }
        // AWS stops a refresh's active replacement after 14 days.
        if let Some(v) = self.refresh_timeout_seconds
            && !(60..=14 * 86_400).contains(&v)
        {
            return bad(format!(
                "refreshTimeoutSeconds {v} is outside 60-1209600 (14 days)"
            ));
        }
        if let Some(window) = &self.maintenance_window {
            window.validate(scope)?;
        }
        if let Some(days) = self.window_horizon_days
            && !(1..=MAX_WINDOW_HORIZON_DAYS).contains(&days)
        {
            return bad(format!(
                "windowHorizonDays {days} is outside 1-{MAX_WINDOW_HORIZON_DAYS}"
            ));
        }
        if let Some(minutes) = self.approval_timeout_minutes
            && !(1..=MAX_APPROVAL_TIMEOUT_MINUTES).contains(&minutes)
        {
            return bad(format!(
                "approvalTimeoutMinutes {minutes} is outside 1-{MAX_APPROVAL_TIMEOUT_MINUTES}"
            ));
        }
        if self.alarm_names().len() > MAX_ALARMS {
            return bad(format!(
                "{} alarms given; an instance refresh takes at most {MAX_ALARMS}",
                self.alarm_names().len()
            ));
        }
        Ok(())
    }
}

/// The default layer (`"*"`) plus per-group layers, keyed by group name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SettingsMap(pub BTreeMap<String, RefreshSettings>);

impl SettingsMap {
    pub const DEFAULT_KEY: &'static str = "*";

    /// Parses a settings JSON object (the settings document, a start's `settings`).
    pub fn parse(json: &str) -> StepResult<Self> {
        let map: Self = serde_json::from_str(json)
            .map_err(|e| StepError::invalid(format!("not valid settings JSON: {e}")))?;
        map.validate()?;
        Ok(map)
    }

    pub fn validate(&self) -> StepResult<()> {
        self.0.iter().try_for_each(|(scope, s)| s.validate(scope))
    }

    /// The effective settings of `group`: its own layer over the default layer.
    pub fn for_group(&self, group: &str) -> RefreshSettings {
        let base = self.0.get(Self::DEFAULT_KEY).cloned().unwrap_or_default();
        match self.0.get(group) {
            Some(own) => base.overlay(own),
            None => base,
        }
    }

    /// `self` with `over`'s layers laid on top, layer by layer.
    pub fn overlay(&self, over: &SettingsMap) -> SettingsMap {
        let mut merged = self.0.clone();
        for (key, layer) in &over.0 {
            let base = merged.remove(key).unwrap_or_default();
            merged.insert(key.clone(), base.overlay(layer));
        }
        SettingsMap(merged)
    }

    /// Keeps the default layer and the layers of `groups` only, so the plan carries no more
    /// than it needs.
    pub fn retain_groups<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> SettingsMap {
        let keep: std::collections::BTreeSet<&str> =
            groups.into_iter().chain([Self::DEFAULT_KEY]).collect();
        SettingsMap(
            self.0
                .iter()
                .filter(|(k, _)| keep.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_layer_overrides_default_field_by_field() {
        let map = SettingsMap::parse(r#"{"*": {"bakeSeconds": 600, "minHealthyPercentage": 90}, "canary": {"wave": 0, "bakeSeconds": 60}}"#).unwrap();
        let canary = map.for_group("canary");
        assert_eq!(
            (
                canary.wave(),
                canary.bake_seconds(),
                canary.min_healthy_percentage
            ),
            (0, 60, Some(90))
        );
        let other = map.for_group("web");
        assert_eq!((other.wave(), other.bake_seconds()), (1, 600));
    }

    #[test]
    fn defaults_apply_when_nothing_is_configured() {
        let s = SettingsMap::default().for_group("web");
        assert_eq!(
            (s.bake_seconds(), s.verify_timeout_seconds(), s.wave()),
            (DEFAULT_BAKE_SECONDS, DEFAULT_VERIFY_TIMEOUT_SECONDS, 1)
        );
        assert!(s.alarm_names().is_empty());
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_field_named() {
        let cases = [
            (
                r#"{"*": {"minHealthyPercentage": 101}}"#,
                "minHealthyPercentage 101",
            ),
            (
                r#"{"web": {"maxHealthyPercentage": 99}}"#,
                "maxHealthyPercentage 99",
            ),
            (
                r#"{"web": {"minHealthyPercentage": 50, "maxHealthyPercentage": 200}}"#,
                "exceeds 100",
            ),
            (
                r#"{"web": {"checkpointPercentages": [50, 20]}}"#,
                "checkpointPercentages",
            ),
            (
                r#"{"web": {"checkpointPercentages": [0, 100]}}"#,
                "checkpointPercentages",
            ),
            (r#"{"web": {"bakeSeconds": -1}}"#, "bakeSeconds -1"),
            (
                r#"{"web": {"checkpointDelaySeconds": 172801}}"#,
                "checkpointDelaySeconds",
            ),
            (
                r#"{"web": {"instanceWarmupSeconds": -5}}"#,
                "instanceWarmupSeconds",
            ),
            (
                r#"{"web": {"alarmNames": ["a","b","c","d","e","f","g","h","i","j","k"]}}"#,
                "at most 10",
            ),
            (
                r#"{"web": {"scaleInProtectedInstances": "Always"}}"#,
                "scaleInProtectedInstances",
            ),
            (
                r#"{"web": {"standbyInstances": "Refresh"}}"#,
                "standbyInstances",
            ),
            (r#"{"web": {"bakeSecs": 10}}"#, "unknown field"),
            (
                r#"{"web": {"maintenanceWindow": {"cron": "0 2 * * 6", "durationMinutes": 60, "timeZone": "Lisbon"}}}"#,
                "settings for web: maintenanceWindow timeZone \"Lisbon\"",
            ),
            (
                r#"{"web": {"maintenanceWindow": {"cron": "0 2 * * 6"}}}"#,
                "missing field `durationMinutes`",
            ),
            (r#"{"*": {"windowHorizonDays": 0}}"#, "windowHorizonDays 0"),
            (
                r#"{"*": {"approvalTimeoutMinutes": 0}}"#,
                "approvalTimeoutMinutes 0",
            ),
            (
                r#"{"*": {"onApprovalTimeout": "never"}}"#,
                "unknown variant",
            ),
            (r#"["web"]"#, "not valid settings JSON"),
        ];
        for (json, expected) in cases {
            let err = SettingsMap::parse(json).unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn overlay_merges_layers() {
        let env = SettingsMap::parse(r#"{"*": {"bakeSeconds": 600}, "web": {"wave": 2}}"#).unwrap();
        let input = SettingsMap::parse(r#"{"web": {"bakeSeconds": 30}}"#).unwrap();
        let web = env.overlay(&input).for_group("web");
        assert_eq!((web.wave(), web.bake_seconds()), (2, 30));
    }

    #[test]
    fn retain_keeps_default_and_named_groups() {
        let map = SettingsMap::parse(r#"{"*": {}, "a": {}, "b": {}}"#).unwrap();
        let kept = map.retain_groups(["a"]);
        assert_eq!(kept.0.keys().collect::<Vec<_>>(), ["*", "a"]);
    }
}
