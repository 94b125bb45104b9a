//! Builds and runs the stock service: connections, the application state, the HTTP server and
//! the sweeper.

use crate::application::{sweeper, Reservations};
use crate::config::{self, Settings};
use crate::metrics::StockMetrics;
use crate::state::AppState;
use crate::{api_doc, routes};
use actix_web::web;
use shared::startup::{Foundation, Running, StartupError};

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
        let metrics = StockMetrics::register(&base.metrics.registry)?;
        let sweeper = (base.pool.clone(), metrics.clone(), settings.sweep_interval);
        let tokens = web::Data::new(settings.tokens.clone());
        let common = settings.common.clone();
        let state = web::Data::new(AppState {
            reservations: Reservations::start(
                base.pool.clone(),
                settings.reservation_ttl_secs,
                settings.batch_max,
            ),
            pool: base.pool.clone(),
            metrics,
            settings,
        });
        let server = base.serve(listener, &common, move |cfg| {
            cfg.app_data(state.clone())
                .app_data(tokens.clone())
                .configure(routes::configure);
        })?;
        Ok(Running::new(port, server, |stop| {
            let (pool, metrics, every) = sweeper;
            vec![tokio::spawn(sweeper::run(pool, metrics, every, stop))]
        }))
    }
}
