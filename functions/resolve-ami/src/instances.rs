//! Standalone instances in the plan: which are selected, which are left out and why, and the
//! preflight that refuses, before anything changes, an instance whose root could not take the AMI
//! or could not be rolled back.

use std::collections::{HashMap, HashSet};

use aws_sdk_ec2::types::Image;
use rollout_core::instance::{self, InstanceFacts, Refusal};
use rollout_core::model::{Ami, RollbackPoint, RootPoint, Skipped, Target, TargetKind, place_name};
use rollout_core::settings::SettingsMap;
use rollout_core::{Clients, StepError, StepResult};

use crate::{Decision, Place};

/// Instances named (ids or Name tags), the tag that selects running ones, and exclusions (ids,
/// Name tags, or target names such as `111111111111/eu-west-1/i-0123…`).
pub(crate) struct Selection {
    pub names: Vec<String>,
    pub tag: Option<(String, String)>,
    pub excluded: HashSet<String>,
}

impl Selection {
    /// The selected instances of one account and region, each with the ECS cluster it serves
    /// as a container instance, if any.
    pub async fn find(
        &self,
        clients: &Clients,
    ) -> StepResult<Vec<(InstanceFacts, Option<String>)>> {
        if self.names.is_empty() && self.tag.is_none() {
            return Ok(Vec::new());
        }
        let found = instance::find(clients, self.tag.as_ref(), &self.names).await?;
        let clusters = if found.iter().all(|i| i.owner().is_some()) {
            HashMap::new()
        } else {
            clusters_of(clients).await?
        };
        Ok(found
            .into_iter()
            .map(|i| {
                let cluster = clusters.get(&i.id).cloned();
                (i, cluster)
            })
            .collect())
    }

    /// Refuses names that no account or region of the reach has an instance for.
    pub fn check_found<'a>(
        &self,
        found: impl Iterator<Item = &'a (InstanceFacts, Option<String>)>,
    ) -> StepResult<()> {
        let mut known: HashSet<&str> = HashSet::new();
        for (i, _) in found {
            known.insert(i.id.as_str());
            known.extend(i.name());
        }
        let missing: Vec<&str> = self
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| !known.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(StepError::TargetNotFound(format!(
            "instance(s) {} do not exist (by id or Name tag, in a state but terminated)",
            missing.join(", ")
        )))
    }

    /// Leaves out the excluded instances of one place, saying so.
    pub fn exclude(
        &self,
        place: &Place,
        instances: Vec<(InstanceFacts, Option<String>)>,
    ) -> (Vec<(InstanceFacts, Option<String>)>, Vec<Skipped>) {
        let mut skipped = Vec::new();
        let kept = instances
            .into_iter()
            .filter(|(i, _)| {
                let excluded = self.excluded.contains(&i.id)
                    || self.excluded.contains(&place.name(&i.id))
                    || i.name().is_some_and(|n| self.excluded.contains(n));
                if excluded {
                    skipped.push(Skipped {
                        group: place.name(&i.id),
                        reason: "excluded (EXCLUDED_INSTANCES)".into(),
                    });
                }
                !excluded
            })
            .collect();
        (kept, skipped)
    }
}

/// The ECS cluster each EC2 instance of the account-region is a container instance of.
async fn clusters_of(clients: &Clients) -> StepResult<HashMap<String, String>> {
    let mut clusters = HashMap::new();
    for cluster in rollout_core::ecs::cluster_arns(clients).await? {
        let name = cluster.rsplit('/').next().unwrap_or(&cluster).to_string();
        for ci in rollout_core::ecs::container_instances(clients, &cluster).await? {
            clusters.insert(ci.ec2_instance_id, name.clone());
        }
    }
    Ok(clusters)
}

/// One selected instance, where it lives, and the image of its region's AMI for preflight.
#[derive(Debug, Clone)]
pub struct PlacedInstance {
    pub account: Option<String>,
    pub region: Option<String>,
    /// The AMI of its region, when not the trigger's own.
    pub ami: Option<Ami>,
    pub image: Image,
    pub facts: InstanceFacts,
    /// The ECS cluster it is a container instance of.
    pub ecs_cluster: Option<String>,
}

impl PlacedInstance {
    pub fn target_name(&self) -> String {
        place_name(
            self.account.as_deref(),
            self.region.as_deref(),
            &self.facts.id,
        )
    }
}

/// The instance's `ami-rollout:wave` tag gives it its wave, unless its settings already do.
pub(crate) fn wave_from_tag(settings: &mut SettingsMap, facts: &InstanceFacts) {
    if let Some(wave) = facts.wave_tag() {
        let layer = settings.0.entry(facts.id.clone()).or_default();
        layer.wave.get_or_insert(wave);
    }
}

pub(crate) fn decide(ami: &Ami, placed: &PlacedInstance) -> Decision {
    let ami = placed.ami.as_ref().unwrap_or(ami);
    let facts = &placed.facts;
    if let Some((owner, _)) = facts.owner() {
        return Decision::Skip(format!(
            "{owner}, which replaces its own instances: not a standalone instance"
        ));
    }
    if facts.image_id == ami.id && facts.state == "running" {
        return Decision::Skip(format!("already on {}", ami.id));
    }
    if let Some(cluster) = &placed.ecs_cluster {
        // Replacing the root reboots it: its tasks would stop without being drained first.
        return Decision::Skip(format!(
            "ECS container instance of cluster {cluster}: draining before a root replacement is not built yet"
        ));
    }
    match facts.preflight(&placed.image) {
        Err(Refusal::Architecture(reason)) => return Decision::WrongArchitecture(reason),
        Err(Refusal::Other(reason)) => return Decision::Refuse(reason),
        Ok(()) => {}
    }
    let root_volume_id = facts.root_volume_id.clone().unwrap_or_default();
    Decision::Roll(Box::new(Target {
        kind: TargetKind::Instance,
        account: placed.account.clone(),
        region: placed.region.clone(),
        group: facts.id.clone(),
        instance_name: facts.name().map(str::to_string),
        ami: ami.clone(),
        rollback_point: RollbackPoint::Root(RootPoint {
            root_volume_id,
            root_device_name: facts.root_device_name.clone(),
            image_id: facts.image_id.clone(),
        }),
        mixed_instances: false,
        ecs: None,
    }))
}
