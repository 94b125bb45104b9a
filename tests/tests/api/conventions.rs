//! The conventions of every service (docs/api.md): routing through nginx, request ids, bad input, health, docs.

use serde_json::json;
use tests::{
    new_key, new_order_id, service_token, workspace_root, Options, OwnPostgres, Part, Stack,
};

#[tokio::test]
async fn nginx_routes_by_prefix_and_passes_request_ids() {
    let s = Stack::start().await;
    let given = s
        .send(
            s.client
                .get(s.url("/stock/items/1"))
                .header("X-Request-ID", "req-abc-123"),
        )
        .await;
    given.expect(200, None);
    assert_eq!(given.header("x-request-id"), Some("req-abc-123"));
    assert_eq!(given.headers.get_all("x-request-id").iter().count(), 1);
    let made = s.get("/payment/health/live", None).await;
    assert_eq!(made.json, json!({"status": "ok"}));
    assert!(made.header("x-request-id").is_some_and(|id| id.len() >= 16));
    // The id reaches the service's logs.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(s.log_path(Part::Stock)).unwrap();
    assert!(log.contains("req-abc-123"), "request id in stock's log");

    s.get("/nowhere", None).await.expect(404, Some("not_found"));
    s.get("/stock/nowhere", None)
        .await
        .expect(404, Some("not_found"));
    for svc in ["order", "payment", "stock"] {
        s.get(&format!("/{svc}/metrics"), None)
            .await
            .expect(404, Some("not_found"));
        let direct = s
            .client
            .get(format!(
                "{}/metrics",
                s.service_url(match svc {
                    "order" => Part::Order,
                    "payment" => Part::Payment,
                    _ => Part::Stock,
                })
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status(), 200);
        let text = direct.text().await.unwrap();
        assert!(text.contains("http_requests_total"), "{svc} metrics");
    }
}

#[tokio::test]
async fn a_service_that_is_down_is_a_503_problem_through_nginx() {
    let s = Stack::start().await;
    assert_eq!(s.stop(Part::Payment).await, Some(0), "SIGTERM exits 0");
    let a = s.get("/payment/health/live", None).await;
    a.expect(503, Some("service_unavailable"));
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(a.header("x-request-id").is_some());
    // The others are unaffected, and payment comes back on the same port.
    s.get("/stock/health/ready", None).await.expect(200, None);
    s.start_part(Part::Payment, &[]).await;
    s.get("/payment/health/ready", None).await.expect(200, None);
}

#[tokio::test]
async fn with_postgresql_down_requests_answer_503_and_the_same_key_goes_through_after() {
    // A PostgreSQL server of this test's own, so that stopping it disturbs no other test. The
    // shared one is started first: two servers starting at once could pick the same free port.
    tests::postgres_url();
    let dir = workspace_root()
        .join(".stack/test")
        .join(format!("pg-outage-{}", std::process::id()));
    let (pg, url) = OwnPostgres::start_fresh(&dir);
    let s = Stack::start_with(Options {
        postgres_url: Some(url),
        ..Options::default()
    })
    .await;
    s.checkout(json!({"itemId": 3, "quantity": 1}))
        .await
        .expect(201, None);

    pg.stop(true);
    let key = new_key();
    let body = json!({"itemId": 3, "quantity": 1});
    let a = s.post("/order/checkout", None, Some(&key), &body).await;
    a.expect(503, Some("dependency_unavailable"));
    assert!(a.header("retry-after").is_some());
    s.get("/stock/items/3", None)
        .await
        .expect(503, Some("dependency_unavailable"));
    s.call(
        "/stock/reserve",
        &json!({"orderId": new_order_id(), "itemId": 3, "quantity": 1}),
    )
    .await
    .expect(503, Some("dependency_unavailable"));
    for service in ["order", "payment", "stock"] {
        let ready = s.get(&format!("/{service}/health/ready"), None).await;
        ready.expect(503, None);
        assert_eq!(ready.json["checks"]["database"]["status"], "unhealthy");
        assert_eq!(ready.json["checks"]["redis"]["status"], "healthy");
    }

    // Nothing was stored under the key: once PostgreSQL is back, it executes.
    pg.start();
    let mut answer = None;
    for _ in 0..100 {
        let a = s.post("/order/checkout", None, Some(&key), &body).await;
        if a.status == 201 {
            answer = Some(a);
            break;
        }
        assert!(
            a.status == 503 || (a.status == 409 && a.code() == "request_in_progress"),
            "{} {}",
            a.status,
            a.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = answer.expect("the same key goes through once PostgreSQL is back");
    assert_eq!(answer.json["status"], "completed");
    assert_eq!(s.item(3).await["stock"], 198);
    drop(s);
    pg.remove();
}

#[tokio::test]
async fn the_main_runtime_runs_on_one_thread_or_as_many_as_configured() {
    // A bad value is refused before anything starts, naming the variable.
    for bad in ["0", "two"] {
        let out = std::process::Command::new(workspace_root().join("target/debug/order"))
            .env_clear()
            .env("RUNTIME_THREADS", bad)
            .output()
            .expect("order runs");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "RUNTIME_THREADS={bad}: {text}");
        assert!(text.contains("RUNTIME_THREADS"), "{text}");
    }
    // Several threads serve the same checkout as the default one.
    let s = Stack::start_with(Options::default().env("RUNTIME_THREADS", 2)).await;
    s.checkout(json!({"itemId": 1, "quantity": 2}))
        .await
        .expect(201, None);
    let violations = s.quiet_and_check(std::time::Duration::from_secs(10)).await;
    assert!(violations.is_empty(), "{violations:?}");
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`): one shared and in use, where each test works on items of its own.
mod black_box {
    use super::*;

    #[tokio::test]
    async fn health_reports_each_dependency() {
        let s = Stack::start().await;
        for svc in ["order", "payment", "stock"] {
            for path in ["health/ready", "health"] {
                let a = s.get(&format!("/{svc}/{path}"), None).await;
                a.expect(200, None);
                assert_eq!(a.json["status"], "healthy");
                for check in ["database", "redis"] {
                    assert_eq!(a.json["checks"][check]["status"], "healthy");
                    assert!(a.json["checks"][check]["latencyMs"].is_u64());
                }
            }
        }
        let docs = s.get("/stock/docs", None).await;
        docs.expect(200, None);
        assert!(
            docs.text.contains("<html")
                || docs.text.contains("<!doctype")
                || docs.text.contains("<!DOCTYPE")
        );
        let spec = s.get("/payment/openapi.json", None).await;
        assert!(spec.json["openapi"].as_str().unwrap().starts_with("3."));
        assert!(spec.json["paths"]["/charge"]["post"].is_object());
    }

    /// Every bad body is a 400 `validation_error` naming the field, and nothing is written.
    #[tokio::test]
    async fn bad_input_is_answered_and_nothing_is_written() {
        let s = Stack::start().await;
        let item = s.create_item(1000, "USD", 10).await;
        let long_order = "o".repeat(129);
        let many_lines: Vec<_> = (1..=51)
            .map(|i| json!({"itemId": i, "quantity": 1}))
            .collect();
        let cases = [
            (
                "/stock/reserve",
                r#"{"orderId":"o","itemId":1,"#.to_string(),
                "malformed",
            ),
            ("/stock/reserve", "[1,2]".to_string(), "invalid type"),
            ("/stock/reserve", "".to_string(), "JSON object"),
            (
                "/stock/reserve",
                json!({"orderId":"o","itemId":"1","quantity":1}).to_string(),
                "itemId",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","itemId":item,"quantity":1,"coupon":"x"}).to_string(),
                "coupon",
            ),
            (
                "/stock/reserve",
                json!({"itemId":item,"quantity":1}).to_string(),
                "orderId",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","itemId":item,"quantity":0}).to_string(),
                "quantity",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","itemId":item,"quantity":-3}).to_string(),
                "quantity",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","itemId":item,"quantity":1001}).to_string(),
                "quantity",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","itemId":item,"quantity":1.5}).to_string(),
                "quantity",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","items": many_lines}).to_string(),
                "items",
            ),
            (
                "/stock/reserve",
                json!({"orderId": long_order,"itemId":item,"quantity":1}).to_string(),
                "orderId",
            ),
            (
                "/stock/reserve",
                json!({"orderId":"o","items":[{"itemId":item,"quantity":1,"x":1}]}).to_string(),
                "items[0]",
            ),
            ("/stock/release", json!({}).to_string(), "reservationId"),
            (
                "/payment/charge",
                json!({"amount":"10","currency":"USD"}).to_string(),
                "amount",
            ),
            (
                "/payment/charge",
                json!({"amount":10,"currency":"DOLLARS"}).to_string(),
                "currency",
            ),
            (
                "/payment/charge",
                json!({"amount":10,"currency":"USD","reference":"r".repeat(256)}).to_string(),
                "reference",
            ),
            (
                "/payment/charge",
                r#"{"amount":99999999999999999999,"currency":"USD"}"#.to_string(),
                "amount",
            ),
            (
                "/payment/refund",
                json!({"paymentId":1}).to_string(),
                "paymentId",
            ),
        ];
        for (path, body, names) in cases {
            let a = s
                .send(
                    s.client
                        .post(s.url(path))
                        .bearer_auth(service_token())
                        .header("Idempotency-Key", new_key())
                        .header("content-type", "application/json")
                        .body(body.clone()),
                )
                .await;
            a.expect(400, Some("validation_error"));
            let detail = a.json["detail"].as_str().unwrap_or("");
            assert!(
                detail.contains(names),
                "{path} {body}: detail {detail:?} should name {names}"
            );
        }
        // Over 64 KiB.
        let huge = json!({"orderId": new_order_id(), "itemId": item, "quantity": 1, "pad": "x".repeat(70_000)});
        let a = s
            .post(
                "/stock/reserve",
                Some(service_token()),
                Some(&new_key()),
                &huge,
            )
            .await;
        a.expect(413, Some("payload_too_large"));
        // Just under the limit reaches the service, which reads it and refuses the unknown field.
        let big = json!({"orderId": new_order_id(), "itemId": item, "quantity": 1, "pad": "x".repeat(60_000)});
        s.post(
            "/stock/reserve",
            Some(service_token()),
            Some(&new_key()),
            &big,
        )
        .await
        .expect(400, Some("validation_error"));

        assert_eq!(s.item(item).await["reserved"], 0);
        if s.is_own() {
            for (service, table) in [(Part::Stock, "reservations"), (Part::Payment, "payments")] {
                let db = s.db(service).await;
                let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                    .fetch_one(&db)
                    .await
                    .unwrap();
                assert_eq!(n, 0, "nothing half-written in {table}");
            }
        }
    }
}
