#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rollout_core::init_logging();
    let clients = rollout_core::Clients::from_env().await?;
    // The runtime's adapter: the library takes the event's payload and returns a StepError,
    // whose stable name becomes the Error the console shows.
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<serde_json::Value>| async {
            distribute_ami::handle(&clients, event.payload)
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        },
    ))
    .await
}
