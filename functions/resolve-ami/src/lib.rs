//! resolve-ami: turns a trigger into one validated AMI and a plan of waves.
//!
//! It only reads AWS. Every refusal (bad input, unusable AMI, a group that could not be rolled
//! back) happens here, before anything changes. Groups are decided here, standalone instances in
//! `instances`.

pub mod drift;
mod instances;
pub mod sources;
pub mod undo;

use instances::PlacedInstance;
use rollout_core::FromSdk;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter as AsgFilter};
use aws_sdk_ec2::types::Image;
use rollout_core::ami::{self, describe_images, usable_ami};
use rollout_core::change_control;
use rollout_core::config::{Config, parse_tag, validate_concurrency};
use rollout_core::fleet::{self, GroupTemplate, group_template};
use rollout_core::keys;
use rollout_core::launch_template::{self, Marker};
use rollout_core::model::{
    Ami, AmiCopy, EcsCapacity, Epoch, MAX_TARGETS, Plan, PlanNote, RollbackPoint, Skipped, Target,
    TargetKind, TemplatePoint, VersionReference, place_name,
};
use rollout_core::refresh::recent_refreshes;
use rollout_core::settings::{
    OnSuspendedProcesses, REPLACE_ROOT_VOLUME, RefreshSettings, SettingsMap,
};
use rollout_core::store::RolledOut;
use rollout_core::trigger::{AmiSource, Overrides, Trigger};
use rollout_core::{Clients, StepError, StepResult};
use serde_json::Value;
use sources::NothingToDo;

/// What the state machine passes: the execution's name (the plan objects are named after it)
/// and the trigger, as the execution received it.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub execution: String,
    /// The execution's ARN: an undo finds the rollout it undoes beside it.
    #[serde(rename = "executionArn", default)]
    pub execution_arn: Option<String>,
    pub trigger: Value,
}

/// The state machine's first step (a plan), or the scheduled drift check (`{"driftCheck": ...}`).
pub async fn handle(clients: &Clients, payload: Value) -> StepResult<Value> {
    let now = rollout_core::clock::now();
    if payload.get("driftCheck").is_some() {
        let request: drift::ScheduledCheck =
            rollout_core::error::parse_input("resolve-ami drift check", payload)?;
        to_state(&drift::scheduled(clients, &request, now).await?)
    } else {
        let request: ResolveRequest = rollout_core::error::parse_input("resolve-ami", payload)?;
        resolve_and_store(clients, &request, now).await
    }
}

/// What a trigger comes to: a plan, or nothing to do (the execution then ends succeeded).
#[derive(Debug)]
pub enum Resolved {
    Plan(Box<Plan>),
    NothingToDo(NothingToDo),
}

impl Resolved {
    fn nothing_to_do(trigger: &str, reason: String) -> Self {
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

/// Plans the rollout and writes the plan objects; the state carries the summary, or only why
/// there is nothing to do.
pub async fn resolve_and_store(
    clients: &Clients,
    request: &ResolveRequest,
    now: Epoch,
) -> StepResult<Value> {
    if request.execution.trim().is_empty() {
        return Err(StepError::invalid("execution is empty"));
    }
    let store = clients.store()?;
    let plan = match undo::UndoRequest::of(&request.trigger) {
        Some(asked) => {
            let asked = asked?;
            let own = request.execution_arn.as_deref().ok_or_else(|| {
                StepError::invalid("an undo needs executionArn (the state machine passes it)")
            })?;
            let undone = undo::sibling_execution_arn(own, &asked.undo)?;
            undo::check(
                clients,
                &undone,
                Some(&request.execution),
                &request.execution,
            )
            .await?
            .into_plan(asked.skip_changed)?
        }
        None => {
            let config = Config::from_env()?.with_settings(store.settings().await?);
            match resolve(clients, &config, &request.execution, &request.trigger, now)
                .await?
                .into_plan()
            {
                Ok(plan) => plan,
                Err(nothing) => {
                    tracing::info!(reason = %nothing.nothing_to_do, "nothing to do");
                    return to_state(&nothing);
                }
            }
        }
    };
    let summary = store.write_plan(&request.execution, &plan).await?;
    if let Some(name) = &plan.parameter {
        let record = RolledOut {
            execution: request.execution.clone(),
            execution_arn: request.execution_arn.clone(),
            at: now,
        };
        store
            .put_json(
                &rollout_core::store::rolled_out_key(name, &plan.ami.id),
                &record,
            )
            .await?;
    }
    tracing::info!(ami = %plan.ami.id, targets = plan.target_count, waves = plan.waves.len(), skipped = plan.skipped_count, plan = %summary.key, "planned rollout");
    to_state(&summary)
}

fn to_state(out: &impl serde::Serialize) -> StepResult<Value> {
    serde_json::to_value(out).map_err(|e| StepError::invalid(format!("resolve-ami output: {e}")))
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

/// A trigger that passed the checks made before anything is read of the fleet.
pub struct Accepted {
    pub trigger: Trigger,
    /// The configured settings with the trigger's own layered over them.
    pub settings: SettingsMap,
    pub max_concurrency: u32,
    pub instance_concurrency: u32,
}

/// The first checks of a trigger, the ones a plan begins with (the operator CLI's `start` makes
/// them too, before it starts anything): its shape, its settings over the configured ones, its
/// concurrency.
pub fn accept(config: &Config, input: &Value) -> StepResult<Accepted> {
    let trigger = Trigger::parse(input)?;
    if trigger.overrides.skip_rolled_out && !matches!(trigger.source, AmiSource::Parameter { .. }) {
        return Err(StepError::invalid(
            "skipRolledOut needs parameterName: it remembers the AMIs planned from a parameter",
        ));
    }
    let settings = match &trigger.overrides.settings {
        Some(over) => config.settings.overlay(over),
        None => config.settings.clone(),
    };
    settings.validate()?;
    let concurrency =
        |over: Option<u32>, configured| validate_concurrency(over.unwrap_or(configured));
    Ok(Accepted {
        max_concurrency: concurrency(trigger.overrides.max_concurrency, config.max_concurrency)?,
        instance_concurrency: concurrency(
            trigger.overrides.instance_max_concurrency,
            config.instance_concurrency,
        )?,
        trigger,
        settings,
    })
}

/// The accounts and regions this execution rolls out in. `None` is the home account or region,
/// named only when the reach has more than one of them, so a home-only rollout looks as it
/// always did and a wider one names every target's place.
#[derive(Debug, Clone, PartialEq)]
pub struct Reach {
    pub accounts: Vec<Option<String>>,
    pub regions: Vec<Option<String>>,
    /// Known when accounts are configured: that one is entered with the functions' own role.
    home_account: Option<String>,
}

impl Reach {
    /// The regions by name (the home one too).
    pub fn region_names(&self, clients: &Clients) -> Vec<String> {
        self.regions
            .iter()
            .map(|r| r.clone().unwrap_or_else(|| clients.region.clone()))
            .collect()
    }

    /// The configured reach, narrowed by a manual start's `accounts` and `regions`.
    pub async fn of(clients: &Clients, config: &Config, overrides: &Overrides) -> StepResult<Self> {
        let mut configured = config.accounts.clone();
        if !config.organizational_units.is_empty() {
            let conf = clients.sdk_config().ok_or_else(|| {
                StepError::invalid("no AWS configuration to list the organizational units")
            })?;
            let organizations = aws_sdk_organizations::Client::new(conf);
            for account in
                organization_accounts(&organizations, &config.organizational_units).await?
            {
                if !configured.contains(&account) {
                    configured.push(account);
                }
            }
        }
        let accounts = narrow(
            "account",
            "TARGET_ACCOUNTS",
            &configured,
            overrides.accounts.as_deref(),
            rollout_core::reach::validate_account,
        )?;
        let regions = narrow(
            "region",
            "TARGET_REGIONS",
            &config.regions,
            overrides.regions.as_deref(),
            rollout_core::reach::validate_region,
        )?;
        let home_account = if accounts.is_empty() {
            None
        } else {
            Some(clients.home_account().await?)
        };
        Ok(Self {
            accounts: named_unless_home(accounts, home_account.as_deref()),
            regions: named_unless_home(regions, Some(&clients.region)),
            home_account,
        })
    }

    /// Gets into every account of the reach and returns clients for every account and region.
    /// Accounts whose workload role refuses are named together, before anything changes.
    async fn enter(&self, clients: &Clients, execution: &str) -> StepResult<Vec<Place>> {
        let mut refused = Vec::new();
        let mut places = Vec::new();
        for account in &self.accounts {
            let credentials = match account {
                Some(account) if Some(account) != self.home_account.as_ref() => {
                    match clients.enter(account, execution).await {
                        Ok(c) => Some(c),
                        Err(StepError::PreflightFailed { reason, .. }) => {
                            refused.push((account.clone(), reason));
                            continue;
                        }
                        Err(other) => return Err(other),
                    }
                }
                _ => None,
            };
            for region in &self.regions {
                places.push(Place {
                    account: account.clone(),
                    region: region.clone(),
                    clients: clients.in_place(region.as_deref(), credentials.clone())?,
                });
            }
        }
        if !refused.is_empty() {
            return Err(StepError::PreflightFailed {
                group: refused
                    .iter()
                    .map(|(a, _)| format!("account {a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: refused
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        Ok(places)
    }
}

/// The active accounts of `units` and of every unit below them, in the order listed. Listing an
/// organization works only from its management account or a delegated administrator: a refusal
/// names the unit and says so, before anything changes.
pub async fn organization_accounts(
    organizations: &aws_sdk_organizations::Client,
    units: &[String],
) -> StepResult<Vec<String>> {
    use aws_sdk_organizations::types::AccountStatus;
    let refused = |unit: &str, err: StepError| match err {
        StepError::AwsRequestFailed { message, .. } => StepError::PreflightFailed {
            group: format!("organizational unit {unit}"),
            reason: format!(
                "its accounts could not be listed ({message}); listing works only from the organization's management account or a delegated administrator"
            ),
        },
        other => other,
    };
    let mut accounts = Vec::new();
    for unit in units {
        let mut pending = vec![unit.clone()];
        while let Some(parent) = pending.pop() {
            let mut pages = organizations
                .list_accounts_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| refused(unit, StepError::from_sdk("ListAccountsForParent", e)))?;
                for account in page.accounts() {
                    if account.status() == Some(&AccountStatus::Active)
                        && let Some(id) = account.id()
                        && !accounts.iter().any(|a| a == id)
                    {
                        accounts.push(id.to_string());
                    }
                }
            }
            let mut children = organizations
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = children.next().await {
                let page = page.map_err(|e| {
                    refused(
                        unit,
                        StepError::from_sdk("ListOrganizationalUnitsForParent", e),
                    )
                })?;
                pending.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|u| u.id().map(str::to_string)),
                );
            }
        }
    }
    if accounts.is_empty() {
        return Err(StepError::invalid(format!(
            "TARGET_ORGANIZATIONAL_UNITS ({}) hold no active account",
            units.join(", ")
        )));
    }
    Ok(accounts)
}

/// The configured values (the home one alone when none is configured), narrowed to `asked`.
fn narrow(
    what: &str,
    setting: &str,
    configured: &[String],
    asked: Option<&[String]>,
    check: impl Fn(&str) -> StepResult<()>,
) -> StepResult<Vec<String>> {
    let Some(asked) = asked else {
        return Ok(configured.to_vec());
    };
    let asked = rollout_core::config::checked(asked.to_vec(), check)?;
    if asked.is_empty() {
        return Err(StepError::invalid(format!("{what}s is empty")));
    }
    if configured.is_empty() {
        return Err(StepError::invalid(format!(
            "the start names {what}s, but {setting} is not set (nor, for accounts, TARGET_ORGANIZATIONAL_UNITS): this deployment rolls out in its own {what} only"
        )));
    }
    let outside: Vec<&String> = asked.iter().filter(|a| !configured.contains(a)).collect();
    if !outside.is_empty() {
        return Err(StepError::invalid(format!(
            "{what}(s) {} are not in {setting} ({})",
            outside
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            configured.join(", ")
        )));
    }
    Ok(asked)
}

/// `values` as places: all `None` (the home one) when the reach is the home one alone.
fn named_unless_home(values: Vec<String>, home: Option<&str>) -> Vec<Option<String>> {
    if values.is_empty() || (values.len() == 1 && Some(values[0].as_str()) == home) {
        vec![None]
    } else {
        values.into_iter().map(Some).collect()
    }
}

/// One account and region of the reach, with clients acting there.
pub struct Place {
    pub account: Option<String>,
    pub region: Option<String>,
    pub clients: Clients,
}

impl Place {
    fn name(&self, group: &str) -> String {
        place_name(self.account.as_deref(), self.region.as_deref(), group)
    }

    fn describe(&self) -> String {
        match (&self.account, &self.region) {
            (None, None) => "the home account and region".into(),
            (a, r) => format!(
                "account {} in {}",
                a.as_deref().unwrap_or("(home)"),
                r.as_deref().unwrap_or("the home region")
            ),
        }
    }
}

/// The AMI of every region of the reach (`None` key: the home region, the trigger's own AMI), or
/// `None` where no usable AMI was found. Looked for, in order: the Image Builder output for that
/// region, the SSM parameter of the same name there, an AMI of the same name and owner there.
async fn regional_amis(
    clients: &Clients,
    config: &Config,
    reach: &Reach,
    source: &AmiSource,
    ami: &Ami,
    now: Epoch,
) -> StepResult<BTreeMap<Option<String>, Option<Ami>>> {
    let mut amis = BTreeMap::new();
    for region in &reach.regions {
        let Some(name) = region.as_deref().filter(|r| *r != clients.region) else {
            amis.insert(region.clone(), Some(ami.clone()));
            continue;
        };
        let there = clients.in_place(Some(name), None)?;
        let found = ami::find_regional(&there, source, ami).await?;
        let usable = match found {
            Some(image) => Some(usable_ami(&image, &config.allowed_ami_owners, now)?),
            None => None,
        };
        amis.insert(region.clone(), usable);
    }
    Ok(amis)
}

/// Refuses, naming the regions and their targets, a plan with targets in a region where the AMI
/// was not found.
fn refuse_missing_amis(
    ami: &Ami,
    regional: &BTreeMap<Option<String>, Option<Ami>>,
    found: &[(&Place, Vec<String>)],
) -> StepResult<()> {
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (place, targets) in found {
        if let (Some(region), Some(None)) = (&place.region, regional.get(&place.region)) {
            let names = missing.entry(region.as_str()).or_default();
            names.extend(targets.iter().map(|t| place.name(t)));
        }
    }
    missing.retain(|_, names| !names.is_empty());
    if missing.is_empty() {
        return Ok(());
    }
    Err(StepError::AmiNotUsable {
        ami: ami.id.clone(),
        reason: missing
            .into_iter()
            .map(|(region, names)| {
                format!(
                    "no AMI named {:?} from owner {} in {region}, so its targets {} are refused",
                    ami.name,
                    ami.owner_id,
                    names.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The copies to make (`AMI_DISTRIBUTION=copy`): one per region with targets and no AMI, shared
/// with the workload accounts that have targets there. Such a copy must be encrypted with a
/// customer managed key of that region: the default EBS key cannot be shared.
fn plan_copies(
    clients: &Clients,
    config: &Config,
    reach: &Reach,
    ami: &Ami,
    regional: &BTreeMap<Option<String>, Option<Ami>>,
    found: &[(&Place, Vec<String>)],
    launching_groups: &BTreeSet<(Option<String>, String)>,
) -> StepResult<Vec<AmiCopy>> {
    let mut copies: BTreeMap<String, AmiCopy> = BTreeMap::new();
    for (place, targets) in found {
        let (Some(region), Some(None)) = (&place.region, regional.get(&place.region)) else {
            continue;
        };
        if targets.is_empty() {
            continue;
        }
        let copy = copies.entry(region.clone()).or_insert_with(|| AmiCopy {
            region: region.clone(),
            source: ami.clone(),
            source_region: clients.region.clone(),
            kms_key_id: config.copy_kms_keys.get(region).cloned(),
            accounts: Vec::new(),
            group_accounts: Some(Vec::new()),
            image_id: None,
            started_at: None,
        });
        if let Some(account) = &place.account
            && Some(account) != reach.home_account.as_ref()
            && !copy.accounts.contains(account)
        {
            copy.accounts.push(account.clone());
            if launching_groups.contains(&(place.region.clone(), account.clone()))
                && let Some(granted) = copy.group_accounts.as_mut()
            {
                granted.push(account.clone());
            }
        }
    }
    for copy in copies.values() {
        if copy.kms_key_id.is_none() && !copy.accounts.is_empty() {
            return Err(StepError::invalid(format!(
                "AMI_COPY_KMS_KEYS has no key for {}: its copy is shared with account(s) {}, and a copy encrypted with the default EBS key cannot be shared",
                copy.region,
                copy.accounts.join(", ")
            )));
        }
    }
    Ok(copies.into_values().collect())
}

/// Refuses a workload account that cannot see (and so cannot launch) its region's AMI.
/// The AMI `id` a build distributed to `place`'s account, checked there as the trigger's AMI is.
async fn account_ami(place: &Place, id: &str, config: &Config, now: Epoch) -> StepResult<Ami> {
    let image = describe_images(&place.clients, &[id.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StepError::AmiNotUsable {
            ami: id.to_string(),
            reason: format!(
                "the build distributed it to {}, which cannot see it",
                place.describe()
            ),
        })?;
    usable_ami(&image, &config.allowed_ami_owners, now)
}

async fn ensure_launchable_there(place: &Place, ami: &Ami) -> StepResult<Image> {
    let seen = describe_images(&place.clients, std::slice::from_ref(&ami.id)).await?;
    seen.into_iter()
        .next()
        .ok_or_else(|| StepError::PreflightFailed {
            group: format!("account {}", place.account.as_deref().unwrap_or("?")),
            reason: format!(
                "{} cannot see {} ({}): share it with the account (launch permission, and the KMS key of its snapshots)",
                place.describe(),
                ami.id,
                ami.name
            ),
        })
}

/// Refuses a workload account that could see the AMI but not launch from it: its snapshots are
/// encrypted under a key the account (or, for groups, its Auto Scaling role) may not use. The
/// keys are read where the snapshots are visible, in the AMI's owner account when that is home.
async fn ensure_key_usable(
    clients: &Clients,
    place: &Place,
    account: &str,
    ami: &Ami,
    seen: &Image,
    launchers: keys::Launchers,
) -> StepResult<()> {
    if keys::encrypted_snapshots(seen).is_empty() {
        return Ok(());
    }
    let home = clients.home_account().await?;
    let owner = match ami.owner_id == home {
        true => Some(clients.in_place(place.region.as_deref(), None)?),
        false => None,
    };
    for key in keys::snapshot_keys(owner.as_ref(), seen).await? {
        let key_home = match keys::key_account(&key) == Some(home.as_str()) {
            true => Some(clients.in_place(keys::key_region(&key), None)?),
            false => None,
        };
        if let Some(reason) =
            keys::launch_refusal(&place.clients, key_home.as_ref(), account, &key, launchers)
                .await?
        {
            return Err(StepError::PreflightFailed {
                group: format!("account {account}"),
                reason: format!(
                    "{} ({}) in {}: {reason}",
                    ami.id,
                    ami.name,
                    place.describe()
                ),
            });
        }
    }
    Ok(())
}

/// What resolve-ami learned about one group, gathered in a few batched calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupFacts {
    pub name: String,
    /// Where the group lives (`None`: home), as the plan names it.
    pub account: Option<String>,
    pub region: Option<String>,
    /// The AMI of the group's region, when not the trigger's own.
    pub ami: Option<Ami>,
    /// How the group refers to its template, or why it cannot be refreshed with rollback.
    pub template: Option<Result<GroupTemplate, String>>,
    /// The template's id and default version number.
    pub template_id: Option<String>,
    pub default_version: i64,
    /// The ImageId of the version the group runs, with that version's number.
    pub current: Option<(i64, String)>,
    /// The architecture of the current AMI, `None` when that AMI no longer exists.
    pub current_architecture: Option<String>,
    /// AMIs of the group's instances (only read when the template is already on the new AMI).
    pub instance_images: Option<Vec<String>>,
    /// Execution whose refresh to the new AMI is running on the group right now.
    pub rollout_in_progress: Option<String>,
    pub ecs: Option<EcsCapacity>,
    /// The group's tags (the workload role changes only opted-in groups).
    pub tags: BTreeMap<String, String>,
    /// Its suspended processes (`Launch`, `Terminate`, `InstanceRefresh` stop a refresh).
    pub suspended: Vec<String>,
}

impl GroupFacts {
    fn target_name(&self) -> String {
        place_name(self.account.as_deref(), self.region.as_deref(), &self.name)
    }
}

pub(crate) enum Decision {
    Roll(Box<Target>),
    Skip(String),
    Refuse(String),
    WrongArchitecture(String),
}

fn decide(ami: &Ami, g: &GroupFacts, settings: &RefreshSettings) -> Decision {
    let ami = g.ami.as_ref().unwrap_or(ami);
    if let Some(reason) =
        rollout_core::reach::workload_opt_in_refusal(g.account.as_deref(), &g.tags)
    {
        return Decision::Refuse(reason);
    }
    if let Some(reason) = fleet::suspension_refusal(&g.name, &g.suspended) {
        return match settings.on_suspended_processes.unwrap_or_default() {
            OnSuspendedProcesses::Refuse => Decision::Refuse(reason),
            OnSuspendedProcesses::Skip => Decision::Skip(reason),
        };
    }
    let template = match &g.template {
        Some(Ok(t)) => t,
        Some(Err(reason)) => return Decision::Refuse(reason.clone()),
        None => return Decision::Refuse("its launch template could not be read".into()),
    };
    if settings.replaces_roots() && (!template.mixed_instances || template.overrides == 0) {
        return Decision::Refuse(format!(
            "its refreshStrategy is {REPLACE_ROOT_VOLUME}, which AWS allows only for a group with a \
             mixed instances policy whose instance type overrides each name the AMI; give it one, \
             or use Rolling"
        ));
    }
    let Some(template_id) = g.template_id.clone() else {
        return Decision::Refuse(format!(
            "its launch template {} does not exist",
            template
                .name
                .as_deref()
                .or(template.id.as_deref())
                .unwrap_or("?")
        ));
    };
    let Some((version, image_id)) = g.current.clone() else {
        return Decision::Refuse(format!(
            "version {} of launch template {template_id} does not exist",
            template.version
        ));
    };
    if image_id.starts_with("resolve:ssm:") {
        return Decision::Refuse(format!(
            "launch template {template_id} version {version} takes its ImageId from {image_id}; native rollback does not support SSM parameters"
        ));
    }
    if let Some(execution) = &g.rollout_in_progress {
        return Decision::Skip(format!(
            "execution {execution} is already rolling out {} to it",
            ami.id
        ));
    }
    if image_id == ami.id {
        if g.instance_images
            .as_ref()
            .is_some_and(|imgs| imgs.iter().all(|i| *i == ami.id))
        {
            return Decision::Skip(format!("already on {}", ami.id));
        }
    } else {
        match &g.current_architecture {
            None => {
                return Decision::Refuse(format!(
                    "its current AMI {image_id} no longer exists, so a rollback could not launch it"
                ));
            }
            Some(arch) if *arch != ami.architecture => {
                return Decision::WrongArchitecture(format!(
                    "{} is {}, but group {} runs {arch} ({image_id})",
                    ami.id,
                    ami.architecture,
                    g.target_name()
                ));
            }
            Some(_) => {}
        }
    }
    Decision::Roll(Box::new(Target {
        kind: TargetKind::AutoScalingGroup,
        account: g.account.clone(),
        region: g.region.clone(),
        group: g.name.clone(),
        instance_name: None,
        ami: ami.clone(),
        rollback_point: RollbackPoint::Template(TemplatePoint {
            launch_template_id: template_id,
            version,
            image_id,
            reference: VersionReference::parse(&template.version),
            default_version: g.default_version,
        }),
        mixed_instances: template.mixed_instances,
        ecs: g.ecs.clone(),
        window: None,
    }))
}

/// Decides every group and orders the targets into waves. Refusals fail the whole plan so that
/// nothing changes until the operator fixes or excludes the group.
pub fn plan(
    ami: &Ami,
    groups: Vec<GroupFacts>,
    settings: &SettingsMap,
    waves: Option<&[Vec<String>]>,
) -> StepResult<Plan> {
    plan_with_instances(ami, groups, Vec::new(), settings, waves)
}

/// `plan`, with standalone instances beside the groups.
pub fn plan_with_instances(
    ami: &Ami,
    groups: Vec<GroupFacts>,
    standalone: Vec<PlacedInstance>,
    settings: &SettingsMap,
    waves: Option<&[Vec<String>]>,
) -> StepResult<Plan> {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut wrong_arch = Vec::new();
    let decisions = groups
        .iter()
        .map(|g| {
            (
                g.target_name(),
                decide(ami, g, &settings.for_group(&g.name)),
            )
        })
        .chain(
            standalone
                .iter()
                .map(|i| (i.target_name(), instances::decide(ami, i))),
        );
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
    if !wrong_arch.is_empty() {
        return Err(StepError::AmiNotUsable {
            ami: ami.id.clone(),
            reason: format!("architecture mismatch: {}", wrong_arch.join("; ")),
        });
    }
    match refused.as_slice() {
        [] => {}
        [(group, reason)] => {
            return Err(StepError::PreflightFailed {
                group: group.clone(),
                reason: reason.clone(),
            });
        }
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
            return Err(StepError::PreflightFailed { group, reason });
        }
    }
    let target_count = targets.len();
    check_size(target_count)?;
    let names: Vec<String> = targets.iter().map(|t| t.group.clone()).collect();
    let planned: BTreeSet<String> = targets.iter().map(Target::name).collect();
    let notes = groups
        .iter()
        .filter(|g| planned.contains(&g.target_name()))
        .filter_map(|g| {
            fleet::suspension_note(&g.suspended).map(|note| PlanNote {
                target: g.target_name(),
                note,
            })
        })
        .collect();
    let plan = Plan {
        trigger: String::new(),
        ami: ami.clone(),
        regional_amis: BTreeMap::new(),
        copies: Vec::new(),
        waves: order_waves(targets, settings, waves)?,
        settings: settings.retain_groups(names.iter().map(String::as_str)),
        skipped,
        skipped_count: 0,
        settings_version: None,
        target_count,
        max_concurrency: rollout_core::config::DEFAULT_MAX_CONCURRENCY,
        instance_concurrency: 1,
        rollback_scope: Default::default(),
        undo: None,
        parameter: None,
        approvals: BTreeMap::new(),
        notes,
    };
    Ok(plan)
}

/// Refuses, before anything changes, a plan larger than one execution rolls out.
fn check_size(target_count: usize) -> StepResult<()> {
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
fn order_waves(
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
            .entry(settings.for_group(&t.group).wave())
            .or_default()
            .push(t);
    }
    Ok(numbered.into_values().collect())
}

fn wave_entry_selects(entry: &str, name: &str, target: &Target) -> bool {
    if let Some(account) = entry.strip_prefix("account:") {
        target.account.as_deref() == Some(account)
    } else if let Some(region) = entry.strip_prefix("region:") {
        target.region.as_deref() == Some(region)
    } else {
        entry == name || entry == target.group || target.instance_name.as_deref() == Some(entry)
    }
}

/// Which groups and standalone instances the rollout is for: what a manual start names
/// (`targets`, `instances`), or else the target tag plus `TARGET_ASGS` and `TARGET_INSTANCES`;
/// minus exclusions (group names, or target names such as `111111111111/eu-west-1/web`).
struct Selection {
    names: Vec<String>,
    tag: Option<(String, String)>,
    excluded: HashSet<String>,
    instances: instances::Selection,
}

impl Selection {
    fn of(config: &Config, overrides: &Overrides) -> StepResult<Self> {
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
    fn check_found<'a>(&self, found: impl Iterator<Item = &'a str>) -> StepResult<()> {
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
    fn exclude(
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

    fn nothing_found(&self) -> String {
        match &self.tag {
            Some((k, v)) if self.names.is_empty() && self.instances.names.is_empty() => {
                format!("no Auto Scaling group or running instance is tagged {k}={v}")
            }
            _ => "every selected group is excluded".to_string(),
        }
    }
}

/// The selected groups of one account and region, by name.
async fn select_groups(
    clients: &Clients,
    selection: &Selection,
) -> StepResult<BTreeMap<String, AutoScalingGroup>> {
    let mut groups: BTreeMap<String, AutoScalingGroup> = BTreeMap::new();
    for chunk in selection.names.chunks(50) {
        let out = clients
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeAutoScalingGroups", e))?;
        for g in out.auto_scaling_groups() {
            groups.insert(
                g.auto_scaling_group_name().unwrap_or_default().to_string(),
                g.clone(),
            );
        }
    }
    if let Some((key, value)) = &selection.tag {
        let mut pages = clients
            .autoscaling
            .describe_auto_scaling_groups()
            .filters(
                AsgFilter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
            .max_records(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("DescribeAutoScalingGroups", e))?;
            for g in page.auto_scaling_groups() {
                groups.insert(
                    g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    g.clone(),
                );
            }
        }
    }
    Ok(groups)
}

/// Reads templates, AMIs, instances and ECS capacity for `groups` in batched calls.
async fn gather_facts(
    clients: &Clients,
    groups: &[AutoScalingGroup],
    ami: &Ami,
    settings: &SettingsMap,
) -> StepResult<Vec<GroupFacts>> {
    let (templates, ecs) = tokio::try_join!(
        describe_template_heads(clients),
        ecs_capacity(clients, groups)
    )?;
    let mut facts: Vec<GroupFacts> = groups
        .iter()
        .map(|g| {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            let template = group_template(g);
            let head = template.as_ref().ok().and_then(|t| {
                t.id.as_ref().and_then(|id| templates.get(id)).or_else(|| {
                    t.name
                        .as_ref()
                        .and_then(|n| templates.values().find(|h| h.name == *n))
                })
            });
            let ecs = ecs
                .get(g.auto_scaling_group_arn().unwrap_or_default())
                .cloned()
                .or_else(|| {
                    settings
                        .for_group(&name)
                        .ecs_cluster
                        .map(|cluster| EcsCapacity {
                            cluster,
                            capacity_provider: None,
                            managed_termination_protection: false,
                        })
                });
            GroupFacts {
                template_id: head.map(|h| h.id.clone()),
                default_version: head.map_or(0, |h| h.default),
                ecs,
                template: Some(template),
                name,
                tags: g
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
                suspended: fleet::suspended_processes(g),
                ..Default::default()
            }
        })
        .collect();

    // The version each group runs, and its ImageId: from the heads, or one call per odd version.
    for (f, g) in facts.iter_mut().zip(groups) {
        let (Some(Ok(t)), Some(id)) = (&f.template, &f.template_id) else {
            continue;
        };
        let Some(head) = templates.get(id) else {
            continue;
        };
        let number = launch_template::resolve_version(&t.version, head.latest, head.default);
        let image = match head.images.get(&number) {
            Some(image) => Some(image.clone()),
            None => version_image(clients, id, number).await?,
        };
        f.current = image.map(|i| (number, i));
        // A duplicate trigger: our marker on the newest version, for this AMI, with its refresh running.
        if let Some(execution) = head.latest_marker_for(&ami.id) {
            let running = recent_refreshes(clients, &f.name)
                .await?
                .into_iter()
                .any(|r| r.is_active() && r.targets(id, head.latest));
            f.rollout_in_progress = running.then_some(execution);
        }
        if f.current
            .as_ref()
            .is_some_and(|(_, image)| *image == ami.id)
        {
            let ids = fleet::in_service_instances(g);
            f.instance_images = Some(
                fleet::instance_images(clients, &ids)
                    .await?
                    .into_values()
                    .collect(),
            );
        }
    }

    // Architectures of the AMIs the groups run now (one call for all of them).
    let current: Vec<String> = facts
        .iter()
        .filter_map(|f| f.current.as_ref().map(|(_, i)| i.clone()))
        .filter(|i| i.starts_with("ami-"))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let arch: HashMap<String, String> = describe_images(clients, &current)
        .await?
        .iter()
        .filter(|i| {
            i.state()
                .is_some_and(|s| *s == aws_sdk_ec2::types::ImageState::Available)
        })
        .filter_map(|i: &Image| {
            Some((
                i.image_id()?.to_string(),
                i.architecture()?.as_str().to_string(),
            ))
        })
        .collect();
    for f in &mut facts {
        f.current_architecture = f
            .current
            .as_ref()
            .and_then(|(_, image)| arch.get(image).cloned());
    }
    Ok(facts)
}

/// A launch template's latest and default versions, with their ImageIds.
#[derive(Debug, Default)]
struct TemplateHead {
    id: String,
    name: String,
    latest: i64,
    default: i64,
    images: HashMap<i64, String>,
    latest_description: Option<String>,
}

impl TemplateHead {
    /// The execution that made the latest version for `ami`, if ami-rollout made it.
    fn latest_marker_for(&self, ami: &str) -> Option<String> {
        let marker = Marker::parse(self.latest_description.as_deref()?)?;
        (self.images.get(&self.latest).map(String::as_str) == Some(ami)).then_some(marker.execution)
    }
}

/// The `$Latest` and `$Default` versions of every launch template, in a few pages (EC2 accepts
/// these two version names without a template id).
async fn describe_template_heads(clients: &Clients) -> StepResult<HashMap<String, TemplateHead>> {
    let mut heads: HashMap<String, TemplateHead> = HashMap::new();
    let mut pages = clients
        .ec2
        .describe_launch_template_versions()
        .versions("$Latest")
        .versions("$Default")
        .max_results(200)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::from_sdk("DescribeLaunchTemplateVersions", e))?;
        for v in page.launch_template_versions() {
            let (Some(id), Some(number)) = (v.launch_template_id(), v.version_number()) else {
                continue;
            };
            let head = heads.entry(id.to_string()).or_insert_with(|| TemplateHead {
                id: id.to_string(),
                ..Default::default()
            });
            head.name = v.launch_template_name().unwrap_or_default().to_string();
            if let Some(image) = v.launch_template_data().and_then(|d| d.image_id()) {
                head.images.insert(number, image.to_string());
            }
            if v.default_version() == Some(true) {
                head.default = number;
            }
            if number >= head.latest {
                head.latest = number;
                head.latest_description = v.version_description().map(str::to_string);
            }
        }
    }
    Ok(heads)
}

async fn version_image(
    clients: &Clients,
    template_id: &str,
    version: i64,
) -> StepResult<Option<String>> {
    if version < 1 {
        return Ok(None);
    }
    let out = clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .versions(version.to_string())
        .send()
        .await;
    match out {
        Ok(out) => Ok(out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.image_id())
            .map(str::to_string)),
        Err(err)
            if err
                .as_service_error()
                .and_then(aws_smithy_types::error::metadata::ProvideErrorMetadata::code)
                .is_some_and(|c| c.starts_with("InvalidLaunchTemplate")) =>
        {
            Ok(None)
        }
        Err(err) => Err(StepError::from_sdk("DescribeLaunchTemplateVersions", err)),
    }
}

/// ECS capacity providers backed by `groups`, keyed by group ARN, with the cluster using each.
async fn ecs_capacity(
    clients: &Clients,
    groups: &[AutoScalingGroup],
) -> StepResult<HashMap<String, EcsCapacity>> {
    let wanted: HashSet<&str> = groups
        .iter()
        .filter_map(AutoScalingGroup::auto_scaling_group_arn)
        .collect();
    let cluster_arns = rollout_core::ecs::cluster_arns(clients).await?;
    let mut cluster_of_provider: HashMap<String, String> = HashMap::new();
    for chunk in cluster_arns.chunks(100) {
        let out = clients
            .ecs
            .describe_clusters()
            .set_clusters(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeClusters", e))?;
        for c in out.clusters() {
            for provider in c.capacity_providers() {
                cluster_of_provider.insert(
                    provider.clone(),
                    c.cluster_name().unwrap_or_default().to_string(),
                );
            }
        }
    }
    let providers: Vec<String> = cluster_of_provider.keys().cloned().collect();
    let mut capacity = HashMap::new();
    for chunk in providers.chunks(100) {
        let out = clients
            .ecs
            .describe_capacity_providers()
            .set_capacity_providers(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeCapacityProviders", e))?;
        for p in out.capacity_providers() {
            let (Some(name), Some(asg)) = (p.name(), p.auto_scaling_group_provider()) else {
                continue;
            };
            let arn = asg.auto_scaling_group_arn();
            if !wanted.contains(arn) {
                continue;
            }
            let mtp = asg
                .managed_termination_protection()
                .is_some_and(|m| *m == aws_sdk_ecs::types::ManagedTerminationProtection::Enabled);
            capacity.insert(
                arn.to_string(),
                EcsCapacity {
                    cluster: cluster_of_provider[name].clone(),
                    capacity_provider: Some(name.to_string()),
                    managed_termination_protection: mtp,
                },
            );
        }
    }
    Ok(capacity)
}

#[cfg(test)]
mod tests;
