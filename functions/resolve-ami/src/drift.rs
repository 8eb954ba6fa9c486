//! Drift: which targets of the reach are not on the approved AMI. The same selection, reach and
//! per-region AMI as a plan (what a rollout of the approved AMI would touch), read only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rollout_core::ami::{self, describe_images, usable_ami};
use rollout_core::config::Config;
use rollout_core::fleet;
use rollout_core::model::{Epoch, TargetKind, place_name};
use rollout_core::trigger::{AmiSource, Overrides};
use rollout_core::{Clients, StepError, StepResult};
use serde::Serialize;

use crate::{Reach, Selection, regional_amis, select_groups};

/// One target not on its region's approved AMI.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drifted {
    pub target: String,
    pub kind: TargetKind,
    pub account: Option<String>,
    pub region: Option<String>,
    /// The approved AMI of its region; none when the region has none.
    pub approved: Option<String>,
    /// The AMIs its instances run that are not the approved one.
    pub amis: Vec<String>,
    /// The oldest of those AMIs' creation time, when EC2 still knows them.
    pub oldest_created: Option<String>,
    /// Whole days since then.
    pub age_days: Option<i64>,
}

/// Checked and drifted targets of one account and region (the metric's dimensions).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlaceCount {
    pub account: String,
    pub region: String,
    pub checked: usize,
    pub drifted: usize,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// The approved AMI by region (`null`: none found there).
    pub approved: BTreeMap<String, Option<String>>,
    pub checked: usize,
    pub drifted: Vec<Drifted>,
    pub places: Vec<PlaceCount>,
}

const SESSION: &str = "ami-rollout-drift";

/// Checks every selected group and standalone instance of the reach against the AMI `source`
/// names (in the home region; the same name, parameter or Image Builder output elsewhere).
pub async fn check(
    clients: &Clients,
    config: &Config,
    source: &AmiSource,
    now: Epoch,
) -> StepResult<DriftReport> {
    let overrides = Overrides::default();
    let reach = Reach::of(clients, config, &overrides).await?;
    let ami_id = ami::resolve_source(clients, source).await?;
    let image = describe_images(clients, std::slice::from_ref(&ami_id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StepError::AmiNotUsable {
            ami: ami_id.clone(),
            reason: "it does not exist in this account and region".into(),
        })?;
    let home_ami = usable_ami(&image, &config.allowed_ami_owners, now)?;
    let regional = regional_amis(clients, config, &reach, source, &home_ami, now).await?;
    let selection = Selection::of(config, &overrides)?;
    let places = reach.enter(clients, SESSION).await?;
    let home_account = match &reach.home_account {
        Some(a) => a.clone(),
        None => clients.home_account().await.unwrap_or_default(),
    };
    let mut report = DriftReport {
        approved: regional
            .iter()
            .map(|(r, a)| {
                (
                    r.clone().unwrap_or_else(|| clients.region.clone()),
                    a.as_ref().map(|a| a.id.clone()),
                )
            })
            .collect(),
        checked: 0,
        drifted: Vec::new(),
        places: Vec::new(),
    };
    for place in &places {
        let approved = regional.get(&place.region).cloned().flatten().map(|a| a.id);
        let groups = select_groups(&place.clients, &selection).await?;
        let (groups, _) = selection.exclude(place, groups);
        let found = selection.instances.find(&place.clients).await?;
        let (instances, _) = selection.instances.exclude(place, found);
        // What each target runs: a group's instances' AMIs, an instance's own.
        let mut running: Vec<(TargetKind, String, BTreeSet<String>)> = Vec::new();
        for (name, group) in &groups {
            let ids: Vec<String> = group
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            let amis = fleet::instance_images(&place.clients, &ids).await?;
            running.push((
                TargetKind::AutoScalingGroup,
                name.clone(),
                amis.into_values().collect(),
            ));
        }
        for (facts, _) in &instances {
            // Members of groups and fleets are drift of their group, not their own.
            if facts.owner().is_none() {
                running.push((
                    TargetKind::Instance,
                    facts.id.clone(),
                    BTreeSet::from([facts.image_id.clone()]),
                ));
            }
        }
        let off: Vec<(TargetKind, String, Vec<String>)> = running
            .iter()
            .map(|(kind, name, amis)| {
                let other = amis
                    .iter()
                    .filter(|a| Some(*a) != approved.as_ref())
                    .cloned()
                    .collect();
                (*kind, name.clone(), other)
            })
            .filter(|(_, _, other): &(_, _, Vec<String>)| !other.is_empty())
            .collect();
        let wanted: Vec<String> = off
            .iter()
            .flat_map(|(_, _, a)| a.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let created: HashMap<String, String> = if wanted.is_empty() {
            HashMap::new()
        } else {
            describe_images(&place.clients, &wanted)
                .await?
                .into_iter()
                .filter_map(|i| Some((i.image_id?.clone(), i.creation_date?.clone())))
                .collect()
        };
        report.checked += running.len();
        report.places.push(PlaceCount {
            account: place
                .account
                .clone()
                .unwrap_or_else(|| home_account.clone()),
            region: place
                .region
                .clone()
                .unwrap_or_else(|| clients.region.clone()),
            checked: running.len(),
            drifted: off.len(),
        });
        for (kind, name, amis) in off {
            let oldest = amis.iter().filter_map(|a| created.get(a)).min().cloned();
            let age_days = oldest
                .as_deref()
                .and_then(ami::parse_time)
                .map(|t| (now - t) / 86_400);
            report.drifted.push(Drifted {
                target: place_name(place.account.as_deref(), place.region.as_deref(), &name),
                kind,
                account: place.account.clone(),
                region: place.region.clone(),
                approved: approved.clone(),
                amis,
                oldest_created: oldest,
                age_days,
            });
        }
    }
    Ok(report)
}
