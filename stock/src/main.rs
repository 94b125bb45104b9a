#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::startup::run_service::<stock::startup::Application>().await
}
