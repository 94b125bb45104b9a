//! Builds and runs the order service: connections, the saga, the recovery worker, the server.

use crate::application::{recovery, HttpParticipants, Saga};
use crate::config::{self, Settings};
use crate::metrics::SagaMetrics;
use crate::state::AppState;
use crate::storage::{Lease, Writes};
use crate::{api_doc, routes};
use actix_web::web;
use shared::client::{BaseUrls, ServiceClient};
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
    pub async fn build(settings: Settings) -> Result<Running, StartupError> {
        let document =
            api_doc::document(&settings.public_prefix).map_err(StartupError::Document)?;
        let (base, listener) =
            Foundation::connect(&settings.common, &crate::storage::MIGRATOR, document).await?;
        let port = listener.local_addr()?.port();
        let client = |target, url: &BaseUrls| {
            ServiceClient::new(target, url, &settings.client, Some(base.metrics.clone()))
                .map_err(|e| StartupError::Io(std::io::Error::other(e)))
        };
        let lease = Lease {
            length: settings.lease,
            // The longest one step can take: its budget, and the attempt running when it ends.
            step: settings.client.budget + settings.client.attempt_timeout,
        };
        let saga = Arc::new(Saga {
            writes: Writes::start(base.pool.clone(), lease, settings.batch_max),
            participants: HttpParticipants {
                stock: client("stock", &settings.stock_url)?,
                payment: client("payment", &settings.payment_url)?,
            },
            metrics: SagaMetrics::register(&base.metrics.registry)?,
            lease: settings.lease,
            compensation_max_backoff: settings.compensation_max_backoff,
            runtime: tokio::runtime::Handle::current(),
        });
        let recovering = (
            saga.clone(),
            settings.recovery_interval,
            settings.common.shutdown_timeout,
        );
        let common = settings.common.clone();
        let state = web::Data::new(AppState { settings, saga });
        let server = base.serve(listener, &common, move |cfg| {
            cfg.app_data(state.clone()).configure(routes::configure);
        })?;
        Ok(Running::new(port, server, |stop| {
            let (saga, every, drain) = recovering;
            vec![tokio::spawn(recovery::run(saga, every, drain, stop))]
        }))
    }
}
