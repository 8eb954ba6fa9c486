//! How a command fails: the error's name, its message, and the exit status scripts read.

use rollout_core::{FromSdk, StepError};

/// Exit statuses: 0 done (or the execution SUCCEEDED), 1 an error or a FAILED execution, 2 a
/// refusal of the input (or drift found), 3 an execution that TIMED_OUT, 4 one ABORTED.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_REFUSED: u8 = 2;

/// A command's failure: the error's name (as the console shows it), its message, the exit status.
#[derive(Debug)]
pub struct Failure {
    pub name: String,
    pub message: String,
    pub exit: u8,
}

impl Failure {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
            exit: EXIT_FAILED,
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            exit: EXIT_REFUSED,
            ..Self::new("InvalidInput", message)
        }
    }
}

impl From<StepError> for Failure {
    /// A refusal of the input (bad input, unusable AMI, nothing found, preflight) exits 2; AWS
    /// failing exits 1.
    fn from(e: StepError) -> Self {
        let exit = match e {
            StepError::InvalidInput(_)
            | StepError::AmiNotUsable { .. }
            | StepError::TargetNotFound(_)
            | StepError::PreflightFailed { .. } => EXIT_REFUSED,
            _ => EXIT_FAILED,
        };
        Self {
            name: e.name().into(),
            message: e.to_string(),
            exit,
        }
    }
}

/// An AWS call of the CLI's own that failed.
pub fn aws_failed<E, R>(operation: &str, e: aws_sdk_sfn::error::SdkError<E, R>) -> Failure
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    StepError::from_sdk(operation, e).into()
}

pub type CliResult<T> = Result<T, Failure>;
