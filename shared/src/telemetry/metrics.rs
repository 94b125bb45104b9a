//! Prometheus metrics every service has (docs/operations.md), the per-request middleware that feeds them and
//! writes the access log line, and the `/metrics` endpoint. Services register their own metrics in
//! the same [`Metrics::registry`].

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::time::Instant;

pub struct Metrics {
    pub service: &'static str,
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub idempotency_requests: IntCounterVec,
    pub outbound_requests: IntCounterVec,
    pub outbound_retries: IntCounterVec,
}

impl Metrics {
    pub fn new(service: &'static str) -> Result<Self, prometheus::Error> {
        let labels = HashMap::from([("service".to_string(), service.to_string())]);
        let registry = Registry::new_custom(None, Some(labels))?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request duration").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["method", "route"],
        )?;
        let idempotency_requests = IntCounterVec::new(
            Opts::new(
                "idempotency_requests_total",
                "Requests through the Idempotency-Key layer by outcome",
            ),
            &["outcome"],
        )?;
        let outbound_requests = IntCounterVec::new(
            Opts::new(
                "outbound_requests_total",
                "Attempts of calls to other services by target and outcome",
            ),
            &["target", "outcome"],
        )?;
        let outbound_retries = IntCounterVec::new(
            Opts::new(
                "outbound_retries_total",
                "Retried attempts of calls to other services",
            ),
            &["target"],
        )?;
        registry.register(Box::new(outbound_requests.clone()))?;
        registry.register(Box::new(outbound_retries.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(idempotency_requests.clone()))?;
        Ok(Metrics {
            service,
            registry,
            http_requests,
            http_duration,
            idempotency_requests,
            outbound_requests,
            outbound_retries,
        })
    }
}

/// Middleware (`from_fn`): counts and times every request by route pattern (never the raw path)
/// and writes one access-log line.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(m) = metrics {
        m.http_requests
            .with_label_values(&[method.as_str(), route.as_str(), &status.to_string()])
            .inc();
        m.http_duration
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    // Method, route and request id are fields of the request's span, on this line too.
    tracing::info!(
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request finished"
    );
    Ok(response)
}

/// `GET /metrics`.
pub async fn endpoint(metrics: web::Data<Metrics>) -> HttpResponse {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&metrics.registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "could not encode metrics");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(buffer)
}
