//! The Idempotency-Key layer (docs/api.md, docs/design/idempotency.md), including Redis loss and outages.
//!
//! Each test body takes the stack's [`Options`] and runs twice, from the same body: against one
//! Redis server (`idempotency::single::...`; `idempotency::black_box::...`, at the end, for the
//! bodies that speak only HTTP to nginx) and against a local three-master Redis Cluster
//! (`idempotency::cluster::...`). The cluster also has tests of its own, before `black_box`.

use futures_util::future::join_all;
use serde_json::json;
use tests::{
    admin_token, new_key, new_order_id, service_token, service_token_2, Options, Part,
    RedisCluster, Stack,
};

/// A `single` and a `cluster` test for each body named; the bodies after `black_box:` have a
/// `cluster` test here and their single-server test in the [`black_box`] module.
macro_rules! single_and_cluster {
    ($($name:ident),* $(,)?; black_box: $($bb:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(::tests::Options::default()).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(::tests::Options::default().redis_cluster()).await
                }
            )*
            $(
                #[tokio::test]
                async fn $bb() {
                    super::$bb(::tests::Options::default().redis_cluster()).await
                }
            )*
        }
    };
}

single_and_cluster!(
    a_request_that_failed_validation_or_with_5xx_may_be_retried_with_its_key,
    a_second_request_while_the_first_runs_gets_409_in_progress,
    after_redis_loses_everything_a_retry_finds_the_resource_in_postgres,
    a_request_cut_off_by_a_crash_is_resumed_by_its_retry_not_repeated,
    results_are_kept_a_day_and_keys_are_scoped_per_service;
    black_box:
    missing_and_malformed_keys_are_refused_before_anything_runs,
    a_finished_request_is_replayed_byte_for_byte,
    a_key_reused_for_another_request_is_refused,
    keys_are_scoped_per_route_and_per_caller,
    concurrent_requests_with_one_key_execute_once,
);

async fn missing_and_malformed_keys_are_refused_before_anything_runs(options: Options) {
    let s = Stack::start_with(options).await;
    let item = s.create_item(1000, "USD", 10).await;
    let body = json!({"orderId": new_order_id(), "itemId": item, "quantity": 1});
    s.post("/stock/reserve", Some(service_token()), None, &body)
        .await
        .expect(400, Some("idempotency_key_missing"));
    for bad in ["", "\"\"", "\"unterminated", "tab\tinside"] {
        s.post("/stock/reserve", Some(service_token()), Some(bad), &body)
            .await
            .expect(400, Some("idempotency_key_invalid"));
    }
    s.post(
        "/stock/reserve",
        Some(service_token()),
        Some(&"k".repeat(256)),
        &body,
    )
    .await
    .expect(400, Some("idempotency_key_invalid"));
    assert_eq!(s.item(item).await["reserved"], 0);
    // 255 characters, and a key of its own: a shared stack keeps the keys of earlier runs.
    let longest = format!("{}{}", new_key(), "k".repeat(255 - 36));
    s.post(
        "/stock/reserve",
        Some(service_token()),
        Some(&longest),
        &body,
    )
    .await
    .expect(201, None);
    assert_eq!(s.item(item).await["reserved"], 1);
}

async fn a_finished_request_is_replayed_byte_for_byte(options: Options) {
    let s = Stack::start_with(options).await;
    let key = new_key();
    // A name of its own: a shared stack may hold lamps of other runs.
    let name = format!("Lamp {}", &new_key()[..8]);
    let body = json!({"name":name,"price":4200,"currency":"USD","stock":2});
    let first = s
        .post("/stock/items", Some(admin_token()), Some(&key), &body)
        .await;
    first.expect(201, None);
    assert_eq!(first.header("idempotent-replayed"), None);
    // Same request written differently (key order, spacing): same fingerprint.
    let again = s
        .send(
            s.client
                .post(s.url("/stock/items"))
                .bearer_auth(admin_token())
                .header("Idempotency-Key", format!("\"{key}\""))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{ "stock": 2, "currency": "USD", "price": 4200, "name": "{name}" }}"#
                )),
        )
        .await;
    again.expect(201, None);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("content-type"), first.header("content-type"));
    // The newest items (by id), where a second lamp would be.
    let total = s.get("/stock/items?limit=1", None).await.json["total"]
        .as_i64()
        .unwrap();
    let list = s
        .get(
            &format!("/stock/items?limit=1000&offset={}", (total - 1000).max(0)),
            None,
        )
        .await;
    let lamps = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"] == name.as_str())
        .count();
    assert_eq!(lamps, 1);

    // Business refusals are kept too.
    let key = new_key();
    let lamp = first.json["id"].as_i64().unwrap();
    let big = json!({"orderId": new_order_id(), "itemId": lamp, "quantity": 999});
    s.post("/stock/reserve", Some(service_token()), Some(&key), &big)
        .await
        .expect(409, Some("insufficient_stock"));
    let replay = s
        .post("/stock/reserve", Some(service_token()), Some(&key), &big)
        .await;
    replay.expect(409, Some("insufficient_stock"));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
}

async fn a_key_reused_for_another_request_is_refused(options: Options) {
    let s = Stack::start_with(options).await;
    let item = s.create_item(1000, "USD", 10).await;
    let key = new_key();
    s.post(
        "/stock/reserve",
        Some(service_token()),
        Some(&key),
        &json!({"orderId": new_order_id(), "itemId": item, "quantity": 1}),
    )
    .await
    .expect(201, None);
    s.post(
        "/stock/reserve",
        Some(service_token()),
        Some(&key),
        &json!({"orderId": new_order_id(), "itemId": item, "quantity": 2}),
    )
    .await
    .expect(422, Some("idempotency_key_reused"));
    assert_eq!(s.item(item).await["reserved"], 1);
}

async fn keys_are_scoped_per_route_and_per_caller(options: Options) {
    let s = Stack::start_with(options).await;
    let item = s.create_item(1000, "USD", 10).await;
    let key = new_key();
    let order = new_order_id();
    s.post(
        "/stock/reserve",
        Some(service_token()),
        Some(&key),
        &json!({"orderId": order, "itemId": item, "quantity": 1}),
    )
    .await
    .expect(201, None);
    // Same key, another route: its own request.
    let rel = s
        .post(
            "/stock/release",
            Some(service_token()),
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
            Some(service_token_2()),
            Some(&key),
            &json!({"orderId": other, "itemId": item, "quantity": 1}),
        )
        .await;
    a.expect(201, None);
    assert_eq!(a.json["orderId"], other.as_str());
}

async fn a_request_that_failed_validation_or_with_5xx_may_be_retried_with_its_key(
    options: Options,
) {
    let s = Stack::start_with(options).await;
    let key = new_key();
    let order = new_order_id();
    s.post(
        "/payment/charge",
        Some(service_token()),
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
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
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
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
        .await;
    ok.expect(201, None);
    assert_eq!(ok.header("idempotent-replayed"), None);
}

async fn concurrent_requests_with_one_key_execute_once(options: Options) {
    let s = Stack::start_with(options).await;
    let key = new_key();
    let order = new_order_id();
    let body = json!({"orderId": order, "amount": 10, "currency": "USD"});
    let answers = join_all(
        (0..16).map(|_| s.post("/payment/charge", Some(service_token()), Some(&key), &body)),
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
    let listed = s
        .get(
            &format!("/payment/payments?orderId={order}"),
            Some(service_token()),
        )
        .await;
    listed.expect(200, None);
    assert_eq!(listed.json["total"], 1);
    if s.is_own() {
        let db = s.db(Part::Payment).await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}

async fn a_second_request_while_the_first_runs_gets_409_in_progress(options: Options) {
    // The processor takes 1.5 s, holding the key.
    let s = Stack::start_with(options.env("PAYMENT_LATENCY_MS", 1500)).await;
    let key = new_key();
    let body = json!({"orderId": new_order_id(), "amount": 10, "currency": "USD"});
    let first = s.post("/payment/charge", Some(service_token()), Some(&key), &body);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        s.post("/payment/charge", Some(service_token()), Some(&key), &body)
            .await
    };
    let (first, second) = tokio::join!(first, second);
    first.expect(201, None);
    second.expect(409, Some("request_in_progress"));
    assert_eq!(second.header("retry-after"), Some("1"));
    let third = s
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
        .await;
    third.expect(201, None);
    assert_eq!(third.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.json["paymentId"], third.json["paymentId"]);
}

async fn after_redis_loses_everything_a_retry_finds_the_resource_in_postgres(options: Options) {
    let s = Stack::start_with(options).await;
    let (rk, ck, ik, xk) = (new_key(), new_key(), new_key(), new_key());
    let order = new_order_id();
    let reserve = json!({"orderId": order, "itemId": 1, "quantity": 2});
    let charge = json!({"orderId": order, "amount": 2000, "currency": "USD"});
    let declined = json!({"orderId": new_order_id(), "amount": 200_000, "currency": "USD"});
    let restock = json!({"quantity": 5});
    let r1 = s
        .post("/stock/reserve", Some(service_token()), Some(&rk), &reserve)
        .await;
    let c1 = s
        .post("/payment/charge", Some(service_token()), Some(&ck), &charge)
        .await;
    let d1 = s.call("/payment/charge", &declined).await;
    let retry_path = format!(
        "/payment/payments/{}/retry",
        d1.json["paymentId"].as_str().unwrap()
    );
    let x1 = s
        .post(&retry_path, Some(service_token()), Some(&xk), &json!({}))
        .await;
    let i1 = s
        .post(
            "/stock/items/2/restock",
            Some(admin_token()),
            Some(&ik),
            &restock,
        )
        .await;
    for a in [&r1, &c1, &x1, &i1] {
        assert!(a.status < 300, "{}", a.text);
    }

    assert_eq!(s.redis("FLUSHALL"), "+OK");

    let r2 = s
        .post("/stock/reserve", Some(service_token()), Some(&rk), &reserve)
        .await;
    r2.expect(201, None);
    assert_eq!(r2.json["reservationId"], r1.json["reservationId"]);
    assert_eq!(s.item(1).await["reserved"], 2, "reserved once");
    let c2 = s
        .post("/payment/charge", Some(service_token()), Some(&ck), &charge)
        .await;
    c2.expect(201, None);
    assert_eq!(c2.json["paymentId"], c1.json["paymentId"]);
    let x2 = s
        .post(&retry_path, Some(service_token()), Some(&xk), &json!({}))
        .await;
    x2.expect(200, None);
    assert_eq!(x2.json["retries"], 1, "retried once");
    let i2 = s
        .post(
            "/stock/items/2/restock",
            Some(admin_token()),
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
        Some(service_token()),
        Some(&rk),
        &json!({"orderId": new_order_id(), "itemId": 1, "quantity": 2}),
    )
    .await
    .expect(422, Some("idempotency_key_reused"));
    s.post(
        "/payment/charge",
        Some(service_token()),
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

/// One server only: it stops and starts the stack's Redis server, which a cluster stack has not (a
/// cluster losing a master is the failover described in docs/design/idempotency.md).
#[tokio::test]
async fn with_redis_down_changes_are_refused_and_resume_when_it_returns() {
    let s = Stack::start().await;
    s.stop(Part::Redis).await;
    let body = json!({"orderId": new_order_id(), "itemId": 1, "quantity": 1});
    let key = new_key();
    let a = s
        .post("/stock/reserve", Some(service_token()), Some(&key), &body)
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
            .post("/stock/reserve", Some(service_token()), Some(&key), &body)
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

async fn a_request_cut_off_by_a_crash_is_resumed_by_its_retry_not_repeated(options: Options) {
    // The processor takes 3 s; in-flight markers expire after 1 s.
    let s = Stack::start_with(
        options
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
            .bearer_auth(service_token())
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
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
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

async fn results_are_kept_a_day_and_keys_are_scoped_per_service(options: Options) {
    let s = Stack::start_with(options).await;
    let key = new_key();
    s.post(
        "/stock/reserve",
        Some(service_token()),
        Some(&key),
        &json!({"orderId": new_order_id(), "itemId": 1, "quantity": 1}),
    )
    .await
    .expect(201, None);
    // Asked of each server (the one, or every master of a cluster): the one holding the key
    // answers its TTL, the others -3.
    let ttls: Vec<i64> = s
        .redis_each(&format!(
            "EVAL \"local k = redis.call('KEYS', ARGV[1])[1]; \
             if k then return redis.call('TTL', k) end; return -3\" 0 stock:idem:*:{key}"
        ))
        .iter()
        .map(|answer| answer.trim_start_matches(':').parse().unwrap())
        .filter(|ttl| *ttl != -3)
        .collect();
    assert_eq!(ttls.len(), 1, "one entry, on one server: {ttls:?}");
    assert!((86_000..=86_400).contains(&ttls[0]), "kept 24 h: {ttls:?}");
    // The same key means nothing to another service.
    let a = s
        .post(
            "/payment/charge",
            Some(service_token()),
            Some(&key),
            &json!({"amount": 10, "currency": "USD"}),
        )
        .await;
    a.expect(201, None);
    assert_eq!(a.header("idempotent-replayed"), None);
}

/// Each key's state is on the master of its slot, and the slots of the keys — even of a route
/// whose pattern holds braces (`/items/{id}/restock`) — are spread over the masters: every master
/// ends up with entries.
#[tokio::test]
async fn on_a_cluster_the_keys_spread_over_the_masters() {
    let s = Stack::start_with(Options::default().redis_cluster()).await;
    let cluster = s.redis_cluster().expect("a cluster stack");
    for _ in 0..30 {
        s.call(
            "/payment/charge",
            &json!({"orderId": new_order_id(), "amount": 10, "currency": "USD"}),
        )
        .await
        .expect(201, None);
        s.admin("/stock/items/2/restock", &json!({"quantity": 1}))
            .await
            .expect(200, None);
    }
    let sizes: Vec<i64> = cluster
        .each("DBSIZE")
        .iter()
        .map(|answer| answer.trim_start_matches(':').parse().unwrap())
        .collect();
    assert_eq!(sizes.len(), RedisCluster::MASTERS);
    assert_eq!(
        sizes.iter().sum::<i64>(),
        60,
        "one entry per request: {sizes:?}"
    );
    // 60 keys over three masters: each holds some but for a chance below one in 10^10.
    assert!(
        sizes.iter().all(|n| *n > 0),
        "every master is used: {sizes:?}"
    );
    let restock_keys = cluster
        .each("KEYS stock:idem:*restock*")
        .iter()
        .filter(|answer| !answer.starts_with("*0"))
        .count();
    assert!(
        restock_keys >= 2,
        "one route's keys are on several masters, not on its pattern's slot"
    );
    assert_eq!(s.item(2).await["stock"], 80, "restocked once per request");
}

/// A master of the cluster lost: the requests whose key's slot it served answer 503 (none runs
/// unguarded) while the others go on, and readiness is 503; once it is back, every key goes
/// through — the refused ones run, the others are replayed.
#[tokio::test]
async fn on_a_cluster_a_lost_master_refuses_its_keys_until_it_is_back() {
    let s = Stack::start_with(Options::default().redis_cluster()).await;
    let cluster = s.redis_cluster().expect("a cluster stack");
    cluster.kill(0);
    let mut sent = Vec::new();
    // 30 keys: some on the lost master's slots but for a chance of 5 in a million.
    for _ in 0..30 {
        let key = new_key();
        let body = json!({"orderId": new_order_id(), "amount": 10, "currency": "USD"});
        let a = s
            .post("/payment/charge", Some(service_token()), Some(&key), &body)
            .await;
        assert!(
            a.status == 201 || (a.status == 503 && a.code() == "dependency_unavailable"),
            "{}",
            a.text
        );
        sent.push((key, body, a.status));
    }
    let refused = sent.iter().filter(|(_, _, status)| *status == 503).count();
    assert!(refused > 0, "the lost master's keys are refused");
    assert!(refused < sent.len(), "the other masters' keys go through");
    let ready = s.get("/payment/health/ready", None).await;
    ready.expect(503, None);
    assert_eq!(ready.json["checks"]["redis"]["status"], "unhealthy");
    let db = s.db(Part::Payment).await;
    let count = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM payments").fetch_one(&db);
    assert_eq!(count().await.unwrap(), (sent.len() - refused) as i64);

    cluster.start_node(0).await;
    for (key, body, status) in &sent {
        let mut answer = None;
        for _ in 0..50 {
            let a = s
                .post("/payment/charge", Some(service_token()), Some(key), body)
                .await;
            if a.status != 503 {
                answer = Some(a);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let a = answer.expect("every key goes through once the master is back");
        a.expect(201, None);
        let replayed = (*status == 201).then_some("true");
        assert_eq!(a.header("idempotent-replayed"), replayed);
    }
    assert_eq!(
        count().await.unwrap(),
        sent.len() as i64,
        "one payment per key"
    );
    s.get("/payment/health/ready", None).await.expect(200, None);
}

/// `REDIS_CLUSTER_NODES` names the cluster (and takes precedence over `REDIS_URL`, which names a
/// port where nothing listens here): the services start, answer ready, and keep keys in it.
#[tokio::test]
async fn services_start_and_answer_ready_with_redis_cluster_nodes() {
    let s = Stack::start_with(Options::default().redis_cluster_nodes()).await;
    for service in Part::SERVICES {
        let ready = s
            .get(&format!("/{}/health/ready", service.name()), None)
            .await;
        ready.expect(200, None);
        assert_eq!(ready.json["checks"]["redis"]["status"], "healthy");
        let log = std::fs::read_to_string(s.log_path(service)).unwrap();
        assert!(
            log.contains("cluster via"),
            "{} uses the cluster",
            service.name()
        );
    }
    let key = new_key();
    let body = json!({"orderId": new_order_id(), "amount": 10, "currency": "USD"});
    let first = s
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
        .await;
    first.expect(201, None);
    let again = s
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
        .await;
    again.expect(201, None);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(s.redis("DBSIZE"), ":1", "the entry is in the cluster");
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`): one shared and in use, where each works on items and orders of its own.
/// Their bodies are above; each runs on a cluster too (`cluster::...`).
mod black_box {
    use super::*;

    #[tokio::test]
    async fn missing_and_malformed_keys_are_refused_before_anything_runs() {
        super::missing_and_malformed_keys_are_refused_before_anything_runs(Options::default()).await
    }

    #[tokio::test]
    async fn a_finished_request_is_replayed_byte_for_byte() {
        super::a_finished_request_is_replayed_byte_for_byte(Options::default()).await
    }

    #[tokio::test]
    async fn a_key_reused_for_another_request_is_refused() {
        super::a_key_reused_for_another_request_is_refused(Options::default()).await
    }

    #[tokio::test]
    async fn keys_are_scoped_per_route_and_per_caller() {
        super::keys_are_scoped_per_route_and_per_caller(Options::default()).await
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_key_execute_once() {
        super::concurrent_requests_with_one_key_execute_once(Options::default()).await
    }
}
