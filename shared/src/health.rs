//! `GET /health/live`, `GET /health/ready` and its alias `GET /health` (SPEC §2).

use actix_web::{web, HttpResponse};
use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;
use std::time::{Duration, Instant};

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct HealthChecks {
    pub database: PgPool,
    pub redis: ConnectionManager,
}

#[derive(Serialize)]
struct Check {
    status: &'static str,
    #[serde(rename = "latencyMs")]
    latency_ms: u64,
}

#[derive(Serialize)]
struct Checks {
    database: Check,
    redis: Check,
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
    checks: Checks,
}

async fn timed<F, T, E>(probe: F) -> Check
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let ok = matches!(tokio::time::timeout(CHECK_TIMEOUT, probe).await, Ok(Ok(_)));
    Check {
        status: if ok { "healthy" } else { "unhealthy" },
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn ready(checks: web::Data<HealthChecks>) -> HttpResponse {
    let mut redis = checks.redis.clone();
    let (database, redis) = tokio::join!(
        timed(sqlx::query("SELECT 1").execute(&checks.database)),
        timed(async move { redis::cmd("PING").query_async::<String>(&mut redis).await }),
    );
    let healthy = database.status == "healthy" && redis.status == "healthy";
    let body = Ready {
        status: if healthy { "healthy" } else { "unhealthy" },
        checks: Checks { database, redis },
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Registers the health routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/health", web::get().to(ready));
}
