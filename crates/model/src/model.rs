//! The data that flows between the steps. One home for every step's input and output: a step's
//! output is the next step's input, and the state machine only moves these objects around.
//!
//! State stays small (ids, versions, counts, short reasons): Step Functions fails an execution
//! whose state passes 256 KiB with `States.DataLimitExceeded`, which no `Catch` can catch.

use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::settings::SettingsMap;

pub use crate::time::{Epoch, iso_epoch};

/// Refuses anything that is not shaped like an AMI id before it reaches AWS.
pub fn validate_ami_id(id: &str) -> StepResult<()> {
    let hex = id.strip_prefix("ami-").unwrap_or("");
    if (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(StepError::invalid(format!(
            "{id:?} is not an AMI id (ami- followed by 8 or 17 hex digits)"
        )))
    }
}

/// The validated AMI being rolled out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ami {
    pub id: String,
    pub name: String,
    pub architecture: String,
    pub owner_id: String,
}

/// How an Auto Scaling group refers to its launch template version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionReference {
    #[serde(rename = "$Latest")]
    Latest,
    #[serde(rename = "$Default")]
    Default,
    /// A version number.
    #[serde(rename = "pinned")]
    Pinned,
}

impl VersionReference {
    pub fn parse(version: &str) -> Self {
        match version {
            "$Latest" => Self::Latest,
            "$Default" => Self::Default,
            _ => Self::Pinned,
        }
    }

    /// The string a launch template specification carries for this reference to `version`.
    pub fn spec(self, version: i64) -> String {
        match self {
            Self::Latest => "$Latest".into(),
            Self::Default => "$Default".into(),
            Self::Pinned => version.to_string(),
        }
    }
}

/// Everything needed to bring a target back to where it was before the rollout: a group's
/// launch template version, or a standalone instance's root volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum RollbackPoint {
    Template(TemplatePoint),
    Root(RootPoint),
}

impl RollbackPoint {
    /// The AMI the target ran before the rollout.
    pub fn image_id(&self) -> &str {
        match self {
            Self::Template(point) => &point.image_id,
            Self::Root(point) => &point.image_id,
        }
    }
}

/// A standalone instance's root before the rollout: the volume the replacement detaches and keeps,
/// which a rollback puts back in place.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RootPoint {
    pub root_volume_id: String,
    pub root_device_name: String,
    /// The AMI the instance reported.
    pub image_id: String,
    /// The ECS container instance its agent was connected as: its identity lives on this root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
}

/// A group's launch template version before the rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TemplatePoint {
    pub launch_template_id: String,
    /// The numbered version the group ran (its `$Latest`/`$Default` resolved at plan time).
    pub version: i64,
    pub image_id: String,
    pub reference: VersionReference,
    /// The template's default version at plan time.
    pub default_version: i64,
}

/// The kind of thing a target is; code specific to one lives in its module (`fleet` for groups,
/// `instance` for standalone instances).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    #[default]
    AutoScalingGroup,
    /// An EC2 instance no Auto Scaling group, fleet or managed service owns: its root volume is
    /// replaced in place.
    Instance,
}

/// ECS capacity served by a group, or the cluster a standalone instance is a container instance of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EcsCapacity {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider: Option<String>,
    #[serde(default)]
    pub managed_termination_protection: bool,
}

/// One target in the plan: the item each wave's Distributed Map fans out over, one child
/// execution per target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default)]
    pub kind: TargetKind,
    /// The account the target lives in; none (null) means the execution's own account. Always
    /// written, so the state machine can pass it on (a JSONPath to an absent field fails).
    #[serde(default)]
    pub account: Option<String>,
    /// The region the target lives in; none (null) means the execution's own region.
    #[serde(default)]
    pub region: Option<String>,
    /// The group's name, or the standalone instance's id: the resource AWS knows it by (`group`
    /// in the JSON, as executions in flight have it).
    #[serde(rename = "group")]
    pub resource: String,
    /// A standalone instance's Name tag, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// The AMI the target rolls out to: the one of its region.
    pub ami: Ami,
    pub rollback_point: RollbackPoint,
    /// The group uses a MixedInstancesPolicy: its policy, with only the version changed, is the
    /// refresh's desired configuration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mixed_instances: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsCapacity>,
    /// The maintenance window the target's change waits for, as planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::window::PlannedWindow>,
}

impl Target {
    /// A group's rollback point; refused for a target of another kind.
    pub fn template_point(&self) -> StepResult<&TemplatePoint> {
        match &self.rollback_point {
            RollbackPoint::Template(point) => Ok(point),
            RollbackPoint::Root(_) => Err(self.wrong_kind("a launch template version")),
        }
    }

    /// A standalone instance's rollback point; refused for a target of another kind.
    pub fn root_point(&self) -> StepResult<&RootPoint> {
        match &self.rollback_point {
            RollbackPoint::Root(point) => Ok(point),
            RollbackPoint::Template(_) => Err(self.wrong_kind("a root volume")),
        }
    }

    fn wrong_kind(&self, wanted: &str) -> StepError {
        StepError::invalid(format!(
            "{}: target of kind {:?} has no rollback point of {wanted}",
            self.name(),
            self.kind
        ))
    }

    /// The name operators see: the group's, prefixed by the account and region when they are not
    /// the execution's own (`111111111111/eu-west-1/web`). Unique within a plan.
    pub fn name(&self) -> String {
        place_name(
            self.account.as_deref(),
            self.region.as_deref(),
            &self.resource,
        )
    }
}

/// `group`, prefixed by `account` and `region` when given: how a target outside the home account
/// or region is named in plans, waves and messages.
pub fn place_name(account: Option<&str>, region: Option<&str>, group: &str) -> String {
    let mut name = String::new();
    for part in [account, region].into_iter().flatten() {
        name.push_str(part);
        name.push('/');
    }
    name.push_str(group);
    name
}

/// Why a group is not in the plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub group: String,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum RollbackScope {
    /// Every target the execution touched (default).
    #[default]
    Execution,
    /// Only the wave that failed.
    Wave,
}

impl std::str::FromStr for RollbackScope {
    type Err = StepError;
    fn from_str(s: &str) -> StepResult<Self> {
        match s {
            "execution" => Ok(Self::Execution),
            "wave" => Ok(Self::Wave),
            other => Err(StepError::invalid(format!(
                "rollback scope must be \"execution\" or \"wave\", not {other:?}"
            ))),
        }
    }
}

/// What the execution will do, in full: the plan object resolve-ami writes to S3 (`plan.json`),
/// beside one object per wave that the wave's Distributed Map reads its targets from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// What started the rollout, in a few words.
    pub trigger: String,
    /// The AMI the trigger names, in the home region.
    pub ami: Ami,
    /// The AMI of each region of the reach, when it spans regions beyond the home one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub regional_amis: std::collections::BTreeMap<String, Ami>,
    /// Regions the AMI is copied into before the first wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<AmiCopy>,
    pub waves: Vec<Vec<Target>>,
    pub settings: SettingsMap,
    /// The version of the settings document the settings came from (before a start's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_version: Option<String>,
    /// Groups left out, with the reason.
    pub skipped: Vec<Skipped>,
    pub skipped_count: usize,
    pub target_count: usize,
    pub max_concurrency: u32,
    /// How many standalone instances of one account-region have their root replaced at once.
    #[serde(default = "one")]
    pub instance_concurrency: u32,
    pub rollback_scope: RollbackScope,
    /// The rollout this execution undoes: its targets go back to their rollback points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoOf>,
    /// The SSM parameter the AMI was read from (the store records each AMI planned from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The approval gates after waves, by wave index.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub approvals: std::collections::BTreeMap<usize, crate::gate::ApprovalGate>,
    /// What people should know about planned targets (a suspended process that changes how the
    /// refresh goes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<PlanNote>,
}

/// A remark on one planned target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PlanNote {
    pub target: String,
    pub note: String,
}

/// The successful rollout an undo execution brings back, and when it started: what it made on a
/// target (launch template versions, root replacements, ECS identities) is found by its name and
/// start, as its own rollback would have found them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UndoOf {
    pub execution: String,
    #[serde(with = "iso_epoch")]
    pub start_time: Epoch,
}

fn one() -> u32 {
    1
}

/// How many targets of each kind one lane changes at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneConcurrency {
    pub groups: u32,
    pub instances: u32,
}

impl LaneConcurrency {
    pub fn of(&self, kind: TargetKind) -> u32 {
        match kind {
            TargetKind::AutoScalingGroup => self.groups,
            TargetKind::Instance => self.instances,
        }
    }
}

/// A copy of the AMI into a region of the reach that has none (`AMI_DISTRIBUTION=copy`): made by
/// distribute-ami after the holds and before the first wave, encrypted, and shared with the
/// workload accounts that have targets there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AmiCopy {
    pub region: String,
    /// The AMI copied: the trigger's, in `source_region`.
    pub source: Ami,
    pub source_region: String,
    /// The KMS key the copy's snapshots are encrypted with (none: the region's default EBS key,
    /// which cannot be shared, so only when every target there is in the home account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Workload accounts with targets in the region: the copy is shared with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Those of `accounts` whose Auto Scaling groups launch from the copy: their Auto Scaling
    /// role gets a grant on its key (an account with only standalone instances may have no such
    /// role, and a grant to a role that does not exist is refused). Absent in a plan made before
    /// it existed: every account of `accounts` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_accounts: Option<Vec<String>>,
    /// The copy, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Epoch>,
}

impl AmiCopy {
    /// The accounts whose Auto Scaling role gets a grant on the copy's key.
    pub fn granted_accounts(&self) -> &[String] {
        self.group_accounts.as_deref().unwrap_or(&self.accounts)
    }
}

/// The most targets one execution rolls out. Every wave's targets are one S3 object and each
/// target one child execution, so nothing in the state grows with this; it bounds the hold
/// record (one DynamoDB item of at most 400 KB lists what the execution holds) and keeps a
/// rollout an operator can follow. Larger fleets roll out in parts (tags, targets, exclusions).
pub const MAX_TARGETS: usize = 5_000;

/// One account-region's share of a wave or of a rollback, for one kind of target: its targets run
/// as a Distributed Map of their own, at most `maxConcurrency` at once, since Auto Scaling
/// throttles per account and region and replacing a root reboots its instance. The lanes of a
/// wave run side by side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lane {
    /// None (null): the execution's own account or region, as on `Target`.
    pub account: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub kind: TargetKind,
    /// How many of the lane's targets change at once.
    pub max_concurrency: u32,
    /// The S3 key of the lane's targets (a JSON array of `Target`).
    pub key: String,
    /// The S3 prefix the lane's `ResultWriter` writes under.
    pub results_prefix: String,
    pub targets: usize,
}

/// Where one wave's targets are, and where its Distributed Map writes their outcomes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaveRef {
    pub index: usize,
    /// The S3 key of the wave's lanes (a JSON array of `Lane`), one per account-region.
    pub key: String,
    /// The S3 prefix the wave's `ResultWriter` writes under.
    pub results_prefix: String,
    pub targets: usize,
    /// The pause after this wave until someone approves the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::gate::ApprovalGate>,
}

/// What the execution state carries of the plan: where it is and what it amounts to. The lists
/// themselves (targets, skipped groups) live in the plan objects, so the state stays the same
/// size whatever the fleet's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// What started the rollout, in a few words.
    pub trigger: String,
    pub ami: Ami,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub regional_amis: std::collections::BTreeMap<String, Ami>,
    /// Copies still to make or to finish; emptied once every copy is available and shared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<AmiCopy>,
    pub settings: SettingsMap,
    pub max_concurrency: u32,
    #[serde(default = "one")]
    pub instance_concurrency: u32,
    pub rollback_scope: RollbackScope,
    /// The bucket holding the plan objects and the outcomes.
    pub bucket: String,
    /// The key of the whole plan (`Plan`).
    pub key: String,
    pub waves: Vec<WaveRef>,
    pub target_count: usize,
    pub skipped_count: usize,
    /// How many groups were left out, by reason.
    pub skipped_by_reason: std::collections::BTreeMap<String, usize>,
    /// Present on an undo execution (the state machine's choice reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoOf>,
}

impl PlanSummary {
    pub fn lane_concurrency(&self) -> LaneConcurrency {
        LaneConcurrency {
            groups: self.max_concurrency,
            instances: self.instance_concurrency,
        }
    }

    /// The plan's waves, with no targets: what a duplicate execution leaves to the first one.
    pub fn emptied(mut self) -> Self {
        self.waves.clear();
        self.target_count = 0;
        self
    }
}

/// A running instance refresh this execution started or adopted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRef {
    pub id: String,
    pub started_at: Epoch,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The refresh is replacing instances.
    InProgress,
    /// The refresh succeeded; waiting for ECS and alarms to confirm.
    Verifying,
    /// Every check passes; holding for the bake window.
    Baking,
    /// Checks held for the whole bake window.
    Healthy,
    /// The rollout failed on this target.
    Unhealthy,
}

/// One health check's outcome, as shown in the console.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    pub refresh_status: String,
    pub percentage: i32,
    pub next_wait_seconds: i64,
    pub checked_at: Epoch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_ended_at: Option<Epoch>,
    /// Since when every check has passed (the bake window's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<Epoch>,
    /// How many checks passed in this round (instances, container instances, services, alarms).
    pub checks_passed: u32,
}

/// The state of one target's rollout inside the state machine's Map: each step reads it and
/// returns it with its own part filled in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetRun {
    /// The execution's name: it makes launch template versions idempotent and marks what we made.
    pub execution: String,
    /// The (parent) execution's ARN: its record says whether a target of the wave has failed,
    /// after which no other target starts a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// The index of the target's wave.
    #[serde(default)]
    pub wave: usize,
    #[serde(with = "iso_epoch")]
    pub execution_start_time: Epoch,
    pub ami: Ami,
    pub settings: SettingsMap,
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// A standalone ECS container instance being drained before its root is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// A rollback run of an undo execution: what it brings back was made by this rollout, not by
    /// `execution` (whose own are the refreshes and replacements back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoing: Option<UndoOf>,
}

/// The drain of a standalone ECS container instance: set DRAINING, so ECS moves its service tasks
/// elsewhere before the root replacement reboots it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    pub container_instance_arn: String,
    pub started_at: Epoch,
    /// Tasks still running on it at the last look.
    pub running_tasks: i32,
    pub next_wait_seconds: i64,
}

impl TargetRun {
    pub fn resource(&self) -> &str {
        &self.target.resource
    }

    /// The execution that made what a rollback brings back, and its start: the undone rollout's
    /// on an undo, this execution's otherwise.
    pub fn changed_by(&self) -> (&str, Epoch) {
        match &self.undoing {
            Some(undone) => (&undone.execution, undone.start_time),
            None => (&self.execution, self.execution_start_time),
        }
    }

    pub fn require_new_version(&self) -> StepResult<i64> {
        self.new_version.ok_or_else(|| {
            StepError::invalid(format!(
                "{}: newVersion is missing (the launch template version was not created)",
                self.resource()
            ))
        })
    }

    pub fn require_refresh(&self) -> StepResult<&RefreshRef> {
        self.refresh.as_ref().ok_or_else(|| {
            StepError::invalid(format!(
                "{}: refresh is missing (the instance refresh was not started)",
                self.resource()
            ))
        })
    }

    /// Ensures the input names a usable execution and target before any AWS call.
    pub fn validate(&self) -> StepResult<()> {
        if self.execution.trim().is_empty() {
            return Err(StepError::invalid("execution is empty"));
        }
        if self.target.resource.trim().is_empty() {
            return Err(StepError::invalid("target.group is empty"));
        }
        validate_ami_id(&self.ami.id)?;
        match (self.target.kind, &self.target.rollback_point) {
            (TargetKind::AutoScalingGroup, RollbackPoint::Template(point)) if point.version < 1 => {
                Err(StepError::invalid(format!(
                    "{}: rollbackPoint.version must be a version number",
                    self.resource()
                )))
            }
            (TargetKind::AutoScalingGroup, RollbackPoint::Template(_))
            | (TargetKind::Instance, RollbackPoint::Root(_)) => Ok(()),
            (kind, _) => Err(StepError::invalid(format!(
                "{}: the rollbackPoint does not fit a target of kind {kind:?}",
                self.resource()
            ))),
        }
    }
}

/// The execution's failure as Step Functions hands it to a `Catch` (`ResultPath: $.failure`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CaughtError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl CaughtError {
    /// The human message inside the Cause (a Lambda's Cause is its JSON error payload).
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.cause.clone())
    }

    /// An approver rejected the next wave, or no one answered and the gate rolls back.
    pub fn is_approval_refused(&self) -> bool {
        [crate::error::REJECTED, crate::error::APPROVAL_TIMED_OUT].contains(&self.error.as_str())
    }

    /// `Error: message`, as the parent's Cause starts.
    pub fn describe(&self) -> String {
        if self.error.is_empty() {
            "the rollout failed".to_string()
        } else {
            format!("{}: {}", self.error, self.message())
        }
    }
}

/// Why a wave stopped: the first target that failed, its wave and its step's error. Recorded
/// once per execution; every other target of the wave sees it and starts no change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaveStop {
    pub group: String,
    /// The failed target's account and region (none: the execution's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub wave: usize,
    pub failure: CaughtError,
}

impl WaveStop {
    /// The failed target's name, as the plan names it.
    pub fn target_name(&self) -> String {
        place_name(self.account.as_deref(), self.region.as_deref(), &self.group)
    }
}

/// What a change is for: rolling the new AMI out, or bringing the old one back. A refresh's
/// preferences follow it; a root replacement's task is tagged with it, so a rollback tells its
/// own from the rollout's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Rollout,
    Rollback,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollout => "rollout",
            Self::Rollback => "rollback",
        }
    }
}

/// A Step Functions execution's status, as DescribeExecution, ListExecutions, a Map Run's result
/// files and EventBridge's status change events spell it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    PendingRedrive,
    /// A Map Run's child that never started (a result file's `PENDING`).
    Pending,
    /// A status this code does not know (or none read yet).
    #[default]
    #[serde(other)]
    Unknown,
}

impl ExecutionStatus {
    pub fn parse(text: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(text.to_string())).unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
            Self::PendingRedrive => "PENDING_REDRIVE",
            Self::Pending => "PENDING",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether the execution has ended (it may still be redriven when it FAILED, TIMED_OUT or
    /// was ABORTED).
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::TimedOut | Self::Aborted
        )
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a wave came to (hold-targets' `waveOutcome`): the parent rolls back when `failed`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaveOutcome {
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<WaveStop>,
}

/// What a release of an execution's holds did (hold-targets' `release`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    pub execution: String,
    /// Targets whose hold this execution still had and gave up.
    #[serde(default)]
    pub targets: Vec<String>,
    /// AMIs whose deregistration protection went back to what it was.
    #[serde(default)]
    pub unprotected: Vec<String>,
}

/// Where the rollback's lanes are, for its Distributed Map.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPlan {
    pub bucket: String,
    pub key: String,
    pub results_prefix: String,
    pub targets: usize,
    /// Why the targets are brought back, the summary's first sentence.
    pub reason: String,
    /// The rollout an undo brings back, passed to every target's rollback (always written: a
    /// JSONPath to an absent field fails).
    pub undoing: Option<UndoOf>,
}

/// What the deletion of the kept roots did, for the execution's output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeptRoots {
    pub deleted: Vec<String>,
    /// Kept by a `keepReplacedRoot` setting.
    pub kept: Vec<String>,
    /// ECS container instances whose identity lived on a deleted root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deregistered: Vec<String>,
}

/// What rollback did or is doing to one target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(from = "TargetRollbackFields", into = "TargetRollbackFields")]
pub struct TargetRollback {
    pub group: String,
    pub status: RollbackStatus,
    /// The refresh rollback started or is waiting on, if any.
    pub refresh_id: Option<String>,
    /// What this call did (or found done), in a few words.
    pub action: String,
}

/// Where one target's rollback stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackStatus {
    /// Still going: call again.
    Rolling,
    /// Back as it was before the execution.
    RolledBack,
    /// Nothing of this execution's was on the target: nothing to roll back.
    Untouched,
    /// Could not be brought back; `action` says why.
    Failed,
}

impl RollbackStatus {
    /// Whether the rollback of the target is over, one way or the other.
    pub fn is_over(self) -> bool {
        self != RollbackStatus::Rolling
    }
}

/// `TargetRollback` as the state machine and the CLI read it: `done`, `failed` and `untouched`
/// flags (a contract older than the status enum).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetRollbackFields {
    group: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    untouched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_id: Option<String>,
    action: String,
    done: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    failed: bool,
}

impl From<TargetRollbackFields> for TargetRollback {
    fn from(f: TargetRollbackFields) -> Self {
        let status = match (f.failed, f.done, f.untouched) {
            (true, _, _) => RollbackStatus::Failed,
            (false, true, true) => RollbackStatus::Untouched,
            (false, true, false) => RollbackStatus::RolledBack,
            (false, false, _) => RollbackStatus::Rolling,
        };
        Self {
            group: f.group,
            status,
            refresh_id: f.refresh_id,
            action: f.action,
        }
    }
}

impl From<TargetRollback> for TargetRollbackFields {
    fn from(t: TargetRollback) -> Self {
        Self {
            group: t.group,
            untouched: t.status == RollbackStatus::Untouched,
            refresh_id: t.refresh_id,
            action: t.action,
            done: matches!(
                t.status,
                RollbackStatus::RolledBack | RollbackStatus::Untouched
            ),
            failed: t.status == RollbackStatus::Failed,
        }
    }
}

/// One call of the rollback of one target: call it again, after `nextWaitSeconds`, until
/// `complete`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStep {
    pub complete: bool,
    pub target: TargetRollback,
    pub next_wait_seconds: i64,
}

/// The rollback as a whole, summed up from every target's child execution.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    /// Some target could not be brought back (the execution ends `RollbackFailed`).
    pub failed: bool,
    pub rolled_back: usize,
    pub untouched: usize,
    pub not_rolled_back: usize,
    /// One paragraph for the Fail state's Cause: what failed and what was rolled back.
    pub cause: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_statuses_read_as_aws_spells_them() {
        for status in [
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
            ExecutionStatus::PendingRedrive,
            ExecutionStatus::Pending,
        ] {
            assert_eq!(ExecutionStatus::parse(status.as_str()), status);
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(ExecutionStatus::parse("NEW"), ExecutionStatus::Unknown);
        assert!(ExecutionStatus::Aborted.is_ended() && !ExecutionStatus::Running.is_ended());
    }

    /// The status reads and writes as the flags the state machine and older executions know.
    #[test]
    fn a_target_rollback_keeps_its_flags_on_the_wire() {
        let cases = [
            (
                RollbackStatus::Rolling,
                r#"{"group":"web","action":"a","done":false}"#,
            ),
            (
                RollbackStatus::RolledBack,
                r#"{"group":"web","action":"a","done":true}"#,
            ),
            (
                RollbackStatus::Untouched,
                r#"{"group":"web","untouched":true,"action":"a","done":true}"#,
            ),
            (
                RollbackStatus::Failed,
                r#"{"group":"web","action":"a","done":false,"failed":true}"#,
            ),
        ];
        for (status, wire) in cases {
            let target = TargetRollback {
                group: "web".into(),
                status,
                refresh_id: None,
                action: "a".into(),
            };
            assert_eq!(serde_json::to_string(&target).unwrap(), wire);
            assert_eq!(
                serde_json::from_str::<TargetRollback>(wire).unwrap(),
                target
            );
        }
        // Both flags, as no step writes them any more: the failure is what counts.
        let both = r#"{"group":"web","action":"a","done":true,"failed":true}"#;
        let read: TargetRollback = serde_json::from_str(both).unwrap();
        assert_eq!(read.status, RollbackStatus::Failed);
    }
}
