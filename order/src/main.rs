#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::startup::run_service::<order::startup::Application>().await
}
