//! Several instances of each service behind nginx: started together on empty databases, killed one
//! at a time under load; and what an operator sees of a step a participant keeps refusing.

use futures_util::future::join_all;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::{new_key, workspace_root, Options, Part, Stack};

/// The value of the first sample of `metric` whose labels contain all of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test]
async fn three_instances_of_each_service_start_at_once_on_empty_databases() {
    // The harness starts all nine processes at once; none of the databases exists yet.
    let s = Stack::start_with(Options::default().instances(3)).await;

    for part in Part::SERVICES {
        // Each migration ran once, and all of them did.
        let migrations = std::fs::read_dir(workspace_root().join(part.name()).join("migrations"))
            .unwrap()
            .count() as i64;
        let db = s.db(part).await;
        let (rows, versions, failed): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT version), count(*) FILTER (WHERE NOT success)
             FROM _sqlx_migrations",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(
            (rows, versions, failed),
            (migrations, migrations, 0),
            "{}",
            part.name()
        );
        // Every instance serves.
        for i in 1..=3 {
            let r = s
                .client
                .get(format!("{}/health/ready", s.instance_url(part, i)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{} {i}", part.name());
        }
    }

    // nginx spreads requests over the instances, and checkouts complete through any of them.
    let item = s.create_item(100, "USD", 1000).await;
    for _ in 0..12 {
        s.checkout(json!({"items": [{"itemId": item, "quantity": 1}]}))
            .await
            .expect(201, None);
    }
    for i in 1..=3 {
        let m = s.metrics(Part::Order, i).await;
        let served = sample(
            &m,
            "http_requests_total",
            &["route=\"/checkout\"", "status=\"201\""],
        );
        assert!(
            served.is_some_and(|n| n >= 1.0),
            "order {i} served checkouts"
        );
    }
    let violations = s.quiet_and_check(Duration::from_secs(30)).await;
    assert!(violations.is_empty(), "{violations:?}");
}

/// Checkout clients run while one instance of a service after another is SIGKILLed and started
/// again: every checkout the clients began ends answered, none is lost, and the invariants hold.
#[tokio::test]
async fn checkouts_keep_completing_while_single_instances_are_killed() {
    let s = Arc::new(
        Stack::start_with(
            Options::default()
                .instances(2)
                .env("SAGA_LEASE_SECS", 3)
                .env("SAGA_STEP_BUDGET_MS", 1500)
                .env("OUTBOUND_TIMEOUT_MS", 700)
                .env("RECOVERY_INTERVAL_MS", 300)
                .env("IDEMPOTENCY_LOCK_SECS", 5),
        )
        .await,
    );
    let item = s.create_item(100, "USD", 100_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut completed, mut answers) = (0u32, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let key = new_key();
                    let body = json!({"items": [{"itemId": item, "quantity": 1}]});
                    // A client retries its key until the checkout is answered for good.
                    let started = Instant::now();
                    loop {
                        let a = s.post("/order/checkout", None, Some(&key), &body).await;
                        answers.push(a.status);
                        if a.status == 201 {
                            completed += 1;
                            break;
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(30),
                            "a checkout is not answered: {}",
                            a.text
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                (completed, answers)
            })
        })
        .collect();

    for part in [Part::Order, Part::Stock, Part::Payment, Part::Order] {
        for instance in [1, 2] {
            tokio::time::sleep(Duration::from_millis(700)).await;
            s.kill_instance(part, instance).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.start_instance_part(part, instance, &[]).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut completed = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for (n, answers) in join_all(clients).await.into_iter().map(Result::unwrap) {
        completed += n;
        for a in answers {
            *statuses.entry(a).or_insert(0) += 1;
        }
    }
    assert!(
        completed >= 20,
        "checkouts completed: {completed}, answers {statuses:?}"
    );
    let violations = s.quiet_and_check(Duration::from_secs(60)).await;
    assert!(violations.is_empty(), "{violations:?}");
    let stock = s.item(item).await;
    assert_eq!(
        stock["stock"].as_i64(),
        Some(100_000 - i64::from(completed)),
        "each completed checkout took one unit, once"
    );
}

/// A compensation the participant keeps refusing (here: payment restarted with other tokens, so
/// order's calls get 401) is counted in `saga_steps_retrying` for as long as it lasts and logged
/// once for the order — not once per attempt — and once more when it settles.
#[tokio::test]
async fn a_refused_compensation_is_counted_and_logged_once_per_order() {
    let s = Stack::start_with(
        Options::default()
            .env("COMPENSATION_MAX_BACKOFF_MS", 100)
            .env("CHECKOUT_DEADLINE_MS", 1000),
    )
    .await;
    let item = s.create_item(100, "USD", 10).await;
    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[("SERVICE_TOKENS", "svc-someone-else")])
        .await;

    let a = s
        .checkout(json!({"items": [{"itemId": item, "quantity": 1}]}))
        .await;
    a.expect(202, None);
    let order_id = a.json["orderId"].as_str().unwrap().to_string();
    let stuck = |m: &str| {
        sample(
            m,
            "saga_steps_retrying",
            &["step=\"refund\"", "reason=\"refused\""],
        )
    };
    let started = Instant::now();
    while stuck(&s.metrics(Part::Order, 1).await) != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refund is counted as stuck"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Many attempts later, still one line for the order.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = s.metrics(Part::Order, 1).await;
    let refused = sample(
        &m,
        "outbound_requests_total",
        &["target=\"payment\"", "outcome=\"answered\""],
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 8.0,
        "payment was asked again and again: {refused}"
    );
    let log = std::fs::read_to_string(s.log_path(Part::Order)).unwrap();
    let lines_of = |needle: &str| {
        log.lines()
            .filter(|l| l.contains(&order_id) && l.contains(needle))
            .count()
    };
    assert_eq!(lines_of("refuses a step that must succeed"), 1, "{log}");

    // payment back with the stack's tokens: the refund settles (nothing was charged), the order
    // fails, and the gauge is back to zero.
    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[]).await;
    let started = Instant::now();
    loop {
        let o = s.get(&format!("/order/orders/{order_id}"), None).await;
        if o.json["status"] == "failed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{}", o.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stuck(&s.metrics(Part::Order, 1).await), Some(0.0));
    let log = std::fs::read_to_string(s.log_path(Part::Order)).unwrap();
    let settled = log
        .lines()
        .filter(|l| l.contains(&order_id) && l.contains("settled after being asked again"))
        .count();
    assert_eq!(settled, 1, "{log}");
    let violations = s.quiet_and_check(Duration::from_secs(30)).await;
    assert!(violations.is_empty(), "{violations:?}");
}
