//! Start-up helpers: connecting to PostgreSQL (creating the service's database and running its
//! embedded migrations) and Redis with bounded retries, binding the listener, the extractor
//! configuration that turns every bad input into problem+json, and the routes every service has.

use crate::config::CommonSettings;
use crate::json::BODY_LIMIT;
use crate::problem::Problem;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::net::TcpListener;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("PostgreSQL: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migrations: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Retries `attempt` every 500 ms until it succeeds or `timeout` has passed.
async fn with_retries<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() < timeout => {
                tracing::warn!(error = %e, "{what} not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects to the service's database, creating it when missing, and runs its migrations.
pub async fn connect_database(
    settings: &CommonSettings,
    migrator: &Migrator,
) -> Result<PgPool, StartupError> {
    let url = settings.database_url.as_str();
    with_retries("PostgreSQL", settings.startup_timeout, || async {
        if !Postgres::database_exists(url).await? {
            if let Err(e) = Postgres::create_database(url).await {
                // Another instance may have created it meanwhile.
                if !Postgres::database_exists(url).await? {
                    return Err(e);
                }
            }
        }
        Ok(())
    })
    .await
    .map_err(StartupError::Database)?;
    // Every query is prepared once per connection; a generic plan spares the planner on each
    // execution (PostgreSQL otherwise re-plans parameterised CTEs every time).
    let options = PgConnectOptions::from_str(url)
        .map_err(StartupError::Database)?
        .options([("plan_cache_mode", "force_generic_plan")]);
    // No ping before each use (sqlx's default), which would double the round trips: a connection
    // broken by a database restart fails its next query, which answers 503 (retryable) and is
    // discarded from the pool.
    let pool = PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(StartupError::Database)?;
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Connects to Redis with a connection manager that reconnects by itself, with bounded timeouts so
/// that a Redis outage fails requests quickly instead of hanging them.
/// How every Redis connection of a service is made: short timeouts, one retry, so that an outage
/// answers 503 quickly.
pub fn redis_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
}

pub async fn connect_redis(settings: &CommonSettings) -> Result<ConnectionManager, StartupError> {
    let client = redis::Client::open(settings.redis_url.as_str())?;
    Ok(with_retries("Redis", settings.startup_timeout, || {
        ConnectionManager::new_with_config(client.clone(), redis_config())
    })
    .await?)
}

pub fn bind(settings: &CommonSettings) -> Result<TcpListener, StartupError> {
    Ok(TcpListener::bind((settings.host.as_str(), settings.port))?)
}

/// Registers what every service has: body limits, problem+json for bad paths and queries,
/// health and metrics.
pub fn common_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(BODY_LIMIT))
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _| Problem::validation(format!("path: {err}")).into()),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| Problem::validation(format!("query: {err}")).into()),
        )
        .configure(crate::health::routes)
        .route("/metrics", web::get().to(crate::metrics::endpoint));
}

/// The default service: 404 `not_found` (or 405 when the path exists under another method).
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {} {}", req.method(), req.path()),
    )
    .to_response()
}

pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .to_response()
}

/// What a service's `main` needs to know of it.
pub trait Service {
    type Settings;
    const NAME: &'static str;
    /// The port it listens on when `PORT` is not set.
    const DEFAULT_PORT: u16;
    fn settings() -> Result<Self::Settings, crate::config::ConfigError>;
    fn build(
        settings: Self::Settings,
    ) -> impl std::future::Future<Output = Result<Running, StartupError>>;
}

/// A started service: its HTTP server and its background workers, which get a stop signal once
/// the server has shut down.
pub struct Running {
    port: u16,
    server: actix_web::dev::Server,
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// `spawn_workers` receives the stop signal to hand to each background worker it starts.
    pub fn new(
        port: u16,
        server: actix_web::dev::Server,
        spawn_workers: impl FnOnce(
            tokio::sync::watch::Receiver<bool>,
        ) -> Vec<tokio::task::JoinHandle<()>>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Running {
            port,
            server,
            workers: spawn_workers(stopped),
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, lets in-flight requests finish, then stops the workers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.stop.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
        result
    }
}

/// Every service's `main`: builds the main runtime, then [`run_service`] on it.
///
/// The main runtime runs what a request waits for but does not run itself — the saga's drivers and
/// outbound calls, the batched writes — and the background workers. It has `RUNTIME_THREADS`
/// threads (default 1: one thread, no work stealing between threads, which on the benchmark's
/// 2-core machine cost less CPU per checkout than a thread per core).
pub fn main<S: Service>() -> std::process::ExitCode {
    let threads = match crate::config::var_or("RUNTIME_THREADS", 1usize) {
        Ok(threads) if threads >= 1 => threads,
        Ok(_) => {
            eprintln!("{}: RUNTIME_THREADS must be at least 1", S::NAME);
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{}: {e}", S::NAME);
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(run_service::<S>()),
        Err(e) => {
            eprintln!("{}: the runtime cannot start: {e}", S::NAME);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The body of every service's `main`: logging, configuration (exit 2 when invalid), start-up
/// (exit 1 when a dependency stays unreachable), serving, and exit 0 after a clean shutdown.
/// With `--healthcheck` a service binary only asks a running instance (on `PORT`) whether it is
/// ready and exits 0 or 1: the container health check, with no curl in the image.
pub async fn run_service<S: Service>() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--healthcheck") {
        return healthcheck(S::DEFAULT_PORT);
    }
    let telemetry = crate::telemetry::init(S::NAME, "info,sqlx=warn");
    let code = serve::<S>().await;
    // Flushes the spans still waiting for export (a blocking call).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

async fn serve<S: Service>() -> std::process::ExitCode {
    use std::process::ExitCode;
    let name = S::NAME;
    let settings = match S::settings() {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(error = %e, "{name} cannot start");
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let app: Running = match S::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %crate::problem::error_chain(&e), "{name} cannot start");
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "{name} listening");
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("{name} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            ExitCode::FAILURE
        }
    }
}

/// What every service is built on: its database (migrated), Redis, the listener, and the shared
/// app data (pool, metrics, idempotency store, health checks) with the common routes and docs.
#[derive(Clone)]
pub struct Foundation {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub metrics: web::Data<crate::metrics::Metrics>,
    redis_client: redis::Client,
    idempotency_ttl: Duration,
    idempotency_lock: Duration,
    health: web::Data<crate::health::HealthChecks>,
    openapi: utoipa::openapi::OpenApi,
}

impl Foundation {
    pub async fn connect(
        settings: &CommonSettings,
        migrator: &Migrator,
        openapi: utoipa::openapi::OpenApi,
    ) -> Result<(Self, TcpListener), StartupError> {
        let pool = connect_database(settings, migrator).await?;
        let redis = connect_redis(settings).await?;
        let listener = bind(settings)?;
        let foundation = Foundation {
            metrics: web::Data::new(crate::metrics::Metrics::new(settings.service)?),
            redis_client: redis::Client::open(settings.redis_url.as_str())?,
            idempotency_ttl: settings.idempotency_ttl,
            idempotency_lock: settings.idempotency_lock,
            health: web::Data::new(crate::health::HealthChecks {
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
    /// outermost, then the request's span, then metrics and the access line, so each layer sees what
    /// the outer ones set — the shared app data and routes, the service's own (`configure`), and
    /// problem+json 404s for everything else.
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
                .wrap(from_fn(crate::metrics::track))
                .wrap(crate::telemetry::logger())
                .wrap(from_fn(crate::request_id::propagate))
                .configure(|cfg| self.configure(cfg))
                .configure(configure.clone())
                .default_service(web::to(not_found))
        })
        .workers(settings.workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .listen(listener)?
        .run();
        Ok(server)
    }

    /// Registers the shared app data, the routes every service has, and `/openapi.json` + `/docs`.
    /// Runs once per HTTP worker: each worker has an Idempotency-Key store of its own, whose Redis
    /// connection it opens on first use, so that the connection's I/O runs on the worker's thread
    /// (a connection made at start-up would wake another thread on every command).
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.pool.clone()))
            .app_data(self.metrics.clone())
            .app_data(web::Data::new(crate::idempotency::Store::new(
                self.redis_client.clone(),
                self.idempotency_ttl,
                self.idempotency_lock,
            )))
            .app_data(self.health.clone())
            .configure(common_routes)
            .configure(crate::docs::routes(self.openapi.clone()));
    }
}

fn healthcheck(default_port: u16) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let port: u16 = crate::config::var_or("PORT", default_port).unwrap_or(default_port);
    let ask = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 16];
        let n = stream.read(&mut head)?;
        Ok(head[..n].starts_with(b"HTTP/1.1 200") || head[..n].starts_with(b"HTTP/1.0 200"))
    };
    match ask() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    }
}
