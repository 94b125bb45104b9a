//! Builds and runs the order service. The checkout saga arrives with its own issue; for now the
//! service answers health, metrics and docs.

use crate::api_doc::ApiDoc;
use crate::config::Settings;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use shared::health::HealthChecks;
use shared::metrics::Metrics;
use shared::startup::{
    bind, common_routes, connect_database, connect_redis, not_found, StartupError,
};
use shared::{docs, metrics, request_id, telemetry};
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
        let pool = connect_database(&settings.common, &MIGRATOR).await?;
        let redis = connect_redis(&settings.common).await?;
        let listener = bind(&settings.common)?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::new(Metrics::new(settings.common.service)?);
        let health = web::Data::new(HealthChecks {
            database: pool,
            redis,
        });
        let openapi = ApiDoc::openapi();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(metrics::track))
                .wrap(telemetry::logger())
                .wrap(from_fn(request_id::propagate))
                .app_data(metrics.clone())
                .app_data(health.clone())
                .configure(common_routes)
                .configure(docs::routes(openapi.clone()))
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
