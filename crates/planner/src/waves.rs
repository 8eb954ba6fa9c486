//! Decided targets into waves: refusals fail the whole plan, the rest is ordered.

use std::collections::{BTreeMap, BTreeSet};

use crate::decision::Decision;
use crate::groups::{GroupFacts, decide};
use crate::instances::{self, PlacedInstance};
use rollout_core::fleet;
use rollout_core::model::{Ami, MAX_TARGETS, PlanNote, Skipped, Target};
use rollout_core::settings::SettingsMap;
use rollout_core::{StepError, StepResult};

/// The targets decided and ordered: what a plan's waves and skips are made of.
#[derive(Debug)]
pub struct Decided {
    pub waves: Vec<Vec<Target>>,
    /// The settings of the planned groups only.
    pub settings: SettingsMap,
    pub skipped: Vec<Skipped>,
    pub target_count: usize,
    pub notes: Vec<PlanNote>,
}

/// Decides every group and orders the targets into waves. Refusals fail the whole plan so that
/// nothing changes until the operator fixes or excludes the group.
pub fn decide_groups(
    ami: &Ami,
    groups: Vec<GroupFacts>,
    settings: &SettingsMap,
    waves: Option<&[Vec<String>]>,
) -> StepResult<Decided> {
    decide_targets(ami, groups, Vec::new(), settings, waves)
}

/// `decide_groups`, with standalone instances beside the groups.
pub fn decide_targets(
    ami: &Ami,
    groups: Vec<GroupFacts>,
    standalone: Vec<PlacedInstance>,
    settings: &SettingsMap,
    waves: Option<&[Vec<String>]>,
) -> StepResult<Decided> {
    let decisions = groups
        .iter()
        .map(|g| {
            let decision = decide(ami, g, &settings.for_group(&g.name));
            (g.target_name(), decision)
        })
        .chain(
            standalone
                .iter()
                .map(|i| (i.target_name(), instances::decide(ami, i))),
        );
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut wrong_arch = Vec::new();
    for (name, decision) in decisions {
        match decision {
            Decision::Roll(t) => targets.push(*t),
            Decision::Skip(reason) => skipped.push(Skipped {
                group: name,
                reason,
            }),
            Decision::Refuse(reason) => refused.push((name, reason)),
            Decision::WrongArchitecture(reason) => wrong_arch.push(reason),
        }
    }
    refuse(ami, &refused, &wrong_arch)?;
    let target_count = targets.len();
    check_size(target_count)?;
    let names: Vec<String> = targets.iter().map(|t| t.resource.clone()).collect();
    let planned: BTreeSet<String> = targets.iter().map(Target::name).collect();
    Ok(Decided {
        waves: order_waves(targets, settings, waves)?,
        settings: settings.retain_groups(names.iter().map(String::as_str)),
        skipped,
        target_count,
        notes: suspension_notes(&groups, &planned),
    })
}

/// A plan with a target of the wrong architecture, or with refused targets, fails whole.
fn refuse(ami: &Ami, refused: &[(String, String)], wrong_arch: &[String]) -> StepResult<()> {
    if !wrong_arch.is_empty() {
        return Err(StepError::AmiNotUsable {
            ami: ami.id.clone(),
            reason: format!("architecture mismatch: {}", wrong_arch.join("; ")),
        });
    }
    match refused {
        [] => Ok(()),
        [(group, reason)] => Err(StepError::PreflightFailed {
            group: group.clone(),
            reason: reason.clone(),
        }),
        many => {
            let group = many
                .iter()
                .map(|(g, _)| g.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let reason = many
                .iter()
                .map(|(g, r)| format!("{g}: {r}"))
                .collect::<Vec<_>>()
                .join("; ");
            Err(StepError::PreflightFailed { group, reason })
        }
    }
}

/// What people should know about the planned groups: a suspended process that changes how the
/// refresh goes.
fn suspension_notes(groups: &[GroupFacts], planned: &BTreeSet<String>) -> Vec<PlanNote> {
    groups
        .iter()
        .filter(|g| planned.contains(&g.target_name()))
        .filter_map(|g| {
            fleet::suspension_note(&g.suspended).map(|note| PlanNote {
                target: g.target_name(),
                note,
            })
        })
        .collect()
}

/// Refuses, before anything changes, a plan larger than one execution rolls out.
pub(crate) fn check_size(target_count: usize) -> StepResult<()> {
    if target_count > MAX_TARGETS {
        return Err(StepError::invalid(format!(
            "the plan has {target_count} targets, more than the {MAX_TARGETS} one execution rolls \
             out; roll out in parts (targetTag, targets or excludedAsgs)"
        )));
    }
    Ok(())
}

/// Explicit waves first, in the order given (targets not named form a last wave); otherwise by
/// each group's `wave` setting, ascending. Within a wave, targets are in name order. A wave
/// names targets by group name (in every account and region), by target name
/// (`111111111111/eu-west-1/web`), or all the remaining targets of an account (`account:<id>`)
/// or a region (`region:<name>`).
pub(crate) fn order_waves(
    targets: Vec<Target>,
    settings: &SettingsMap,
    explicit: Option<&[Vec<String>]>,
) -> StepResult<Vec<Vec<Target>>> {
    let mut by_name: BTreeMap<String, Target> =
        targets.into_iter().map(|t| (t.name(), t)).collect();
    let mut waves = Vec::new();
    if let Some(explicit) = explicit {
        for wave in explicit {
            let mut current = Vec::new();
            for entry in wave {
                let chosen: Vec<String> = by_name
                    .iter()
                    .filter(|(name, t)| wave_entry_selects(entry, name, t))
                    .map(|(name, _)| name.clone())
                    .collect();
                if chosen.is_empty() {
                    return Err(StepError::invalid(format!(
                        "wave names {entry}, which selects no target of this rollout (or none left by earlier waves)"
                    )));
                }
                current.extend(chosen.iter().filter_map(|name| by_name.remove(name)));
            }
            if !current.is_empty() {
                waves.push(current);
            }
        }
        if !by_name.is_empty() {
            waves.push(by_name.into_values().collect());
        }
        return Ok(waves);
    }
    let mut numbered: BTreeMap<u32, Vec<Target>> = BTreeMap::new();
    for t in by_name.into_values() {
        numbered
            .entry(settings.for_group(&t.resource).wave())
            .or_default()
            .push(t);
    }
    Ok(numbered.into_values().collect())
}

pub(crate) fn wave_entry_selects(entry: &str, name: &str, target: &Target) -> bool {
    if let Some(account) = entry.strip_prefix("account:") {
        target.account.as_deref() == Some(account)
    } else if let Some(region) = entry.strip_prefix("region:") {
        target.region.as_deref() == Some(region)
    } else {
        entry == name || entry == target.resource || target.instance_name.as_deref() == Some(entry)
    }
}
