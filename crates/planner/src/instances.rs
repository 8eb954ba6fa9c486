//! Standalone instances in the plan: which are selected, which are left out and why, and the
//! preflight that refuses, before anything changes, an instance whose root could not take the AMI
//! or could not be rolled back.

use std::collections::{HashMap, HashSet};

use aws_sdk_ec2::types::Image;
use rollout_core::ecs::ContainerInstanceView;
use rollout_core::instance::{self, InstanceFacts, Refusal};
use rollout_core::model::{
    Ami, EcsCapacity, RollbackPoint, RootPoint, Skipped, Target, TargetKind, place_name,
};
use rollout_core::settings::SettingsMap;
use rollout_core::{Clients, StepError, StepResult};

use crate::decision::Decision;
use crate::reach::Place;

/// A standalone instance found, with its ECS membership when it is container capacity.
pub type Found = (InstanceFacts, Option<Member>);

/// Instances named (ids or Name tags), the tag that selects running ones, and exclusions (ids,
/// Name tags, or target names such as `111111111111/eu-west-1/i-0123…`).
pub(crate) struct Selection {
    pub names: Vec<String>,
    pub tag: Option<(String, String)>,
    pub excluded: HashSet<String>,
}

impl Selection {
    /// The selected instances of one account and region, each with the ECS container instance it
    /// is, if any.
    pub async fn find(&self, clients: &Clients) -> StepResult<Vec<Found>> {
        if self.names.is_empty() && self.tag.is_none() {
            return Ok(Vec::new());
        }
        let found = instance::find(clients, self.tag.as_ref(), &self.names).await?;
        let members = if found.iter().all(|i| i.owner().is_some()) {
            HashMap::new()
        } else {
            members(clients).await?
        };
        Ok(found
            .into_iter()
            .map(|i| {
                let member = members.get(&i.id).cloned();
                (i, member)
            })
            .collect())
    }

    /// Refuses names that no account or region of the reach has an instance for.
    pub fn check_found<'a>(&self, found: impl Iterator<Item = &'a Found>) -> StepResult<()> {
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
    pub fn exclude(&self, place: &Place, instances: Vec<Found>) -> (Vec<Found>, Vec<Skipped>) {
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

/// An instance's place in ECS: the cluster it is a container instance of, and the container
/// instance its agent is connected as (or, with none connected, one it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub cluster: String,
    pub container_instance: ContainerInstanceView,
}

/// The ECS membership of each EC2 instance of the account-region that is a container instance.
async fn members(clients: &Clients) -> StepResult<HashMap<String, Member>> {
    let mut members: HashMap<String, Member> = HashMap::new();
    for cluster in rollout_core::ecs::cluster_arns(clients).await? {
        let name = cluster.rsplit('/').next().unwrap_or(&cluster).to_string();
        for view in rollout_core::ecs::container_instances(clients, &cluster).await? {
            // A container instance left by a root the instance no longer has never hides the
            // one its agent is connected as.
            let known = members
                .get(&view.ec2_instance_id)
                .is_some_and(|m| m.container_instance.agent_connected);
            if !known {
                members.insert(
                    view.ec2_instance_id.clone(),
                    Member {
                        cluster: name.clone(),
                        container_instance: view,
                    },
                );
            }
        }
    }
    Ok(members)
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
    /// The ECS container instance it is, if any.
    pub ecs: Option<Member>,
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
    if let Some(reason) =
        rollout_core::reach::workload_opt_in_refusal(placed.account.as_deref(), &facts.tags)
    {
        return Decision::Refuse(reason);
    }
    if let Some((owner, _)) = facts.owner() {
        return Decision::Skip(format!(
            "{owner}, which replaces its own instances: not a standalone instance"
        ));
    }
    if facts.image_id == ami.id && facts.state == "running" {
        return Decision::Skip(format!("already on {}", ami.id));
    }
    match facts.preflight(&placed.image) {
        Err(Refusal::Architecture(reason)) => return Decision::WrongArchitecture(reason),
        Err(Refusal::Other(reason)) => return Decision::Refuse(reason),
        Ok(()) => {}
    }
    // Replacing the root reboots the instance: a container instance is drained first, which only
    // an ACTIVE one with its agent connected can be.
    if let Some(member) = &placed.ecs {
        let ci = &member.container_instance;
        if !ci.agent_connected {
            return Decision::Refuse(format!(
                "its ECS agent (container instance {} of cluster {}) is disconnected: its tasks could not be drained",
                ci.arn, member.cluster
            ));
        }
        if ci.status != "ACTIVE" {
            return Decision::Refuse(format!(
                "its container instance {} of cluster {} is {}; only an ACTIVE one is drained and replaced",
                ci.arn, member.cluster, ci.status
            ));
        }
    }
    let root_volume_id = facts.root_volume_id.clone().unwrap_or_default();
    Decision::Roll(Box::new(Target {
        kind: TargetKind::Instance,
        account: placed.account.clone(),
        region: placed.region.clone(),
        resource: facts.id.clone(),
        instance_name: facts.name().map(str::to_string),
        ami: ami.clone(),
        rollback_point: RollbackPoint::Root(RootPoint {
            root_volume_id,
            root_device_name: facts.root_device_name.clone(),
            image_id: facts.image_id.clone(),
            container_instance_arn: placed
                .ecs
                .as_ref()
                .map(|m| m.container_instance.arn.clone()),
        }),
        mixed_instances: false,
        ecs: placed.ecs.as_ref().map(|m| EcsCapacity {
            cluster: m.cluster.clone(),
            capacity_provider: None,
            managed_termination_protection: false,
        }),
        window: None,
    }))
}
