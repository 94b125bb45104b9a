//! Builds and runs the stock service: connections, the HTTP server, the sweeper.

use crate::api_doc::ApiDoc;
use crate::config::Settings;
use crate::metrics::StockMetrics;
use crate::storage::reservations::Reservations;
use crate::{routes, sweeper};
use actix_web::web;
use shared::startup::{Foundation, Running, StartupError};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct Application;

impl shared::startup::Service for Application {
    type Settings = Settings;
    const NAME: &'static str = "stock";
    const DEFAULT_PORT: u16 = 3133;
    fn settings() -> Result<Settings, shared::config::ConfigError> {
        Settings::from_env()
    }
    async fn build(settings: Settings) -> Result<Running, StartupError> {
        Application::build(settings).await
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Running, StartupError> {
        let (base, listener) =
            Foundation::connect(&settings.common, &MIGRATOR, ApiDoc::openapi()).await?;
        let port = listener.local_addr()?.port();
        let tokens = web::Data::new(settings.tokens.clone());
        let metrics = StockMetrics::register(&base.metrics.registry)?;
        let (sweep_pool, sweep_metrics, sweep_interval) =
            (base.pool.clone(), metrics.clone(), settings.sweep_interval);
        let metrics = web::Data::new(metrics);
        let reservations = web::Data::new(Reservations::start(
            base.pool.clone(),
            settings.reservation_ttl_secs,
            settings.batch_max,
        ));
        let common = settings.common.clone();
        let settings = web::Data::new(settings);
        let server = base.serve(listener, &common, move |cfg| {
            cfg.app_data(settings.clone())
                .app_data(tokens.clone())
                .app_data(metrics.clone())
                .app_data(reservations.clone())
                .configure(routes::configure);
        })?;
        Ok(Running::new(port, server, |stop| {
            vec![tokio::spawn(sweeper::run(
                sweep_pool,
                sweep_metrics,
                sweep_interval,
                stop,
            ))]
        }))
    }
}
