#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rollout_core::init_logging();
    let clients = rollout_core::Clients::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        check_ecs_health::handle(&clients, event)
    }))
    .await
}
