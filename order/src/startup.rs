//! Builds and runs the order service. The checkout saga arrives with its own issue; for now the
//! service answers health, metrics and docs.

use crate::api_doc::ApiDoc;
use crate::config::Settings;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use shared::startup::{not_found, Foundation, StartupError};
use shared::{metrics, request_id, telemetry};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

static MIGRATOR: Migrator = Migrator::DEFAULT;

pub struct Application {
    port: u16,
    server: Server,
}

impl shared::startup::Service for Application {
    type Settings = Settings;
    const NAME: &'static str = "order";
    fn settings() -> Result<Settings, shared::config::ConfigError> {
        Settings::from_env()
    }
    async fn build(settings: Settings) -> Result<Self, StartupError> {
        Application::build(settings).await
    }
    fn port(&self) -> u16 {
        self.port
    }
    async fn run_until_stopped(self) -> std::io::Result<()> {
        Application::run_until_stopped(self).await
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let (base, listener) =
            Foundation::connect(&settings.common, &MIGRATOR, ApiDoc::openapi()).await?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(metrics::track))
                .wrap(telemetry::logger())
                .wrap(from_fn(request_id::propagate))
                .configure(|cfg| base.configure(cfg))
                .default_service(web::to(not_found))
        })
        .workers(settings.common.workers)
        .shutdown_timeout(settings.common.shutdown_timeout.as_secs())
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
