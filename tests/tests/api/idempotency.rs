//! The Idempotency-Key layer (docs/api.md, docs/design/idempotency.md), including Redis loss and outages.

use futures_util::future::join_all;
use serde_json::json;
use tests::{
    new_key, new_order_id, Options, Part, Stack, ADMIN_TOKEN, SERVICE_TOKEN, SERVICE_TOKEN_2,
};

#[tokio::test]
async fn missing_and_malformed_keys_are_refused_before_anything_runs() {
    let s = Stack::start().await;
    let body = json!({"orderId": new_order_id(), "itemId": 1, "quantity": 1});
    s.post("/stock/reserve", Some(SERVICE_TOKEN), None, &body)
        .await
        .expect(400, Some("idempotency_key_missing"));
    for bad in ["", "\"\"", "\"unterminated", "tab\tinside"] {
        s.post("/stock/reserve", Some(SERVICE_TOKEN), Some(bad), &body)
            .await
            .expect(400, Some("idempotency_key_invalid"));
    }
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&"k".repeat(256)),
        &body,
    )
    .await
    .expect(400, Some("idempotency_key_invalid"));
    assert_eq!(s.item(1).await["reserved"], 0);
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&"k".repeat(255)),
        &body,
    )
    .await
    .expect(201, None);
}

#[tokio::test]
async fn a_finished_request_is_replayed_byte_for_byte() {
    let s = Stack::start().await;
    let key = new_key();
    let body = json!({"name":"Lamp","price":4200,"currency":"USD","stock":2});
    let first = s
        .post("/stock/items", Some(ADMIN_TOKEN), Some(&key), &body)
        .await;
    first.expect(201, None);
    assert_eq!(first.header("idempotent-replayed"), None);
    // Same request written differently (key order, spacing): same fingerprint.
    let again = s
        .send(
            s.client
                .post(s.url("/stock/items"))
                .bearer_auth(ADMIN_TOKEN)
                .header("Idempotency-Key", format!("\"{key}\""))
                .header("content-type", "application/json")
                .body(r#"{ "stock": 2, "currency": "USD", "price": 4200, "name": "Lamp" }"#),
        )
        .await;
    again.expect(201, None);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("content-type"), first.header("content-type"));
    let list = s.get("/stock/items?limit=1000", None).await;
    let lamps = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"] == "Lamp")
        .count();
    assert_eq!(lamps, 1);

    // Business refusals are kept too.
    let key = new_key();
    let big = json!({"orderId": new_order_id(), "itemId": 1, "quantity": 999});
    s.post("/stock/reserve", Some(SERVICE_TOKEN), Some(&key), &big)
        .await
        .expect(409, Some("insufficient_stock"));
    let replay = s
        .post("/stock/reserve", Some(SERVICE_TOKEN), Some(&key), &big)
        .await;
    replay.expect(409, Some("insufficient_stock"));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let s = Stack::start().await;
    let key = new_key();
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&key),
        &json!({"orderId": new_order_id(), "itemId": 1, "quantity": 1}),
    )
    .await
    .expect(201, None);
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&key),
        &json!({"orderId": new_order_id(), "itemId": 1, "quantity": 2}),
    )
    .await
    .expect(422, Some("idempotency_key_reused"));
    assert_eq!(s.item(1).await["reserved"], 1);
}

#[tokio::test]
async fn keys_are_scoped_per_route_and_per_caller() {
    let s = Stack::start().await;
    let key = new_key();
    let order = new_order_id();
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&key),
        &json!({"orderId": order, "itemId": 1, "quantity": 1}),
    )
    .await
    .expect(201, None);
    // Same key, another route: its own request.
    let rel = s
        .post(
            "/stock/release",
            Some(SERVICE_TOKEN),
            Some(&key),
            &json!({"orderId": order}),
        )
        .await;
    rel.expect(200, None);
    assert_eq!(rel.header("idempotent-replayed"), None);
    // Same key, same route, another caller: its own request.
    let other = new_order_id();
    let a = s
        .post(
            "/stock/reserve",
            Some(SERVICE_TOKEN_2),
            Some(&key),
            &json!({"orderId": other, "itemId": 1, "quantity": 1}),
        )
        .await;
    a.expect(201, None);
    assert_eq!(a.json["orderId"], other.as_str());
}

#[tokio::test]
async fn a_request_that_failed_validation_or_with_5xx_may_be_retried_with_its_key() {
    let s = Stack::start().await;
    let key = new_key();
    let order = new_order_id();
    s.post(
        "/payment/charge",
        Some(SERVICE_TOKEN),
        Some(&key),
        &json!({"orderId": order, "amount": -1, "currency": "USD"}),
    )
    .await
    .expect(400, Some("validation_error"));
    let body = json!({"orderId": order, "amount": 10, "currency": "USD"});

    // A real 5xx: the payments table is unusable for a moment.
    let db = s.db(Part::Payment).await;
    sqlx::query("ALTER TABLE payments RENAME TO payments_away")
        .execute(&db)
        .await
        .unwrap();
    let broken = s
        .post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body)
        .await;
    broken.expect(500, Some("internal_error"));
    assert!(
        !broken.text.contains("payments_away") && !broken.text.contains("relation"),
        "no SQL leaks: {}",
        broken.text
    );
    // Logged once, with its cause, for the operator (and never sent to the client).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(s.log_path(Part::Payment)).unwrap();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "one log line per internal error: {logged:?}"
    );
    assert!(
        logged[0].contains("\"message\":\"internal error\"") && logged[0].contains("payments"),
        "the cause is in the log: {}",
        logged[0]
    );
    sqlx::query("ALTER TABLE payments_away RENAME TO payments")
        .execute(&db)
        .await
        .unwrap();

    let ok = s
        .post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body)
        .await;
    ok.expect(201, None);
    assert_eq!(ok.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_execute_once() {
    let s = Stack::start().await;
    let key = new_key();
    let order = new_order_id();
    let body = json!({"orderId": order, "amount": 10, "currency": "USD"});
    let answers = join_all(
        (0..16).map(|_| s.post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body)),
    )
    .await;
    for a in &answers {
        assert!(
            a.status == 201 || (a.status == 409 && a.code() == "request_in_progress"),
            "{}",
            a.text
        );
        if a.status == 409 {
            assert_eq!(a.header("retry-after"), Some("1"));
        }
    }
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.json["paymentId"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one payment whoever answered");
    let db = s.db(Part::Payment).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_second_request_while_the_first_runs_gets_409_in_progress() {
    // The processor takes 1.5 s, holding the key.
    let s = Stack::start_with(Options::default().env("PAYMENT_LATENCY_MS", 1500)).await;
    let key = new_key();
    let body = json!({"orderId": new_order_id(), "amount": 10, "currency": "USD"});
    let first = s.post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        s.post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body)
            .await
    };
    let (first, second) = tokio::join!(first, second);
    first.expect(201, None);
    second.expect(409, Some("request_in_progress"));
    assert_eq!(second.header("retry-after"), Some("1"));
    let third = s
        .post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body)
        .await;
    third.expect(201, None);
    assert_eq!(third.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.json["paymentId"], third.json["paymentId"]);
}

#[tokio::test]
async fn after_redis_loses_everything_a_retry_finds_the_resource_in_postgres() {
    let s = Stack::start().await;
    let (rk, ck, ik, xk) = (new_key(), new_key(), new_key(), new_key());
    let order = new_order_id();
    let reserve = json!({"orderId": order, "itemId": 1, "quantity": 2});
    let charge = json!({"orderId": order, "amount": 2000, "currency": "USD"});
    let declined = json!({"orderId": new_order_id(), "amount": 200_000, "currency": "USD"});
    let restock = json!({"quantity": 5});
    let r1 = s
        .post("/stock/reserve", Some(SERVICE_TOKEN), Some(&rk), &reserve)
        .await;
    let c1 = s
        .post("/payment/charge", Some(SERVICE_TOKEN), Some(&ck), &charge)
        .await;
    let d1 = s.call("/payment/charge", &declined).await;
    let retry_path = format!(
        "/payment/payments/{}/retry",
        d1.json["paymentId"].as_str().unwrap()
    );
    let x1 = s
        .post(&retry_path, Some(SERVICE_TOKEN), Some(&xk), &json!({}))
        .await;
    let i1 = s
        .post(
            "/stock/items/2/restock",
            Some(ADMIN_TOKEN),
            Some(&ik),
            &restock,
        )
        .await;
    for a in [&r1, &c1, &x1, &i1] {
        assert!(a.status < 300, "{}", a.text);
    }

    assert_eq!(s.redis("FLUSHALL"), "+OK");

    let r2 = s
        .post("/stock/reserve", Some(SERVICE_TOKEN), Some(&rk), &reserve)
        .await;
    r2.expect(201, None);
    assert_eq!(r2.json["reservationId"], r1.json["reservationId"]);
    assert_eq!(s.item(1).await["reserved"], 2, "reserved once");
    let c2 = s
        .post("/payment/charge", Some(SERVICE_TOKEN), Some(&ck), &charge)
        .await;
    c2.expect(201, None);
    assert_eq!(c2.json["paymentId"], c1.json["paymentId"]);
    let x2 = s
        .post(&retry_path, Some(SERVICE_TOKEN), Some(&xk), &json!({}))
        .await;
    x2.expect(200, None);
    assert_eq!(x2.json["retries"], 1, "retried once");
    let i2 = s
        .post(
            "/stock/items/2/restock",
            Some(ADMIN_TOKEN),
            Some(&ik),
            &restock,
        )
        .await;
    i2.expect(200, None);
    assert_eq!(s.item(2).await["stock"], 55, "restocked once");

    // And the key still refuses another request, from PostgreSQL alone.
    assert_eq!(s.redis("FLUSHALL"), "+OK");
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&rk),
        &json!({"orderId": new_order_id(), "itemId": 1, "quantity": 2}),
    )
    .await
    .expect(422, Some("idempotency_key_reused"));
    s.post(
        "/payment/charge",
        Some(SERVICE_TOKEN),
        Some(&ck),
        &json!({"orderId": order, "amount": 1, "currency": "USD"}),
    )
    .await
    .expect(422, Some("idempotency_key_reused"));

    let db = s.db(Part::Payment).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn with_redis_down_changes_are_refused_and_resume_when_it_returns() {
    let s = Stack::start().await;
    s.stop(Part::Redis).await;
    let body = json!({"orderId": new_order_id(), "itemId": 1, "quantity": 1});
    let key = new_key();
    let a = s
        .post("/stock/reserve", Some(SERVICE_TOKEN), Some(&key), &body)
        .await;
    a.expect(503, Some("dependency_unavailable"));
    assert!(a.header("retry-after").is_some());
    let ready = s.get("/stock/health/ready", None).await;
    ready.expect(503, None);
    assert_eq!(ready.json["status"], "unhealthy");
    assert_eq!(ready.json["checks"]["redis"]["status"], "unhealthy");
    assert_eq!(ready.json["checks"]["database"]["status"], "healthy");
    s.get("/stock/health/live", None).await.expect(200, None);
    assert_eq!(s.item(1).await["reserved"], 0);

    s.start_part(Part::Redis, &[]).await;
    let mut last = None;
    for _ in 0..50 {
        let a = s
            .post("/stock/reserve", Some(SERVICE_TOKEN), Some(&key), &body)
            .await;
        if a.status == 201 {
            last = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        last.is_some(),
        "the same key goes through once Redis is back"
    );
    assert_eq!(s.item(1).await["reserved"], 1);
}

#[tokio::test]
async fn a_request_cut_off_by_a_crash_is_resumed_by_its_retry_not_repeated() {
    // The processor takes 3 s; in-flight markers expire after 1 s.
    let s = Stack::start_with(
        Options::default()
            .env("PAYMENT_LATENCY_MS", 3000)
            .env("IDEMPOTENCY_LOCK_SECS", 1),
    )
    .await;
    let key = new_key();
    let order = new_order_id();
    let body = json!({"orderId": order, "amount": 10, "currency": "USD"});
    let cut_off = {
        let request = s
            .client
            .post(s.url("/payment/charge"))
            .bearer_auth(SERVICE_TOKEN)
            .header("Idempotency-Key", &key)
            .header("content-type", "application/json")
            .body(body.to_string());
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    s.kill(Part::Payment).await;
    let answer = cut_off.await.unwrap();
    assert!(
        answer.as_ref().map_or(true, |status| *status >= 500),
        "the client saw the crash: {answer:?}"
    );

    let db = s.db(Part::Payment).await;
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(&order)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        status, "pending",
        "the payment was written before the processor call"
    );

    s.start_part(Part::Payment, &[("PAYMENT_LATENCY_MS", "0")])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let retried = s
        .post("/payment/charge", Some(SERVICE_TOKEN), Some(&key), &body)
        .await;
    retried.expect(201, None);
    assert_eq!(retried.json["status"], "succeeded");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1, "one payment");
    assert_eq!(s.stop(Part::Payment).await, Some(0), "SIGTERM exits 0");
}

#[tokio::test]
async fn results_are_kept_a_day_and_keys_are_scoped_per_service() {
    let s = Stack::start().await;
    let key = new_key();
    s.post(
        "/stock/reserve",
        Some(SERVICE_TOKEN),
        Some(&key),
        &json!({"orderId": new_order_id(), "itemId": 1, "quantity": 1}),
    )
    .await
    .expect(201, None);
    let ttl = s.redis(&format!(
        "EVAL \"return redis.call('TTL', redis.call('KEYS', ARGV[1])[1])\" 0 stock:idem:*:{key}"
    ));
    let secs: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!((86_000..=86_400).contains(&secs), "kept 24 h: {ttl}");
    // The same key means nothing to another service.
    let a = s
        .post(
            "/payment/charge",
            Some(SERVICE_TOKEN),
            Some(&key),
            &json!({"amount": 10, "currency": "USD"}),
        )
        .await;
    a.expect(201, None);
    assert_eq!(a.header("idempotent-replayed"), None);
}
