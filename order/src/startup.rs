//! Builds and runs the order service: connections, the saga, the recovery worker, the server.

use crate::api_doc::ApiDoc;
use crate::config::Settings;
use crate::metrics::SagaMetrics;
use crate::participants::Participants;
use crate::saga::Saga;
use crate::{recovery, routes};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use shared::http_client::ServiceClient;
use shared::startup::{not_found, Foundation, StartupError};
use shared::{metrics, request_id, telemetry};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa::OpenApi;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct Application {
    port: u16,
    server: Server,
    recovery: JoinHandle<()>,
    stop: watch::Sender<bool>,
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
        let client = |target, url: &str| {
            ServiceClient::new(target, url, &settings.client, Some(base.metrics.clone()))
                .map_err(|e| StartupError::Io(std::io::Error::other(e)))
        };
        let saga = Arc::new(Saga {
            pool: base.pool.clone(),
            participants: Participants {
                stock: client("stock", &settings.stock_url)?,
                payment: client("payment", &settings.payment_url)?,
            },
            metrics: SagaMetrics::register(&base.metrics.registry)?,
            lease: settings.lease,
            compensation_max_backoff: settings.compensation_max_backoff,
        });
        let (stop, stopped) = watch::channel(false);
        let recovery = tokio::spawn(recovery::run(
            saga.clone(),
            settings.recovery_interval,
            stopped,
        ));
        let shutdown = settings.common.shutdown_timeout.as_secs();
        let workers = settings.common.workers;
        let settings = web::Data::new(settings);
        let saga = web::Data::new(saga);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(metrics::track))
                .wrap(telemetry::logger())
                .wrap(from_fn(request_id::propagate))
                .configure(|cfg| base.configure(cfg))
                .app_data(settings.clone())
                .app_data(saga.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .shutdown_timeout(shutdown)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            recovery,
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, lets in-flight requests finish, then stops the recovery worker.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.stop.send(true);
        let _ = self.recovery.await;
        result
    }
}
