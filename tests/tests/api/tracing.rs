//! Traces (docs/operations.md): a small OTLP/HTTP receiver (decoding with the `opentelemetry-proto` types)
//! collects what the three services export; one checkout must be one trace across order, stock and
//! payment, with the saga steps as spans and correct parent links.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::{Options, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
struct Collected {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Collected>>>,
}

impl Receiver {
    /// Listens on a free port; returns the OTLP endpoint to give the services.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let receiver = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let receiver = receiver.clone();
                tokio::spawn(async move { receiver.serve(stream).await });
            }
        });
        endpoint
    }

    /// Answers POST /v1/traces requests on one keep-alive connection.
    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buffer.drain(..head_end + length).skip(head_end).collect();
            if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) {
                self.collect(request);
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    fn collect(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Collected {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
    }

    fn spans(&self) -> Vec<Collected> {
        self.spans.lock().unwrap().clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_checkout_is_one_trace_across_the_three_services() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let s = Stack::start_with(
        Options::default()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", 100),
    )
    .await;
    let a = s.checkout(json!({"itemId": 1, "quantity": 1})).await;
    a.expect(201, None);

    // The order's spans for this checkout carry its id; wait for the three services' exports.
    let mut trace = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = receiver.spans();
        let Some(saga_trace) = spans
            .iter()
            .find(|x| x.name == "checkout.saga")
            .map(|x| x.trace_id.clone())
        else {
            continue;
        };
        trace = spans
            .into_iter()
            .filter(|x| x.trace_id == saga_trace)
            .collect();
        let services: std::collections::BTreeSet<&str> =
            trace.iter().map(|x| x.service.as_str()).collect();
        // The request's own span ends after the answer, so it may come in a later export than
        // the saga's: wait for it too.
        let has_server_span = trace
            .iter()
            .any(|x| x.service == "order" && x.name == "POST /checkout");
        if services.len() == 3
            && trace.iter().filter(|x| x.service == "stock").count() >= 2
            && has_server_span
        {
            break;
        }
    }
    let find = |service: &str, name: &str| {
        trace
            .iter()
            .find(|x| x.service == service && x.name == name)
            .unwrap_or_else(|| panic!("no {service} span {name} in {trace:#?}"))
            .clone()
    };
    let server = find("order", "POST /checkout");
    let saga = find("order", "checkout.saga");
    assert_eq!(
        saga.parent_span_id, server.span_id,
        "the saga continues the checkout request"
    );
    let reserve = find("order", "saga.reserve");
    let charge = find("order", "saga.charge");
    let complete = find("order", "saga.complete");
    for step in [&reserve, &charge, &complete] {
        assert_eq!(
            step.parent_span_id, saga.span_id,
            "{} is a step of the saga",
            step.name
        );
    }
    // Each participant's server span is a child of the step that called it.
    let stock_spans: Vec<&Collected> = trace.iter().filter(|x| x.service == "stock").collect();
    assert!(
        stock_spans
            .iter()
            .any(|x| x.name == "POST /reserve" && x.parent_span_id == reserve.span_id),
        "{stock_spans:#?}"
    );
    assert!(
        stock_spans
            .iter()
            .any(|x| x.name == "POST /complete" && x.parent_span_id == complete.span_id),
        "{stock_spans:#?}"
    );
    let payment = find("payment", "POST /charge");
    assert_eq!(payment.parent_span_id, charge.span_id);
    // And the logs of all three services carry that trace id.
    for part in [tests::Part::Order, tests::Part::Stock, tests::Part::Payment] {
        let log = std::fs::read_to_string(s.log_path(part)).unwrap();
        assert!(
            log.contains(&format!("\"trace_id\":\"{}\"", saga.trace_id)),
            "{part:?} logged the trace"
        );
    }
}

#[tokio::test]
async fn an_unreachable_collector_never_affects_requests() {
    let s = Stack::start_with(
        Options::default()
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", tests::free_port()),
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", 50),
    )
    .await;
    for _ in 0..5 {
        s.checkout(json!({"itemId": 2, "quantity": 1}))
            .await
            .expect(201, None);
    }
}
