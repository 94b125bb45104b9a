#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::startup::run_service::<payment::startup::Application>().await
}
