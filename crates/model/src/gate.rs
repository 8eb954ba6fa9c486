//! An approval gate: where an execution waits for a person between waves.

use serde::{Deserialize, Serialize};

/// How long a gate waits for an approval, when nothing is configured.
pub const DEFAULT_APPROVAL_TIMEOUT_MINUTES: u32 = 24 * 60;
/// A task's TimeoutSeconds is at most 99,999,999; a task token lives at most a year.
pub const MAX_APPROVAL_TIMEOUT_MINUTES: u32 = 365 * 24 * 60;

/// What a gate does when no one answers in time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnApprovalTimeout {
    /// The execution fails (`ApprovalTimedOut` at the gate) and keeps its holds; a redrive asks
    /// again.
    #[default]
    Stop,
    /// Every touched target is rolled back, as on a rejection.
    Rollback,
}

/// A pause after a wave until someone approves the next (task token).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGate {
    pub timeout_seconds: i64,
    pub on_timeout: OnApprovalTimeout,
    /// The wave's targets whose settings ask for it.
    pub asked_by: Vec<String>,
}

/// What wakes a waiting gate (the task token's output): an approver's answer. The gate goes on
/// only by the decision it then reads; this says who woke it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GateWake {
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
