//! Starting a service: its `main` ([`main`]: the runtime, logging, configuration, exit codes), the
//! [`Service`] each one implements, and [`Running`] — the server and its background workers, stopped
//! in order at SIGTERM. [`connect`] reaches the dependencies; [`Foundation`] is what every service
//! is built on.

pub mod connect;
mod foundation;

pub use foundation::Foundation;

use std::time::Duration;

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
    #[error("OpenAPI document: {0}")]
    Document(String),
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
/// threads (default 1: one thread, no work stealing between threads; see
/// docs/design/benchmarks.md for why that is the default).
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
            tracing::error!(error = %crate::http::problem::error_chain(&e), "{name} cannot start");
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
