//! W3C trace context for the logs and the outbound calls, when no spans are exported.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` unset nothing would receive an OpenTelemetry span, yet every
//! log line still names its trace and span, inbound requests still continue the caller's
//! `traceparent` and outbound calls still carry one. This layer gives each span just that — a
//! trace id (its parent's, a remote parent's, or a new one) and a span id — instead of the
//! OpenTelemetry layer building, for nothing, a span with its attributes (docs/design/benchmarks.md
//! has what that cost).

use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use tracing::span::{Attributes, Id};
use tracing::{Span, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// A span's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: u128,
    pub span_id: u64,
    /// W3C trace flags (01: sampled), passed on as received.
    pub flags: u8,
}

impl SpanIds {
    /// The `traceparent` header naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// A random id other than zero (W3C: an all-zero id is invalid).
fn nonzero<T: PartialEq + Default>(draw: fn() -> T) -> T {
    loop {
        let id = draw();
        if id != T::default() {
            return id;
        }
    }
}

/// The layer: every new span gets ids, its trace being its parent span's.
pub struct TraceIds;

impl<S> Layer<S> for TraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let parent = span
                .parent()
                .and_then(|p| p.extensions().get::<SpanIds>().copied());
            let ids = SpanIds {
                trace_id: parent.map_or_else(|| nonzero(rand::random::<u128>), |p| p.trace_id),
                span_id: nonzero(rand::random::<u64>),
                flags: parent.map_or(1, |p| p.flags),
            };
            span.extensions_mut().insert(ids);
        }
    }
}

/// The ids of `span`, when it has them.
pub fn of(span: &Span) -> Option<SpanIds> {
    let mut found = None;
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<Registry>() {
            found = registry
                .span(id)
                .and_then(|s| s.extensions().get::<SpanIds>().copied());
        }
    });
    found
}

/// Makes `span` (just made, before any span inside it) part of the remote trace `parent`
/// names; an invalid `parent` leaves it as it is.
pub fn set_remote_parent(span: &Span, parent: &Context) {
    let remote: SpanContext = parent.span().span_context().clone();
    if !remote.is_valid() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<Registry>() {
            if let Some(span) = registry.span(id) {
                let mut extensions = span.extensions_mut();
                if let Some(ids) = extensions.get_mut::<SpanIds>() {
                    ids.trace_id = u128::from_be_bytes(remote.trace_id().to_bytes());
                    ids.flags = remote.trace_flags().to_u8();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use std::collections::HashMap;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn children_share_their_trace_and_a_remote_parent_names_it() {
        let subscriber = tracing_subscriber::registry().with(TraceIds);
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            let remote = TraceContextPropagator::new().extract(&HashMap::from([(
                "traceparent".to_string(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
            )]));
            set_remote_parent(&root, &remote);
            let root_ids = of(&root).unwrap();
            assert_eq!(
                format!("{:032x}", root_ids.trace_id),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let child = root.in_scope(|| tracing::info_span!("child"));
            let child_ids = of(&child).unwrap();
            assert_eq!(child_ids.trace_id, root_ids.trace_id);
            assert_ne!(child_ids.span_id, root_ids.span_id);
            assert_eq!(
                child_ids.traceparent(),
                format!(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-{:016x}-01",
                    child_ids.span_id
                )
            );
            // A span of its own starts a trace of its own; a malformed parent changes nothing.
            let other = tracing::info_span!("other");
            let before = of(&other).unwrap();
            assert_ne!(before.trace_id, root_ids.trace_id);
            set_remote_parent(&other, &Context::new());
            assert_eq!(of(&other).unwrap(), before);
        });
    }
}
