#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rollout_core::init_logging();
    let clients = rollout_core::Clients::from_env().await?;
    rollout_core::serve(clients, start_refresh::handle).await
}
