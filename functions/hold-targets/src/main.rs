#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rollout_core::init_logging();
    let clients = hold_targets::HoldClients::from_env().await?;
    rollout_core::serve(clients, hold_targets::handle).await
}
