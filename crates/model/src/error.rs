//! The one error type of every step, and its contract with the state machine.
//!
//! Each variant maps to a stable `errorType` (the `Error` the Step Functions console shows and the
//! name `Retry`/`Catch` match on). Retryable and terminal conditions never share a name. How an
//! AWS SDK failure becomes one of them is the adapters' (rollout-core's `FromSdk`).

/// The error an approver's answer gives to reject the next wave.
pub const REJECTED: &str = "Rejected";
/// The error of a gate that no one answered in time.
pub const APPROVAL_TIMED_OUT: &str = "ApprovalTimedOut";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StepError {
    /// The trigger or step input is malformed or names something that does not exist.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The AMI cannot be rolled out (missing, not available, deprecated, disabled, wrong owner or architecture).
    #[error("AMI {ami} is not usable: {reason}")]
    AmiNotUsable { ami: String, reason: String },
    /// A named target does not exist, or the selection matched nothing.
    #[error("no rollout target: {0}")]
    TargetNotFound(String),
    /// A target exists but cannot be rolled out safely (and rolled back); nothing was changed.
    #[error("{group}: preflight refused the rollout: {reason}")]
    PreflightFailed { group: String, reason: String },
    /// Another instance refresh, to a configuration that is not ours, is running on the group.
    #[error(
        "{group}: instance refresh {refresh_id} to another configuration is running; wait for it or cancel it, then redrive"
    )]
    RefreshConflict { group: String, refresh_id: String },
    /// Another execution, rolling out another AMI, holds the target. Nothing was changed.
    #[error(
        "{group} is held by execution {holder}, which is rolling out {holder_ami}; nothing was changed. Start a new execution once that one has ended"
    )]
    TargetHeld {
        group: String,
        holder: String,
        holder_ami: String,
    },
    /// This execution's hold on the target was released (it was stopped, then redriven): the
    /// target is not its to change any more. Nothing was changed. Reported as `TargetHeld`.
    #[error(
        "{group}: this execution no longer holds it (its holds were released when it was stopped); nothing was changed. Start a new execution to roll it out"
    )]
    HoldReleased { group: String },
    /// The fleet did not prove healthy on the new AMI.
    #[error("{group}: unhealthy on {ami}: {reasons}")]
    TargetUnhealthy {
        group: String,
        ami: String,
        reasons: String,
    },
    /// AWS throttled us past the SDK's own retries. Retried; never rolled back.
    #[error("{operation} throttled: {message} (not rolled back: redrive to resume from here)")]
    AwsThrottled { operation: String, message: String },
    /// A network failure, timeout or AWS 5xx. Retried; never rolled back.
    #[error(
        "{operation} failed transiently: {message} (not rolled back: redrive to resume from here)"
    )]
    AwsTransient { operation: String, message: String },
    /// AWS refused a request (access denied, validation, ...). Not retryable.
    #[error("{operation} was refused: {message}")]
    AwsRequestFailed { operation: String, message: String },
    /// Another target of the wave failed: this one starts no change and ends as stopped.
    #[error("{group}: stopped, because {failed} failed in this wave ({reason})")]
    WaveStopped {
        group: String,
        failed: String,
        reason: String,
    },
    /// A target could not be brought back to its rollback point.
    #[error("rollback did not complete: {0}")]
    RollbackFailed(String),
    /// No approver answered a gate whose settings say to stop (`onApprovalTimeout: stop`): the
    /// execution stops there, keeping its holds, and a redrive asks again.
    #[error("{0}")]
    ApprovalTimedOut(String),
}

impl StepError {
    /// The stable `errorType` of this error, as matched by the state machine.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::AmiNotUsable { .. } => "AmiNotUsable",
            Self::TargetNotFound(_) => "TargetNotFound",
            Self::PreflightFailed { .. } => "PreflightFailed",
            Self::RefreshConflict { .. } => "RefreshConflict",
            Self::TargetHeld { .. } | Self::HoldReleased { .. } => "TargetHeld",
            Self::TargetUnhealthy { .. } => "TargetUnhealthy",
            Self::AwsThrottled { .. } => "AwsThrottled",
            Self::AwsTransient { .. } => "AwsTransient",
            Self::AwsRequestFailed { .. } => "AwsRequestFailed",
            Self::WaveStopped { .. } => "WaveStopped",
            Self::RollbackFailed(_) => "RollbackFailed",
            Self::ApprovalTimedOut(_) => APPROVAL_TIMED_OUT,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }
}

/// What the state machine does when a step fails with an error of this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Evidence against the rollout (bad input, AMI, preflight, health, a refused request):
    /// caught and rolled back.
    RollBack,
    /// AWS did not answer: retried by every task. If the retries run out the error is not caught,
    /// so the execution stops at that step with nothing rolled back, and a redrive resumes there.
    Retry,
    /// Someone else's work is in the way: not retried, not caught; the operator clears it and
    /// redrives.
    StopForRedrive,
    /// Refused before any change: caught into a Fail state of its own name, so a redrive cannot
    /// resume with a plan that the other execution has since made stale; the operator starts a
    /// new execution instead.
    Refuse,
    /// Another target of the wave failed first: caught in this target's child execution, which
    /// ends with the outcome `stopped` (the failed target's rollback covers the wave).
    EndTarget,
}

/// Every `errorType` a step can raise, with what the state machine does about it.
pub const ERROR_NAMES: &[(&str, OnFailure)] = &[
    ("InvalidInput", OnFailure::RollBack),
    ("AmiNotUsable", OnFailure::RollBack),
    ("TargetNotFound", OnFailure::RollBack),
    ("PreflightFailed", OnFailure::RollBack),
    ("RefreshConflict", OnFailure::StopForRedrive),
    ("TargetHeld", OnFailure::Refuse),
    ("TargetUnhealthy", OnFailure::RollBack),
    ("AwsThrottled", OnFailure::Retry),
    ("AwsTransient", OnFailure::Retry),
    ("AwsRequestFailed", OnFailure::RollBack),
    ("WaveStopped", OnFailure::EndTarget),
    ("RollbackFailed", OnFailure::RollBack),
    ("ApprovalTimedOut", OnFailure::StopForRedrive),
];

pub type StepResult<T> = Result<T, StepError>;

/// Parses a step's JSON input into its type, turning serde's message into `InvalidInput`.
/// Handlers take `serde_json::Value` so malformed input gets our error name, not the runtime's.
pub fn parse_input<T: serde::de::DeserializeOwned>(
    step: &str,
    value: serde_json::Value,
) -> StepResult<T> {
    serde_json::from_value(value).map_err(|e| StepError::invalid(format!("{step} input: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<StepError> {
        let s = || "x".to_string();
        vec![
            StepError::InvalidInput(s()),
            StepError::AmiNotUsable {
                ami: s(),
                reason: s(),
            },
            StepError::TargetNotFound(s()),
            StepError::PreflightFailed {
                group: s(),
                reason: s(),
            },
            StepError::RefreshConflict {
                group: s(),
                refresh_id: s(),
            },
            StepError::TargetHeld {
                group: s(),
                holder: s(),
                holder_ami: s(),
            },
            StepError::HoldReleased { group: s() },
            StepError::TargetUnhealthy {
                group: s(),
                ami: s(),
                reasons: s(),
            },
            StepError::AwsThrottled {
                operation: s(),
                message: s(),
            },
            StepError::AwsTransient {
                operation: s(),
                message: s(),
            },
            StepError::AwsRequestFailed {
                operation: s(),
                message: s(),
            },
            StepError::WaveStopped {
                group: s(),
                failed: s(),
                reason: s(),
            },
            StepError::RollbackFailed(s()),
            StepError::ApprovalTimedOut(s()),
        ]
    }

    #[test]
    fn error_names_list_every_variant_once() {
        let mut names: Vec<&str> = every_variant().iter().map(StepError::name).collect();
        names.dedup(); // HoldReleased is reported as TargetHeld, beside it
        let listed: Vec<&str> = ERROR_NAMES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, listed);
    }

    #[test]
    fn malformed_input_is_invalid_input() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct In {
            group: String,
        }
        let err = parse_input::<In>("start-refresh", serde_json::json!({"group": 3})).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("start-refresh input"), "{err}");
    }
}
