//! The error contract is rollout-model's (`StepError`, its names and what the state machine does
//! with each); here is how the AWS SDK's failures and the Lambda runtime meet it.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

pub use rollout_model::error::*;

/// A typed error from an AWS SDK failure (implemented for `StepError`).
pub trait FromSdk {
    /// Maps an SDK failure of `operation` to a typed error, keeping AWS's code and message.
    fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug;
}

impl FromSdk for StepError {
    fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let operation = operation.to_string();
        match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                let message =
                    aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
                Self::AwsTransient { operation, message }
            }
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("Unknown");
                let message = format!(
                    "{code}: {}",
                    service.err().message().unwrap_or("no message")
                );
                if is_throttling(code) {
                    Self::AwsThrottled { operation, message }
                } else if is_transient(code) {
                    Self::AwsTransient { operation, message }
                } else {
                    Self::AwsRequestFailed { operation, message }
                }
            }
            _ => {
                let message =
                    aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
                Self::AwsRequestFailed { operation, message }
            }
        }
    }
}

/// Error codes AWS services use for throttling (EC2, Auto Scaling, ECS, CloudWatch, SSM).
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            // S3 (503) and SNS name their throttling so.
            | "SlowDown"
            | "Throttled"
    )
}

/// Error codes for server-side failures that a later attempt can get past.
fn is_transient(code: &str) -> bool {
    matches!(
        code,
        "InternalError"
            | "InternalFailure"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "Unavailable"
            | "ServerException"
            | "ResourceContention"
            // KMS's own.
            | "KMSInternalException"
            | "DependencyTimeoutException"
    )
}

/// What the Lambda runtime reports for a step's error: its stable name and its message.
pub fn diagnostic(err: StepError) -> Diagnostic {
    Diagnostic {
        error_type: err.name().to_string(),
        error_message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_stable_name_and_a_message_naming_the_resource() {
        let d = diagnostic(StepError::RefreshConflict {
            group: "web".into(),
            refresh_id: "r-1".into(),
        });
        assert_eq!(d.error_type, "RefreshConflict");
        assert!(
            d.error_message.starts_with("web: instance refresh r-1"),
            "{}",
            d.error_message
        );
    }

    #[test]
    fn aws_codes_are_classified() {
        for (code, throttled, transient) in [
            ("Throttling", true, false),
            ("RequestLimitExceeded", true, false),
            ("ThrottlingException", true, false),
            ("SlowDown", true, false),
            ("Throttled", true, false),
            ("InternalError", false, true),
            ("ServiceUnavailable", false, true),
            ("AccessDenied", false, false),
            ("ValidationError", false, false),
        ] {
            assert_eq!(is_throttling(code), throttled, "{code}");
            assert_eq!(is_transient(code), transient, "{code}");
        }
    }
}
