//! `GET /health/live`, `GET /health/ready` and its alias `GET /health`.

use crate::redis_conn::Redis;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

crate::text_enum! {
    pub enum Live {
        Ok = "ok",
    }
}

crate::text_enum! {
    pub enum Health {
        Healthy = "healthy",
        Unhealthy = "unhealthy",
    }
}

/// `GET /health/live`: the process runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Liveness {
    pub status: Live,
}

/// One dependency's check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Check {
    pub status: Health,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    pub database: Check,
    pub redis: Check,
}

/// `GET /health/ready`: whether PostgreSQL and Redis answer (200), or not (503).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    pub status: Health,
    pub checks: Checks,
}

#[derive(Clone)]
pub struct HealthChecks {
    pub database: PgPool,
    /// Checked with [`Redis::ping`]: the server, or every master of a cluster.
    pub redis: Redis,
}

async fn timed<F, T, E>(probe: F) -> Check
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let ok = matches!(tokio::time::timeout(CHECK_TIMEOUT, probe).await, Ok(Ok(_)));
    Check {
        status: if ok {
            Health::Healthy
        } else {
            Health::Unhealthy
        },
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// The process runs.
#[utoipa::path(get, path = "/health/live", tag = "health", operation_id = "live",
    responses((status = 200, body = Liveness, description = "the process runs")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: Live::Ok })
}

/// Whether the service can serve: PostgreSQL and Redis answer.
#[utoipa::path(get, path = "/health/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, body = Readiness, description = "PostgreSQL and Redis answer"),
        (status = 503, body = Readiness, description = "a dependency does not answer")))]
pub async fn ready(checks: web::Data<HealthChecks>) -> HttpResponse {
    let mut redis = checks.redis.clone();
    let (database, redis) = tokio::join!(
        timed(sqlx::query("SELECT 1").execute(&checks.database)),
        timed(async move { redis.ping().await }),
    );
    let healthy = database.status == Health::Healthy && redis.status == Health::Healthy;
    let body = Readiness {
        status: if healthy {
            Health::Healthy
        } else {
            Health::Unhealthy
        },
        checks: Checks { database, redis },
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The same as `/health/ready`.
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "health",
    responses(
        (status = 200, body = Readiness, description = "PostgreSQL and Redis answer"),
        (status = 503, body = Readiness, description = "a dependency does not answer")))]
pub async fn health(checks: web::Data<HealthChecks>) -> HttpResponse {
    ready(checks).await
}

/// The health operations, for a service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(live, ready, health))]
pub struct HealthDoc;

/// Registers the health routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use super::routing::only;
    cfg.service(only(web::resource("/health/live"), &["GET"]).route(web::get().to(live)))
        .service(only(web::resource("/health/ready"), &["GET"]).route(web::get().to(ready)))
        .service(only(web::resource("/health"), &["GET"]).route(web::get().to(health)));
}
