//! Logging: one JSON object per line on stdout, filtered by `RUST_LOG`, and a root span per request
//! carrying the service name and the request id.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{RootSpanBuilder, TracingLogger};
use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber. Call once, first thing in `main`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// Builds each request's root span from `X-Request-ID`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .headers()
            .get(&crate::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let service = request
            .app_data::<actix_web::web::Data<crate::metrics::Metrics>>()
            .map_or("unknown", |m| m.service);
        tracing::info_span!("request", service, request_id = %request_id)
    }

    fn on_request_end<B: MessageBody>(
        _span: Span,
        _outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
    }
}

pub fn logger() -> TracingLogger<RequestSpan> {
    TracingLogger::<RequestSpan>::new()
}
