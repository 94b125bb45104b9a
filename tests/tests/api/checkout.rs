//! The checkout saga through nginx (docs/api.md, "order"; docs/guarantees.md) — every outcome row with its effect on stock and
//! payments, concurrency, and real faults (a service stopped, injected failures, latency, expiry,
//! SIGKILL), each ending with the invariant check.

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;
use tests::{new_key, service_token, Answer, Options, Part, Stack};

const QUIET: Duration = Duration::from_secs(60);

/// Faster failure and recovery than the defaults, so fault tests take seconds.
fn fast() -> Options {
    Options::default()
        .env("SAGA_STEP_BUDGET_MS", 1500)
        .env("OUTBOUND_TIMEOUT_MS", 700)
        .env("SAGA_LEASE_SECS", 3)
        .env("RECOVERY_INTERVAL_MS", 300)
        .env("COMPENSATION_MAX_BACKOFF_MS", 500)
}

async fn assert_consistent(s: &Stack) {
    let violations = s.quiet_and_check(QUIET).await;
    assert!(
        violations.is_empty(),
        "invariants violated:\n{}",
        violations.join("\n")
    );
}

async fn payments_of(s: &Stack, order_id: &Value) -> Vec<Value> {
    let a = s
        .get(
            &format!("/payment/payments?orderId={}", order_id.as_str().unwrap()),
            Some(service_token()),
        )
        .await;
    a.json["payments"].as_array().cloned().unwrap_or_default()
}

async fn order(s: &Stack, id: &Value) -> Value {
    let a = s
        .get(&format!("/order/orders/{}", id.as_str().unwrap()), None)
        .await;
    a.expect(200, None);
    a.json
}

fn event_types(order: &Value) -> Vec<String> {
    order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn with_payment_down_the_checkout_is_undone_and_answers_503() {
    let s = Stack::start_with(fast()).await;
    s.stop(Part::Payment).await;
    let key = new_key();
    let body = json!({"itemId": 1, "quantity": 3});
    let a = s.post("/order/checkout", None, Some(&key), &body).await;
    a.expect(503, Some("dependency_unavailable"));
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(a.json["orderStatus"], "failed");
    assert_eq!(
        s.item(1).await["reserved"],
        0,
        "the reservation was released"
    );
    // Nothing was stored for the key: a retry is answered afresh, from the order.
    let again = s.post("/order/checkout", None, Some(&key), &body).await;
    again.expect(503, Some("dependency_unavailable"));
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_eq!(again.json["orderId"], a.json["orderId"]);

    s.start_part(Part::Payment, &[]).await;
    assert!(payments_of(&s, &a.json["orderId"]).await.is_empty());
    s.checkout(body.clone()).await.expect(201, None);
    assert_consistent(&s).await;
}

/// An item stored in `QQQ` before currencies were checked against ISO 4217 is still reserved,
/// but payment refuses to charge `QQQ`: the checkout is undone (502 `checkout_rejected`), nothing
/// is charged, and the order — its currency and its `stock_reserved` event in `QQQ` — still reads.
#[tokio::test]
async fn an_item_stored_in_a_currency_that_is_not_one_is_not_charged() {
    let s = Stack::start().await;
    let db = s.db(Part::Stock).await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO items (name, price, currency, initial_stock, stock)
         VALUES ('old item', 700, 'QQQ', 5, 5) RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let a = s.checkout(json!({"itemId": id, "quantity": 2})).await;
    a.expect(502, Some("checkout_rejected"));
    let id_of_order = a.json["orderId"].clone();
    assert!(
        payments_of(&s, &id_of_order).await.is_empty(),
        "nothing charged"
    );
    let o = order(&s, &id_of_order).await;
    assert_eq!(
        (
            o["status"].as_str(),
            o["currency"].as_str(),
            o["totalAmount"].as_i64()
        ),
        (Some("failed"), Some("QQQ"), Some(1400)),
        "{o}"
    );
    let reserved = o["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "stock_reserved")
        .cloned();
    assert_eq!(
        reserved.as_ref().map(|e| e["currency"].clone()),
        Some(json!("QQQ")),
        "{o}"
    );
    assert_eq!(
        s.item(id).await["reserved"],
        0,
        "the reservation was released"
    );
    assert_consistent(&s).await;
}

#[tokio::test]
async fn payment_stopped_mid_checkout_ends_consistent_once_it_returns() {
    // Payment is slow, so the charge is in flight when payment is stopped.
    let s = Stack::start_with(
        fast()
            .env("PAYMENT_LATENCY_MS", 800)
            .env("CHECKOUT_DEADLINE_MS", 2000),
    )
    .await;
    let item = s.create_item(500, "USD", 20).await;
    let checkouts = (0..4).map(|_| s.checkout(json!({"itemId": item, "quantity": 1})));
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.kill(Part::Payment).await;
    };
    let (answers, ()) = tokio::join!(join_all(checkouts), stopper);
    for a in &answers {
        assert!(matches!(a.status, 201 | 202 | 503), "{}", a.text);
    }
    s.start_part(Part::Payment, &[("PAYMENT_LATENCY_MS", "0")])
        .await;
    assert_consistent(&s).await;
    let state = s.item(item).await;
    assert_eq!(state["reserved"], 0);
}

#[tokio::test]
async fn with_a_third_of_payment_requests_failing_every_checkout_completes_once() {
    let s = Stack::start_with(Options::default().env("PAYMENT_FAULT_RATE", "0.3")).await;
    let item = s.create_item(250, "USD", 100).await;
    let answers =
        join_all((0..20).map(|_| s.checkout(json!({"itemId": item, "quantity": 2})))).await;
    for a in &answers {
        a.expect(201, None);
    }
    let db = s.db(Part::Payment).await;
    let (count, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT order_id) FROM payments")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((count, distinct), (20, 20), "one charge per order");
    assert_eq!(s.item(item).await["stock"], 60);
    let retried = answers
        .iter()
        .filter(|a| event_types(&a.json).contains(&"step_retried".to_string()))
        .count();
    assert!(retried > 0, "some steps needed retries");
    assert_consistent(&s).await;
}

#[tokio::test]
async fn a_checkout_slower_than_the_deadline_answers_202_and_completes_by_itself() {
    let s = Stack::start_with(
        Options::default()
            .env("CHECKOUT_DEADLINE_MS", 500)
            .env("PAYMENT_LATENCY_MS", 1500),
    )
    .await;
    let key = new_key();
    let body = json!({"itemId": 2, "quantity": 1});
    let a = s.post("/order/checkout", None, Some(&key), &body).await;
    a.expect(202, None);
    assert_eq!(a.json["status"], "charging");
    let id = a.json["orderId"].clone();
    assert_eq!(
        a.header("location"),
        Some(format!("/order/orders/{}", id.as_str().unwrap()).as_str())
    );
    let mut status = Value::Null;
    for _ in 0..100 {
        status = order(&s, &id).await["status"].clone();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, "completed",
        "completed without the client doing anything"
    );
    // A retry of the key now answers the outcome.
    let again = s.post("/order/checkout", None, Some(&key), &body).await;
    again.expect(201, None);
    assert_eq!(again.json["orderId"], id);
    assert_consistent(&s).await;
}

#[tokio::test]
async fn a_reservation_that_expires_before_completion_is_refunded() {
    let s = Stack::start_with(
        Options::default()
            .env("RESERVATION_TTL_SECS", 1)
            .env("PAYMENT_LATENCY_MS", 2000)
            .env("CHECKOUT_DEADLINE_MS", 8000),
    )
    .await;
    let a = s.checkout(json!({"itemId": 1, "quantity": 4})).await;
    a.expect(409, Some("reservation_expired"));
    let id = a.json["orderId"].clone();
    let pays = payments_of(&s, &id).await;
    assert_eq!(pays.len(), 1);
    assert_eq!(pays[0]["status"], "refunded");
    let mug = s.item(1).await;
    assert_eq!(
        (mug["stock"].as_i64(), mug["reserved"].as_i64()),
        (Some(10), Some(0))
    );
    let events = event_types(&order(&s, &id).await);
    for expected in [
        "payment_charged",
        "completion_refused",
        "payment_refunded",
        "order_failed",
    ] {
        assert!(
            events.contains(&expected.to_string()),
            "{expected} in {events:?}"
        );
    }
    assert_consistent(&s).await;
}

#[tokio::test]
async fn orders_in_flight_when_order_is_killed_are_recovered() {
    let s = Stack::start_with(fast().env("PAYMENT_LATENCY_MS", 700)).await;
    let item = s.create_item(300, "USD", 50).await;
    let checkouts = (0..12).map(|i| {
        let s = &s;
        async move {
            tokio::time::sleep(Duration::from_millis(i * 40)).await;
            s.client
                .post(s.url("/order/checkout"))
                .header("Idempotency-Key", new_key())
                .header("content-type", "application/json")
                .body(json!({"itemId": item, "quantity": 1}).to_string())
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        s.kill(Part::Order).await;
    };
    let (answers, ()) = tokio::join!(join_all(checkouts), killer);
    assert!(
        answers
            .iter()
            .any(|a| a.as_ref().map_or(true, |s| *s >= 500)),
        "the kill cut checkouts off: {answers:?}"
    );

    s.start_part(Part::Order, &[]).await;
    let started = std::time::Instant::now();
    assert_consistent(&s).await;
    assert!(
        started.elapsed() < QUIET,
        "every order terminal within 60 s"
    );
    let db = s.db(Part::Order).await;
    let recovered: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT order_id) FROM order_events WHERE type = 'order_recovered'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(recovered > 0, "the recovery worker resumed orders");
    let metrics = s.metrics(Part::Order, 1).await;
    assert!(
        metrics.contains("saga_recoveries_total{service=\"order\"}"),
        "recoveries counted"
    );
    // The audit trail is append-only.
    assert!(sqlx::query("UPDATE order_events SET type = 'x'")
        .execute(&db)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM order_events")
        .execute(&db)
        .await
        .is_err());
}

#[tokio::test]
async fn the_saga_forwards_the_request_id_and_traceparent_to_every_participant() {
    let s = Stack::start().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let a = s
        .send(
            s.client
                .post(s.url("/order/checkout"))
                .header("Idempotency-Key", new_key())
                .header("X-Request-ID", "checkout-req-42")
                .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
                .header("content-type", "application/json")
                .body(json!({"itemId": 1, "quantity": 1}).to_string()),
        )
        .await;
    a.expect(201, None);
    assert_eq!(a.header("x-request-id"), Some("checkout-req-42"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for part in [Part::Stock, Part::Payment] {
        let log = std::fs::read_to_string(s.log_path(part)).unwrap();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("checkout-req-42"))
            .collect();
        assert!(
            !lines.is_empty(),
            "{part:?} logged the saga's calls under the request id"
        );
        assert!(
            lines.iter().all(|l| l.contains(trace)),
            "{part:?} logged them under the trace id"
        );
    }
}

#[tokio::test]
async fn sigterm_lets_the_checkouts_in_flight_finish_and_exits_0() {
    let s = Stack::start_with(Options::default().env("PAYMENT_LATENCY_MS", 1500)).await;
    let checkout = s.checkout(json!({"itemId": 1, "quantity": 1}));
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let started = std::time::Instant::now();
        let code = s.stop(Part::Order).await;
        (code, started.elapsed())
    };
    let (answer, (code, took)) = tokio::join!(checkout, terminate);
    answer.expect(201, None);
    assert_eq!(code, Some(0), "exit 0");
    assert!(
        took < Duration::from_secs(10),
        "within the shutdown timeout: {took:?}"
    );
    let log = std::fs::read_to_string(s.log_path(Part::Order)).unwrap();
    assert!(
        log.contains("recovery worker stopped"),
        "the recovery worker stopped"
    );
    // Refused while stopped, served again once started.
    s.checkout(json!({"itemId": 1, "quantity": 1}))
        .await
        .expect(503, Some("service_unavailable"));
    s.start_part(Part::Order, &[]).await;
    assert_consistent(&s).await;
}

/// Every payment of an order, across its attempts, as payment finds them by the order's id
/// (`GET /payment/payments?orderId=`): `(attempt, status)`, oldest first.
async fn payments_of_every_attempt(s: &Stack, order_id: &Value) -> Vec<(i64, String)> {
    let mut pays: Vec<(i64, String)> = payments_of(s, order_id)
        .await
        .iter()
        .map(|p| {
            assert_eq!(&p["orderId"], order_id, "{p}");
            (
                p["attempt"].as_i64().unwrap_or_default(),
                p["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    pays.reverse();
    pays
}

/// Retries `body` under `key` as a client following `Retry-After` would, until the answer is not
/// a 202, a 409 `request_in_progress` or a 503; returns every answer.
async fn retry_until_settled(s: &Stack, key: &str, body: &Value) -> Vec<Answer> {
    let mut answers = Vec::new();
    for _ in 0..120 {
        let a = s.post("/order/checkout", None, Some(key), body).await;
        let again =
            matches!(a.status, 202 | 503) || (a.status == 409 && a.code() == "request_in_progress");
        answers.push(a);
        if !again {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    answers
}

/// An order's second attempt is known at payment and stock by the order's id and `attempt: 2`:
/// a lookup of payments by the order's id finds its payment, and its reservation names the order.
#[tokio::test]
async fn a_lookup_by_the_orders_id_finds_the_payment_of_its_second_attempt() {
    let s = Stack::start_with(fast()).await;
    s.stop(Part::Stock).await;
    let key = new_key();
    let body = json!({"itemId": 3, "quantity": 1});
    let first = s.post("/order/checkout", None, Some(&key), &body).await;
    first.expect(503, Some("dependency_unavailable"));
    let id = first.json["orderId"].clone();

    s.start_part(Part::Stock, &[]).await;
    let answers = retry_until_settled(&s, &key, &body).await;
    let last = answers.last().unwrap();
    last.expect(201, None);
    assert_eq!(last.json["orderId"], id, "the same order, a new attempt");
    let pays = payments_of(&s, &id).await;
    assert_eq!(
        pays.len(),
        1,
        "GET /payment/payments?orderId={id}: {pays:?}"
    );
    assert_eq!(pays[0]["paymentId"], last.json["paymentId"]);
    assert_eq!(
        (&pays[0]["orderId"], &pays[0]["attempt"], &pays[0]["status"]),
        (&id, &json!(2), &json!("succeeded")),
        "{}",
        pays[0]
    );
    let reservation = s
        .get(
            &format!(
                "/stock/reservations/{}",
                last.json["reservationId"].as_str().unwrap()
            ),
            Some(service_token()),
        )
        .await;
    reservation.expect(200, None);
    assert_eq!(
        (&reservation.json["orderId"], &reservation.json["attempt"]),
        (&id, &json!(2)),
        "{}",
        reservation.json
    );
    assert_consistent(&s).await;
}

#[tokio::test]
async fn after_stock_comes_back_a_retry_of_the_key_runs_a_new_attempt_and_completes() {
    let s = Stack::start_with(fast()).await;
    s.stop(Part::Stock).await;
    let key = new_key();
    let body = json!({"itemId": 1, "quantity": 2});
    let first = s.post("/order/checkout", None, Some(&key), &body).await;
    first.expect(503, Some("dependency_unavailable"));
    assert_eq!(first.header("retry-after"), Some("1"));
    let id = first.json["orderId"].clone();

    s.start_part(Part::Stock, &[]).await;
    let answers = retry_until_settled(&s, &key, &body).await;
    let last = answers.last().unwrap();
    last.expect(201, None);
    assert_eq!(last.json["orderId"], id, "the same order, a new attempt");
    assert!(
        answers.iter().all(|a| a.status != 503),
        "never the same 503 once stock answers: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let events = event_types(&last.json);
    assert!(
        events.contains(&"attempt_started".to_string()),
        "{events:?}"
    );
    let pays = payments_of_every_attempt(&s, &id).await;
    assert_eq!(
        pays,
        [(2, "succeeded".to_string())],
        "charged once, by attempt 2"
    );
    assert_eq!(s.item(1).await["stock"], 8);
    // A replay of the key is the completed order.
    let again = s.post("/order/checkout", None, Some(&key), &body).await;
    again.expect(201, None);
    assert_eq!(again.json["orderId"], id);
    assert_consistent(&s).await;
}

#[tokio::test]
async fn after_payment_comes_back_a_retry_of_the_key_reserves_again_and_completes() {
    let s = Stack::start_with(fast()).await;
    s.stop(Part::Payment).await;
    let key = new_key();
    let body = json!({"items": [{"itemId": 3, "quantity": 2}, {"itemId": 1, "quantity": 1}]});
    let first = s.post("/order/checkout", None, Some(&key), &body).await;
    first.expect(503, Some("dependency_unavailable"));
    let id = first.json["orderId"].clone();
    assert_eq!(s.item(1).await["reserved"], 0, "the first attempt released");

    s.start_part(Part::Payment, &[]).await;
    let answers = retry_until_settled(&s, &key, &body).await;
    let last = answers.last().unwrap();
    last.expect(201, None);
    assert_eq!(last.json["orderId"], id);
    assert!(answers.iter().all(|a| a.status != 503));
    // The first attempt's reservation stays canceled; the second one is completed.
    let db = s.db(Part::Stock).await;
    let reservations: Vec<(i32, String)> = sqlx::query_as(
        "SELECT attempt, status FROM reservations WHERE order_id = $1 ORDER BY created_at",
    )
    .bind(id.as_str().unwrap())
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        reservations,
        [(1, "canceled".to_string()), (2, "completed".to_string())],
        "each attempt has a reservation of its own, under the order's id"
    );
    let mug = s.item(1).await;
    assert_eq!(
        (mug["stock"].as_i64(), mug["reserved"].as_i64()),
        (Some(9), Some(0))
    );
    let pays = payments_of_every_attempt(&s, &id).await;
    assert_eq!(
        pays,
        [(2, "succeeded".to_string())],
        "charged once, by attempt 2"
    );
    assert_consistent(&s).await;
}

#[tokio::test]
async fn a_charge_lost_in_an_outage_is_refunded_and_the_retried_key_is_charged_once() {
    // Payment is slow, so the charge is in flight when payment is killed: its outcome is unknown,
    // the compensation refunds whatever stands once payment is back, and the order fails; the
    // client's retry of the key then runs a new attempt.
    let s = Stack::start_with(
        fast()
            .env("PAYMENT_LATENCY_MS", 600)
            .env("CHECKOUT_DEADLINE_MS", 1500),
    )
    .await;
    let item = s.create_item(700, "USD", 10).await;
    let key = new_key();
    let body = json!({"itemId": item, "quantity": 1});
    let checkout = s.post("/order/checkout", None, Some(&key), &body);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.kill(Part::Payment).await;
    };
    let (first, ()) = tokio::join!(checkout, killer);
    assert!(matches!(first.status, 202 | 503), "{}", first.text);
    let id = first.json["orderId"].clone();
    s.start_part(Part::Payment, &[("PAYMENT_LATENCY_MS", "0")])
        .await;

    let answers = retry_until_settled(&s, &key, &body).await;
    let last = answers.last().unwrap();
    last.expect(201, None);
    assert_eq!(last.json["orderId"], id);
    let pays = payments_of_every_attempt(&s, &id).await;
    let standing: Vec<_> = pays.iter().filter(|p| p.1 == "succeeded").collect();
    assert_eq!(standing.len(), 1, "charged once: {pays:?}");
    assert_eq!(standing[0].0, 2, "by attempt 2: {pays:?}");
    assert!(
        pays.iter().all(|p| p.1 == "succeeded" || p.1 == "refunded"),
        "{pays:?}"
    );
    assert_eq!(s.item(item).await["stock"], 9);
    assert_consistent(&s).await;
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`): one shared and in use, where each test works on items of its own and
/// finds its own orders among the others'.
mod black_box {
    use super::*;

    /// The newest orders, up to 1,000 (of `status`, or of any): on a stack others use too, a
    /// test's orders of a moment ago are among them.
    async fn newest_orders(s: &Stack, status: Option<&str>) -> Vec<Value> {
        let filter = status.map_or(String::new(), |st| format!("&status={st}"));
        let a = s
            .get(&format!("/order/orders?limit=1000{filter}"), None)
            .await;
        a.expect(200, None);
        a.json["orders"].as_array().cloned().unwrap_or_default()
    }

    /// A customer id of the test's own, so that it can count its orders: the items of a
    /// shared stack are named in others' orders too (schemathesis makes carts of any ids).
    fn new_customer() -> String {
        format!("cust-{}", &new_key()[..8])
    }

    /// How many of the newest orders are `customer`'s.
    async fn orders_of(s: &Stack, customer: &str) -> usize {
        newest_orders(s, None)
            .await
            .iter()
            .filter(|o| o["customerId"] == customer)
            .count()
    }

    #[tokio::test]
    async fn a_checkout_reserves_charges_and_completes() {
        let s = Stack::start().await;
        let mug = s.create_item(1000, "USD", 10).await;
        let stickers = s.create_item(300, "USD", 200).await;
        let shirt = s.create_item(2500, "USD", 50).await;
        let key = new_key();
        let body = json!({"items": [{"itemId": mug, "quantity": 2}, {"itemId": stickers, "quantity": 5}], "customerId": "cust-7"});
        let a = s.post("/order/checkout", None, Some(&key), &body).await;
        a.expect(201, None);
        let id = a.json["orderId"].clone();
        assert_eq!(
            a.header("location"),
            Some(format!("/order/orders/{}", id.as_str().unwrap()).as_str())
        );
        assert_eq!(a.json["status"], "completed");
        assert_eq!(a.json["failureCode"], Value::Null);
        assert_eq!(a.json["customerId"], "cust-7");
        assert_eq!(
            (a.json["totalAmount"].as_i64(), a.json["currency"].as_str()),
            (Some(3500), Some("USD"))
        );
        assert_eq!(
            a.json["items"],
            json!([{"itemId":mug,"quantity":2,"unitPrice":1000,"amount":2000},{"itemId":stickers,"quantity":5,"unitPrice":300,"amount":1500}])
        );
        assert!(a.json["reservationId"].is_string() && a.json["paymentId"].is_string());
        assert_eq!(
            event_types(&a.json),
            [
                "order_created",
                "stock_reserved",
                "payment_charged",
                "stock_completed",
                "order_completed"
            ]
        );

        // Stock shipped, money taken once.
        let shipped = s.item(mug).await;
        assert_eq!(
            (shipped["stock"].as_i64(), shipped["reserved"].as_i64()),
            (Some(8), Some(0))
        );
        let pays = payments_of(&s, &id).await;
        assert_eq!(pays.len(), 1);
        assert_eq!(
            (pays[0]["status"].as_str(), pays[0]["amount"].as_i64()),
            (Some("succeeded"), Some(3500))
        );
        assert_eq!(pays[0]["customerId"], "cust-7");

        // The replay, and the order as stored.
        let again = s.post("/order/checkout", None, Some(&key), &body).await;
        again.expect(201, None);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, a.text);
        assert_eq!(order(&s, &id).await, a.json);

        // The one-line form.
        let later = s.checkout(json!({"itemId": shirt, "quantity": 1})).await;
        later.expect(201, None);
        let list = s.get("/order/orders?status=completed&limit=1", None).await;
        list.expect(200, None);
        assert_eq!(list.json["limit"].as_i64(), Some(1));
        assert_eq!(list.json["orders"].as_array().unwrap().len(), 1);
        assert_eq!(list.json["orders"][0]["status"], "completed");
        if s.is_own() {
            assert_eq!(list.json["total"].as_i64(), Some(2));
            assert_eq!(
                list.json["orders"][0]["items"][0]["itemId"], shirt,
                "newest first"
            );
        } else {
            assert!(list.json["total"].as_i64().unwrap() >= 2, "{}", list.text);
        }
        // Newest first, whatever others ordered meanwhile.
        let completed: Vec<Value> = newest_orders(&s, Some("completed"))
            .await
            .iter()
            .map(|o| o["orderId"].clone())
            .collect();
        let at = |id: &Value| {
            completed
                .iter()
                .position(|o| o == id)
                .unwrap_or_else(|| panic!("{id} is among the newest completed orders"))
        };
        assert!(at(&later.json["orderId"]) < at(&id), "newest first");
        assert_consistent(&s).await;
        if s.is_own() {
            // Finished orders hold no lease, so the recovery index no longer has them.
            let db = s.db(Part::Order).await;
            let leased: i64 =
                sqlx::query_scalar("SELECT count(*) FROM orders WHERE lease_until IS NOT NULL")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            assert_eq!(leased, 0);
        }
    }

    #[tokio::test]
    async fn refusals_fail_the_order_and_charge_nothing() {
        let s = Stack::start().await;
        let mug = s.create_item(1000, "USD", 10).await;
        let shirt = s.create_item(2500, "USD", 50).await;
        let notebook = s.create_item(1500, "EUR", 30).await;
        let a = s
            .checkout(json!({"items": [{"itemId": mug, "quantity": 2}, {"itemId": shirt, "quantity": 51}]}))
            .await;
        a.expect(409, Some("insufficient_stock"));
        assert_eq!(a.json["orderStatus"], "failed");
        let id = a.json["orderId"].clone();
        assert!(payments_of(&s, &id).await.is_empty(), "nothing charged");
        assert_eq!(s.item(mug).await["reserved"], 0);
        let stored = order(&s, &id).await;
        assert_eq!(
            (stored["status"].as_str(), stored["failureCode"].as_str()),
            (Some("failed"), Some("insufficient_stock"))
        );
        assert!(event_types(&stored).contains(&"order_failed".to_string()));

        let unknown = s.checkout(json!({"itemId": 999_999, "quantity": 1})).await;
        unknown.expect(422, Some("item_not_found"));
        assert!(payments_of(&s, &unknown.json["orderId"]).await.is_empty());
        let mixed = s
            .checkout(json!({"items": [{"itemId": mug, "quantity": 1}, {"itemId": notebook, "quantity": 1}]}))
            .await;
        mixed.expect(422, Some("mixed_currency"));
        assert!(payments_of(&s, &mixed.json["orderId"]).await.is_empty());
        assert_eq!(s.item(notebook).await["reserved"], 0);
        let failed = s.get("/order/orders?status=failed", None).await;
        failed.expect(200, None);
        if s.is_own() {
            assert_eq!(failed.json["total"], 3);
        }
        let failed = newest_orders(&s, Some("failed")).await;
        for refused in [&a, &unknown, &mixed] {
            assert!(
                failed
                    .iter()
                    .any(|o| o["orderId"] == refused.json["orderId"]),
                "{} is listed as failed",
                refused.json["orderId"]
            );
        }
        assert_consistent(&s).await;
    }

    #[tokio::test]
    async fn a_declined_payment_releases_the_reservation() {
        let s = Stack::start().await;
        let item = s.create_item(60_000, "USD", 5).await;
        let a = s.checkout(json!({"itemId": item, "quantity": 2})).await;
        a.expect(402, Some("payment_declined"));
        let id = a.json["orderId"].clone();
        let pays = payments_of(&s, &id).await;
        assert_eq!(pays.len(), 1);
        assert_eq!(pays[0]["status"], "failed");
        let state = s.item(item).await;
        assert_eq!(
            (state["stock"].as_i64(), state["reserved"].as_i64()),
            (Some(5), Some(0)),
            "released"
        );
        let stored = order(&s, &id).await;
        assert_eq!(stored["failureCode"], "payment_declined");
        let events = event_types(&stored);
        for expected in [
            "payment_declined",
            "compensation_started",
            "stock_released",
            "order_failed",
        ] {
            assert!(
                events.contains(&expected.to_string()),
                "{expected} in {events:?}"
            );
        }
        assert!(
            !events.contains(&"payment_refunded".to_string()),
            "nothing to refund"
        );
        assert_consistent(&s).await;
    }

    #[tokio::test]
    async fn bad_checkouts_are_refused_before_any_order_exists() {
        let s = Stack::start().await;
        let item = s.create_item(1000, "USD", 10).await;
        let customer = new_customer();
        let body = json!({"itemId": item, "quantity": 1, "customerId": customer});
        let a = s.post("/order/checkout", None, None, &body).await;
        a.expect(400, Some("idempotency_key_missing"));
        assert_eq!(a.json["orderId"], Value::Null, "no order: {}", a.text);
        for bad in [
            json!({"itemId": item, "quantity": 0, "customerId": customer}),
            json!({"itemId": item, "quantity": 1001, "customerId": customer}),
            json!({"items": [], "customerId": customer}),
            json!({"items": [{"itemId": item, "quantity": 1}], "coupon": "x", "customerId": customer}),
            json!({"itemId": item.to_string(), "quantity": 1, "customerId": customer}),
            json!({"itemId": item, "quantity": 1, "customerId": "c".repeat(129)}),
        ] {
            let a = s.checkout(bad).await;
            a.expect(400, Some("validation_error"));
            assert_eq!(a.json["orderId"], Value::Null, "no order: {}", a.text);
        }
        let key = new_key();
        s.post("/order/checkout", None, Some(&key), &body)
            .await
            .expect(201, None);
        s.post(
            "/order/checkout",
            None,
            Some(&key),
            &json!({"itemId": item, "quantity": 2, "customerId": customer}),
        )
        .await
        .expect(422, Some("idempotency_key_reused"));
        if s.is_own() {
            let all = s.get("/order/orders", None).await;
            assert_eq!(all.json["total"], 1);
        }
        assert_eq!(orders_of(&s, &customer).await, 1, "one order");
        assert_eq!(s.item(item).await["stock"], 9);
        s.get("/order/orders/6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e", None)
            .await
            .expect(404, Some("order_not_found"));
        s.get("/order/orders/nope", None)
            .await
            .expect(400, Some("validation_error"));
        s.get("/order/orders?status=shipped", None)
            .await
            .expect(400, Some("validation_error"));
        assert_consistent(&s).await;
    }

    #[tokio::test]
    async fn forty_concurrent_checkouts_of_ten_units_complete_exactly_ten() {
        let s = Stack::start().await;
        let item = s.create_item(100, "USD", 10).await;
        let answers: Vec<Answer> =
            join_all((0..40).map(|_| s.checkout(json!({"itemId": item, "quantity": 1})))).await;
        let completed = answers.iter().filter(|a| a.status == 201).count();
        let refused = answers
            .iter()
            .filter(|a| a.status == 409 && a.code() == "insufficient_stock")
            .count();
        assert_eq!(
            (completed, refused),
            (10, 30),
            "{:?}",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        );
        let state = s.item(item).await;
        assert_eq!(
            (state["stock"].as_i64(), state["reserved"].as_i64()),
            (Some(0), Some(0))
        );
        assert_consistent(&s).await;
    }

    #[tokio::test]
    async fn sixteen_requests_with_one_key_make_one_order() {
        let s = Stack::start().await;
        let item = s.create_item(2500, "USD", 50).await;
        let customer = new_customer();
        let key = new_key();
        let body = json!({"itemId": item, "quantity": 1, "customerId": customer});
        let answers =
            join_all((0..16).map(|_| s.post("/order/checkout", None, Some(&key), &body))).await;
        for a in &answers {
            assert!(
                a.status == 201 || (a.status == 409 && a.code() == "request_in_progress"),
                "{}",
                a.text
            );
        }
        let ids: std::collections::HashSet<String> = answers
            .iter()
            .filter(|a| a.status == 201)
            .map(|a| a.json["orderId"].to_string())
            .collect();
        assert_eq!(ids.len(), 1, "one order whoever answered");
        if s.is_own() {
            let orders = s.get("/order/orders", None).await;
            assert_eq!(orders.json["total"], 1);
        }
        assert_eq!(orders_of(&s, &customer).await, 1, "one order");
        assert_eq!(s.item(item).await["stock"], 49);
        assert_consistent(&s).await;
    }
}
