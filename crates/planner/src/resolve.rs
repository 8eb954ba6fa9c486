//! The plan of one trigger, built whole: the AMI it names, the places it reaches, the targets
//! found there and decided, their waves, gates and windows.

use std::collections::{BTreeMap, BTreeSet};

use crate::accept::{Accepted, accept};
use crate::amis::{
    account_ami, ensure_key_usable, ensure_launchable_there, plan_copies, refuse_missing_amis,
    regional_amis,
};
use crate::change_control;
use crate::groups::{gather_facts, select_groups};
use crate::instances::{self, PlacedInstance};
use crate::reach::{Place, Reach};
use crate::selection::Selection;
use crate::sources::{self, NothingToDo};
use crate::waves::plan_with_instances;
use aws_sdk_autoscaling::types::AutoScalingGroup;
use rollout_core::ami::{self, describe_images, usable_ami};
use rollout_core::config::Config;
use rollout_core::keys;
use rollout_core::model::{Epoch, Plan};
use rollout_core::trigger::AmiSource;
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
    let Accepted {
        mut trigger,
        settings,
        max_concurrency,
        instance_concurrency,
    } = accept(config, input)?;
    let reach = Reach::of(clients, config, &trigger.overrides).await?;
    if let AmiSource::ImageBuilder(build) = &mut trigger.source {
        let conf = clients.sdk_config().ok_or_else(|| {
            StepError::invalid("no AWS configuration to read the Image Builder image")
        })?;
        sources::read_build(&aws_sdk_imagebuilder::Client::new(conf), build).await?;
        if let Some(reason) = sources::ignored_build(config, build, &reach.region_names(clients)) {
            return Ok(Resolved::nothing_to_do(&trigger.description, reason));
        }
    }

    if let AmiSource::Parameter { name, .. } = &trigger.source
        && let Some(reason) = sources::unfollowed_parameter(config, name)
    {
        return Ok(Resolved::nothing_to_do(&trigger.description, reason));
    }
    let ami_id = ami::resolve_source(clients, &trigger.source).await?;
    let image = describe_images(clients, std::slice::from_ref(&ami_id))
        .await?
        .into_iter()
        .next();
    let image = image.ok_or_else(|| StepError::AmiNotUsable {
        ami: ami_id.clone(),
        reason: "it does not exist in this account and region".into(),
    })?;
    let ami = usable_ami(&image, &config.allowed_ami_owners, now)?;
    if let Some(reason) = sources::too_young(&image, trigger.overrides.min_age_hours, now) {
        return Ok(Resolved::nothing_to_do(&trigger.description, reason));
    }
    let parameter = match &trigger.source {
        AmiSource::Parameter { name, .. } => Some(name.clone()),
        _ => None,
    };
    if let Some(name) = parameter
        .as_deref()
        .filter(|_| trigger.overrides.skip_rolled_out)
        && let Some(reason) = sources::rolled_out_before(clients, execution, name, &ami.id).await?
    {
        return Ok(Resolved::nothing_to_do(&trigger.description, reason));
    }

    let places = reach.enter(clients, execution).await?;
    let regional = regional_amis(clients, config, &reach, &trigger.source, &ami, now).await?;
    let selection = Selection::of(config, &trigger.overrides)?;
    let mut found = Vec::new();
    for place in &places {
        let groups = select_groups(&place.clients, &selection).await?;
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
    let found: Vec<_> = found
        .into_iter()
        .map(|(place, groups, instances)| {
            let (groups, mut left_out) = selection.exclude(place, groups);
            skipped.append(&mut left_out);
            let (instances, mut left_out) = selection.instances.exclude(place, instances);
            skipped.append(&mut left_out);
            (place, groups, instances)
        })
        .collect();
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
            (
                *place,
                names
                    .chain(instances.iter().map(|(i, _)| i.id.clone()))
                    .collect(),
            )
        })
        .collect();
    // The workload account-regions whose groups launch: Auto Scaling's role there needs the key.
    let launching_groups: BTreeSet<(Option<String>, String)> = found
        .iter()
        .filter(|(_, groups, _)| !groups.is_empty())
        .filter_map(|(place, _, _)| Some((place.region.clone(), place.account.clone()?)))
        .collect();
    let copies = if config.copy_missing_amis {
        plan_copies(
            clients,
            config,
            &reach,
            &ami,
            &regional,
            &names_found,
            &launching_groups,
        )?
    } else {
        refuse_missing_amis(&ami, &regional, &names_found)?;
        Vec::new()
    };

    let mut facts = Vec::new();
    let mut placed_instances = Vec::new();
    let mut settings = settings;
    for (place, groups, found_instances) in found {
        if groups.is_empty() && found_instances.is_empty() {
            continue;
        }
        let mut place_ami = regional
            .get(&place.region)
            .cloned()
            .flatten()
            .unwrap_or_else(|| ami.clone());
        let region = place.region.as_deref().unwrap_or(&clients.region);
        if let Some(id) = sources::account_ami(&trigger.source, place.account.as_deref(), region) {
            // The build distributed an AMI of the account's own there: it launches that one.
            place_ami = account_ami(place, id, config, now).await?;
        }
        let copied_there = copies
            .iter()
            .any(|c| Some(&c.region) == place.region.as_ref());
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
        if !found_instances.is_empty() {
            // A copy is made later, the same image as its source: preflight against the source.
            let image_there = match copied_there || place_ami == ami {
                true => image.clone(),
                false => describe_images(&place.clients, std::slice::from_ref(&place_ami.id))
                    .await?
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| image.clone()),
            };
            for (facts, ecs) in found_instances {
                instances::wave_from_tag(&mut settings, &facts);
                placed_instances.push(PlacedInstance {
                    account: place.account.clone(),
                    region: place.region.clone(),
                    ami: (place_ami != ami).then(|| place_ami.clone()),
                    image: image_there.clone(),
                    facts,
                    ecs,
                });
            }
        }
        if groups.is_empty() {
            continue;
        }
        let groups: Vec<AutoScalingGroup> = groups.into_values().collect();
        let mut place_facts = gather_facts(&place.clients, &groups, &place_ami, &settings).await?;
        for f in &mut place_facts {
            f.account = place.account.clone();
            f.region = place.region.clone();
            f.ami = (place_ami != ami).then(|| place_ami.clone());
        }
        facts.append(&mut place_facts);
    }
    if facts.is_empty() && placed_instances.is_empty() {
        return Err(StepError::TargetNotFound(selection.nothing_found()));
    }
    let mut plan = plan_with_instances(
        &ami,
        facts,
        placed_instances,
        &settings,
        trigger.overrides.waves.as_deref(),
    )?;
    change_control::plan_windows(&mut plan.waves, &settings, now)?;
    plan.approvals = change_control::approval_gates(&plan.waves, &settings);
    let copying = if copies.is_empty() {
        0
    } else {
        config.copy_timeout_seconds
    };
    change_control::refuse_too_long(
        change_control::longest_run(
            &plan.waves,
            &plan.approvals,
            &settings,
            (max_concurrency, instance_concurrency),
            copying,
        ),
        config.plan_retention_days,
    )?;
    skipped.append(&mut plan.skipped);
    plan.skipped_count = skipped.len();
    plan.skipped = skipped;
    plan.trigger = trigger.description;
    plan.settings_version = config.settings_version.clone();
    plan.max_concurrency = max_concurrency;
    plan.instance_concurrency = instance_concurrency;
    plan.rollback_scope = trigger
        .overrides
        .rollback_scope
        .unwrap_or(config.rollback_scope);
    plan.copies = copies;
    plan.parameter = parameter;
    plan.regional_amis = if reach.regions != [None] {
        // Regions to copy into get their AMI once the copy is made (distribute-ami).
        regional
            .into_iter()
            .filter_map(|(region, found)| {
                Some((region.unwrap_or_else(|| clients.region.clone()), found?))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(Resolved::Plan(Box::new(plan)))
}
