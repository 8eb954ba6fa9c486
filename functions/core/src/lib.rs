//! Shared library of the ami-rollout functions: the step types that flow through the state
//! machine, the error contract, configuration, and the AWS logic more than one step needs.

pub mod ami;
pub mod aws;
pub mod config;
pub mod error;
pub mod fleet;
pub mod launch_template;
pub mod model;
pub mod reach;
pub mod refresh;
#[cfg(any(test, feature = "test-util"))]
pub mod samples;
pub mod settings;
pub mod stop;
pub mod store;
pub mod trigger;

pub use aws::Clients;
pub use error::{StepError, StepResult};

/// Sets up JSON logs when the function runs with `LogFormat: JSON` (plain text otherwise).
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}
