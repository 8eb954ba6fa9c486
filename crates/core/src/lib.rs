//! Shared library of the ami-rollout functions: the step types that flow through the state
//! machine, the error contract, configuration, and the AWS logic more than one step needs.

pub mod ami;
pub mod aws;
pub mod clock;
pub mod config;
pub mod ecs;
pub mod error;
pub mod fleet;
pub mod holds;
pub mod instance;
pub mod keys;
pub mod launch_template;
pub mod reach;
pub mod refresh;
#[cfg(any(test, feature = "test-util"))]
pub mod samples;
pub mod stop;
pub mod store;

pub use aws::Clients;
// The model's modules, where every step and the CLI have always found them.
pub use error::{FromSdk, StepError, StepResult};
pub use rollout_model::{gate, model, settings, time, trigger, window};

/// Sets up JSON logs when the function runs with `LogFormat: JSON` (plain text otherwise).
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The runtime's adapter, the same for every function: `handle` takes the event's payload and
/// returns a `StepError`, whose stable name becomes the Error the console shows.
pub async fn serve<C, O: serde::Serialize>(
    clients: C,
    handle: impl AsyncFn(&C, serde_json::Value) -> StepResult<O>,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        async |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            // Boxed: the step's future nests the SDK's deeply, past the compiler's layout depth
            // limit once inside the runtime's own futures.
            let step: std::pin::Pin<Box<dyn Future<Output = StepResult<O>> + '_>> =
                Box::pin(handle(&clients, event.payload));
            step.await.map_err(error::diagnostic)
        },
    ))
    .await
}
