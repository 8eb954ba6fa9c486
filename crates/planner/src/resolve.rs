//! The plan of one trigger, built whole: the AMI it names, the places it reaches, the targets
//! found there and decided, their waves, gates and windows.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_ec2::types::Image;

use crate::accept::{Accepted, accept};
use crate::amis::{
    account_ami, approved_ami, ensure_key_usable, ensure_launchable_there, plan_copies,
    refuse_missing_amis, regional_amis,
};
use crate::change_control;
use crate::groups::GroupFacts;
use crate::groups::{gather_facts, select_groups};
use crate::instances::{self, PlacedInstance};
use crate::reach::{Place, Reach};
use crate::selection::Selection;
use crate::sources::{self, NothingToDo};
use crate::waves::{Decided, decide_targets};
use rollout_core::ami::describe_images;
use rollout_core::config::Config;
use rollout_core::keys;
use rollout_core::model::{Ami, AmiCopy, Epoch, Plan, Skipped};
use rollout_core::trigger::{AmiSource, Trigger};
use rollout_core::{Clients, StepError, StepResult};
use serde_json::Value;

/// What a trigger comes to: a plan, or nothing to do (the execution then ends succeeded).
#[derive(Debug)]
pub enum Resolved {
    Plan(Box<Plan>),
    NothingToDo(NothingToDo),
}

impl Resolved {
    pub(crate) fn nothing_to_do(trigger: &str, reason: String) -> Self {
        Resolved::NothingToDo(NothingToDo {
            trigger: trigger.to_string(),
            nothing_to_do: reason,
        })
    }

    /// The plan, or the reason there is none.
    pub fn into_plan(self) -> Result<Plan, NothingToDo> {
        match self {
            Resolved::Plan(plan) => Ok(*plan),
            Resolved::NothingToDo(nothing) => Err(nothing),
        }
    }
}

/// Reads the trigger, validates the AMI in every region of the reach, and plans the rollout.
/// `execution` names the sessions in workload accounts.
pub async fn resolve(
    clients: &Clients,
    config: &Config,
    execution: &str,
    input: &Value,
    now: Epoch,
) -> StepResult<Resolved> {
    let mut accepted = accept(config, input)?;
    let reach = Reach::of(clients, config, &accepted.trigger.overrides).await?;
    let source = match read_source(
        clients,
        config,
        execution,
        &reach,
        &mut accepted.trigger,
        now,
    )
    .await?
    {
        Ok(source) => source,
        Err(reason) => {
            return Ok(Resolved::nothing_to_do(
                &accepted.trigger.description,
                reason,
            ));
        }
    };
    let places = reach.enter(clients, execution).await?;
    let trigger = &accepted.trigger;
    let regional =
        regional_amis(clients, config, &reach, &trigger.source, &source.ami, now).await?;
    let selection = Selection::of(config, &trigger.overrides)?;
    let (found, left_out) = find_targets(&places, &selection).await?;
    let copies = copies_needed(clients, config, &reach, trigger, &source, &regional, &found)?;
    let gathered = gather(
        clients,
        config,
        &mut accepted,
        &source,
        (&regional, &copies),
        found,
        now,
    )
    .await?;
    if gathered.groups.is_empty() && gathered.instances.is_empty() {
        return Err(StepError::TargetNotFound(selection.nothing_found()));
    }
    let decided = decide_targets(
        &source.ami,
        gathered.groups,
        gathered.instances,
        &accepted.settings,
        accepted.trigger.overrides.waves.as_deref(),
    )?;
    let parts = Parts {
        reach,
        source,
        regional,
        copies,
        left_out,
        decided,
    };
    Ok(Resolved::Plan(Box::new(assemble(
        clients, config, accepted, parts, now,
    )?)))
}

/// The AMI a trigger names, read and checked in the home region.
pub(crate) struct SourceAmi {
    ami: Ami,
    image: Image,
    /// The SSM parameter it was read from.
    parameter: Option<String>,
}

/// The trigger's AMI, or why the trigger has nothing to do: an Image Builder build this
/// deployment does not follow, a parameter it does not follow, an AMI younger than its soak, or
/// one rolled out before from the same parameter.
async fn read_source(
    clients: &Clients,
    config: &Config,
    execution: &str,
    reach: &Reach,
    trigger: &mut Trigger,
    now: Epoch,
) -> StepResult<Result<SourceAmi, String>> {
    if let AmiSource::ImageBuilder(build) = &mut trigger.source {
        let conf = clients.sdk_config().ok_or_else(|| {
            StepError::invalid("no AWS configuration to read the Image Builder image")
        })?;
        sources::read_build(&aws_sdk_imagebuilder::Client::new(conf), build).await?;
        if let Some(reason) = sources::ignored_build(config, build, &reach.region_names(clients)) {
            return Ok(Err(reason));
        }
    }
    let parameter = match &trigger.source {
        AmiSource::Parameter { name, .. } => Some(name.clone()),
        _ => None,
    };
    if let Some(reason) = parameter
        .as_deref()
        .and_then(|name| sources::unfollowed_parameter(config, name))
    {
        return Ok(Err(reason));
    }
    let (ami, image) = approved_ami(clients, config, &trigger.source, now).await?;
    if let Some(reason) = sources::too_young(&image, trigger.overrides.min_age_hours, now) {
        return Ok(Err(reason));
    }
    if let Some(name) = parameter
        .as_deref()
        .filter(|_| trigger.overrides.skip_rolled_out)
        && let Some(reason) = sources::rolled_out_before(clients, execution, name, &ami.id).await?
    {
        return Ok(Err(reason));
    }
    Ok(Ok(SourceAmi {
        ami,
        image,
        parameter,
    }))
}

/// The groups and standalone instances of one place the rollout is for.
type FoundAt<'a> = (
    &'a Place,
    BTreeMap<String, AutoScalingGroup>,
    Vec<instances::Found>,
);

/// The selected targets of every place, minus the excluded ones (returned with their reason).
/// Names that no place has are refused.
async fn find_targets<'a>(
    places: &'a [Place],
    selection: &Selection,
) -> StepResult<(Vec<FoundAt<'a>>, Vec<Skipped>)> {
    let mut found = Vec::new();
    for place in places {
        let groups = select_groups(&place.clients, selection).await?;
        let instances = selection.instances.find(&place.clients).await?;
        found.push((place, groups, instances));
    }
    selection.check_found(
        found
            .iter()
            .flat_map(|(_, groups, _)| groups.keys().map(String::as_str)),
    )?;
    selection
        .instances
        .check_found(found.iter().flat_map(|(_, _, instances)| instances))?;
    let mut skipped = Vec::new();
    let found = found
        .into_iter()
        .map(|(place, groups, instances)| {
            let (groups, mut left_out) = selection.exclude(place, groups);
            skipped.append(&mut left_out);
            let (instances, mut left_out) = selection.instances.exclude(place, instances);
            skipped.append(&mut left_out);
            (place, groups, instances)
        })
        .collect();
    Ok((found, skipped))
}

/// The copies to make before the first wave (`AMI_DISTRIBUTION=copy`), or a refusal naming the
/// targets of the regions where the AMI is missing.
fn copies_needed(
    clients: &Clients,
    config: &Config,
    reach: &Reach,
    trigger: &Trigger,
    source: &SourceAmi,
    regional: &BTreeMap<Option<String>, Option<Ami>>,
    found: &[FoundAt<'_>],
) -> StepResult<Vec<AmiCopy>> {
    // The targets that need their region's AMI (found there, or copied): not those of an account
    // an Image Builder build distributed an AMI of its own to.
    let names_found: Vec<(&Place, Vec<String>)> = found
        .iter()
        .map(|(place, groups, instances)| {
            let region = place.region.as_deref().unwrap_or(&clients.region);
            if sources::account_ami(&trigger.source, place.account.as_deref(), region).is_some() {
                return (*place, Vec::new());
            }
            let names = groups.keys().cloned();
            let ids = instances.iter().map(|(i, _)| i.id.clone());
            (*place, names.chain(ids).collect())
        })
        .collect();
    // The workload account-regions whose groups launch: Auto Scaling's role there needs the key.
    let launching_groups: BTreeSet<(Option<String>, String)> = found
        .iter()
        .filter(|(_, groups, _)| !groups.is_empty())
        .filter_map(|(place, _, _)| Some((place.region.clone(), place.account.clone()?)))
        .collect();
    if !config.copy_missing_amis {
        refuse_missing_amis(&source.ami, regional, &names_found)?;
        return Ok(Vec::new());
    }
    plan_copies(
        clients,
        config,
        reach,
        &source.ami,
        regional,
        &names_found,
        &launching_groups,
    )
}

/// What planning read of the targets found, ready to decide.
struct Gathered {
    groups: Vec<GroupFacts>,
    instances: Vec<PlacedInstance>,
}

/// Reads every found target where it lives, with the AMI of its place, after checking that a
/// workload account can launch that AMI. A standalone instance's `wave` tag joins the settings.
async fn gather(
    clients: &Clients,
    config: &Config,
    accepted: &mut Accepted,
    source: &SourceAmi,
    (regional, copies): (&BTreeMap<Option<String>, Option<Ami>>, &[AmiCopy]),
    found: Vec<FoundAt<'_>>,
    now: Epoch,
) -> StepResult<Gathered> {
    let mut gathered = Gathered {
        groups: Vec::new(),
        instances: Vec::new(),
    };
    for (place, groups, found_instances) in found {
        if groups.is_empty() && found_instances.is_empty() {
            continue;
        }
        let copied_there = copies
            .iter()
            .any(|c| Some(&c.region) == place.region.as_ref());
        let place_ami =
            ami_of_place(clients, config, accepted, source, regional, place, now).await?;
        if let Some(account) = place.account.as_deref()
            && !copied_there
        {
            let seen = ensure_launchable_there(place, &place_ami).await?;
            let launchers = keys::Launchers {
                groups: !groups.is_empty(),
                instances: !found_instances.is_empty(),
            };
            ensure_key_usable(clients, place, account, &place_ami, &seen, launchers).await?;
        }
        let own_ami = (place_ami != source.ami).then(|| place_ami.clone());
        if !found_instances.is_empty() {
            // A copy is made later, the same image as its source: preflight against the source.
            let image_there = match own_ami.is_none() || copied_there {
                true => source.image.clone(),
                false => describe_images(&place.clients, std::slice::from_ref(&place_ami.id))
                    .await?
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| source.image.clone()),
            };
            for (facts, ecs) in found_instances {
                instances::wave_from_tag(&mut accepted.settings, &facts);
                gathered.instances.push(PlacedInstance {
                    account: place.account.clone(),
                    region: place.region.clone(),
                    ami: own_ami.clone(),
                    image: image_there.clone(),
                    facts,
                    ecs,
                });
            }
        }
        if !groups.is_empty() {
            let groups: Vec<AutoScalingGroup> = groups.into_values().collect();
            let place_facts =
                gather_facts(&place.clients, &groups, &place_ami, &accepted.settings).await?;
            gathered
                .groups
                .extend(place_facts.into_iter().map(|f| GroupFacts {
                    account: place.account.clone(),
                    region: place.region.clone(),
                    ami: own_ami.clone(),
                    ..f
                }));
        }
    }
    Ok(gathered)
}

/// The AMI `place` launches: its region's, or the one a build distributed to its account.
async fn ami_of_place(
    clients: &Clients,
    config: &Config,
    accepted: &Accepted,
    source: &SourceAmi,
    regional: &BTreeMap<Option<String>, Option<Ami>>,
    place: &Place,
    now: Epoch,
) -> StepResult<Ami> {
    let region = place.region.as_deref().unwrap_or(&clients.region);
    match sources::account_ami(&accepted.trigger.source, place.account.as_deref(), region) {
        Some(id) => account_ami(place, id, config, now).await,
        None => Ok(regional
            .get(&place.region)
            .cloned()
            .flatten()
            .unwrap_or_else(|| source.ami.clone())),
    }
}

/// What the plan is made of, besides the accepted trigger.
struct Parts {
    reach: Reach,
    source: SourceAmi,
    regional: BTreeMap<Option<String>, Option<Ami>>,
    copies: Vec<AmiCopy>,
    /// Targets the selection left out (excluded), before those planning skipped.
    left_out: Vec<Skipped>,
    decided: Decided,
}

/// The plan, built whole: windows and gates planned over the decided waves, and refused when
/// the rollout could outlive the plan objects or a year.
fn assemble(
    clients: &Clients,
    config: &Config,
    accepted: Accepted,
    parts: Parts,
    now: Epoch,
) -> StepResult<Plan> {
    let Accepted {
        trigger,
        settings,
        max_concurrency,
        instance_concurrency,
    } = accepted;
    let Parts {
        reach,
        source,
        regional,
        copies,
        left_out,
        decided,
    } = parts;
    let mut waves = decided.waves;
    change_control::plan_windows(&mut waves, &settings, now)?;
    let approvals = change_control::approval_gates(&waves, &settings);
    let copying = if copies.is_empty() {
        0
    } else {
        config.copy_timeout_seconds
    };
    change_control::refuse_too_long(
        change_control::longest_run(
            &waves,
            &approvals,
            &settings,
            (max_concurrency, instance_concurrency),
            copying,
        ),
        config.plan_retention_days,
    )?;
    let skipped: Vec<Skipped> = left_out.into_iter().chain(decided.skipped).collect();
    Ok(Plan {
        trigger: trigger.description,
        ami: source.ami,
        regional_amis: named_regional_amis(clients, &reach, regional),
        copies,
        waves,
        settings: decided.settings,
        settings_version: config.settings_version.clone(),
        skipped_count: skipped.len(),
        skipped,
        target_count: decided.target_count,
        max_concurrency,
        instance_concurrency,
        rollback_scope: trigger
            .overrides
            .rollback_scope
            .unwrap_or(config.rollback_scope),
        undo: None,
        parameter: source.parameter,
        approvals,
        notes: decided.notes,
    })
}

/// The AMI of each region by name, when the reach spans regions beyond the home one. Regions to
/// copy into get their AMI once the copy is made (distribute-ami).
fn named_regional_amis(
    clients: &Clients,
    reach: &Reach,
    regional: BTreeMap<Option<String>, Option<Ami>>,
) -> BTreeMap<String, Ami> {
    if reach.regions == [None] {
        return BTreeMap::new();
    }
    regional
        .into_iter()
        .filter_map(|(region, found)| {
            Some((region.unwrap_or_else(|| clients.region.clone()), found?))
        })
        .collect()
}
