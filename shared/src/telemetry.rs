//! Logs and traces (SPEC §7).
//!
//! - Logs: one JSON object per line on stdout — `timestamp`, `level`, `target`, `message`, `service`,
//!   the fields of the spans the event is in (`request_id`, `order_id`, ...), `trace_id` and
//!   `span_id` of the current OpenTelemetry span, and the event's own fields. `RUST_LOG` filters.
//! - Traces: every `tracing` span is an OpenTelemetry span. Inbound requests continue the caller's
//!   W3C `traceparent`; outbound calls carry the current span's ([`inject`]). Spans are exported over
//!   OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, from a background batch: exporter failures
//!   never touch requests. Without it nothing is exported, and ids are still made for the logs.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Span, Subscriber};
use tracing_actix_web::{RootSpanBuilder, TracingLogger};
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the tracer provider; [`Telemetry::shutdown`] flushes what is left to export.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
    }
}

/// Installs logging and tracing for `service`. Call once, first thing in `main`.
pub fn init(service: &'static str, default_filter: &str) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let mut provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build());
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if !endpoint.trim().is_empty() {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself and posts to {endpoint}/v1/traces.
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => provider = provider.with_batch_exporter(exporter),
            Err(e) => eprintln!("{service}: traces will not be exported: {e}"),
        }
    }
    let provider = provider.build();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(JsonLines { service })
        .with_writer(std::io::stdout);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(service)))
        .with(logs)
        .try_init();
    Telemetry { provider }
}

/// The JSON line format of SPEC §7.
struct JsonLines {
    service: &'static str,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("service".into(), self.service.into());
        if let Some(scope) = ctx.event_scope() {
            let mut ids = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                        line.extend(fields.into_iter().filter(|(k, _)| !k.starts_with("otel.")));
                    }
                }
                if let Some(otel) = extensions.get::<OtelData>() {
                    if let (Some(trace), Some(span)) = (otel.trace_id(), otel.span_id()) {
                        ids = Some((trace, span));
                    }
                }
            }
            if let Some((trace, span)) = ids {
                if trace != opentelemetry::TraceId::INVALID {
                    line.insert("trace_id".into(), trace.to_string().into());
                    line.insert("span_id".into(), span.to_string().into());
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields into the line.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

impl Extractor for MapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The propagation headers (`traceparent`, ...) of the current span, for an outbound call.
pub fn inject() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut MapCarrier(&mut headers)));
    headers
}

/// The current span's W3C `traceparent`, to continue its trace later (e.g. from a stored order).
pub fn current_traceparent() -> Option<String> {
    inject().remove("traceparent")
}

/// Makes `span` a child of the span a stored `traceparent` names.
pub fn continue_trace(span: &Span, traceparent: &str) {
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent: Context = global::get_text_map_propagator(|p| p.extract(&MapCarrier(&mut carrier)));
    let _ = span.set_parent(parent);
}

/// Builds each request's root span: a server span continuing the caller's trace, carrying the
/// request id, named by the route pattern.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .headers()
            .get(&crate::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let method = request.method().as_str();
        let span = tracing::info_span!(
            "request",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
            request_id = %request_id,
        );
        let parent =
            global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
        let _ = span.set_parent(parent);
        span
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

pub fn logger() -> TracingLogger<RequestSpan> {
    TracingLogger::<RequestSpan>::new()
}
