//! Builds and runs the payment service.

use crate::api_doc::ApiDoc;
use crate::config::Settings;
use crate::metrics::PaymentMetrics;
use crate::processor::PaymentProcessor;
use crate::routes;
use crate::storage::Writes;
use actix_web::web;
use shared::startup::{Foundation, Running, StartupError};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use utoipa::OpenApi;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct Application;

impl shared::startup::Service for Application {
    type Settings = Settings;
    const NAME: &'static str = "payment";
    const DEFAULT_PORT: u16 = 3132;
    fn settings() -> Result<Settings, shared::config::ConfigError> {
        Settings::from_env()
    }
    async fn build(settings: Settings) -> Result<Running, StartupError> {
        Application::build(settings).await
    }
}

impl Application {
    /// Builds the service with the simulated processor from the settings.
    pub async fn build(settings: Settings) -> Result<Running, StartupError> {
        let processor: Arc<dyn PaymentProcessor> = Arc::new(settings.processor.clone());
        Self::build_with(settings, processor).await
    }

    /// Builds the service with any processor: where a real provider plugs in.
    pub async fn build_with(
        settings: Settings,
        processor: Arc<dyn PaymentProcessor>,
    ) -> Result<Running, StartupError> {
        let (base, listener) =
            Foundation::connect(&settings.common, &MIGRATOR, ApiDoc::openapi()).await?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::new(PaymentMetrics::register(&base.metrics.registry)?);
        let tokens = web::Data::new(settings.tokens.clone());
        let faults = web::Data::new(settings.faults);
        let processor = web::Data::new(processor);
        let writes = web::Data::new(Writes::start(base.pool.clone(), settings.batch_max));
        let common = settings.common.clone();
        let settings = web::Data::new(settings);
        let server = base.serve(listener, &common, move |cfg| {
            cfg.app_data(settings.clone())
                .app_data(tokens.clone())
                .app_data(faults.clone())
                .app_data(processor.clone())
                .app_data(writes.clone())
                .app_data(metrics.clone())
                .configure(routes::configure);
        })?;
        Ok(Running::new(port, server, |_| Vec::new()))
    }
}
