#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rollout_core::init_logging();
    let clients = hold_targets::HoldClients::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        hold_targets::handle(&clients, event)
    }))
    .await
}
