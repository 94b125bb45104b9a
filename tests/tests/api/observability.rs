//! Observability (docs/operations.md): the metrics each service exposes, scraped directly after traffic.

use serde_json::json;
use tests::{Part, Stack};

async fn scrape(s: &Stack, part: Part) -> String {
    s.metrics(part, 1).await
}

/// A series as `name` and its sorted labels.
fn series_key(series: &str) -> (String, Vec<String>) {
    match series.split_once('{') {
        Some((name, labels)) => {
            let mut labels: Vec<String> = labels
                .trim_end_matches('}')
                .split(',')
                .map(str::to_string)
                .collect();
            labels.sort();
            (name.to_string(), labels)
        }
        None => (series.to_string(), vec![]),
    }
}

/// The value of `series` (`name{label="value",...}`, labels in any order) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    let wanted = series_key(series);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| series_key(s) == wanted)
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn every_service_exposes_its_metrics_with_route_patterns() {
    let s = Stack::start().await;
    let ok = s.checkout(json!({"itemId": 1, "quantity": 2})).await;
    ok.expect(201, None);
    s.checkout(json!({"itemId": 1, "quantity": 999}))
        .await
        .expect(409, Some("insufficient_stock"));
    let declined = s.create_item(200_000, "USD", 3).await;
    s.checkout(json!({"itemId": declined, "quantity": 1}))
        .await
        .expect(402, Some("payment_declined"));
    let id = ok.json["orderId"].as_str().unwrap().to_string();
    s.get(&format!("/order/orders/{id}"), None)
        .await
        .expect(200, None);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let order = scrape(&s, Part::Order).await;
    for (series, at_least) in [
        (
            r#"checkouts_total{outcome="completed",service="order"}"#,
            1.0,
        ),
        (
            r#"checkouts_total{outcome="insufficient_stock",service="order"}"#,
            1.0,
        ),
        (
            r#"checkouts_total{outcome="payment_declined",service="order"}"#,
            1.0,
        ),
        (
            r#"saga_compensations_total{service="order",step="release"}"#,
            1.0,
        ),
        (
            r#"saga_step_duration_seconds_count{service="order",step="reserve"}"#,
            3.0,
        ),
        (
            r#"saga_step_duration_seconds_count{service="order",step="charge"}"#,
            2.0,
        ),
        (
            r#"saga_step_duration_seconds_count{service="order",step="complete"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="POST",route="/checkout",service="order",status="201"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="GET",route="/orders/{id}",service="order",status="200"}"#,
            1.0,
        ),
        (
            r#"http_request_duration_seconds_count{method="POST",route="/checkout",service="order"}"#,
            3.0,
        ),
        (
            r#"idempotency_requests_total{outcome="executed",service="order"}"#,
            3.0,
        ),
        (
            r#"outbound_requests_total{outcome="answered",service="order",target="stock"}"#,
            4.0,
        ),
        (
            r#"outbound_requests_total{outcome="answered",service="order",target="payment"}"#,
            2.0,
        ),
        (r#"saga_recoveries_total{service="order"}"#, 0.0),
        (r#"orders_in_flight{service="order"}"#, 0.0),
    ] {
        let value = sample(&order, series)
            .unwrap_or_else(|| panic!("{series} missing from order's metrics:\n{order}"));
        assert!(
            value >= at_least,
            "{series} = {value}, expected at least {at_least}"
        );
    }
    assert!(!order.contains(&id), "raw paths never become labels");

    let payment = scrape(&s, Part::Payment).await;
    for series in [
        r#"payments_total{service="payment",status="succeeded"}"#,
        r#"payments_total{service="payment",status="failed"}"#,
        r#"idempotency_requests_total{outcome="executed",service="payment"}"#,
        r#"http_requests_total{method="POST",route="/charge",service="payment",status="201"}"#,
    ] {
        assert!(
            sample(&payment, series).is_some_and(|v| v >= 1.0),
            "{series} in payment's metrics"
        );
    }

    let stock = scrape(&s, Part::Stock).await;
    for series in [
        r#"stock_reservations_total{outcome="reserved",service="stock"}"#,
        r#"stock_reservations_total{outcome="insufficient_stock",service="stock"}"#,
        r#"stock_reservations_total{outcome="completed",service="stock"}"#,
        r#"stock_reservations_total{outcome="released",service="stock"}"#,
    ] {
        assert!(
            sample(&stock, series).is_some_and(|v| v >= 1.0),
            "{series} in stock's metrics"
        );
    }
    assert_eq!(
        sample(&stock, r#"stock_available{item_id="1",service="stock"}"#),
        Some(8.0)
    );
}

#[tokio::test]
async fn logs_are_json_lines_without_secrets_and_follow_rust_log() {
    let s = Stack::start().await;
    let card = "4111111111111111";
    s.call(
        "/payment/charge",
        &json!({"amount": 10, "currency": "USD", "reference": card}),
    )
    .await
    .expect(201, None);
    s.admin(
        "/stock/items",
        &json!({"name": "x", "price": 1, "currency": "USD", "stock": 1}),
    )
    .await
    .expect(201, None);
    s.post(
        "/payment/charge",
        Some("wrong-secret-token"),
        Some("k"),
        &json!({}),
    )
    .await
    .expect(401, Some("unauthorized"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for part in [Part::Order, Part::Payment, Part::Stock] {
        let log = std::fs::read_to_string(s.log_path(part)).unwrap();
        for secret in [
            tests::service_token(),
            tests::admin_token(),
            "wrong-secret-token",
            card,
        ] {
            assert!(!log.contains(secret), "{part:?} logged {secret}");
        }
        for line in log.lines().filter(|l| l.starts_with('{')) {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            for field in ["timestamp", "level", "target", "message", "service"] {
                assert!(v.get(field).is_some(), "{field} in {line}");
            }
        }
        let access = log
            .lines()
            .find(|l| l.contains("request finished") && l.contains("/health"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(access).unwrap();
        for field in [
            "request_id",
            "trace_id",
            "span_id",
            "http.route",
            "status",
            "duration_ms",
        ] {
            assert!(
                v.get(field).is_some(),
                "{field} in the access line {access}"
            );
        }
    }

    // RUST_LOG filters.
    s.stop(Part::Stock).await;
    let before = std::fs::read_to_string(s.log_path(Part::Stock))
        .unwrap()
        .len();
    s.start_part(Part::Stock, &[("RUST_LOG", "warn")]).await;
    s.get("/stock/items/1", None).await.expect(200, None);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = std::fs::read_to_string(s.log_path(Part::Stock)).unwrap();
    assert!(
        !after[before..].contains("\"level\":\"INFO\""),
        "RUST_LOG=warn keeps info out"
    );
}
