//! How a command fails: the error's name, one line that says what to do, the SDK's detail for
//! `--debug`, and the exit status scripts read.

use rollout_core::{FromSdk, StepError};

/// What a command's exit status means; the same for every command (README and docs/operator-guide.md, "Exit statuses").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; the execution SUCCEEDED; no drift.
    Done = 0,
    /// Something failed on the way: AWS did not answer, or refused the CLI's own call.
    Error = 1,
    /// The command line, or the AWS configuration it names, is wrong: nothing was asked of AWS's
    /// services (clap's own usage errors exit 2 too).
    Usage = 2,
    /// The input was refused (a plan, a start, an undo, a redrive, an approval): nothing changed.
    Refused = 3,
    /// The execution ended without rolling out: FAILED, TIMED_OUT or ABORTED.
    RolloutFailed = 4,
    /// The execution is still running (`status`).
    Running = 5,
    /// Targets are off the approved AMI (`drift`).
    Drift = 6,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The exit statuses as `--help` shows them.
pub const EXIT_HELP: &str = "Exit statuses:
  0  done: the execution SUCCEEDED, nothing refused, no drift
  1  an error on the way (AWS did not answer, or refused a call of the CLI's own)
  2  a usage error: a flag, or the region, credentials or profile to use
  3  refused: the input was refused and nothing changed
  4  the execution FAILED, TIMED_OUT or was ABORTED
  5  the execution is still running (status)
  6  drift found (drift)";

/// A command's failure: the error's name (as the console shows it), one line, what else the
/// SDK said (shown with `--debug`), the exit status.
#[derive(Debug)]
pub struct Failure {
    pub name: String,
    pub message: String,
    pub detail: Option<String>,
    pub exit: Exit,
}

impl Failure {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
            detail: None,
            exit: Exit::Error,
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Refused,
            ..Self::new("InvalidInput", message)
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            ..Self::new("Usage", message)
        }
    }
}

impl From<StepError> for Failure {
    /// A refusal of the input (bad input, unusable AMI, nothing found, preflight) is `Refused`;
    /// AWS failing is an `Error`, said in one line (a step's advice to redrive is the console's,
    /// not the CLI's: the CLI's own call is simply tried again).
    fn from(e: StepError) -> Self {
        let exit = match e {
            StepError::InvalidInput(_)
            | StepError::AmiNotUsable { .. }
            | StepError::TargetNotFound(_)
            | StepError::PreflightFailed { .. }
            | StepError::TargetHeld { .. } => Exit::Refused,
            _ => Exit::Error,
        };
        let (message, detail) = match &e {
            StepError::AwsThrottled { operation, message }
            | StepError::AwsTransient { operation, message }
            | StepError::AwsRequestFailed { operation, message } => {
                let short = one_line(message);
                (
                    format!("{operation} failed: {short} (try again; --debug shows AWS's answer)"),
                    Some(message.clone()),
                )
            }
            _ => (e.to_string(), None),
        };
        Self {
            name: e.name().into(),
            message,
            detail,
            exit,
        }
    }
}

/// An AWS answer in one line: a service's `Code: message` whole; a connection failure's chain
/// of causes cut after its first two.
fn one_line(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut parts = first.split(": ");
    match parts.next() {
        Some(code) if !code.contains(' ') => first.to_string(),
        Some(what) => std::iter::once(what)
            .chain(parts.take(1))
            .collect::<Vec<_>>()
            .join(": "),
        None => String::new(),
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
