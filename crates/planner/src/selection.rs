//! Which groups and standalone instances a rollout is for.

use std::collections::{BTreeMap, HashSet};

use crate::instances;
use crate::reach::Place;
use aws_sdk_autoscaling::types::AutoScalingGroup;
use rollout_core::config::{Config, parse_tag};
use rollout_core::model::Skipped;
use rollout_core::trigger::Overrides;
use rollout_core::{StepError, StepResult};

/// Which groups and standalone instances the rollout is for: what a manual start names
/// (`targets`, `instances`), or else the target tag plus `TARGET_ASGS` and `TARGET_INSTANCES`;
/// minus exclusions (group names, or target names such as `111111111111/eu-west-1/web`).
pub(crate) struct Selection {
    pub(crate) names: Vec<String>,
    pub(crate) tag: Option<(String, String)>,
    pub(crate) excluded: HashSet<String>,
    pub(crate) instances: instances::Selection,
}

impl Selection {
    pub(crate) fn of(config: &Config, overrides: &Overrides) -> StepResult<Self> {
        let (names, instance_names, tag) = match (&overrides.targets, &overrides.instances) {
            (None, None) => {
                let tag = match &overrides.target_tag {
                    Some(tag) => Some(parse_tag(tag)?),
                    None => config.target_tag.clone(),
                };
                (
                    config.target_asgs.clone(),
                    config.target_instances.clone(),
                    tag,
                )
            }
            (groups, instances) => (
                groups.clone().unwrap_or_default(),
                instances.clone().unwrap_or_default(),
                None,
            ),
        };
        if names.is_empty() && instance_names.is_empty() && tag.is_none() {
            return Err(StepError::invalid(
                "no targets selected: set TARGET_TAG, TARGET_ASGS or TARGET_INSTANCES, or pass targets or instances",
            ));
        }
        let excluded = config
            .excluded_asgs
            .iter()
            .chain(&overrides.excluded_asgs)
            .cloned()
            .collect();
        let instances = instances::Selection {
            names: instance_names,
            tag: tag.clone(),
            excluded: config
                .excluded_instances
                .iter()
                .chain(&overrides.excluded_instances)
                .cloned()
                .collect(),
        };
        Ok(Self {
            names,
            tag,
            excluded,
            instances,
        })
    }

    /// Refuses names that no account or region of the reach has a group for.
    pub(crate) fn check_found<'a>(&self, found: impl Iterator<Item = &'a str>) -> StepResult<()> {
        let found: HashSet<&str> = found.collect();
        let missing: Vec<&str> = self
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| !found.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(StepError::TargetNotFound(format!(
            "Auto Scaling group(s) {} do not exist",
            missing.join(", ")
        )))
    }

    /// Leaves out the excluded groups of one place, saying so.
    pub(crate) fn exclude(
        &self,
        place: &Place,
        mut groups: BTreeMap<String, AutoScalingGroup>,
    ) -> (BTreeMap<String, AutoScalingGroup>, Vec<Skipped>) {
        let mut skipped = Vec::new();
        groups.retain(|group, _| {
            let name = place.name(group);
            let keep = !self.excluded.contains(group) && !self.excluded.contains(&name);
            if !keep {
                skipped.push(Skipped {
                    group: name,
                    reason: "excluded (EXCLUDED_ASGS)".into(),
                });
            }
            keep
        });
        (groups, skipped)
    }

    pub(crate) fn nothing_found(&self) -> String {
        match &self.tag {
            Some((k, v)) if self.names.is_empty() && self.instances.names.is_empty() => {
                format!("no Auto Scaling group or running instance is tagged {k}={v}")
            }
            _ => "every selected group is excluded".to_string(),
        }
    }
}
