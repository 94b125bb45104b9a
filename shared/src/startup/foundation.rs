//! What every service is built on: its database (migrated), Redis, the listener, the shared app
//! data the layers read (metrics, the Idempotency-Key store, health checks), the routes every
//! service has, and the HTTP server with its middleware.

use super::{connect, StartupError};
use crate::config::CommonSettings;
use crate::http::json::BODY_LIMIT;
use crate::http::problem::Problem;
use crate::http::{health, request_id, routing};
use crate::idempotency::KeyPrefix;
use crate::openapi;
use crate::redis_conn::{Redis, RedisTarget};
use crate::telemetry::{self, metrics::Metrics};
use actix_web::web;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use std::net::TcpListener;
use std::time::Duration;

#[derive(Clone)]
pub struct Foundation {
    pub pool: PgPool,
    pub redis: Redis,
    pub metrics: web::Data<Metrics>,
    redis_target: RedisTarget,
    redis_key_prefix: KeyPrefix,
    idempotency_ttl: Duration,
    idempotency_lock: Duration,
    health: web::Data<health::HealthChecks>,
    openapi: serde_json::Value,
}

impl Foundation {
    /// Connects to PostgreSQL (migrating) and Redis and binds the listener. `openapi` is the
    /// service's complete document ([`openapi::document`]).
    pub async fn connect(
        settings: &CommonSettings,
        migrator: &Migrator,
        openapi: serde_json::Value,
    ) -> Result<(Self, TcpListener), StartupError> {
        let pool = connect::database(settings, migrator).await?;
        let redis = connect::redis(settings).await?;
        let listener = connect::bind(settings)?;
        let foundation = Foundation {
            metrics: web::Data::new(Metrics::new(settings.service)?),
            redis_target: settings.redis.clone(),
            redis_key_prefix: settings.redis_key_prefix.clone(),
            idempotency_ttl: settings.idempotency_ttl,
            idempotency_lock: settings.idempotency_lock,
            health: web::Data::new(health::HealthChecks {
                database: pool.clone(),
                redis: redis.clone(),
            }),
            pool,
            redis,
            openapi,
        };
        Ok((foundation, listener))
    }

    /// Starts the HTTP server on `listener`: the middleware every service has — the request id
    /// outermost, then the request's span, then metrics and the access line, so each layer sees
    /// what the outer ones set — the shared app data and routes, the service's own (`configure`),
    /// and problem+json 404s for everything else.
    pub fn serve<F>(
        self,
        listener: TcpListener,
        settings: &CommonSettings,
        configure: F,
    ) -> Result<actix_web::dev::Server, StartupError>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        use actix_web::middleware::from_fn;
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .wrap(from_fn(telemetry::metrics::track))
                .wrap(telemetry::logger())
                .wrap(from_fn(request_id::propagate))
                .configure(|cfg| self.configure(cfg))
                .configure(configure.clone())
                .default_service(web::to(routing::not_found))
        })
        .workers(settings.workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .listen(listener)?
        .run();
        Ok(server)
    }

    /// Registers the shared app data, the routes every service has, and `/openapi.json` +
    /// `/docs`. Runs once per HTTP worker: each worker has an Idempotency-Key store of its own,
    /// whose Redis connection it opens on first use, so that the connection's I/O runs on the
    /// worker's thread (a connection made at start-up would wake another thread on every command).
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.metrics.clone())
            .app_data(web::Data::new(crate::idempotency::Store::new(
                self.redis_target.clone(),
                self.redis_key_prefix.clone(),
                self.idempotency_ttl,
                self.idempotency_lock,
            )))
            .app_data(self.health.clone())
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|err, _| Problem::validation(format!("path: {err}")).into()),
            )
            .configure(health::routes)
            .service(
                routing::only(web::resource("/metrics"), &["GET"])
                    .route(web::get().to(telemetry::metrics::endpoint)),
            )
            .configure(openapi::routes(self.openapi.clone()));
    }
}
