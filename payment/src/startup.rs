//! Builds and runs the payment service: connections, the application state and the HTTP server.

use crate::application::processor::PaymentProcessor;
use crate::application::{release, transfers, Payments};
use crate::config::{self, Settings};
use crate::metrics::PaymentMetrics;
use crate::state::AppState;
use crate::{api_doc, routes};
use actix_web::web;
use shared::startup::{Foundation, Running, StartupError};
use std::sync::Arc;

pub struct Application;

impl shared::startup::Service for Application {
    type Settings = Settings;
    const NAME: &'static str = config::NAME;
    const DEFAULT_PORT: u16 = config::DEFAULT_PORT;
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
        let document =
            api_doc::document(&settings.public_prefix).map_err(StartupError::Document)?;
        let (base, listener) =
            Foundation::connect(&settings.common, &crate::storage::MIGRATOR, document).await?;
        let port = listener.local_addr()?.port();
        let metrics = PaymentMetrics::register(&base.metrics.registry)?;
        let tokens = web::Data::new(settings.tokens.clone());
        let faults = web::Data::new(settings.faults);
        let common = settings.common.clone();
        let payments = Payments::start(
            base.pool.clone(),
            processor,
            settings.max_retries,
            metrics,
            settings.batch_max,
            settings.hold,
        );
        let releasing = (payments.clone(), settings.release_interval);
        let transferring = (payments.clone(), settings.transfer_interval);
        let state = web::Data::new(AppState { payments, settings });
        let server = base.serve(listener, &common, move |cfg| {
            cfg.app_data(state.clone())
                .app_data(tokens.clone())
                .app_data(faults.clone())
                .configure(routes::configure);
        })?;
        Ok(Running::new(port, server, |stop| {
            let (payments, every) = releasing;
            let (transfer_payments, transfer_every) = transferring;
            vec![
                tokio::spawn(release::run(payments, every, stop.clone())),
                tokio::spawn(transfers::run(transfer_payments, transfer_every, stop)),
            ]
        }))
    }
}
