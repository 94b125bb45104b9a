use stock::config::Settings;
use stock::startup::Application;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init("info,sqlx=warn");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(error = %e, "stock cannot start");
            eprintln!("stock: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %shared::problem::error_chain(&e), "stock cannot start");
            eprintln!("stock: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "stock listening");
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("stock stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "stock failed");
            std::process::ExitCode::FAILURE
        }
    }
}
