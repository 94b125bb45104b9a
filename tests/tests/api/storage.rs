//! Every SQL statement of the services is checked against the migrated schema: at compile time
//! by sqlx's `query!` macros, from the descriptions committed in each service's `.sqlx/`; and here,
//! each description against the schema the service's migrations really make (the stack's
//! services have just migrated their databases), so that a migration that changes what a
//! statement means cannot go unnoticed with a stale description.

use serde_json::Value;
use sqlx::Executor;
use tests::{workspace_root, Part, Stack};

#[tokio::test]
async fn every_statement_matches_the_migrated_schema() {
    let s = Stack::start().await;
    let mut checked = 0;
    let mut stale = Vec::new();
    for part in [Part::Stock, Part::Payment, Part::Order] {
        let dir = workspace_root().join(part.name()).join(".sqlx");
        let db = s.db(part).await;
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} has no statements", dir.display());
        for file in files {
            let committed: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let query = committed["query"].as_str().expect("a query");
            let live = match db.describe(query).await {
                Ok(describe) => serde_json::to_value(&describe).unwrap(),
                Err(e) => {
                    stale.push(format!("{}: {e}\n{query}", file.display()));
                    continue;
                }
            };
            if live != committed["describe"] {
                stale.push(format!(
                    "{}: the schema now describes it as {live}\n{query}",
                    file.display()
                ));
            }
            checked += 1;
        }
    }
    assert!(
        stale.is_empty(),
        "statements whose description is stale (run `make sqlx-prepare`):\n{}",
        stale.join("\n\n")
    );
    assert!(checked > 40, "only {checked} statements");
}

/// The ledger's migration works on a database that already has payments: each payment captured
/// before splits existed goes wholly to the platform through the ledger (a refunded one reversed
/// whole), the trial balance agrees, and the service goes on with them — splits shown, a partial
/// refund and the compensation of what is left reverse the backfilled allocation.
#[tokio::test]
async fn the_ledger_migration_takes_in_the_payments_made_before_it() {
    let s = Stack::start().await;
    s.stop(Part::Payment).await;
    // The schema as it was before the ledger: the migrations before it, applied as the service
    // applies them (so that the service sees them as its own).
    let db = migrated_before(&s, Part::Payment, "0004").await;
    let old: Vec<(uuid::Uuid, &str, i64, &str)> = vec![
        (uuid::Uuid::new_v4(), "succeeded", 1000, "USD"),
        (uuid::Uuid::new_v4(), "succeeded", 700, "EUR"),
        (uuid::Uuid::new_v4(), "refunded", 500, "USD"),
        (uuid::Uuid::new_v4(), "failed", 300, "USD"),
        (uuid::Uuid::new_v4(), "exhausted", 200, "USD"),
    ];
    for (id, status, amount, currency) in &old {
        sqlx::query(
            "INSERT INTO payments (id, order_id, amount, currency, status, idempotency_key,
                                   request_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'h', now() - interval '2 days',
                     now() - interval '2 days')",
        )
        .bind(id)
        .bind(format!("old-{id}"))
        .bind(amount)
        .bind(currency)
        .bind(status)
        .bind(format!("key-{id}"))
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;
    s.start_part(Part::Payment, &[]).await;

    let s = &s;
    let splits = |id: uuid::Uuid| {
        let path = format!("/payment/payments/{id}/splits");
        async move { s.get(&path, Some(tests::service_token())).await }
    };
    for (id, status, amount, _) in &old {
        let a = splits(*id).await;
        a.expect(200, None);
        let allocations = a.json["allocations"].as_array().unwrap().clone();
        match *status {
            "succeeded" | "refunded" => {
                assert_eq!(allocations.len(), 1, "{status}");
                assert_eq!(
                    allocations[0]["recipientId"],
                    "00000000-0000-0000-0000-000000000001"
                );
                assert_eq!(allocations[0]["amount"], *amount);
                assert_eq!(allocations[0]["splitRuleId"], Value::Null);
                let reversed = if *status == "refunded" { *amount } else { 0 };
                assert_eq!(allocations[0]["reversed"], reversed);
                let payment = s
                    .get(
                        &format!("/payment/payments/{id}"),
                        Some(tests::service_token()),
                    )
                    .await;
                assert_eq!(payment.json["refundedAmount"], reversed);
            }
            _ => assert!(allocations.is_empty(), "{status}"),
        }
    }
    let entries = s
        .get(
            &format!("/payment/ledger/entries?paymentId={}", old[2].0),
            Some(tests::service_token()),
        )
        .await;
    let kinds: Vec<&str> = entries.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "capture"], "newest first");

    // They go on: a partial refund, then the compensation of the rest.
    let (usd, ..) = old[0];
    let part = s
        .call(
            &format!("/payment/payments/{usd}/refunds"),
            &serde_json::json!({"amount": 250}),
        )
        .await;
    part.expect(201, None);
    let rest = s
        .call("/payment/refund", &serde_json::json!({"paymentId": usd}))
        .await;
    rest.expect(200, None);
    assert_eq!(rest.json["status"], "refunded");
    assert_eq!(rest.json["refundedAmount"], 1000);
    let a = splits(usd).await;
    assert_eq!(a.json["allocations"][0]["reversed"], 1000);

    // The worker releases what the old payments left pending (they are more than a day old).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let released = s
            .get(
                &format!(
                    "/payment/ledger/entries?paymentId={}&kind=release",
                    old[1].0
                ),
                Some(tests::service_token()),
            )
            .await;
        if released.json["total"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let trial = s
        .send(
            s.client
                .get(s.url("/payment/ledger/trial-balance"))
                .bearer_auth(tests::admin_token()),
        )
        .await;
    trial.expect(200, None);
    assert_eq!(trial.json["consistent"], true, "{}", trial.json);
    let eur = trial.json["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == "EUR")
        .unwrap()
        .clone();
    assert_eq!(eur["processor"], 700);
    assert_eq!(eur["recipientsAvailable"], 700);
    assert_eq!(eur["recipientsPending"], 0);
}

/// A new database for `part`, migrated as the service migrates it but only with its migrations
/// named before `first_left_out`: the schema as it was before that migration. The part must be
/// stopped; starting it again runs the rest.
async fn migrated_before(s: &Stack, part: Part, first_left_out: &str) -> sqlx::PgPool {
    let url = s.database_url(part);
    let (server, name) = url.rsplit_once('/').unwrap();
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    admin
        .execute(format!("DROP DATABASE {name}").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    admin.close().await;
    let before = s.dir().join(format!(
        "{}-migrations-before-{first_left_out}",
        part.name()
    ));
    std::fs::create_dir_all(&before).unwrap();
    let dir = workspace_root().join(part.name()).join("migrations");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if file.as_str() < first_left_out {
            std::fs::copy(&path, before.join(&file)).unwrap();
        }
    }
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&db)
        .await
        .unwrap();
    db
}

/// Payments and tombstones written when an order's attempt after the first was known to payment
/// as `{order}.{attempt}` are moved to the order's id and their attempt by the migration: a
/// lookup by the order's id finds them, and a charge of that order and attempt meets them. Other
/// order ids are left as they are, attempt 1.
#[tokio::test]
async fn the_attempt_migration_moves_the_payments_of_later_attempts_to_their_order() {
    let s = Stack::start().await;
    s.stop(Part::Payment).await;
    let db = migrated_before(&s, Part::Payment, "0007").await;
    let order = uuid::Uuid::new_v4();
    let canceled = uuid::Uuid::new_v4();
    let old: Vec<(uuid::Uuid, String)> = vec![
        (uuid::Uuid::new_v4(), order.to_string()),
        (uuid::Uuid::new_v4(), format!("{order}.2")),
        (uuid::Uuid::new_v4(), "ord-x.2".to_string()),
    ];
    for (id, order_id) in &old {
        sqlx::query(
            "INSERT INTO payments (id, order_id, amount, currency, status, failure_code,
                                   idempotency_key, request_hash)
             VALUES ($1, $2, 300, 'USD', 'failed', 'card_declined', $3, 'h')",
        )
        .bind(id)
        .bind(order_id)
        .bind(format!("key-{id}"))
        .execute(&db)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO canceled_orders (order_id) VALUES ($1)")
        .bind(format!("{canceled}.2"))
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    s.start_part(Part::Payment, &[]).await;

    let found = s
        .get(
            &format!("/payment/payments?orderId={order}"),
            Some(tests::service_token()),
        )
        .await;
    found.expect(200, None);
    let mut found: Vec<(String, String, i64)> = found.json["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["paymentId"].as_str().unwrap_or_default().to_string(),
                p["orderId"].as_str().unwrap_or_default().to_string(),
                p["attempt"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    found.sort_by_key(|p| p.2);
    assert_eq!(
        found,
        [
            (old[0].0.to_string(), order.to_string(), 1),
            (old[1].0.to_string(), order.to_string(), 2)
        ],
        "both attempts' payments, by the order's id"
    );
    let other = s
        .get(
            &format!("/payment/payments/{}", old[2].0),
            Some(tests::service_token()),
        )
        .await;
    other.expect(200, None);
    assert_eq!(
        (&other.json["orderId"], &other.json["attempt"]),
        (&serde_json::json!("ord-x.2"), &serde_json::json!(1)),
        "not an order's attempt: as it was"
    );
    // The moved payment and tombstone refuse what they refused before.
    let exists = s
        .call(
            "/payment/charge",
            &serde_json::json!({"orderId": order, "attempt": 2, "amount": 300, "currency": "USD"}),
        )
        .await;
    exists.expect(409, Some("payment_exists"));
    assert_eq!(exists.json["paymentId"], old[1].0.to_string());
    s.call(
        "/payment/charge",
        &serde_json::json!({"orderId": canceled, "attempt": 2, "amount": 300, "currency": "USD"}),
    )
    .await
    .expect(409, Some("order_canceled"));
    s.call(
        "/payment/charge",
        &serde_json::json!({"orderId": canceled, "amount": 300, "currency": "USD"}),
    )
    .await
    .expect(201, None);
}

/// Reservations and tombstones of an order's later attempts (`{order}.{attempt}` at stock) are
/// moved to the order's id and their attempt by the migration.
#[tokio::test]
async fn the_attempt_migration_moves_the_reservations_of_later_attempts_to_their_order() {
    let s = Stack::start().await;
    s.stop(Part::Stock).await;
    let db = migrated_before(&s, Part::Stock, "0003").await;
    let order = uuid::Uuid::new_v4();
    let canceled = uuid::Uuid::new_v4();
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for (id, order_id, status) in [
        (first, order.to_string(), "canceled"),
        (second, format!("{order}.2"), "completed"),
    ] {
        sqlx::query(
            "INSERT INTO reservations (id, order_id, status, total_amount, currency,
                                       idempotency_key, request_hash, expires_at)
             VALUES ($1, $2, $3, 0, 'USD', $4, 'h', now() + interval '1 hour')",
        )
        .bind(id)
        .bind(order_id)
        .bind(status)
        .bind(format!("key-{id}"))
        .execute(&db)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO reservations (id, order_id, status, tombstone)
         VALUES ($1, $2, 'canceled', true)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(format!("{canceled}.3"))
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    s.start_part(Part::Stock, &[]).await;

    for (id, attempt) in [(first, 1), (second, 2)] {
        let r = s
            .get(
                &format!("/stock/reservations/{id}"),
                Some(tests::service_token()),
            )
            .await;
        r.expect(200, None);
        assert_eq!(
            (&r.json["orderId"], &r.json["attempt"]),
            (&serde_json::json!(order), &serde_json::json!(attempt)),
            "{}",
            r.text
        );
    }
    let exists = s
        .call(
            "/stock/reserve",
            &serde_json::json!({"orderId": order, "attempt": 2, "itemId": 1, "quantity": 1}),
        )
        .await;
    exists.expect(409, Some("reservation_exists"));
    assert_eq!(exists.json["reservationId"], second.to_string());
    s.call(
        "/stock/reserve",
        &serde_json::json!({"orderId": canceled, "attempt": 3, "itemId": 1, "quantity": 1}),
    )
    .await
    .expect(409, Some("reservation_canceled"));
    s.call(
        "/stock/reserve",
        &serde_json::json!({"orderId": canceled, "itemId": 1, "quantity": 1}),
    )
    .await
    .expect(201, None);
}
