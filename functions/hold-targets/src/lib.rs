//! hold-targets: a target is held by at most one execution at a time, and the AMI a held target
//! would roll back to cannot be deregistered while it is held.
//!
//! Auto Scaling tags cannot be written conditionally, so a hold is a DynamoDB item taken with a
//! conditional put; a non-propagating tag on the group mirrors it for people to see. The state
//! machine takes the holds before its first change and releases them when it ends by success or
//! by a finished rollback; EventBridge releases them for executions that end without running
//! another state (ABORTED, TIMED_OUT). An execution stopped for a redrive keeps them.
//!
//! The table holds four kinds of items, by `key`:
//! - `target#asg#<account>#<region>#<group>`: `holder` (execution ARN), `ami`, `since`;
//! - `ami#<account>#<region>#<image>`: `users` (the executions relying on it), `previous` (its
//!   deregistration protection before the first of them);
//! - `execution#<arn>`: `targets` and `amis`, what that execution may hold, so a release needs
//!   nothing but the execution's ARN; `waveStop`, the first failure of a wave; `windowWaiters`,
//!   the targets parked until their window;
//! - `window-wait#<arn>#<target>`: `token`, a parked target's callback token (gates.rs), gone
//!   once it wakes or its execution is released.

pub mod gates;
mod table;

use rollout_core::FromSdk;
use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::types::{Filter, Tag};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_sfn::types::{ExecutionRedriveStatus, ExecutionStatus};
use rollout_core::ami::describe_images;
pub use rollout_core::holds::execution_home;
use rollout_core::holds::{self, INSTANCE_KEY_KIND};
use rollout_core::model::{
    Epoch, PlanSummary, Released, Target, TargetKind, WaveOutcome, WaveStop,
};
use rollout_core::stop::{StopSignal, execution_key};
use rollout_core::{Clients, StepError, StepResult};
use serde::Deserialize;
use serde_json::Value;
pub use table::HoldClients;
use table::{is_condition_failure, s, set, string_set, text};

/// The tag that shows who holds a group.
pub const HOLD_TAG: &str = "ami-rollout:held-by";

/// What the function is asked to do.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum HoldRequest {
    /// Before the first change: hold every target of the plan. Returns the plan, emptied when
    /// another execution already rolls the same AMI out (a duplicate trigger).
    Take {
        execution: String,
        plan: Box<PlanSummary>,
    },
    /// Once copies of the AMI were made and written into the plan: protects them, like the
    /// AMIs protected when the holds were taken. Returns the plan unchanged.
    ProtectCopies {
        execution: String,
        plan: Box<PlanSummary>,
    },
    /// A target failed (from its child execution): records why, first failure wins, so no other
    /// target of the wave starts a change. Returns the stop in force.
    StopWave { execution: String, stop: WaveStop },
    /// After a wave's Distributed Map: did a target fail?
    WaveOutcome { execution: String },
    /// When the execution ends (by success or a finished rollback), or by hand.
    Release { execution: String },
    /// Before a target's change starts: is it inside its maintenance window?
    CheckWindow {
        run: Box<rollout_core::model::TargetRun>,
    },
    /// Outside it: park the target's callback token until the window opens (its timeout) or the
    /// wave stops (the stop wakes it).
    WaitForWindow {
        run: Box<rollout_core::model::TargetRun>,
        token: String,
    },
    /// After a wave with an approval gate (a task token): store the token, tell the approvers.
    AskApproval(gates::AskApproval),
    /// The gate woke (or timed out): what did the approvers decide?
    ReadDecision(gates::ReadDecision),
}

/// The EventBridge event Step Functions sends when an execution's status changes.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct StatusChange {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub detail: StatusChangeDetail,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeDetail {
    pub execution_arn: String,
    pub status: rollout_core::model::ExecutionStatus,
}

pub async fn handle(clients: &HoldClients, payload: Value) -> StepResult<Value> {
    let out = if payload.get("detail-type").is_some() {
        let change: StatusChange = rollout_core::error::parse_input("hold-targets", payload)?;
        serde_json::to_value(on_status_change(clients, &change).await?)
    } else {
        match rollout_core::error::parse_input("hold-targets", payload)? {
            HoldRequest::Take { execution, plan } => serde_json::to_value(
                take(clients, &execution, *plan, rollout_core::clock::now()).await?,
            ),
            HoldRequest::ProtectCopies { execution, plan } => {
                protect_copies(clients, &execution, &plan).await?;
                serde_json::to_value(plan)
            }
            HoldRequest::StopWave { execution, stop } => {
                let stop = stop_signal(clients).raise(&execution, &stop).await?;
                let woken = gates::wake_waiters(clients, &execution).await?;
                tracing::info!(execution, woken, "wave stopped");
                serde_json::to_value(stop)
            }
            HoldRequest::WaveOutcome { execution } => {
                let stop = stop_signal(clients).read(&execution).await?;
                serde_json::to_value(WaveOutcome {
                    failed: stop.is_some(),
                    stop,
                })
            }
            HoldRequest::Release { execution } => {
                serde_json::to_value(release(clients, &execution).await?)
            }
            HoldRequest::CheckWindow { run } => serde_json::to_value(
                gates::check_window(clients, &run, rollout_core::clock::now()).await?,
            ),
            HoldRequest::WaitForWindow { run, token } => {
                gates::wait_for_window(clients, &run, &token).await?;
                Ok(Value::Null)
            }
            HoldRequest::AskApproval(ask) => serde_json::to_value(
                gates::ask_approval(clients, &ask, rollout_core::clock::now()).await?,
            ),
            HoldRequest::ReadDecision(read) => serde_json::to_value(
                gates::read_decision(clients, &read, rollout_core::clock::now()).await?,
            ),
        }
    };
    out.map_err(|e| StepError::invalid(format!("hold-targets output: {e}")))
}

use rollout_core::store::execution_name;

/// The hold key of `target` (core's `holds::target_key`, where every step reads it).
fn target_key(home: &Home, target: &Target) -> String {
    holds::target_key(&home.account, &home.region, target)
}

fn is_instance_key(key: &str) -> bool {
    key.split('#').nth(1) == Some(INSTANCE_KEY_KIND)
}

fn ami_key(account: &str, region: &str, image: &str) -> String {
    format!("ami#{account}#{region}#{image}")
}

/// The account, region and group (or image) a target or AMI key names. Group names may hold `#`,
/// so the key is split from the left.
fn key_parts(key: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = if key.starts_with("target#") {
        key.splitn(5, '#').skip(2).collect()
    } else {
        key.splitn(4, '#').skip(1).collect()
    };
    match parts.as_slice() {
        [account, region, name] => Some((account, region, name)),
        _ => None,
    }
}

/// The execution's own account and region, where targets that name none live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub account: String,
    pub region: String,
}

impl Home {
    fn of(execution: &str) -> StepResult<Self> {
        let (account, region) = execution_home(execution)?;
        Ok(Self { account, region })
    }

    fn place_of<'a>(&'a self, target: &'a Target) -> (&'a str, &'a str) {
        (
            target.account.as_deref().unwrap_or(&self.account),
            target.region.as_deref().unwrap_or(&self.region),
        )
    }
}

impl HoldClients {
    /// Fleet clients acting in `account` and `region` for `execution` (whose own account and
    /// region are the function's).
    async fn fleet_at(&self, account: &str, region: &str, execution: &str) -> StepResult<Clients> {
        let home = Home::of(execution)?;
        self.fleet
            .at(
                (account != home.account).then_some(account),
                (region != home.region).then_some(region),
                execution,
            )
            .await
    }
}

fn stop_signal(clients: &HoldClients) -> StopSignal {
    StopSignal {
        dynamodb: clients.dynamodb.clone(),
        table: clients.table.clone(),
    }
}

/// Whether an execution that holds something can still come back for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderState {
    /// Running, or stopped FAILED for a redrive: it keeps its holds.
    Alive,
    /// Succeeded, aborted, timed out, failed for good, or gone: its holds may be taken over.
    Ended,
}

/// Decides from the holder's status (never from its age) whether it can come back.
pub fn holder_state(
    status: &ExecutionStatus,
    redrive: Option<&ExecutionRedriveStatus>,
) -> HolderState {
    match status {
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => HolderState::Alive,
        ExecutionStatus::Failed if redrive == Some(&ExecutionRedriveStatus::Redrivable) => {
            HolderState::Alive
        }
        // An aborted or timed-out execution's holds are released by the status-change rule; if that
        // did not run, nobody is coming back for them.
        ExecutionStatus::Succeeded
        | ExecutionStatus::Aborted
        | ExecutionStatus::TimedOut
        | ExecutionStatus::Failed => HolderState::Ended,
        // A status Step Functions adds later: assume it may come back, never take its targets.
        _ => HolderState::Alive,
    }
}

async fn describe_holder(clients: &HoldClients, holder: &str) -> StepResult<HolderState> {
    match clients
        .sfn
        .describe_execution()
        .execution_arn(holder)
        .send()
        .await
    {
        Ok(out) => Ok(holder_state(out.status(), out.redrive_status())),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            Ok(HolderState::Ended)
        }
        Err(err) => Err(StepError::from_sdk("DescribeExecution", err)),
    }
}

/// The outcome of trying to hold one target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    Taken,
    /// Another live execution holds it for the same AMI: this one leaves it to that one.
    HeldForSameAmi(String),
    /// Another live execution holds it for another AMI.
    HeldForOtherAmi {
        holder: String,
        ami: String,
    },
}

/// Puts the hold if nobody holds the target or this execution already does. False when someone
/// else does.
async fn put_hold(
    clients: &HoldClients,
    key: &str,
    execution: &str,
    ami: &str,
    now: Epoch,
) -> StepResult<bool> {
    let put = clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("key", s(key))
        .item("holder", s(execution))
        .item("ami", s(ami))
        .item("since", AttributeValue::N(now.to_string()))
        .condition_expression("attribute_not_exists(#k) OR holder = :me")
        .expression_attribute_names("#k", "key")
        .expression_attribute_values(":me", s(execution));
    match put.send().await {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(is_condition_failure) => Ok(false),
        Err(err) => Err(StepError::from_sdk("PutItem", err)),
    }
}

async fn hold_one(
    clients: &HoldClients,
    key: &str,
    execution: &str,
    ami: &str,
    now: Epoch,
) -> StepResult<Hold> {
    if put_hold(clients, key, execution, ami, now).await? {
        return Ok(Hold::Taken);
    }
    // Held by someone else. A few rounds: a holder can end, or another taker win, meanwhile.
    for _ in 0..3 {
        let item = clients
            .get(key)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("GetItem", e))?;
        let Some(item) = item.item() else {
            // Released meanwhile.
            if put_hold(clients, key, execution, ami, now).await? {
                return Ok(Hold::Taken);
            }
            continue;
        };
        let holder = text(item, "holder").unwrap_or_default();
        let holder_ami = text(item, "ami").unwrap_or_default();
        if holder == execution {
            return Ok(Hold::Taken);
        }
        match describe_holder(clients, &holder).await? {
            HolderState::Alive if holder_ami == ami => return Ok(Hold::HeldForSameAmi(holder)),
            HolderState::Alive => {
                return Ok(Hold::HeldForOtherAmi {
                    holder,
                    ami: holder_ami,
                });
            }
            HolderState::Ended => {
                // Everything it held goes, its share of AMI protection too; then take this one.
                tracing::info!(
                    key,
                    previous = holder,
                    "taking over from an ended execution"
                );
                release(clients, &holder).await?;
                if put_hold(clients, key, execution, ami, now).await? {
                    return Ok(Hold::Taken);
                }
            }
        }
    }
    Err(StepError::AwsTransient {
        operation: "PutItem".into(),
        message: format!("{key}: the hold changed hands three times while taking it; retry"),
    })
}

/// The refusal when an execution's holds were released before it took them (it was aborted or
/// timed out while taking them, or is a redrive of such an execution).
fn released_already(execution: &str) -> StepError {
    StepError::invalid(format!(
        "{execution}: its holds were released when it was aborted or timed out; start a new execution"
    ))
}

/// Records what `execution` may hold, before it holds it, so a release always finds it; refused
/// once the execution has been released.
async fn record(
    clients: &HoldClients,
    execution: &str,
    attribute: &str,
    keys: Vec<String>,
) -> StepResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let recorded = clients
        .update(execution_key(execution))
        .update_expression("ADD #a :keys")
        .condition_expression("attribute_not_exists(released)")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":keys", string_set(keys))
        .send()
        .await;
    match recorded {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(is_condition_failure) => {
            Err(released_already(execution))
        }
        Err(err) => Err(StepError::from_sdk("UpdateItem", err)),
    }
}

/// Whether `execution` has been released (the status-change rule may run while it takes holds:
/// stopping an execution does not stop the function it is running).
async fn was_released(clients: &HoldClients, execution: &str) -> StepResult<bool> {
    let item = clients
        .get(execution_key(execution))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("GetItem", e))?;
    Ok(item.item().is_some_and(|i| i.contains_key("released")))
}

/// Holds every target of `plan` for `execution` and protects the AMIs they rely on. When a
/// live execution already holds one for the same AMI (a duplicate trigger), this one gives back
/// what it took and returns an empty plan: the first one rolls out, never half each. Refuses
/// (`TargetHeld`, having released what it took) when a live execution holds one for another AMI.
pub async fn take(
    clients: &HoldClients,
    execution: &str,
    plan: PlanSummary,
    now: Epoch,
) -> StepResult<PlanSummary> {
    let home = Home::of(execution)?;
    let targets = planned_targets(clients, &plan).await?;
    let keyed: BTreeMap<String, &Target> =
        targets.iter().map(|t| (target_key(&home, t), t)).collect();
    record(
        clients,
        execution,
        "targets",
        keyed.keys().cloned().collect(),
    )
    .await?;
    let mut taken = Vec::new();
    // In key order, so two executions taking the same targets meet on the same first one.
    for (key, target) in &keyed {
        // The AMI the execution brings the target to: an undo's is its rollback point's, so two
        // undos of one rollout are duplicates, and a rollout of another AMI holds the undo off.
        let ami = match plan.undo {
            Some(_) => target.rollback_point.image_id(),
            None => target.ami.id.as_str(),
        };
        match hold_one(clients, key, execution, ami, now).await? {
            Hold::Taken => taken.push(*target),
            Hold::HeldForSameAmi(holder) => {
                release(clients, execution).await?;
                tracing::info!(
                    execution,
                    holder,
                    "a duplicate: left the rollout to the holder"
                );
                return Ok(end_as_duplicate(plan, &holder));
            }
            Hold::HeldForOtherAmi { holder, ami } => {
                release(clients, execution).await?;
                return Err(StepError::TargetHeld {
                    group: target.name(),
                    holder,
                    holder_ami: ami,
                });
            }
        }
    }
    for ((account, region), targets) in by_place(&home, &taken) {
        let fleet = clients.fleet_at(account, region, execution).await?;
        tag_holds(&fleet, execution, &targets).await?;
    }
    protect_amis(clients, execution, &home, &taken).await?;
    if was_released(clients, execution).await? {
        // Released while taking: give back what was taken since.
        release(clients, execution).await?;
        return Err(released_already(execution));
    }
    tracing::info!(execution, taken = taken.len(), "holds taken");
    Ok(plan)
}

/// Leaves the whole plan to `holder`, counting every target as skipped.
fn end_as_duplicate(plan: PlanSummary, holder: &str) -> PlanSummary {
    let left = plan.target_count;
    let mut plan = plan.emptied();
    plan.skipped_count += left;
    let reason = format!(
        "execution {} is rolling the same AMI out (a duplicate trigger); left to it",
        execution_name(holder)
    );
    *plan.skipped_by_reason.entry(reason).or_insert(0) += left;
    plan
}

/// Targets by the account and region they live in.
fn by_place<'a>(
    home: &'a Home,
    targets: &[&'a Target],
) -> BTreeMap<(&'a str, &'a str), Vec<&'a Target>> {
    let mut places: BTreeMap<(&str, &str), Vec<&Target>> = BTreeMap::new();
    for t in targets {
        places.entry(home.place_of(t)).or_default().push(t);
    }
    places
}

async fn tag_holds(fleet: &Clients, execution: &str, taken: &[&Target]) -> StepResult<()> {
    let value = tag_value(execution);
    let (instances, groups): (Vec<&Target>, Vec<&Target>) =
        taken.iter().partition(|t| t.kind == TargetKind::Instance);
    for chunk in instances.chunks(200) {
        fleet
            .ec2
            .create_tags()
            .set_resources(Some(chunk.iter().map(|t| t.resource.clone()).collect()))
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(HOLD_TAG)
                    .value(&value)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StepError::from_sdk("CreateTags", e))?;
    }
    for chunk in groups.chunks(20) {
        fleet
            .autoscaling
            .create_or_update_tags()
            .set_tags(Some(
                chunk
                    .iter()
                    .map(|t| {
                        group_tag(&t.resource)
                            .value(&value)
                            .propagate_at_launch(false)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("CreateOrUpdateTags", e))?;
    }
    Ok(())
}

async fn planned_targets(clients: &HoldClients, plan: &PlanSummary) -> StepResult<Vec<Target>> {
    let store = clients.fleet.store()?;
    let mut targets = Vec::with_capacity(plan.target_count);
    for wave in &plan.waves {
        targets.append(&mut store.wave_targets(plan, wave).await?);
    }
    Ok(targets)
}

/// Protects the copies distribute-ami wrote into the plan's targets: the AMIs of every held
/// target once more, which counts this execution once per AMI whatever the number of calls.
pub async fn protect_copies(
    clients: &HoldClients,
    execution: &str,
    plan: &PlanSummary,
) -> StepResult<()> {
    let home = Home::of(execution)?;
    let targets = planned_targets(clients, plan).await?;
    protect_amis(
        clients,
        execution,
        &home,
        &targets.iter().collect::<Vec<_>>(),
    )
    .await?;
    if was_released(clients, execution).await? {
        release(clients, execution).await?;
        return Err(released_already(execution));
    }
    Ok(())
}

/// Protects from deregistration every AMI a held target relies on (its rollback point, and the
/// AMI rolled out to it) that the target's account or the home account owns (in the target's
/// region), counting the executions that rely on it. AMIs a third
/// account shares cannot be protected by either: rollback checks that those can still launch
/// before relying on them.
async fn protect_amis(
    clients: &HoldClients,
    execution: &str,
    home: &Home,
    taken: &[&Target],
) -> StepResult<()> {
    // The owner of each rollback-point AMI, as seen from each target's place: one image per
    // call, because EC2 answers nothing at all when one id of a call is unknown.
    let mut owned: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for ((account, region), targets) in by_place(home, taken) {
        let fleet = clients.fleet_at(account, region, execution).await?;
        // The AMI each target would roll back to, and the one it rolls out (a copy made later
        // is protected once it is written into the plan: `protect_copies`).
        let ids: BTreeSet<&str> = targets
            .iter()
            .flat_map(|t| [t.rollback_point.image_id(), t.ami.id.as_str()])
            .collect();
        for id in ids {
            let image = describe_images(&fleet, &[id.to_string()]).await?;
            let Some(owner) = image.first().and_then(|i| i.owner_id()) else {
                continue;
            };
            if owner == account || owner == home.account {
                owned.insert(
                    ami_key(owner, region, id),
                    (owner.to_string(), region.to_string(), id.to_string()),
                );
            }
        }
    }
    record(clients, execution, "amis", owned.keys().cloned().collect()).await?;
    for (key, (owner, region, id)) in owned {
        let fleet = clients.fleet_at(&owner, &region, execution).await?;
        let joined = clients
            .update(&key)
            .update_expression("ADD #users :me")
            .expression_attribute_names("#users", "users")
            .expression_attribute_values(":me", string_set([execution.to_string()]))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("UpdateItem", e))?;
        let first = set(joined.attributes(), "users").is_empty();
        if first {
            // Read the setting only now that this execution is counted: a release running at the
            // same time then either sees it and keeps the item (and its `previous`), or has
            // finished, and the setting read here is the one it restored.
            let protection = describe_images(&fleet, std::slice::from_ref(&id))
                .await?
                .first()
                .and_then(|i| i.deregistration_protection().map(str::to_string))
                .unwrap_or_else(|| "disabled".into());
            let previous = if protection.starts_with("enabled") {
                "enabled"
            } else {
                "disabled"
            };
            clients
                .update(&key)
                .update_expression("SET #previous = if_not_exists(#previous, :previous)")
                .expression_attribute_names("#previous", "previous")
                .expression_attribute_values(":previous", s(previous))
                .send()
                .await
                .map_err(|e| StepError::from_sdk("UpdateItem", e))?;
        }
        // Always: enabling twice is harmless, and a release may have just lifted it.
        set_protection(&fleet, &id, true).await?;
    }
    Ok(())
}

async fn set_protection(fleet: &Clients, image: &str, on: bool) -> StepResult<()> {
    let ec2 = &fleet.ec2;
    let result = if on {
        ec2.enable_image_deregistration_protection()
            .image_id(image)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StepError::from_sdk("EnableImageDeregistrationProtection", e))
    } else {
        ec2.disable_image_deregistration_protection()
            .image_id(image)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StepError::from_sdk("DisableImageDeregistrationProtection", e))
    };
    match result {
        // Deregistered meanwhile (protection lifted by hand): there is nothing left to protect.
        Err(StepError::AwsRequestFailed { message, .. }) if message.starts_with("InvalidAMIID") => {
            tracing::warn!(
                image,
                message,
                "image is gone; its protection was left as it is"
            );
            Ok(())
        }
        Err(err) => Err(err),
        Ok(()) => {
            tracing::info!(image, protected = on, "image deregistration protection");
            Ok(())
        }
    }
}

/// Releases everything `execution` holds: its targets (only where it is still the holder) and
/// its share of the AMI protections. Safe to run twice.
pub async fn release(clients: &HoldClients, execution: &str) -> StepResult<Released> {
    let home = Home::of(execution)?;
    // Marked first, so a take still running for this execution knows to give back what it takes.
    let recorded = clients
        .update(execution_key(execution))
        .update_expression("SET released = :now")
        .expression_attribute_values(
            ":now",
            AttributeValue::N(rollout_core::clock::now().to_string()),
        )
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("UpdateItem", e))?;
    let mut released = Released {
        execution: execution.to_string(),
        ..Default::default()
    };
    gates::forget_parked(clients, execution, recorded.attributes()).await?;
    let targets = set(recorded.attributes(), "targets");
    for key in &targets {
        let deleted = clients
            .delete(key)
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(execution))
            .send()
            .await;
        match deleted {
            Ok(_) => released.targets.push(released_name(&home, key)),
            // Never held, or already released, or taken over: not ours to touch.
            Err(err) if err.as_service_error().is_some_and(is_condition_failure) => {}
            Err(err) => return Err(StepError::from_sdk("DeleteItem", err)),
        }
    }
    // Per place: its groups, then its standalone instances.
    type Names = (Vec<String>, Vec<String>);
    let mut by_place: BTreeMap<(&str, &str), Names> = BTreeMap::new();
    for key in &targets {
        let Some((account, region, name)) = key_parts(key) else {
            continue;
        };
        let (groups, instances) = by_place.entry((account, region)).or_default();
        match is_instance_key(key) {
            true => instances.push(name.to_string()),
            false => groups.push(name.to_string()),
        }
    }
    for ((account, region), (groups, instances)) in by_place {
        let fleet = clients.fleet_at(account, region, execution).await?;
        untag(&fleet, execution, &groups).await?;
        untag_instances(&fleet, execution, &instances).await?;
    }
    for key in set(recorded.attributes(), "amis") {
        if release_ami(clients, execution, &key).await? {
            released
                .unprotected
                .push(key_parts(&key).map_or(key.clone(), |(_, _, image)| image.to_string()));
        }
    }
    tracing::info!(execution, targets = ?released.targets, unprotected = ?released.unprotected, "holds released");
    Ok(released)
}

/// The hold tag of `group`, to be given a value (or none, to delete it).
fn group_tag(group: &str) -> aws_sdk_autoscaling::types::builders::TagBuilder {
    Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(HOLD_TAG)
}

/// The tag value that names `execution` (tag values hold 256 characters).
fn tag_value(execution: &str) -> String {
    execution.chars().take(256).collect()
}

/// Removes the hold tag from those of `groups` whose tag still names `execution` (another
/// execution may hold one of them now).
async fn untag(fleet: &Clients, execution: &str, groups: &[String]) -> StepResult<()> {
    let ours = tag_value(execution);
    for chunk in groups.chunks(20) {
        let mut tagged = Vec::new();
        let mut pages = fleet
            .autoscaling
            .describe_tags()
            .filters(
                Filter::builder()
                    .name("auto-scaling-group")
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            )
            .filters(Filter::builder().name("key").values(HOLD_TAG).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("DescribeTags", e))?;
            tagged.extend(
                page.tags()
                    .iter()
                    .filter(|t| t.value() == Some(ours.as_str()))
                    .filter_map(|t| t.resource_id().map(str::to_string)),
            );
        }
        if tagged.is_empty() {
            continue;
        }
        fleet
            .autoscaling
            .delete_tags()
            .set_tags(Some(tagged.iter().map(|g| group_tag(g).build()).collect()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DeleteTags", e))?;
    }
    Ok(())
}

/// Removes the hold tag from those of `instances` whose tag still names `execution`: EC2 deletes
/// a tag given with its value only where the value matches, so another holder's tag stays.
async fn untag_instances(fleet: &Clients, execution: &str, instances: &[String]) -> StepResult<()> {
    let ours = aws_sdk_ec2::types::Tag::builder()
        .key(HOLD_TAG)
        .value(tag_value(execution))
        .build();
    for chunk in instances.chunks(200) {
        fleet
            .ec2
            .delete_tags()
            .set_resources(Some(chunk.to_vec()))
            .tags(ours.clone())
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DeleteTags", e))?;
    }
    Ok(())
}

/// Removes `execution` from the AMI's users; the last one out restores the protection setting.
/// True when the protection was lifted.
async fn release_ami(clients: &HoldClients, execution: &str, key: &str) -> StepResult<bool> {
    let Some((owner, region, image)) = key_parts(key) else {
        return Ok(false);
    };
    let updated = clients
        .update(key)
        .update_expression("DELETE #users :me")
        // Ours to remove; or an earlier release removed it and stopped before the lift.
        .condition_expression(
            "contains(#users, :one) OR (attribute_exists(#k) AND attribute_not_exists(#users))",
        )
        .expression_attribute_names("#users", "users")
        .expression_attribute_names("#k", "key")
        .expression_attribute_values(":me", string_set([execution.to_string()]))
        .expression_attribute_values(":one", s(execution))
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    let after = match updated {
        Ok(out) => out.attributes().cloned().unwrap_or_default(),
        // Released already.
        Err(err) if err.as_service_error().is_some_and(is_condition_failure) => return Ok(false),
        Err(err) => return Err(StepError::from_sdk("UpdateItem", err)),
    };
    if !set(Some(&after), "users").is_empty() {
        return Ok(false);
    }
    let lift = text(&after, "previous").as_deref() != Some("enabled");
    if lift {
        set_protection(
            &clients.fleet_at(owner, region, execution).await?,
            image,
            false,
        )
        .await?;
    }
    let removed = clients
        .delete(key)
        .condition_expression("attribute_not_exists(#users)")
        .expression_attribute_names("#users", "users")
        .send()
        .await;
    match removed {
        Ok(_) => Ok(lift),
        // Another execution started relying on it meanwhile: protect it again for that one.
        Err(err) if err.as_service_error().is_some_and(is_condition_failure) => {
            if lift {
                set_protection(
                    &clients.fleet_at(owner, region, execution).await?,
                    image,
                    true,
                )
                .await?;
            }
            Ok(false)
        }
        Err(err) => Err(StepError::from_sdk("DeleteItem", err)),
    }
}

/// How a released target is named: its group, with its account and region when not the
/// execution's own.
fn released_name(home: &Home, key: &str) -> String {
    match key_parts(key) {
        Some((account, region, group)) => rollout_core::model::place_name(
            (account != home.account).then_some(account),
            (region != home.region).then_some(region),
            group,
        ),
        None => key.to_string(),
    }
}

/// EventBridge: an execution ended without running another state (aborted, timed out).
pub async fn on_status_change(
    clients: &HoldClients,
    change: &StatusChange,
) -> StepResult<Released> {
    let detail = &change.detail;
    use rollout_core::model::ExecutionStatus::{Aborted, TimedOut};
    if matches!(detail.status, Aborted | TimedOut) {
        release(clients, &detail.execution_arn).await
    } else {
        tracing::info!(
            status = %detail.status,
            "status change left alone: only ABORTED and TIMED_OUT release holds here"
        );
        Ok(Released {
            execution: detail.execution_arn.clone(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests;
