//! Builds and runs the payment service: connections, the application state and the HTTP server.

use crate::application::payouts::{self, PayoutProvider, SimulatedPayouts};
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
    /// Builds the service with the simulated processor and payout provider from the settings.
    pub async fn build(settings: Settings) -> Result<Running, StartupError> {
        let processor: Arc<dyn PaymentProcessor> = Arc::new(settings.processor.clone());
        Self::build_with(settings, processor, None).await
    }

    /// Builds the service with any processor and payout provider (the simulated one when `None`):
    /// where real providers plug in.
    pub async fn build_with(
        settings: Settings,
        processor: Arc<dyn PaymentProcessor>,
        payout_provider: Option<Arc<dyn PayoutProvider>>,
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
        let payout_provider = payout_provider.unwrap_or_else(|| {
            Arc::new(SimulatedPayouts {
                pool: base.pool.clone(),
                failure_rate: settings.payout_failure_rate,
                latency: settings.payout_latency,
            })
        });
        let paying = (
            payments.clone(),
            payout_provider,
            settings.transfer_interval,
        );
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
                tokio::spawn(transfers::run(
                    transfer_payments,
                    transfer_every,
                    stop.clone(),
                )),
                tokio::spawn(payouts::run(paying.0, paying.1, paying.2, stop)),
            ]
        }))
    }
}
