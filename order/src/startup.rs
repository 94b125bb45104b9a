//! Builds and runs the order service: connections, the saga, the recovery worker, the server.

use crate::api_doc::ApiDoc;
use crate::config::Settings;
use crate::metrics::SagaMetrics;
use crate::participants::Participants;
use crate::saga::Saga;
use crate::storage::{Lease, Writes};
use crate::{recovery, routes};
use actix_web::web;
use shared::http_client::ServiceClient;
use shared::startup::{Foundation, Running, StartupError};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use utoipa::OpenApi;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct Application;

impl shared::startup::Service for Application {
    type Settings = Settings;
    const NAME: &'static str = "order";
    const DEFAULT_PORT: u16 = 3131;
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
        let client = |target, url: &str| {
            ServiceClient::new(target, url, &settings.client, Some(base.metrics.clone()))
                .map_err(|e| StartupError::Io(std::io::Error::other(e)))
        };
        let lease = Lease {
            length: settings.lease,
            // The longest one step can take: its budget, and the attempt running when it ends.
            step: settings.client.budget + settings.client.attempt_timeout,
        };
        let writes = Writes::start(base.pool.clone(), lease, settings.batch_max);
        let saga = Arc::new(Saga {
            pool: base.pool.clone(),
            writes: writes.clone(),
            participants: Participants {
                stock: client("stock", &settings.stock_url)?,
                payment: client("payment", &settings.payment_url)?,
            },
            metrics: SagaMetrics::register(&base.metrics.registry)?,
            lease: settings.lease,
            compensation_max_backoff: settings.compensation_max_backoff,
            runtime: tokio::runtime::Handle::current(),
        });
        let (recovering, recovery_interval, drain) = (
            saga.clone(),
            settings.recovery_interval,
            settings.common.shutdown_timeout,
        );
        let common = settings.common.clone();
        let settings = web::Data::new(settings);
        let saga = web::Data::new(saga);
        let writes = web::Data::new(writes);
        let server = base.serve(listener, &common, move |cfg| {
            cfg.app_data(settings.clone())
                .app_data(saga.clone())
                .app_data(writes.clone())
                .configure(routes::configure);
        })?;
        Ok(Running::new(port, server, |stop| {
            vec![tokio::spawn(recovery::run(
                recovering,
                recovery_interval,
                drain,
                stop,
            ))]
        }))
    }
}
