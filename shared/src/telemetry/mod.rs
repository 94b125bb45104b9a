//! Logs and traces (docs/operations.md, "Logs, traces and metrics").
//!
//! - Logs: one JSON object per line on stdout — `timestamp`, `level`, `target`, `message`, `service`,
//!   the fields of the spans the event is in (`request_id`, `order_id`, ...), `trace_id` and
//!   `span_id` of the current OpenTelemetry span, and the event's own fields. `RUST_LOG` filters.
//! - Traces: inbound requests continue the caller's W3C `traceparent`; outbound calls carry the
//!   current span's ([`inject`]). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every `tracing` span is
//!   an OpenTelemetry span, exported over OTLP/HTTP from a background batch: exporter failures never
//!   touch requests. Without it nothing is exported, and spans get only their ids, for the logs and
//!   the calls ([`trace_ids`]).

pub mod log_lines;
pub mod metrics;
pub mod trace_ids;

use self::log_lines::{Flusher, LogLines};
use self::trace_ids::{SpanIds, TraceIds};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde::Serializer as _;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Span, Subscriber};
use tracing_actix_web::{RootSpanBuilder, TracingLogger};
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the tracer provider and the log writer; [`Telemetry::shutdown`] flushes what is left to
/// export and to write.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    logs: Flusher,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(Err(e)) = self.provider.map(|p| p.shutdown()) {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
        self.logs.shutdown();
    }
}

/// Whether spans are OpenTelemetry spans (an exporter is configured); set once by [`init`].
static EXPORTED: OnceLock<bool> = OnceLock::new();

fn exported() -> bool {
    EXPORTED.get().copied().unwrap_or(false)
}

/// Installs logging and tracing for `service`. Call once, first thing in `main`.
pub fn init(service: &'static str, default_filter: &str) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    let provider = if endpoint.trim().is_empty() {
        None
    } else {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself and posts to {endpoint}/v1/traces.
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_resource(Resource::builder().with_service_name(service).build())
                    .with_batch_exporter(exporter)
                    .build(),
            ),
            Err(e) => {
                eprintln!("{service}: traces will not be exported: {e}");
                None
            }
        }
    };
    let _ = EXPORTED.set(provider.is_some());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Lines are written by a thread of their own, many per write(2): a request never waits for
    // stdout, and none is dropped (see `log_lines`).
    let (lines, flusher) = LogLines::start();
    // Spans carry what an exported trace needs; busy/idle times (two clock reads on every poll of
    // an instrumented future), thread and source-location attributes are not kept.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
    });
    let ids = provider.is_none().then_some(TraceIds);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(traces)
        .with(ids)
        .with(JsonLines { service, lines })
        .try_init();
    Telemetry {
        provider,
        logs: flusher,
    }
}

/// Writes every event as one JSON line: `timestamp`, `level`, `target`, `service`, the
/// fields of the spans the event is in (outermost first), `trace_id` and `span_id` of the
/// innermost span that has them, then the event's own fields (`message`, ...). A field named
/// twice keeps its innermost value.
struct JsonLines {
    service: &'static str,
    lines: LogLines,
}

/// The fields of a span (without the `otel.*` ones, which name the exported span), kept as values
/// when the span is made or recorded into, for the lines of the events inside it.
#[derive(Default)]
struct SpanFields(Fields);

/// Field names and values, in the order first given; a name given again replaces its value.
#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}").into());
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if !name.starts_with("otel.") {
            self.set(name, value);
        }
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut fields.0);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut fields.0);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        let mut line = Fields(Vec::with_capacity(16));
        line.set(
            "timestamp",
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.set("level", meta.level().as_str().into());
        line.set("target", meta.target().into());
        line.set("service", self.service.into());
        if let Some(scope) = ctx.event_scope(event) {
            let mut ids = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<SpanFields>() {
                    for (name, value) in &fields.0 .0 {
                        line.set(name, value.clone());
                    }
                }
                if let Some(own) = extensions.get::<SpanIds>() {
                    ids = Some((own.trace_id, own.span_id));
                } else if let Some(otel) = extensions.get::<OtelData>() {
                    if let (Some(trace), Some(span)) = (otel.trace_id(), otel.span_id()) {
                        ids = Some((
                            u128::from_be_bytes(trace.to_bytes()),
                            u64::from_be_bytes(span.to_bytes()),
                        ));
                    }
                }
            }
            if let Some((trace, span)) = ids {
                if trace != 0 {
                    line.set("trace_id", format!("{trace:032x}").into());
                    line.set("span_id", format!("{span:016x}").into());
                }
            }
        }
        event.record(&mut line);
        let mut bytes = Vec::with_capacity(512);
        let mut json = serde_json::Serializer::new(&mut bytes);
        if json
            .collect_map(line.0.iter().map(|(name, value)| (name, value)))
            .is_ok()
        {
            bytes.push(b'\n');
            self.lines.push(&bytes);
        }
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
    if exported() {
        let context = Span::current().context();
        global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MapCarrier(&mut headers))
        });
    } else if let Some(ids) = self::trace_ids::of(&Span::current()) {
        headers.insert("traceparent".to_string(), ids.traceparent());
    }
    headers
}

/// Makes `span` (just made) a child of the remote span `parent` names.
fn set_parent(span: &Span, parent: Context) {
    if exported() {
        let _ = span.set_parent(parent);
    } else {
        self::trace_ids::set_remote_parent(span, &parent);
    }
}

/// The current span's W3C `traceparent`, to continue its trace later (e.g. from a stored order).
pub fn current_traceparent() -> Option<String> {
    inject().remove("traceparent")
}

/// Makes `span` a child of the span a stored `traceparent` names.
pub fn continue_trace(span: &Span, traceparent: &str) {
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent: Context = global::get_text_map_propagator(|p| p.extract(&MapCarrier(&mut carrier)));
    set_parent(span, parent);
}

/// Builds each request's root span: a server span continuing the caller's trace, carrying the
/// request id, named by the route pattern.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .headers()
            .get(&crate::http::request_id::HEADER)
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
        set_parent(&span, parent);
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
