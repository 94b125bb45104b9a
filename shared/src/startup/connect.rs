//! Reaching a service's dependencies at start: PostgreSQL (creating the service's database when
//! missing and running its embedded migrations) and Redis, with bounded retries, and binding the
//! listener.

use super::StartupError;
use crate::config::CommonSettings;
use crate::redis_conn::Redis;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::net::TcpListener;
use std::str::FromStr;
use std::time::{Duration, Instant};

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
pub async fn database(
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

/// Connects to Redis — one server or a cluster ([`crate::redis_conn`]).
pub async fn redis(settings: &CommonSettings) -> Result<Redis, StartupError> {
    tracing::info!(redis = %settings.redis.describe(), "connecting to Redis");
    Ok(with_retries("Redis", settings.startup_timeout, || {
        settings.redis.connect()
    })
    .await?)
}

pub fn bind(settings: &CommonSettings) -> Result<TcpListener, StartupError> {
    Ok(TcpListener::bind((settings.host.as_str(), settings.port))?)
}
