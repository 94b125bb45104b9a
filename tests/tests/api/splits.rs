//! Marketplace splits and the ledger (docs/api.md, docs/design/ledger.md), through nginx:
//! recipients and their balances; versioned split rules — made once per key, ending each other,
//! one in force at a time even when made concurrently — with every refused input answered (status,
//! code, the field in `detail`) and nothing written; each sold line split by its product's rule in
//! force when the payment was made, to the unit (the rounding examples through real checkouts, so
//! the saga's lines too), and nothing split for a payment that did not succeed; partial and full
//! refunds reversing in proportion and exactly, once per key, never beyond the payment however many
//! run at once; a capture (and a refund) written once whether replayed, retried after a crash or
//! raced by a second payment instance; the release from `pending` to `available`, once, with
//! refunds before and after it; the journal's filters and pages; the token each endpoint takes;
//! the metrics. Every test ends with the ledger checked: the trial balance consistent and, on a stack
//! of the suite's own, the ledger's invariants on the stored rows (`assert_ledger_sound`). The tests
//! of `black_box` speak only HTTP to nginx and also run against a stack the suite did not start,
//! shared with others: they look only at their own recipients, products and payments there, and
//! check what needs a stack of their own (its database, its Redis, its logs, the platform's balance,
//! the totals) only on one.

use futures_util::future::join_all;
use serde_json::{json, Value};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tests::{admin_token, new_key, new_order_id, service_token, Answer, Options, Part, Stack};
use uuid::Uuid;

const PLATFORM: &str = "00000000-0000-0000-0000-000000000001";
/// Longer than any wait here should take.
const DEADLINE: Duration = Duration::from_secs(30);

// ----- building requests -----

pub(crate) fn pct(recipient: &str, basis_points: i64) -> Value {
    json!({"recipientId": recipient, "type": "percentage", "basisPoints": basis_points})
}

fn fixed(recipient: &str, amount: i64) -> Value {
    json!({"recipientId": recipient, "type": "fixed", "amount": amount})
}

fn rest(recipient: &str) -> Value {
    json!({"recipientId": recipient, "type": "remainder"})
}

/// An RFC 3339 instant `secs` from now (the services' clock is this machine's).
fn from_now(secs: i64) -> String {
    let micros = Utc::now().timestamp_micros() + secs * 1_000_000;
    DateTime::from_timestamp_micros(micros)
        .expect("an instant in range")
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{v} is no instant")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .with_timezone(&Utc)
}

pub(crate) fn id(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is no id"))
        .to_string()
}

pub(crate) fn detail(a: &Answer) -> &str {
    a.json["detail"].as_str().unwrap_or("")
}

/// A 400 `validation_error` whose `detail` names `field`.
#[track_caller]
pub(crate) fn refused_naming(a: &Answer, field: &str) {
    a.expect(400, Some("validation_error"));
    assert!(
        detail(a).contains(field),
        "the detail names {field}: {}",
        a.text
    );
}

// ----- the API -----

pub(crate) async fn recipient(s: &Stack, name: &str) -> String {
    let a = s.admin("/payment/recipients", &json!({"name": name})).await;
    a.expect(201, None);
    id(&a.json["recipientId"])
}

async fn new_rule(s: &Stack, body: &Value) -> Answer {
    s.admin("/payment/split-rules", body).await
}

/// A rule for `product` in force from now; returns its id.
pub(crate) async fn rule(s: &Stack, product: i64, shares: Value) -> String {
    let a = new_rule(s, &json!({"productId": product, "shares": shares})).await;
    a.expect(201, None);
    id(&a.json["splitRuleId"])
}

async fn rules_of(s: &Stack, query: &str) -> Vec<Value> {
    let a = s
        .get(
            &format!("/payment/split-rules?{query}"),
            Some(admin_token()),
        )
        .await;
    a.expect(200, None);
    a.json["splitRules"].as_array().cloned().unwrap()
}

fn versions(rules: &[Value]) -> Vec<i64> {
    rules
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect()
}

async fn charge(s: &Stack, body: Value) -> Value {
    let a = s.call("/payment/charge", &body).await;
    a.expect(201, None);
    a.json
}

async fn payment(s: &Stack, payment: &str) -> Value {
    let a = s
        .get(
            &format!("/payment/payments/{payment}"),
            Some(service_token()),
        )
        .await;
    a.expect(200, None);
    a.json
}

async fn splits(s: &Stack, payment: &str) -> Value {
    let a = s
        .get(
            &format!("/payment/payments/{payment}/splits"),
            Some(service_token()),
        )
        .await;
    a.expect(200, None);
    assert_eq!(a.json["paymentId"], payment);
    a.json
}

/// An allocation as `(productId, recipientId, splitRuleId, amount, reversed)`.
type Alloc = (Option<i64>, String, Option<String>, i64, i64);

async fn allocations(s: &Stack, payment: &str) -> Vec<Alloc> {
    splits(s, payment).await["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["productId"].as_i64(),
                id(&a["recipientId"]),
                a["splitRuleId"].as_str().map(str::to_string),
                a["amount"].as_i64().unwrap(),
                a["reversed"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn alloc(product: i64, recipient: &str, rule: &str, amount: i64) -> Alloc {
    (
        Some(product),
        recipient.to_string(),
        Some(rule.to_string()),
        amount,
        0,
    )
}

pub(crate) async fn refund_part(s: &Stack, payment: &str, amount: i64) -> Answer {
    s.call(
        &format!("/payment/payments/{payment}/refunds"),
        &json!({"amount": amount}),
    )
    .await
}

/// `(pending, available, held)` of a recipient in a currency; zeros when it has no balance in it.
pub(crate) async fn balance(s: &Stack, recipient: &str, currency: &str) -> (i64, i64, i64) {
    let a = s
        .get(
            &format!("/payment/recipients/{recipient}/balances"),
            Some(service_token()),
        )
        .await;
    a.expect(200, None);
    assert_eq!(a.json["recipientId"], recipient);
    a.json["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == currency)
        .map(|b| {
            (
                b["pending"].as_i64().unwrap(),
                b["available"].as_i64().unwrap(),
                b["held"].as_i64().unwrap(),
            )
        })
        .unwrap_or((0, 0, 0))
}

pub(crate) async fn entries(s: &Stack, query: &str) -> Value {
    let a = s
        .get(
            &format!("/payment/ledger/entries?{query}"),
            Some(service_token()),
        )
        .await;
    a.expect(200, None);
    a.json
}

/// A leg as `(debit account, its recipient, credit account, its recipient, amount)`.
pub(crate) type LegOf = (String, Option<String>, String, Option<String>, i64);

pub(crate) fn legs(entry: &Value) -> Vec<LegOf> {
    entry["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                id(&l["debit"]["account"]),
                l["debit"]["recipientId"].as_str().map(str::to_string),
                id(&l["credit"]["account"]),
                l["credit"]["recipientId"].as_str().map(str::to_string),
                l["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

pub(crate) fn leg(debit: (&str, Option<&str>), credit: (&str, Option<&str>), amount: i64) -> LegOf {
    (
        debit.0.to_string(),
        debit.1.map(str::to_string),
        credit.0.to_string(),
        credit.1.map(str::to_string),
        amount,
    )
}

async fn trial_balance(s: &Stack) -> Value {
    let a = s
        .get("/payment/ledger/trial-balance", Some(admin_token()))
        .await;
    a.expect(200, None);
    a.json
}

/// The figures of one currency in the trial balance.
async fn totals(s: &Stack, currency: &str) -> Value {
    trial_balance(s).await["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == currency)
        .cloned()
        .unwrap_or_else(|| panic!("no {currency} in the trial balance"))
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

async fn captures_of(db: &PgPool, payment: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE payment_id = $1::uuid AND kind = 'capture'",
    )
    .bind(payment)
    .fetch_one(db)
    .await
    .unwrap()
}

/// The ledger is sound: the trial balance is consistent (debits = credits, every stored balance
/// what its legs give, what the processor gave less the payouts with the recipients) — in any
/// snapshot, whatever else runs on the stack — and, on a stack of the suite's own, on the stored
/// rows every succeeded or refunded payment has exactly one capture entry and allocations summing
/// to its amount (anything else neither), Σ reversed = Σ refunds = `refundedAmount`, each refund's
/// entry moves its amount, at most one release per payment, and `held` is never negative.
pub(crate) async fn assert_ledger_sound(s: &Stack) {
    let tb = trial_balance(s).await;
    assert_eq!(tb["consistent"], true, "trial balance: {tb}");
    for c in tb["currencies"].as_array().unwrap() {
        assert_eq!(c["debits"], c["credits"], "{c}");
        assert_eq!(
            c["processor"].as_i64().unwrap() - c["payouts"].as_i64().unwrap(),
            c["recipientsPending"].as_i64().unwrap() + c["recipientsAvailable"].as_i64().unwrap(),
            "what the processor gave is with the recipients: {c}"
        );
    }
    if !s.is_own() {
        // The stored rows of a stack the suite did not start are not reached.
        return;
    }
    let db = s.db(Part::Payment).await;
    type Row = (String, String, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.id::text, p.status, p.amount, p.refunded_amount,
                (SELECT count(*) FROM ledger_entries e WHERE e.payment_id = p.id AND e.kind = 'capture'),
                (SELECT count(*) FROM allocations a WHERE a.payment_id = p.id),
                (SELECT coalesce(sum(a.amount), 0)::bigint FROM allocations a WHERE a.payment_id = p.id),
                (SELECT coalesce(sum(a.reversed), 0)::bigint FROM allocations a WHERE a.payment_id = p.id),
                (SELECT coalesce(sum(r.amount), 0)::bigint FROM refunds r WHERE r.payment_id = p.id)
         FROM payments p",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for (id, status, amount, refunded, captures, n, allocated, reversed, refunds) in rows {
        if status == "succeeded" || status == "refunded" {
            assert_eq!(captures, 1, "payment {id} ({status}) has one capture entry");
            assert_eq!(allocated, amount, "payment {id}'s allocations sum to it");
        } else {
            assert_eq!(
                (captures, n),
                (0, 0),
                "payment {id} ({status}) split nothing"
            );
        }
        assert_eq!(
            reversed, refunded,
            "payment {id}: Σ reversed = refundedAmount"
        );
        assert_eq!(
            refunds, refunded,
            "payment {id}: Σ refunds = refundedAmount"
        );
        assert_eq!(
            status == "refunded",
            amount == refunded && captures == 1,
            "payment {id}: refunded exactly when wholly refunded"
        );
    }
    let refunds: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT r.id::text, r.amount,
                (SELECT count(*) FROM ledger_entries e WHERE e.refund_id = r.id),
                (SELECT coalesce(sum(l.amount), 0)::bigint FROM ledger_entries e
                 JOIN ledger_legs l ON l.entry_id = e.id WHERE e.refund_id = r.id)
         FROM refunds r",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for (id, amount, n, moved) in refunds {
        assert_eq!(
            (n, moved),
            (1, amount),
            "refund {id} has one entry moving it"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT payment_id FROM ledger_entries WHERE kind = 'release'
             GROUP BY payment_id HAVING count(*) > 1) x"
        )
        .await,
        0,
        "one release entry per payment at most"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM balances WHERE held < 0").await,
        0
    );
}

/// Waits until `instant` (RFC 3339) is past by the services' clock: the database's, on a stack of
/// the suite's own; on another, this machine's (the clock `from_now` takes to be theirs), and a
/// second more.
async fn until_past(s: &Stack, instant_: &str) {
    if s.is_own() {
        let db = s.db(Part::Payment).await;
        eventually(&format!("{instant_} past"), || {
            let db = &db;
            async move {
                sqlx::query_scalar::<_, bool>("SELECT clock_timestamp() > $1::timestamptz")
                    .bind(instant_)
                    .fetch_one(db)
                    .await
                    .unwrap()
            }
        })
        .await;
    } else {
        let until = instant(&json!(instant_)).timestamp_micros() + 1_000_000;
        eventually(&format!("{instant_} past"), || async move {
            Utc::now().timestamp_micros() > until
        })
        .await;
    }
}

/// Polls `check` until it is true, or panics with `what` after [`DEADLINE`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn scrape(s: &Stack) -> String {
    s.metrics(Part::Payment, 1).await
}

/// The value of `series` (labels in any order) in an exposition.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    let key = |s: &str| -> (String, Vec<String>) {
        match s.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<String> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::to_string)
                    .collect();
                labels.sort();
                (name.to_string(), labels)
            }
            None => (s.to_string(), vec![]),
        }
    };
    let wanted = key(series);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| key(s) == wanted)
        .and_then(|(_, v)| v.parse().ok())
}

// ----- splitting -----

#[tokio::test]
async fn charges_split_their_lines_only_once_succeeded_and_bad_lines_write_nothing() {
    let s = Stack::start_with(Options::default().env("PAYMENT_RETRY_SUCCESS_PROBABILITY", 1)).await;
    let db = s.db(Part::Payment).await;
    let (a, b) = (
        recipient(&s, "seller").await,
        recipient(&s, "partner").await,
    );
    let product = s.create_item(1000, "USD", 10).await;
    let r = rule(&s, product, json!([pct(&a, 7000), rest(&b)])).await;

    // Without lines: all to the platform.
    let p0 = charge(&s, json!({"amount": 500, "currency": "EUR"})).await;
    let p0 = id(&p0["paymentId"]);
    let s0 = splits(&s, &p0).await;
    assert_eq!(
        s0,
        json!({"paymentId": p0, "currency": "EUR", "allocations": [
            {"productId": null, "recipientId": PLATFORM, "splitRuleId": null, "amount": 500, "reversed": 0}
        ]})
    );

    // A line with a rule and a line without.
    let p1 = charge(
        &s,
        json!({"orderId": new_order_id(), "amount": 1500, "currency": "USD", "lines": [
            {"productId": product, "quantity": 3, "amount": 1000},
            {"productId": 999_999, "quantity": 1, "amount": 500}
        ]}),
    )
    .await;
    assert_eq!(p1["refundedAmount"], 0);
    let p1 = id(&p1["paymentId"]);
    assert_eq!(
        allocations(&s, &p1).await,
        [
            alloc(product, &a, &r, 700),
            alloc(product, &b, &r, 300),
            (Some(999_999), PLATFORM.to_string(), None, 500, 0)
        ]
    );

    // Declined: nothing split; succeeded at its retry: split then, once.
    let declined = charge(
        &s,
        json!({"amount": 150_000, "currency": "USD", "lines": [
            {"productId": product, "quantity": 1, "amount": 150_000}
        ]}),
    )
    .await;
    assert_eq!(declined["status"], "failed");
    let p2 = id(&declined["paymentId"]);
    assert_eq!(splits(&s, &p2).await["allocations"], json!([]));
    assert_eq!(entries(&s, &format!("paymentId={p2}")).await["total"], 0);
    let key = new_key();
    let retry = s
        .post(
            &format!("/payment/payments/{p2}/retry"),
            Some(service_token()),
            Some(&key),
            &json!({}),
        )
        .await;
    retry.expect(200, None);
    assert_eq!(retry.json["status"], "succeeded");
    assert_eq!(
        allocations(&s, &p2).await,
        [
            alloc(product, &a, &r, 105_000),
            alloc(product, &b, &r, 45_000)
        ]
    );
    s.redis("FLUSHALL");
    s.post(
        &format!("/payment/payments/{p2}/retry"),
        Some(service_token()),
        Some(&key),
        &json!({}),
    )
    .await
    .expect(200, None);
    assert_eq!(captures_of(&db, &p2).await, 1, "captured once");

    // Split by the rules in force when the payment was made, not when its retry succeeded: a new
    // version made in between changes nothing, and neither does a first rule.
    let other = s.create_item(100, "USD", 10).await;
    let p4 = charge(
        &s,
        json!({"amount": 150_000, "currency": "USD", "lines": [
            {"productId": product, "quantity": 1, "amount": 100_000},
            {"productId": other, "quantity": 1, "amount": 50_000}
        ]}),
    )
    .await;
    assert_eq!(p4["status"], "failed");
    let p4 = id(&p4["paymentId"]);
    rule(&s, product, json!([rest(&b)])).await;
    rule(&s, other, json!([rest(&a)])).await;
    let retry = s
        .call(&format!("/payment/payments/{p4}/retry"), &json!({}))
        .await;
    retry.expect(200, None);
    assert_eq!(retry.json["status"], "succeeded");
    assert_eq!(
        allocations(&s, &p4).await,
        [
            alloc(product, &a, &r, 70_000),
            alloc(product, &b, &r, 30_000),
            (Some(other), PLATFORM.to_string(), None, 50_000, 0)
        ]
    );

    // The most shares a rule has, 20 × 500 basis points: 1999 is 99.95 each, the 19 leftover
    // units to the earliest of the equal fractions.
    let mut twenty = Vec::new();
    for n in 0..20 {
        twenty.push(recipient(&s, &format!("member {n}")).await);
    }
    let wide = 777_777;
    let rw = rule(
        &s,
        wide,
        json!(twenty.iter().map(|r| pct(r, 500)).collect::<Vec<_>>()),
    )
    .await;
    let p5 = charge(
        &s,
        json!({"amount": 1999, "currency": "USD", "lines": [
            {"productId": wide, "quantity": 1, "amount": 1999}
        ]}),
    )
    .await;
    let expected: Vec<Alloc> = twenty
        .iter()
        .enumerate()
        .map(|(n, r)| alloc(wide, r, &rw, if n < 19 { 100 } else { 99 }))
        .collect();
    assert_eq!(allocations(&s, &id(&p5["paymentId"])).await, expected);

    // Lines that do not make a charge: refused, naming them, and nothing written.
    let payments = count(&db, "SELECT count(*) FROM payments").await;
    let line = |product: Value, quantity: Value, amount: Value| json!({"productId": product, "quantity": quantity, "amount": amount});
    let fifty_one: Vec<Value> = (1..=51)
        .map(|p| line(json!(p), json!(1), json!(1)))
        .collect();
    for (lines, amount, field) in [
        (json!([]), 5, "lines"),
        (json!(fifty_one), 51, "lines"),
        (json!([line(json!(1), json!(1), json!(4))]), 5, "lines"),
        (
            json!([
                line(json!(1), json!(1), json!(3)),
                line(json!(2), json!(1), json!(3))
            ]),
            5,
            "lines",
        ),
        (
            json!([line(json!(0), json!(1), json!(5))]),
            5,
            "lines[0].productId",
        ),
        (
            json!([line(json!(1), json!(0), json!(5))]),
            5,
            "lines[0].quantity",
        ),
        (
            json!([line(json!(1), json!(1_000_001), json!(5))]),
            5,
            "lines[0].quantity",
        ),
        (
            json!([
                line(json!(1), json!(1), json!(5)),
                line(json!(2), json!(1), json!(0))
            ]),
            5,
            "lines[1].amount",
        ),
        (json!([{"productId": 1, "quantity": 1}]), 5, "lines[0]"),
        (
            json!([{"productId": 1, "quantity": 1, "amount": 5, "sku": "x"}]),
            5,
            "lines[0]",
        ),
        (json!("all"), 5, "lines"),
    ] {
        let answer = s
            .call(
                "/payment/charge",
                &json!({"amount": amount, "currency": "USD", "lines": lines}),
            )
            .await;
        refused_naming(&answer, field);
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM payments").await,
        payments,
        "refused charges wrote nothing"
    );

    // Exhausted: nothing split.
    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[("PAYMENT_RETRY_SUCCESS_PROBABILITY", "0")])
        .await;
    let failing = charge(
        &s,
        json!({"amount": 200_000, "currency": "USD", "lines": [
            {"productId": product, "quantity": 2, "amount": 200_000}
        ]}),
    )
    .await;
    let p3 = id(&failing["paymentId"]);
    for _ in 0..3 {
        s.call(&format!("/payment/payments/{p3}/retry"), &json!({}))
            .await
            .expect(200, None);
    }
    assert_eq!(payment(&s, &p3).await["status"], "exhausted");
    assert_eq!(splits(&s, &p3).await["allocations"], json!([]));
    assert_eq!(entries(&s, &format!("paymentId={p3}")).await["total"], 0);

    // Reading splits: a service's read only.
    let unknown = Uuid::new_v4();
    s.get(
        &format!("/payment/payments/{unknown}/splits"),
        Some(service_token()),
    )
    .await
    .expect(404, Some("payment_not_found"));
    s.get(
        &format!("/payment/payments/{p1}/splits"),
        Some(admin_token()),
    )
    .await
    .expect(403, Some("forbidden"));
    s.get(&format!("/payment/payments/{p1}/splits"), None)
        .await
        .expect(401, Some("unauthorized"));

    assert_eq!(balance(&s, &a, "USD").await, (175_700, 0, 0));
    assert_eq!(balance(&s, &b, "USD").await, (75_300, 0, 0));
    let platform = s
        .get(
            &format!("/payment/recipients/{PLATFORM}/balances"),
            Some(admin_token()),
        )
        .await;
    assert_eq!(
        platform.json["balances"],
        json!([
            {"currency": "EUR", "pending": 500, "available": 0, "held": 0},
            {"currency": "USD", "pending": 50_500, "available": 0, "held": 0}
        ]),
        "one balance per currency"
    );
    assert_ledger_sound(&s).await;
}

// ----- refunds -----

/// Each allocation's reversed total is within one unit of `amount × refunded / paid`, never less
/// than `before`, never more than the allocation; and the refund's reversals sum to `refund`.
#[track_caller]
fn assert_proportional(now: &[Alloc], before: &[i64], paid: i64, refunded: i64, refund: i64) {
    let mut moved = 0;
    for (i, (_, _, _, amount, reversed)) in now.iter().enumerate() {
        let exact = amount * refunded;
        let (floor, ceil) = (exact / paid, (exact + paid - 1) / paid);
        assert!(
            (floor..=ceil).contains(reversed),
            "allocation {i} ({amount}) reversed {reversed}, {floor}..={ceil} after {refunded} of {paid}"
        );
        assert!(
            *reversed >= before[i] && reversed <= amount,
            "allocation {i}: {} then {reversed} of {amount}",
            before[i]
        );
        moved += reversed - before[i];
    }
    assert_eq!(moved, refund, "the refund's reversals sum to it");
}

// ----- a capture, once -----

#[tokio::test]
async fn a_capture_replayed_or_retried_after_a_crash_is_written_once() {
    // The processor is slow enough to kill payment mid-call; an in-flight marker outlives a
    // request (5 s against 2.5 s) and a crashed one's expires within the test.
    let s = Stack::start_with(
        Options::default()
            .env("PAYMENT_LATENCY_MS", 2500)
            .env("IDEMPOTENCY_LOCK_SECS", 5),
    )
    .await;
    let db = s.db(Part::Payment).await;
    let (a, b) = (
        recipient(&s, "seller").await,
        recipient(&s, "partner").await,
    );
    let product = s.create_item(400, "USD", 10).await;
    let r = rule(&s, product, json!([pct(&a, 2500), rest(&b)])).await;
    let order = new_order_id();
    let body = json!({"orderId": order, "amount": 1200, "currency": "USD", "lines": [
        {"productId": product, "quantity": 3, "amount": 1200}
    ]});
    let key = new_key();

    // payment is killed while the processor decides: the payment stays pending.
    let charging = s.post("/payment/charge", Some(service_token()), Some(&key), &body);
    let killer = async {
        eventually("the charge is opened", || {
            let (db, order) = (&db, &order);
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM payments WHERE order_id = $1")
                    .bind(order)
                    .fetch_one(db)
                    .await
                    .unwrap()
                    == 1
            }
        })
        .await;
        s.kill(Part::Payment).await;
    };
    let (first, ()) = tokio::join!(charging, killer);
    first.expect(503, Some("service_unavailable"));
    let (p, status): (String, String) =
        sqlx::query_as("SELECT id::text, status FROM payments WHERE order_id = $1")
            .bind(&order)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "pending");
    assert_eq!(captures_of(&db, &p).await, 0);

    // Started again, the same request resumes it (once its in-flight marker expired).
    s.start_part(Part::Payment, &[]).await;
    let started = Instant::now();
    let settled = loop {
        let a = s
            .post("/payment/charge", Some(service_token()), Some(&key), &body)
            .await;
        if !(a.status == 503 || (a.status == 409 && a.code() == "request_in_progress")) {
            break a;
        }
        assert!(started.elapsed() < DEADLINE, "the retry never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    settled.expect(201, None);
    assert_eq!(
        (
            settled.json["paymentId"].as_str(),
            settled.json["status"].as_str()
        ),
        (Some(p.as_str()), Some("succeeded"))
    );
    // Replayed, and replayed again once Redis forgot it.
    let replay = s
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
        .await;
    replay.expect(201, None);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    s.redis("FLUSHALL");
    let replay = s
        .post("/payment/charge", Some(service_token()), Some(&key), &body)
        .await;
    replay.expect(201, None);
    assert_eq!(replay.json["paymentId"], p.as_str());

    assert_eq!(captures_of(&db, &p).await, 1, "one capture entry");
    let allocated: i64 = sqlx::query_scalar(
        "SELECT sum(amount)::bigint FROM allocations WHERE payment_id = $1::uuid",
    )
    .bind(&p)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(allocated, 1200);
    assert_eq!(
        allocations(&s, &p).await,
        [alloc(product, &a, &r, 300), alloc(product, &b, &r, 900)]
    );
    assert_eq!(balance(&s, &a, "USD").await, (300, 0, 0));

    // A partial refund killed while the processor gives the money back: written, unsettled; then
    // settled, and its retry answers that refund: nothing is refunded twice.
    let path = format!("/payment/payments/{p}/refunds");
    let key = new_key();
    let body = json!({"amount": 500});
    let refunding = s.post(&path, Some(service_token()), Some(&key), &body);
    let killer = async {
        eventually("the refund is written", || {
            let (db, p) = (&db, &p);
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM refunds WHERE payment_id = $1::uuid",
                )
                .bind(p)
                .fetch_one(db)
                .await
                .unwrap()
                    == 1
            }
        })
        .await;
        s.kill(Part::Payment).await;
    };
    let (first, ()) = tokio::join!(refunding, killer);
    first.expect(503, Some("service_unavailable"));
    let (refund, settled): (String, bool) = sqlx::query_as(
        "SELECT id::text, settled_at IS NOT NULL FROM refunds WHERE payment_id = $1::uuid",
    )
    .bind(&p)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(!settled, "the processor never confirmed it");
    // Left alone, payment asks the processor again itself (after 5 s).
    s.start_part(Part::Payment, &[]).await;
    eventually("the refund is settled by the worker", || {
        let (db, refund) = (&db, &refund);
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT settled_at IS NOT NULL FROM refunds WHERE id = $1::uuid",
            )
            .bind(refund)
            .fetch_one(db)
            .await
            .unwrap()
        }
    })
    .await;
    let started = Instant::now();
    let answered = loop {
        let a = s
            .post(&path, Some(service_token()), Some(&key), &body)
            .await;
        if !(a.status == 503 || (a.status == 409 && a.code() == "request_in_progress")) {
            break a;
        }
        assert!(started.elapsed() < DEADLINE, "the retry never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    answered.expect(201, None);
    assert_eq!(
        (
            answered.json["refundId"].as_str(),
            answered.json["amount"].as_i64()
        ),
        (Some(refund.as_str()), Some(500))
    );
    let (n, unsettled): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE settled_at IS NULL) FROM refunds
         WHERE payment_id = $1::uuid",
    )
    .bind(&p)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((n, unsettled), (1, 0), "one refund, settled");
    assert_eq!(payment(&s, &p).await["refundedAmount"], 500);
    assert_eq!(
        allocations(&s, &p).await,
        [
            (Some(product), a.clone(), Some(r.clone()), 300, 125),
            (Some(product), b.clone(), Some(r.clone()), 900, 375)
        ]
    );
    assert_eq!(balance(&s, &a, "USD").await, (175, 0, 0));
    assert_ledger_sound(&s).await;
}

#[tokio::test]
async fn two_payment_instances_settling_one_pending_payment_capture_it_once() {
    let s = Stack::start_with(Options::default().env("PAYMENT_LATENCY_MS", 2000)).await;
    let db = s.db(Part::Payment).await;
    let (a, b) = (
        recipient(&s, "seller").await,
        recipient(&s, "partner").await,
    );
    let product = s.create_item(300, "USD", 10).await;
    let r = rule(&s, product, json!([fixed(&a, 100), rest(&b)])).await;
    let other = s.start_instance(Part::Payment, &[]).await;

    // A charge left pending by a crash.
    let order = new_order_id();
    let body = json!({"orderId": order, "amount": 900, "currency": "USD", "lines": [
        {"productId": product, "quantity": 3, "amount": 900}
    ]});
    let charging = s.call("/payment/charge", &body);
    let killer = async {
        eventually("the charge is opened", || {
            let (db, order) = (&db, &order);
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM payments WHERE order_id = $1")
                    .bind(order)
                    .fetch_one(db)
                    .await
                    .unwrap()
                    == 1
            }
        })
        .await;
        s.kill(Part::Payment).await;
    };
    let (first, ()) = tokio::join!(charging, killer);
    first.expect(503, Some("service_unavailable"));
    let p: String = sqlx::query_scalar("SELECT id::text FROM payments WHERE order_id = $1")
        .bind(&order)
        .fetch_one(&db)
        .await
        .unwrap();
    s.start_part(Part::Payment, &[]).await;

    // Both instances at once, each with several requests that settle the pending payment before
    // anything else (refunds of more than it, refused once it is settled).
    let too_much = json!({"amount": 1_000_000_000_000_i64});
    let stack = &s;
    let through_nginx = (0..4).map(|_| {
        let path = format!("/payment/payments/{p}/refunds");
        let too_much = too_much.clone();
        async move { stack.call(&path, &too_much).await }
    });
    let direct = (0..4).map(|_| {
        let request = s
            .client
            .post(format!("{}/payments/{p}/refunds", other.url))
            .bearer_auth(service_token())
            .header("Idempotency-Key", new_key())
            .json(&too_much);
        s.send(request)
    });
    let (one, two) = tokio::join!(join_all(through_nginx), join_all(direct));
    for a in one.iter().chain(&two) {
        a.expect(409, Some("refund_exceeds_payment"));
        assert_eq!(
            a.json["available"], 900,
            "settled succeeded, nothing refunded"
        );
    }

    assert_eq!(payment(&s, &p).await["status"], "succeeded");
    assert_eq!(captures_of(&db, &p).await, 1, "one capture entry");
    let allocated: i64 = sqlx::query_scalar(
        "SELECT sum(amount)::bigint FROM allocations WHERE payment_id = $1::uuid",
    )
    .bind(&p)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(allocated, 900);
    assert_eq!(
        allocations(&s, &p).await,
        [alloc(product, &a, &r, 300), alloc(product, &b, &r, 600)]
    );
    assert_eq!(balance(&s, &a, "USD").await, (300, 0, 0));
    assert_eq!(balance(&s, &b, "USD").await, (600, 0, 0));
    let other_tb = s
        .send(
            s.client
                .get(format!("{}/ledger/trial-balance", other.url))
                .bearer_auth(admin_token()),
        )
        .await;
    other_tb.expect(200, None);
    assert_eq!(other_tb.json["consistent"], true);
    assert_ledger_sound(&s).await;
}

// ----- release -----

#[tokio::test]
async fn money_is_released_once_after_its_hold_and_refunds_then_debit_available() {
    // Held one second; the release worker runs at start, then not for an hour: until payment is
    // restarted with a short interval, nothing is released.
    let s = Stack::start_with(
        Options::default()
            .env("SPLIT_HOLD_SECS", 1)
            .env("SPLIT_RELEASE_INTERVAL_MS", 3_600_000),
    )
    .await;
    let (a, b) = (
        recipient(&s, "seller").await,
        recipient(&s, "partner").await,
    );
    let item = s.create_item(1000, "USD", 10).await;
    rule(&s, item, json!([pct(&a, 6000), pct(&b, 4000)])).await;
    let order = s.checkout(json!({"itemId": item, "quantity": 1})).await;
    order.expect(201, None);
    let p = id(&order.json["paymentId"]);

    // Before the release: from pending.
    refund_part(&s, &p, 100).await.expect(201, None);
    assert_eq!(balance(&s, &a, "USD").await, (540, 0, 0));
    assert_eq!(balance(&s, &b, "USD").await, (360, 0, 0));
    // Another, wholly refunded before its release: nothing of it is left to release.
    let gone = s.checkout(json!({"itemId": item, "quantity": 1})).await;
    gone.expect(201, None);
    let gone = id(&gone.json["paymentId"]);
    s.call("/payment/refund", &json!({"paymentId": gone}))
        .await
        .expect(200, None);

    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[("SPLIT_RELEASE_INTERVAL_MS", "100")])
        .await;
    eventually("the release", || {
        let (s, p) = (&s, &p);
        async move { entries(s, &format!("paymentId={p}&kind=release")).await["total"] == 1 }
    })
    .await;
    let release = &entries(&s, &format!("paymentId={p}&kind=release")).await["entries"][0];
    assert_eq!(
        legs(release),
        [
            leg(("pending", Some(&a)), ("available", Some(&a)), 540),
            leg(("pending", Some(&b)), ("available", Some(&b)), 360)
        ],
        "the unreversed rest"
    );
    assert_eq!(balance(&s, &a, "USD").await, (0, 540, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 360, 0));

    // After it: from available.
    let r = refund_part(&s, &p, 200).await;
    r.expect(201, None);
    let entry = &entries(&s, &format!("paymentId={p}&kind=refund&limit=1")).await["entries"][0];
    assert_eq!(entry["refundId"], r.json["refundId"]);
    assert_eq!(
        legs(entry),
        [
            leg(("available", Some(&a)), ("processor", None), 120),
            leg(("available", Some(&b)), ("processor", None), 80)
        ]
    );
    assert_eq!(balance(&s, &a, "USD").await, (0, 420, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 280, 0));
    let full = s.call("/payment/refund", &json!({"paymentId": p})).await;
    full.expect(200, None);
    assert_eq!(full.json["status"], "refunded");
    assert_eq!(balance(&s, &a, "USD").await, (0, 0, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 0, 0));

    // Exactly once: many more rounds of the worker release nothing more.
    let rounds_from = Instant::now();
    let second = s.checkout(json!({"itemId": item, "quantity": 2})).await;
    second.expect(201, None);
    let p2 = id(&second.json["paymentId"]);
    eventually("the second payment's release", || {
        let (s, p2) = (&s, &p2);
        async move { entries(s, &format!("paymentId={p2}&kind=release")).await["total"] == 1 }
    })
    .await;
    let waited = rounds_from.elapsed();
    if waited < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_secs(2) - waited).await;
    }
    assert_eq!(
        entries(&s, &format!("paymentId={p}&kind=release")).await["total"],
        1
    );
    assert_eq!(
        entries(&s, &format!("paymentId={p2}&kind=release")).await["total"],
        1
    );
    assert_eq!(
        entries(&s, "kind=release").await["total"],
        2,
        "none for the payment refunded whole"
    );
    let db = s.db(Part::Payment).await;
    let unreleased: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM allocations WHERE payment_id = $1::uuid AND released_at IS NULL",
    )
    .bind(&gone)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(unreleased, 0, "its allocations are done with all the same");
    assert_eq!(
        sample(
            &scrape(&s).await,
            r#"ledger_entries_total{kind="release",service="payment"}"#
        ),
        Some(2.0)
    );
    assert_eq!(balance(&s, &a, "USD").await, (0, 1200, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 800, 0));
    let usd = totals(&s, "USD").await;
    assert_eq!(
        (
            usd["processor"].as_i64(),
            usd["recipientsPending"].as_i64(),
            usd["recipientsAvailable"].as_i64()
        ),
        (Some(2000), Some(0), Some(2000))
    );
    assert_ledger_sound(&s).await;
}

#[tokio::test]
async fn refunds_racing_the_release_take_each_unit_from_pending_or_available_once() {
    let s = Stack::start_with(
        Options::default()
            .env("SPLIT_HOLD_SECS", 1)
            .env("SPLIT_RELEASE_INTERVAL_MS", 50),
    )
    .await;
    let (a, b, c) = (
        recipient(&s, "a").await,
        recipient(&s, "b").await,
        recipient(&s, "c").await,
    );
    let item = s.create_item(10_000, "USD", 10).await;
    rule(&s, item, json!([pct(&a, 5000), pct(&b, 3000), rest(&c)])).await;
    let order = s.checkout(json!({"itemId": item, "quantity": 1})).await;
    order.expect(201, None);
    let p = id(&order.json["paymentId"]);

    // Refunds one after another, across the release, until three were made after it.
    let started = Instant::now();
    let mut after = 0;
    while after < 3 {
        refund_part(&s, &p, 37).await.expect(201, None);
        if entries(&s, &format!("paymentId={p}&kind=release")).await["total"] == 1 {
            after += 1;
        }
        assert!(started.elapsed() < DEADLINE, "no release");
    }
    let refunded = payment(&s, &p).await["refundedAmount"].as_i64().unwrap();
    let mut refunds = entries(&s, &format!("paymentId={p}&kind=refund&limit=1000")).await
        ["entries"]
        .as_array()
        .unwrap()
        .clone();
    refunds.reverse();
    assert_eq!(refunds.len() as i64 * 37, refunded);
    // Each refund takes from pending (before the release) or from available (after), never
    // both; once from available, always from available.
    let from: Vec<String> = refunds
        .iter()
        .map(|e| {
            let legs = legs(e);
            assert!(legs.iter().all(|l| l.0 == legs[0].0), "{legs:?}");
            assert_eq!(legs.iter().map(|l| l.4).sum::<i64>(), 37);
            legs[0].0.clone()
        })
        .collect();
    let first_available = from.iter().position(|f| f == "available").unwrap();
    assert!(
        first_available >= 1,
        "the first refund came before the hold ended: {from:?}"
    );
    assert!(
        from[..first_available].iter().all(|f| f == "pending"),
        "{from:?}"
    );
    assert!(
        from[first_available..].iter().all(|f| f == "available"),
        "{from:?}"
    );

    // The release moved what the refunds before it left; the balances are what is left.
    let release = &entries(&s, &format!("paymentId={p}&kind=release")).await["entries"][0];
    let now = allocations(&s, &p).await;
    for (_, r, _, amount, reversed) in &now {
        let before_release: i64 = refunds[..first_available]
            .iter()
            .flat_map(legs)
            .filter(|l| l.1.as_deref() == Some(r.as_str()))
            .map(|l| l.4)
            .sum();
        let released: i64 = legs(release)
            .iter()
            .filter(|l| l.1.as_deref() == Some(r.as_str()))
            .map(|l| l.4)
            .sum();
        assert_eq!(released, amount - before_release, "{r}");
        assert_eq!(
            balance(&s, r, "USD").await,
            (0, amount - reversed, 0),
            "{r}"
        );
    }
    assert_proportional(&now, &[0, 0, 0], 10_000, refunded, refunded);
    assert_ledger_sound(&s).await;
}

// ----- the metrics -----

#[tokio::test]
async fn the_marketplace_is_counted_in_payments_metrics() {
    let s = Stack::start().await;
    let (a, b) = (
        recipient(&s, "seller").await,
        recipient(&s, "partner").await,
    );
    let item = s.create_item(1000, "USD", 10).await;
    rule(&s, item, json!([pct(&a, 5000), rest(&b)])).await;
    // A fixed share larger than the line: capped at it, an anomaly.
    let small = s.create_item(100, "USD", 10).await;
    let capped = rule(&s, small, json!([fixed(&a, 150), rest(&b)])).await;

    let o = s
        .checkout(
            json!({"items": [{"itemId": item, "quantity": 1}, {"itemId": small, "quantity": 1}]}),
        )
        .await;
    o.expect(201, None);
    let p = id(&o.json["paymentId"]);
    assert_eq!(
        allocations(&s, &p).await[2..],
        [alloc(small, &a, &capped, 100)],
        "the capped share took the line; the remainder's zero is not kept"
    );
    refund_part(&s, &p, 100).await.expect(201, None);
    s.call("/payment/refund", &json!({"paymentId": p}))
        .await
        .expect(200, None);

    let text = scrape(&s).await;
    for (series, expected) in [
        (r#"split_allocations_total{service="payment"}"#, 3.0),
        (
            r#"split_anomalies_total{service="payment",type="fixed_share_capped"}"#,
            1.0,
        ),
        (
            r#"ledger_entries_total{kind="capture",service="payment"}"#,
            1.0,
        ),
        (
            r#"ledger_entries_total{kind="refund",service="payment"}"#,
            2.0,
        ),
        (r#"refunds_total{kind="partial",service="payment"}"#, 1.0),
        (r#"refunds_total{kind="full",service="payment"}"#, 1.0),
    ] {
        assert_eq!(
            sample(&text, series),
            Some(expected),
            "{series} in:\n{text}"
        );
    }
    // Scraped from the service; nginx does not publish it.
    s.get("/payment/metrics", None)
        .await
        .expect(404, Some("not_found"));
    assert_ledger_sound(&s).await;
}

/// A payment captured while a rule's transaction is between choosing its start and committing is
/// split by the rule afterwards named in force at its instant. No request can hold a rule's
/// transaction there, so the test does: its own transaction locks the product's latest rule, which
/// the writer ends after reading its clock. The checkout runs meanwhile; the test lets the writer
/// commit once the checkout finished, or its capture waits for the writer.
#[tokio::test]
async fn a_payment_captured_while_a_rule_is_written_is_split_by_the_rule_named_in_force() {
    let s = Stack::start().await;
    let (a, b) = (recipient(&s, "old").await, recipient(&s, "new").await);
    let item = s.create_item(400, "USD", 10).await;
    let v1 = rule(&s, item, json!([pct(&a, 10_000)])).await;
    let db = s.db(Part::Payment).await;
    let mut holder = db.begin().await.unwrap();
    sqlx::query("SELECT id FROM split_rules WHERE id = $1::uuid FOR UPDATE")
        .bind(&v1)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let me: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let waiting_on = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(me)
                .fetch_one(&db)
                .await
                .unwrap()
                > 0
        }
    };
    let v2_body = json!({"productId": item, "shares": [pct(&b, 10_000)]});
    let writing = new_rule(&s, &v2_body);
    let selling = async {
        eventually("the writer read its clock and waits", || {
            waiting_on(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
        })
        .await;
        let checkout = s.checkout(json!({"itemId": item, "quantity": 1}));
        tokio::pin!(checkout);
        let mut holder = Some(holder);
        let sale = loop {
            tokio::select! {
                sale = &mut checkout => break sale,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    let capture_waits = waiting_on(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE wait_event = 'advisory' AND pid <> $1",
                    )
                    .await;
                    if capture_waits {
                        if let Some(holder) = holder.take() {
                            holder.commit().await.unwrap();
                        }
                    }
                }
            }
        };
        if let Some(holder) = holder.take() {
            holder.commit().await.unwrap();
        }
        sale
    };
    let (written, sale) = futures_util::join!(writing, selling);
    written.expect(201, None);
    sale.expect(201, None);
    let v2 = id(&written.json["splitRuleId"]);
    let paid = id(&sale.json["paymentId"]);
    let made = payment(&s, &paid).await["createdAt"].clone();
    let at = id(&made).replace('+', "%2B");
    let then = rules_of(&s, &format!("productId={item}&at={at}")).await;
    assert_eq!(then.len(), 1, "{then:?}");
    let named = id(&then[0]["splitRuleId"]);
    assert_eq!(
        allocations(&s, &paid).await,
        [alloc(item, if named == v2 { &b } else { &a }, &named, 400)],
        "split by the rule named in force at the payment's instant ({}; v1 {v1}, v2 {v2})",
        if named == v2 { "v2" } else { "v1" }
    );
    assert_eq!(named, v2, "made after the new rule's start");
    assert_ledger_sound(&s).await;
}

/// These speak only HTTP to nginx, and also run against a stack the suite did not start (`TEST_STACK_URL`).
mod black_box {
    use super::*;

    // ----- recipients -----

    #[tokio::test]
    async fn recipients_are_made_once_per_key_read_with_either_token_and_refused_when_invalid() {
        let s = Stack::start().await;
        for token in [service_token(), admin_token()] {
            let a = s
                .get(&format!("/payment/recipients/{PLATFORM}"), Some(token))
                .await;
            a.expect(200, None);
            assert_eq!(
                (a.json["recipientId"].as_str(), a.json["name"].as_str()),
                (Some(PLATFORM), Some("platform")),
                "the platform is a recipient from the start"
            );
        }

        let key = new_key();
        let body = json!({"name": "  Mugs & Co  ", "payoutDestination": {"iban": "DE00-SECRET-IBAN-4242"}});
        let made = s
            .post(
                "/payment/recipients",
                Some(admin_token()),
                Some(&key),
                &body,
            )
            .await;
        made.expect(201, None);
        let r = id(&made.json["recipientId"]);
        assert_eq!(
            made.header("location"),
            Some(format!("/payment/recipients/{r}").as_str())
        );
        let mut fields: Vec<&str> = made
            .json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["createdAt", "name", "recipientId"],
            "the payout destination is never answered"
        );
        assert_eq!(made.json["name"], "Mugs & Co");
        instant(&made.json["createdAt"]);

        // The same request under its key: replayed, then (Redis forgetting, on a stack of the
        // suite's own: another's Redis is not reached) found in PostgreSQL.
        let again = s
            .post(
                "/payment/recipients",
                Some(admin_token()),
                Some(&key),
                &body,
            )
            .await;
        again.expect(201, None);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, made.text);
        if s.is_own() {
            s.redis("FLUSHALL");
        }
        let after = s
            .post(
                "/payment/recipients",
                Some(admin_token()),
                Some(&key),
                &body,
            )
            .await;
        after.expect(201, None);
        assert_eq!(after.json["recipientId"], r.as_str());
        s.post(
            "/payment/recipients",
            Some(admin_token()),
            Some(&key),
            &json!({"name": "Other"}),
        )
        .await
        .expect(422, Some("idempotency_key_reused"));

        for token in [service_token(), admin_token()] {
            let a = s
                .get(&format!("/payment/recipients/{r}"), Some(token))
                .await;
            a.expect(200, None);
            assert_eq!(a.json, made.json);
            let b = s
                .get(&format!("/payment/recipients/{r}/balances"), Some(token))
                .await;
            b.expect(200, None);
            assert_eq!(
                b.json,
                json!({"recipientId": r, "balances": []}),
                "no currency before any credit"
            );
        }
        let unknown = Uuid::new_v4().to_string();
        for path in [
            format!("/payment/recipients/{unknown}"),
            format!("/payment/recipients/{unknown}/balances"),
        ] {
            let a = s.get(&path, Some(admin_token())).await;
            a.expect(404, Some("recipient_not_found"));
            assert_eq!(a.json["recipientId"], unknown.as_str());
            s.get(&path.replace(&unknown, &r), None)
                .await
                .expect(401, Some("unauthorized"));
        }

        // Admin only to make one.
        s.post(
            "/payment/recipients",
            Some(service_token()),
            Some(&new_key()),
            &json!({"name": "x"}),
        )
        .await
        .expect(403, Some("forbidden"));
        s.post(
            "/payment/recipients",
            None,
            Some(&new_key()),
            &json!({"name": "x"}),
        )
        .await
        .expect(401, Some("unauthorized"));

        for (body, field) in [
            (json!({"name": ""}), "name"),
            (json!({"name": "   "}), "name"),
            (json!({"name": "x".repeat(201)}), "name"),
            (json!({"name": "a\u{0007}b"}), "name"),
            (json!({"name": 7}), "name"),
            (json!({}), "name"),
            (
                json!({"name": "ok", "payoutDestination": "DE00"}),
                "payoutDestination",
            ),
            (json!({"name": "ok", "iban": "DE00"}), "iban"),
        ] {
            refused_naming(&s.admin("/payment/recipients", &body).await, field);
        }
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(
                count(&db, "SELECT count(*) FROM recipients").await,
                2,
                "the platform and one recipient: refused requests wrote nothing"
            );
            let stored: Value = sqlx::query_scalar(
                "SELECT payout_destination::jsonb FROM recipients WHERE id = $1::uuid",
            )
            .bind(&r)
            .fetch_one(&db)
            .await
            .unwrap();
            assert_eq!(
                stored,
                json!({"iban": "DE00-SECRET-IBAN-4242"}),
                "kept as given"
            );
            let log = std::fs::read_to_string(s.log_path(Part::Payment)).unwrap();
            assert!(!log.contains("SECRET-IBAN"), "never logged");
        }
        assert_ledger_sound(&s).await;
    }

    // ----- split rules -----

    #[tokio::test]
    async fn split_rules_are_versions_that_end_each_other_read_with_either_token() {
        let s = Stack::start().await;
        let (a, b) = (
            recipient(&s, "seller").await,
            recipient(&s, "partner").await,
        );
        let product = s.create_item(1000, "USD", 10).await;

        let key = new_key();
        let shares1 = json!([pct(&a, 9000), pct(&b, 1000)]);
        let body1 = json!({"productId": product, "shares": shares1});
        let v1 = s
            .post(
                "/payment/split-rules",
                Some(admin_token()),
                Some(&key),
                &body1,
            )
            .await;
        v1.expect(201, None);
        let v1_id = id(&v1.json["splitRuleId"]);
        assert_eq!(
            v1.header("location"),
            Some(format!("/payment/split-rules/{v1_id}").as_str())
        );
        assert_eq!(
            (
                v1.json["productId"].as_i64(),
                v1.json["version"].as_i64(),
                &v1.json["effectiveTo"],
                &v1.json["shares"]
            ),
            (Some(product), Some(1), &Value::Null, &shares1)
        );
        let v1_from = instant(&v1.json["effectiveFrom"]);
        assert!(
            (Utc::now() - v1_from).num_milliseconds().abs() < 5000,
            "in force from now"
        );
        instant(&v1.json["createdAt"]);

        // Once per key: replayed, then (Redis forgetting, on a stack of the suite's own) found in
        // PostgreSQL; another rule under the key is refused.
        let again = s
            .post(
                "/payment/split-rules",
                Some(admin_token()),
                Some(&key),
                &body1,
            )
            .await;
        again.expect(201, None);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, v1.text);
        if s.is_own() {
            s.redis("FLUSHALL");
        }
        let after = s
            .post(
                "/payment/split-rules",
                Some(admin_token()),
                Some(&key),
                &body1,
            )
            .await;
        after.expect(201, None);
        assert_eq!(after.json["splitRuleId"], v1_id.as_str());
        assert_eq!(after.json["version"], 1);
        s.post(
            "/payment/split-rules",
            Some(admin_token()),
            Some(&key),
            &json!({"productId": product, "shares": [pct(&a, 10_000)]}),
        )
        .await
        .expect(422, Some("idempotency_key_reused"));

        // Versions 2 and 3, from an hour and two hours from now: each ends the one before.
        let (from2, from3) = (from_now(3600), from_now(7200));
        let shares2 = json!([fixed(&a, 50), rest(&b)]);
        let v2 = new_rule(
            &s,
            &json!({"productId": product, "effectiveFrom": from2, "shares": shares2}),
        )
        .await;
        v2.expect(201, None);
        assert_eq!(
            (v2.json["version"].as_i64(), &v2.json["shares"]),
            (Some(2), &shares2)
        );
        assert_eq!(instant(&v2.json["effectiveFrom"]), instant(&json!(from2)));
        let v3 = new_rule(
            &s,
            &json!({"productId": product, "effectiveFrom": from3, "shares": [rest(&b)]}),
        )
        .await;
        v3.expect(201, None);
        assert_eq!(v3.json["version"], 3);
        assert_eq!(v3.json["effectiveTo"], Value::Null);

        let v2_id = id(&v2.json["splitRuleId"]);
        let v3_id = id(&v3.json["splitRuleId"]);
        for token in [service_token(), admin_token()] {
            let r1 = s
                .get(&format!("/payment/split-rules/{v1_id}"), Some(token))
                .await;
            r1.expect(200, None);
            assert_eq!(instant(&r1.json["effectiveTo"]), instant(&json!(from2)));
            assert_eq!(
                (&r1.json["effectiveFrom"], &r1.json["shares"]),
                (&v1.json["effectiveFrom"], &shares1),
                "only its end changed"
            );
            let r2 = s
                .get(&format!("/payment/split-rules/{v2_id}"), Some(token))
                .await;
            r2.expect(200, None);
            assert_eq!(instant(&r2.json["effectiveTo"]), instant(&json!(from3)));
            let r3 = s
                .get(&format!("/payment/split-rules/{v3_id}"), Some(token))
                .await;
            r3.expect(200, None);
            assert_eq!(r3.json, v3.json);
            let list = s
                .get(
                    &format!("/payment/split-rules?productId={product}"),
                    Some(token),
                )
                .await;
            list.expect(200, None);
            assert_eq!(
                versions(list.json["splitRules"].as_array().unwrap()),
                [3, 2, 1],
                "newest version first"
            );
        }
        for (at, expected) in [
            (from_now(0), Some(&v1_id)),
            (from2.clone(), Some(&v2_id)),
            (from_now(5400), Some(&v2_id)),
            (from3.clone(), Some(&v3_id)),
            (from_now(365 * 86_400), Some(&v3_id)),
            (from_now(-86_400), None),
        ] {
            let found = rules_of(&s, &format!("productId={product}&at={at}")).await;
            assert_eq!(
                found
                    .iter()
                    .map(|r| id(&r["splitRuleId"]))
                    .collect::<Vec<_>>(),
                expected.into_iter().cloned().collect::<Vec<_>>(),
                "the rule in force at {at}"
            );
        }
        // A product of no rule has none (a new one: on a shared stack, any other may have some).
        let ruleless = s.create_item(1000, "USD", 10).await;
        assert!(rules_of(&s, &format!("productId={ruleless}"))
            .await
            .is_empty());

        let unknown = Uuid::new_v4().to_string();
        let a404 = s
            .get(
                &format!("/payment/split-rules/{unknown}"),
                Some(service_token()),
            )
            .await;
        a404.expect(404, Some("split_rule_not_found"));
        assert_eq!(a404.json["splitRuleId"], unknown.as_str());

        // Admin only to make one; either token, but a token, to read.
        let by_service = s
            .post(
                "/payment/split-rules",
                Some(service_token()),
                Some(&new_key()),
                &json!({"productId": product, "effectiveFrom": from_now(9000), "shares": [rest(&a)]}),
            )
            .await;
        by_service.expect(403, Some("forbidden"));
        s.post(
            "/payment/split-rules",
            None,
            Some(&new_key()),
            &json!({"productId": product, "effectiveFrom": from_now(9000), "shares": [rest(&a)]}),
        )
        .await
        .expect(401, Some("unauthorized"));
        s.get(&format!("/payment/split-rules/{v1_id}"), None)
            .await
            .expect(401, Some("unauthorized"));
        s.get(&format!("/payment/split-rules?productId={product}"), None)
            .await
            .expect(401, Some("unauthorized"));
        assert_eq!(
            versions(&rules_of(&s, &format!("productId={product}")).await),
            [3, 2, 1],
            "nothing refused was written"
        );
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(count(&db, "SELECT count(*) FROM split_rules").await, 3);
        }
        assert_ledger_sound(&s).await;
    }

    #[tokio::test]
    async fn split_rules_that_are_not_rules_are_refused_naming_why_and_write_nothing() {
        let s = Stack::start().await;
        let (a, b) = (
            recipient(&s, "seller").await,
            recipient(&s, "partner").await,
        );
        let p = s.create_item(1000, "USD", 10).await;
        // The product's latest rule starts in ten minutes.
        let latest_from = from_now(600);
        let latest = new_rule(
            &s,
            &json!({"productId": p, "effectiveFrom": latest_from, "shares": [pct(&a, 10_000)]}),
        )
        .await;
        latest.expect(201, None);
        let latest_from = id(&latest.json["effectiveFrom"]);

        let many: Vec<Value> = (0..21).map(|_| rest(&Uuid::new_v4().to_string())).collect();
        let unknown = Uuid::new_v4().to_string();
        let ok = json!([pct(&a, 5000), pct(&b, 5000)]);
        let later = from_now(3600);
        for (body, field) in [
            (
                json!({"productId": p, "effectiveFrom": later, "shares": []}),
                "shares",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": many}),
                "shares",
            ),
            (json!({"productId": p, "effectiveFrom": later}), "shares"),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": pct(&a, 10_000)}),
                "shares",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [pct(&a, 0), rest(&b)]}),
                "shares[0].basisPoints",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [pct(&a, 10_001)]}),
                "shares[0].basisPoints",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [pct(&a, -5), rest(&b)]}),
                "shares[0].basisPoints",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [fixed(&a, 0), rest(&b)]}),
                "shares[0].amount",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [{"recipientId": a, "type": "share"}]}),
                "shares[0].type",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [{"recipientId": a, "type": "remainder", "amount": 1}]}),
                "shares[0]",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": [{"recipientId": "nobody", "type": "remainder"}]}),
                "shares[0].recipientId",
            ),
            (
                json!({"productId": 0, "effectiveFrom": later, "shares": ok}),
                "productId",
            ),
            (
                json!({"productId": -3, "effectiveFrom": later, "shares": ok}),
                "productId",
            ),
            (
                json!({"productId": "7", "effectiveFrom": later, "shares": ok}),
                "productId",
            ),
            (json!({"effectiveFrom": later, "shares": ok}), "productId"),
            (
                json!({"productId": p, "effectiveFrom": "2027-01-01 00:00:00Z", "shares": ok}),
                "effectiveFrom",
            ),
            (
                json!({"productId": p, "effectiveFrom": "2027-01-01T00:00:00", "shares": ok}),
                "effectiveFrom",
            ),
            (
                json!({"productId": p, "effectiveFrom": "tomorrow", "shares": ok}),
                "effectiveFrom",
            ),
            (
                json!({"productId": p, "effectiveFrom": 1_800_000_000, "shares": ok}),
                "effectiveFrom",
            ),
            (
                json!({"productId": p, "effectiveFrom": later, "shares": ok, "note": "x"}),
                "note",
            ),
        ] {
            refused_naming(&new_rule(&s, &body).await, field);
        }
        for (shares, why) in [
            (json!([pct(&a, 5000), pct(&a, 5000)]), "shares[1]"),
            (json!([rest(&a), rest(&b)]), "shares[1]"),
            (json!([pct(&a, 5000), pct(&b, 4999)]), "9999"),
            (json!([fixed(&a, 10)]), "shares"),
            (json!([pct(&a, 6000), pct(&b, 5000)]), "11000"),
            (
                json!([pct(&a, 6000), pct(&b, 4001), rest(&unknown)]),
                "10001",
            ),
        ] {
            let r = new_rule(
                &s,
                &json!({"productId": p, "effectiveFrom": later, "shares": shares}),
            )
            .await;
            r.expect(422, Some("split_shares_invalid"));
            assert!(detail(&r).contains(why), "{why}: {}", r.text);
            assert!(detail(&r).contains("shares"), "{}", r.text);
        }
        let r = new_rule(
            &s,
            &json!({"productId": p, "effectiveFrom": later, "shares": [pct(&a, 5000), rest(&unknown)]}),
        )
        .await;
        r.expect(422, Some("recipient_not_found"));
        assert_eq!(r.json["recipientId"], unknown.as_str());
        assert!(detail(&r).contains("shares"), "{}", r.text);

        let r = new_rule(
            &s,
            &json!({"productId": p, "effectiveFrom": from_now(-60), "shares": ok}),
        )
        .await;
        r.expect(422, Some("effective_from_in_past"));
        assert!(detail(&r).contains("effectiveFrom"), "{}", r.text);
        for from in [
            Some(latest_from.clone()),
            Some(from_now(300)),
            Some(from_now(-2)),
            None,
        ] {
            let mut body = json!({"productId": p, "shares": ok});
            if let Some(from) = &from {
                body["effectiveFrom"] = json!(from);
            }
            let r = new_rule(&s, &body).await;
            r.expect(409, Some("split_rule_overlap"));
            assert!(detail(&r).contains("effectiveFrom"), "{from:?}: {}", r.text);
            assert_eq!(r.json["productId"], p);
        }

        // The reads' parameters are checked too.
        for (query, field) in [
            ("".to_string(), "productId"),
            ("productId=0".to_string(), "productId"),
            ("productId=x".to_string(), "productId"),
            (format!("productId={p}&at=tomorrow"), "at"),
            (format!("productId={p}&at=2027-01-01%2000:00:00Z"), "at"),
        ] {
            refused_naming(
                &s.get(
                    &format!("/payment/split-rules?{query}"),
                    Some(service_token()),
                )
                .await,
                field,
            );
        }

        // Nothing was written: the product has its one rule, unchanged, and (as a stack of the
        // suite's own shows) no other has any.
        let rules = rules_of(&s, &format!("productId={p}")).await;
        assert_eq!(rules, std::slice::from_ref(&latest.json));
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(count(&db, "SELECT count(*) FROM split_rules").await, 1);
            assert_eq!(
                count(&db, "SELECT count(*) FROM split_rule_shares").await,
                1
            );
        }
        assert_ledger_sound(&s).await;
    }

    #[tokio::test]
    async fn concurrent_versions_of_a_rule_line_up_one_in_force_at_a_time() {
        let s = Stack::start().await;
        let a = recipient(&s, "seller").await;
        let product = s.create_item(100, "USD", 10).await;

        // Ten at once, each from now: numbered 1 to 10, each ending the one before.
        let body = json!({"productId": product, "shares": [rest(&a)]});
        let answers = join_all((0..10).map(|_| new_rule(&s, &body))).await;
        let mut made: Vec<i64> = answers
            .iter()
            .map(|a| {
                a.expect(201, None);
                a.json["version"].as_i64().unwrap()
            })
            .collect();
        made.sort();
        assert_eq!(made, (1..=10).collect::<Vec<_>>());
        // Five at once from the same instant: one is made, the others overlap it.
        let from = from_now(3600);
        let body = json!({"productId": product, "effectiveFrom": from, "shares": [rest(&a)]});
        let answers = join_all((0..5).map(|_| new_rule(&s, &body))).await;
        assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1);
        for a in answers.iter().filter(|a| a.status != 201) {
            a.expect(409, Some("split_rule_overlap"));
        }

        let rules = rules_of(&s, &format!("productId={product}")).await;
        assert_eq!(versions(&rules), (1..=11).rev().collect::<Vec<_>>());
        assert_eq!(rules[0]["effectiveTo"], Value::Null);
        for pair in rules.windows(2) {
            let (newer, older) = (&pair[0], &pair[1]);
            assert!(instant(&older["effectiveFrom"]) < instant(&newer["effectiveFrom"]));
            assert_eq!(
                instant(&older["effectiveTo"]),
                instant(&newer["effectiveFrom"]),
                "version {} ends where {} starts",
                older["version"],
                newer["version"]
            );
            // At the start of each, it alone is in force.
            let at = id(&newer["effectiveFrom"]);
            let found = rules_of(&s, &format!("productId={product}&at={at}")).await;
            assert_eq!(found, std::slice::from_ref(newer));
        }
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(count(&db, "SELECT count(*) FROM split_rules").await, 11);
        }
        assert_ledger_sound(&s).await;
    }

    // ----- splitting -----

    #[tokio::test]
    async fn a_checkout_splits_each_line_by_its_rule_to_the_unit() {
        let s = Stack::start().await;
        let (a, b, c) = (
            recipient(&s, "a").await,
            recipient(&s, "b").await,
            recipient(&s, "c").await,
        );
        let i1 = s.create_item(1000, "USD", 10).await;
        let r1 = rule(&s, i1, json!([pct(&a, 3333), pct(&b, 3333), pct(&c, 3334)])).await;
        let i2 = s.create_item(100, "USD", 10).await;
        let r2 = rule(&s, i2, json!([pct(&a, 3334), pct(&b, 3333), pct(&c, 3333)])).await;
        let i3 = s.create_item(250, "USD", 10).await;
        let r3 = rule(&s, i3, json!([fixed(&a, 20), pct(&b, 1000), rest(&c)])).await;
        let i4 = s.create_item(700, "USD", 10).await;

        let order = s
            .checkout(json!({"items": [
                {"itemId": i1, "quantity": 1},
                {"itemId": i2, "quantity": 1},
                {"itemId": i3, "quantity": 2},
                {"itemId": i4, "quantity": 1}
            ]}))
            .await;
        order.expect(201, None);
        assert_eq!(order.json["status"], "completed");
        assert_eq!(order.json["totalAmount"], 2300);
        let p = id(&order.json["paymentId"]);

        // The saga sent the order's priced lines (stored: seen on a stack of the suite's own; the
        // allocations below show them anyway).
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            let lines: Value = sqlx::query_scalar("SELECT lines FROM payments WHERE id = $1::uuid")
                .bind(&p)
                .fetch_one(&db)
                .await
                .unwrap();
            assert_eq!(
                lines,
                json!([
                    {"productId": i1, "quantity": 1, "amount": 1000},
                    {"productId": i2, "quantity": 1, "amount": 100},
                    {"productId": i3, "quantity": 2, "amount": 500},
                    {"productId": i4, "quantity": 1, "amount": 700}
                ])
            );
        }
        assert_eq!(splits(&s, &p).await["currency"], "USD");
        assert_eq!(
            allocations(&s, &p).await,
            [
                // 1000 at 3333/3333/3334.
                alloc(i1, &a, &r1, 333),
                alloc(i1, &b, &r1, 333),
                alloc(i1, &c, &r1, 334),
                // 100 at 3334/3333/3333: the leftover unit to the largest fraction.
                alloc(i2, &a, &r2, 34),
                alloc(i2, &b, &r2, 33),
                alloc(i2, &c, &r2, 33),
                // 2 × 250: 20 per unit fixed first, 10 % of the 460 left, the remainder the rest.
                alloc(i3, &a, &r3, 40),
                alloc(i3, &b, &r3, 46),
                alloc(i3, &c, &r3, 414),
                // No rule: the platform's.
                (Some(i4), PLATFORM.to_string(), None, 700, 0),
            ]
        );
        // One capture entry, a leg per recipient, from the processor to their pending.
        let list = entries(&s, &format!("paymentId={p}")).await;
        assert_eq!(list["total"], 1);
        let capture = &list["entries"][0];
        assert_eq!(
            (
                capture["kind"].as_str(),
                capture["currency"].as_str(),
                capture["paymentId"].as_str()
            ),
            (Some("capture"), Some("USD"), Some(p.as_str()))
        );
        for none in ["refundId", "transferId", "payoutId"] {
            assert_eq!(capture[none], Value::Null, "{none}");
        }
        let to = |r: &str, amount| leg(("processor", None), ("pending", Some(r)), amount);
        assert_eq!(
            legs(capture),
            [to(&a, 407), to(&b, 412), to(&c, 781), to(PLATFORM, 700)]
        );

        // 3 × 1000 at 3333/3333/3334: 999.9, 999.9 and 1000.2 — the two leftover units to the
        // largest fractions.
        let second = s.checkout(json!({"itemId": i1, "quantity": 3})).await;
        second.expect(201, None);
        let p2 = id(&second.json["paymentId"]);
        assert_eq!(
            allocations(&s, &p2).await,
            [
                alloc(i1, &a, &r1, 1000),
                alloc(i1, &b, &r1, 1000),
                alloc(i1, &c, &r1, 1000)
            ]
        );
        let captured = entries(&s, &format!("paymentId={p2}")).await;
        assert_eq!(
            (
                captured["total"].as_i64(),
                captured["entries"][0]["kind"].as_str()
            ),
            (Some(1), Some("capture"))
        );
        if s.is_own() {
            assert_eq!(captures_of(&s.db(Part::Payment).await, &p2).await, 1);
        }

        // 101 at fixed 10, then 5000/5000 of the 91 left: 45.5 and 45.5 — the leftover unit, on a
        // tie, to the earlier share.
        let i5 = s.create_item(101, "USD", 10).await;
        let r5 = rule(&s, i5, json!([fixed(&a, 10), pct(&b, 5000), pct(&c, 5000)])).await;
        let third = s.checkout(json!({"itemId": i5, "quantity": 1})).await;
        third.expect(201, None);
        assert_eq!(
            allocations(&s, &id(&third.json["paymentId"])).await,
            [
                alloc(i5, &a, &r5, 10),
                alloc(i5, &b, &r5, 46),
                alloc(i5, &c, &r5, 45)
            ]
        );

        for (r, pending) in [(&a, 1417), (&b, 1458), (&c, 1826)] {
            assert_eq!(balance(&s, r, "USD").await, (pending, 0, 0), "{r}");
        }
        // The platform's balance and the totals are this test's alone only on a stack of its own.
        if s.is_own() {
            assert_eq!(balance(&s, PLATFORM, "USD").await, (700, 0, 0));
            let usd = totals(&s, "USD").await;
            assert_eq!(
                usd,
                json!({"currency": "USD", "debits": 5401, "credits": 5401, "processor": 5401,
                       "payouts": 0, "recipientsPending": 5401, "recipientsAvailable": 0})
            );
        }

        // A declined checkout splits nothing (and the ledger check below holds that of every payment
        // not succeeded).
        let dear = s.create_item(200_000, "USD", 10).await;
        rule(&s, dear, json!([pct(&a, 5000), rest(&b)])).await;
        let declined = s.checkout(json!({"itemId": dear, "quantity": 1})).await;
        declined.expect(402, Some("payment_declined"));
        let of_order = s
            .get(
                &format!(
                    "/payment/payments?orderId={}",
                    id(&declined.json["orderId"])
                ),
                Some(service_token()),
            )
            .await;
        of_order.expect(200, None);
        assert_eq!(of_order.json["total"], 1, "{}", of_order.text);
        let failed = id(&of_order.json["payments"][0]["paymentId"]);
        assert_eq!(of_order.json["payments"][0]["status"], "failed");
        if s.is_own() {
            let only: String =
                sqlx::query_scalar("SELECT id::text FROM payments WHERE status = 'failed'")
                    .fetch_one(&s.db(Part::Payment).await)
                    .await
                    .unwrap();
            assert_eq!(only, failed, "the one payment not succeeded");
        }
        assert_eq!(splits(&s, &failed).await["allocations"], json!([]));
        assert_eq!(
            entries(&s, &format!("paymentId={failed}")).await["total"],
            0
        );
        assert_eq!(balance(&s, &a, "USD").await, (1417, 0, 0));
        let v = s.quiet_and_check(DEADLINE).await;
        assert!(v.is_empty(), "{v:?}");
        assert_ledger_sound(&s).await;
    }

    #[tokio::test]
    async fn a_payment_is_split_by_the_rule_in_force_when_it_was_made() {
        let s = Stack::start().await;
        let (a, b) = (recipient(&s, "before").await, recipient(&s, "after").await);
        let item = s.create_item(500, "USD", 10).await;
        let v1 = rule(&s, item, json!([pct(&a, 10_000)])).await;
        // Version 2 of the item, and the only rule of another, start in a few seconds.
        let from = from_now(8);
        let v2 = new_rule(
            &s,
            &json!({"productId": item, "effectiveFrom": from, "shares": [rest(&b)]}),
        )
        .await;
        v2.expect(201, None);
        let v2 = id(&v2.json["splitRuleId"]);
        let later = s.create_item(200, "USD", 10).await;
        let l1 = new_rule(
            &s,
            &json!({"productId": later, "effectiveFrom": from, "shares": [pct(&a, 5000), pct(&b, 5000)]}),
        )
        .await;
        l1.expect(201, None);
        let l1 = id(&l1.json["splitRuleId"]);
        let cart = |n: i64| json!({"items": [{"itemId": item, "quantity": n}, {"itemId": later, "quantity": n}]});

        let first = s.checkout(cart(1)).await;
        first.expect(201, None);
        let p1 = id(&first.json["paymentId"]);
        let made = payment(&s, &p1).await["createdAt"].clone();
        assert!(instant(&made) < instant(&json!(from)), "made before {from}");
        let split1 = [
            alloc(item, &a, &v1, 500),
            (Some(later), PLATFORM.to_string(), None, 200, 0),
        ];
        assert_eq!(
            allocations(&s, &p1).await,
            split1,
            "no rule in force yet for the other: the platform's"
        );

        // Once the new rules are in force, they split the new payments.
        until_past(&s, &from).await;
        let second = s.checkout(cart(2)).await;
        second.expect(201, None);
        let p2 = id(&second.json["paymentId"]);
        assert_eq!(
            allocations(&s, &p2).await,
            [
                alloc(item, &b, &v2, 1000),
                alloc(later, &a, &l1, 200),
                alloc(later, &b, &l1, 200)
            ]
        );
        // The first payment keeps its split; at its instant the rules in force are the old ones.
        assert_eq!(allocations(&s, &p1).await, split1);
        let at = id(&made).replace('+', "%2B");
        let then = rules_of(&s, &format!("productId={item}&at={at}")).await;
        assert_eq!(then.len(), 1);
        assert_eq!(then[0]["splitRuleId"], v1.as_str());
        assert!(rules_of(&s, &format!("productId={later}&at={at}"))
            .await
            .is_empty());
        assert_eq!(balance(&s, &a, "USD").await, (700, 0, 0));
        assert_eq!(balance(&s, &b, "USD").await, (1200, 0, 0));
        if s.is_own() {
            // Anyone's checkouts credit the platform on a shared stack.
            assert_eq!(balance(&s, PLATFORM, "USD").await, (200, 0, 0));
        }
        assert_ledger_sound(&s).await;
    }

    /// A rule asked to start a few seconds ago (within the clock slack) starts when it is written:
    /// the payment made in those seconds keeps the split of the rule then in force, and `at=` its
    /// instant still names that rule.
    #[tokio::test]
    async fn a_rule_started_within_the_slack_starts_when_written_and_never_renames_a_split() {
        let s = Stack::start().await;
        let (a, b) = (recipient(&s, "old").await, recipient(&s, "new").await);
        let item = s.create_item(300, "USD", 10).await;
        let v1 = rule(&s, item, json!([pct(&a, 10_000)])).await;
        let sale = s.checkout(json!({"itemId": item, "quantity": 1})).await;
        sale.expect(201, None);
        let paid = id(&sale.json["paymentId"]);
        let made = payment(&s, &paid).await["createdAt"].clone();
        assert_eq!(allocations(&s, &paid).await, [alloc(item, &a, &v1, 300)]);

        // Version 2 asked to start at the payment's instant, a moment ago.
        let asked = id(&made);
        let v2 = new_rule(
            &s,
            &json!({"productId": item, "effectiveFrom": asked, "shares": [pct(&b, 10_000)]}),
        )
        .await;
        v2.expect(201, None);
        let started = instant(&v2.json["effectiveFrom"]);
        assert!(
            started > instant(&made),
            "moved to when it was written: {started} after the payment's {made}"
        );
        let at = asked.replace('+', "%2B");
        let then = rules_of(&s, &format!("productId={item}&at={at}")).await;
        assert_eq!(then.len(), 1, "{then:?}");
        assert_eq!(
            then[0]["splitRuleId"],
            v1.as_str(),
            "at the payment's instant, the rule its split used"
        );
        assert_eq!(allocations(&s, &paid).await, [alloc(item, &a, &v1, 300)]);
        // Version 1 ends where version 2 starts.
        let rules = rules_of(&s, &format!("productId={item}")).await;
        assert_eq!(instant(&rules[1]["effectiveTo"]), started);
        assert_ledger_sound(&s).await;
    }

    /// Instants are stored to the microsecond: a start that differs from the latest version's
    /// only below it is the same start (409), not a failed write (500); one a microsecond and a
    /// half later starts at the next microsecond.
    #[tokio::test]
    async fn starts_that_differ_below_the_microsecond_are_compared_as_stored() {
        let s = Stack::start().await;
        let a = recipient(&s, "seller").await;
        let item = s.create_item(100, "USD", 10).await;
        let whole = |secs: i64| {
            DateTime::from_timestamp(Utc::now().timestamp() + secs, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        };
        let day = whole(86_400);
        let body =
            |from: String| json!({"productId": item, "effectiveFrom": from, "shares": [rest(&a)]});
        let v1 = new_rule(&s, &body(format!("{day}Z"))).await;
        v1.expect(201, None);
        let v2 = new_rule(&s, &body(format!("{day}.0000001Z"))).await;
        v2.expect(409, Some("split_rule_overlap"));
        assert!(detail(&v2).contains("effectiveFrom"), "{}", v2.text);
        let v2 = new_rule(&s, &body(format!("{day}.0000015Z"))).await;
        v2.expect(201, None);
        assert_eq!(
            instant(&v2.json["effectiveFrom"]),
            instant(&json!(format!("{day}.000001Z"))),
            "stored to the microsecond"
        );
        let rules = rules_of(&s, &format!("productId={item}")).await;
        assert_eq!(versions(&rules), [2, 1]);
        assert_eq!(rules[1]["effectiveTo"], v2.json["effectiveFrom"]);
        assert_ledger_sound(&s).await;
    }

    // ----- refunds -----

    #[tokio::test]
    async fn partial_refunds_reverse_in_proportion_and_a_full_refund_reverses_the_rest_exactly() {
        let s = Stack::start().await;
        let (a, b, c) = (
            recipient(&s, "a").await,
            recipient(&s, "b").await,
            recipient(&s, "c").await,
        );
        let i1 = s.create_item(1000, "USD", 10).await;
        rule(&s, i1, json!([pct(&a, 3333), pct(&b, 3333), pct(&c, 3334)])).await;
        let i2 = s.create_item(100, "USD", 10).await;
        rule(&s, i2, json!([pct(&a, 3334), pct(&b, 3333), pct(&c, 3333)])).await;
        let order = s
            .checkout(
                json!({"items": [{"itemId": i1, "quantity": 1}, {"itemId": i2, "quantity": 1}]}),
            )
            .await;
        order.expect(201, None);
        let p = id(&order.json["paymentId"]);
        let amounts: Vec<i64> = allocations(&s, &p).await.iter().map(|a| a.3).collect();
        assert_eq!(amounts, [333, 333, 334, 34, 33, 33]);

        let mut before = vec![0; 6];
        let mut refunded = 0;
        for amount in [1, 7, 333, 100, 9] {
            let r = refund_part(&s, &p, amount).await;
            r.expect(201, None);
            let mut fields: Vec<&str> = r
                .json
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            fields.sort();
            assert_eq!(fields, ["amount", "createdAt", "paymentId", "refundId"]);
            assert_eq!(
                (r.json["paymentId"].as_str(), r.json["amount"].as_i64()),
                (Some(p.as_str()), Some(amount))
            );
            refunded += amount;
            let paid = payment(&s, &p).await;
            assert_eq!(
                (paid["refundedAmount"].as_i64(), paid["status"].as_str()),
                (Some(refunded), Some("succeeded"))
            );
            let now = allocations(&s, &p).await;
            assert_proportional(&now, &before, 1100, refunded, amount);
            // Its entry: from the recipients' pending (nothing is released) to the processor.
            let entry =
                &entries(&s, &format!("paymentId={p}&kind=refund&limit=1")).await["entries"][0];
            assert_eq!(entry["refundId"], r.json["refundId"]);
            let legs = legs(entry);
            assert!(
                legs.iter()
                    .all(|l| l.0 == "pending" && l.2 == "processor" && l.3.is_none()),
                "{legs:?}"
            );
            assert_eq!(legs.iter().map(|l| l.4).sum::<i64>(), amount);
            before = now.iter().map(|a| a.4).collect();
        }
        assert_eq!(refunded, 450);

        // The saga's full refund gives back the rest, reversing every allocation exactly.
        let full = s
            .call(
                "/payment/refund",
                &json!({"orderId": order.json["orderId"]}),
            )
            .await;
        full.expect(200, None);
        assert_eq!(
            (
                full.json["status"].as_str(),
                full.json["refundedAmount"].as_i64()
            ),
            (Some("refunded"), Some(1100))
        );
        let now = allocations(&s, &p).await;
        assert_proportional(&now, &before, 1100, 1100, 650);
        assert!(now.iter().all(|a| a.4 == a.3), "{now:?}");
        // Six refunds, each with its entry moving it, newest first.
        let refund_entries = entries(&s, &format!("paymentId={p}&kind=refund")).await;
        let moved: Vec<i64> = refund_entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| legs(e).iter().map(|l| l.4).sum())
            .collect();
        assert_eq!(moved, [650, 9, 100, 333, 7, 1]);
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            let kinds: Vec<(String, i64)> = sqlx::query_as(
                "SELECT kind, amount FROM refunds WHERE payment_id = $1::uuid ORDER BY created_at",
            )
            .bind(&p)
            .fetch_all(&db)
            .await
            .unwrap();
            assert_eq!(
                kinds,
                [
                    ("partial".to_string(), 1),
                    ("partial".to_string(), 7),
                    ("partial".to_string(), 333),
                    ("partial".to_string(), 100),
                    ("partial".to_string(), 9),
                    ("full".to_string(), 650)
                ]
            );
        }
        for r in [&a, &b, &c] {
            assert_eq!(
                balance(&s, r, "USD").await,
                (0, 0, 0),
                "{r} gave it all back"
            );
        }

        // Nothing is left: a partial refund is refused, another /refund changes nothing.
        let r = refund_part(&s, &p, 1).await;
        r.expect(409, Some("payment_not_refundable"));
        assert_eq!(r.json["paymentStatus"], "refunded");
        s.call("/payment/refund", &json!({"paymentId": p}))
            .await
            .expect(200, None);
        assert_eq!(
            entries(&s, &format!("paymentId={p}&kind=refund")).await["total"],
            6,
            "nothing more refunded"
        );
        assert_eq!(payment(&s, &p).await["refundedAmount"], 1100);
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(
                count(&db, "SELECT count(*) FROM refunds").await,
                6,
                "nothing more refunded"
            );
            let usd = totals(&s, "USD").await;
            assert_eq!(
                (usd["processor"].as_i64(), usd["recipientsPending"].as_i64()),
                (Some(0), Some(0))
            );
        }
        assert_ledger_sound(&s).await;
    }

    #[tokio::test]
    async fn a_partial_refund_is_made_once_per_key_and_refused_when_it_cannot_be() {
        let s = Stack::start().await;
        let p = id(&charge(&s, json!({"amount": 1000, "currency": "USD"})).await["paymentId"]);
        let path = format!("/payment/payments/{p}/refunds");
        let key = new_key();
        let first = s
            .post(
                &path,
                Some(service_token()),
                Some(&key),
                &json!({"amount": 250}),
            )
            .await;
        first.expect(201, None);
        let again = s
            .post(
                &path,
                Some(service_token()),
                Some(&key),
                &json!({"amount": 250}),
            )
            .await;
        again.expect(201, None);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, first.text);
        s.post(
            &path,
            Some(service_token()),
            Some(&key),
            &json!({"amount": 300}),
        )
        .await
        .expect(422, Some("idempotency_key_reused"));
        // Redis forgets (on a stack of the suite's own: another's Redis is not reached): PostgreSQL
        // answers the same refund, and still refuses another body.
        if s.is_own() {
            s.redis("FLUSHALL");
        }
        let after = s
            .post(
                &path,
                Some(service_token()),
                Some(&key),
                &json!({"amount": 250}),
            )
            .await;
        after.expect(201, None);
        assert_eq!(after.json, first.json);
        if s.is_own() {
            s.redis("FLUSHALL");
        }
        s.post(
            &path,
            Some(service_token()),
            Some(&key),
            &json!({"amount": 300}),
        )
        .await
        .expect(422, Some("idempotency_key_reused"));
        assert_eq!(
            payment(&s, &p).await["refundedAmount"],
            250,
            "refunded once"
        );

        // What cannot be refunded.
        let r = refund_part(&s, &p, 751).await;
        r.expect(409, Some("refund_exceeds_payment"));
        assert_eq!(
            (
                r.json["paymentId"].as_str(),
                r.json["requested"].as_i64(),
                r.json["available"].as_i64()
            ),
            (Some(p.as_str()), Some(751), Some(750))
        );
        assert!(detail(&r).contains("amount"), "{}", r.text);
        for (body, field) in [
            (json!({"amount": 0}), "amount"),
            (json!({"amount": -1}), "amount"),
            (json!({"amount": "5"}), "amount"),
            (json!({"amount": 1_000_000_000_001_i64}), "amount"),
            (json!({}), "amount"),
            (json!({"amount": 5, "reason": "broken"}), "reason"),
        ] {
            refused_naming(&s.call(&path, &body).await, field);
        }
        let declined = charge(&s, json!({"amount": 150_000, "currency": "USD"})).await;
        let r = refund_part(&s, &id(&declined["paymentId"]), 1).await;
        r.expect(409, Some("payment_not_refundable"));
        assert_eq!(r.json["paymentStatus"], "failed");
        let unknown = Uuid::new_v4().to_string();
        let r = refund_part(&s, &unknown, 1).await;
        r.expect(404, Some("payment_not_found"));
        assert_eq!(r.json["paymentId"], unknown.as_str());
        s.post(
            &path,
            Some(admin_token()),
            Some(&new_key()),
            &json!({"amount": 1}),
        )
        .await
        .expect(403, Some("forbidden"));
        s.post(&path, None, Some(&new_key()), &json!({"amount": 1}))
            .await
            .expect(401, Some("unauthorized"));
        s.post(&path, Some(service_token()), None, &json!({"amount": 1}))
            .await
            .expect(400, Some("idempotency_key_missing"));

        assert_eq!(
            entries(&s, &format!("paymentId={p}&kind=refund")).await["total"],
            1,
            "one refund entry"
        );
        assert_eq!(
            entries(&s, &format!("paymentId={}", id(&declined["paymentId"]))).await["total"],
            0,
            "none for the declined payment"
        );
        assert_eq!(payment(&s, &p).await["refundedAmount"], 250);
        // The charges have no lines: the platform's, whose balance is this test's alone only on a
        // stack of its own.
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(
                count(&db, "SELECT count(*) FROM refunds").await,
                1,
                "one refund"
            );
            assert_eq!(
                entries(&s, "kind=refund").await["total"],
                1,
                "one refund entry"
            );
            assert_eq!(balance(&s, PLATFORM, "USD").await, (750, 0, 0));
        }

        // One key sent eight times at once: one refund, however each is answered.
        let key = new_key();
        let body = json!({"amount": 100});
        let answers =
            join_all((0..8).map(|_| s.post(&path, Some(service_token()), Some(&key), &body))).await;
        let mut made = Vec::new();
        for a in &answers {
            if a.status == 201 {
                made.push(a.json["refundId"].clone());
            } else {
                a.expect(409, Some("request_in_progress"));
            }
        }
        assert!(!made.is_empty(), "one is answered the refund");
        assert!(
            made.iter().all(|r| *r == made[0]),
            "the same refund: {made:?}"
        );
        let replay = s
            .post(
                &path,
                Some(service_token()),
                Some(&key),
                &json!({"amount": 100}),
            )
            .await;
        replay.expect(201, None);
        assert_eq!(replay.json["refundId"], made[0]);
        assert_eq!(
            entries(&s, &format!("paymentId={p}&kind=refund")).await["total"],
            2
        );
        assert_eq!(payment(&s, &p).await["refundedAmount"], 350);
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            assert_eq!(count(&db, "SELECT count(*) FROM refunds").await, 2);
            assert_eq!(balance(&s, PLATFORM, "USD").await, (650, 0, 0));
        }
        assert_ledger_sound(&s).await;
    }

    #[tokio::test]
    async fn concurrent_partial_refunds_never_sum_above_the_payment() {
        let s = Stack::start().await;
        let (a, b) = (
            recipient(&s, "seller").await,
            recipient(&s, "partner").await,
        );
        let item = s.create_item(1000, "USD", 10).await;
        rule(&s, item, json!([pct(&a, 3333), rest(&b)])).await;

        // 20 × 100 of 1000: ten are made; the rest find it wholly refunded.
        let order = s.checkout(json!({"itemId": item, "quantity": 1})).await;
        order.expect(201, None);
        let p = id(&order.json["paymentId"]);
        let answers = join_all((0..20).map(|_| refund_part(&s, &p, 100))).await;
        let made = answers.iter().filter(|a| a.status == 201).count();
        assert_eq!(made, 10, "exactly ten refunds are made");
        for a in answers.iter().filter(|a| a.status != 201) {
            a.expect(409, Some("payment_not_refundable"));
            assert_eq!(a.json["paymentStatus"], "refunded");
        }
        let paid = payment(&s, &p).await;
        assert_eq!(
            (paid["refundedAmount"].as_i64(), paid["status"].as_str()),
            (Some(1000), Some("refunded"))
        );
        let now = allocations(&s, &p).await;
        assert_eq!(now.iter().map(|a| a.4).sum::<i64>(), 1000);
        assert!(now.iter().all(|a| a.4 == a.3), "all reversed: {now:?}");
        assert_eq!(
            entries(&s, &format!("paymentId={p}&kind=refund")).await["total"],
            10
        );

        // 20 × 150 of 1000: six are made; the rest would exceed what is left (100).
        let order = s.checkout(json!({"itemId": item, "quantity": 1})).await;
        order.expect(201, None);
        let p = id(&order.json["paymentId"]);
        let answers = join_all((0..20).map(|_| refund_part(&s, &p, 150))).await;
        assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 6);
        for a in answers.iter().filter(|a| a.status != 201) {
            a.expect(409, Some("refund_exceeds_payment"));
            assert_eq!(a.json["available"], 100);
        }
        let paid = payment(&s, &p).await;
        assert_eq!(
            (paid["refundedAmount"].as_i64(), paid["status"].as_str()),
            (Some(900), Some("succeeded"))
        );
        let now = allocations(&s, &p).await;
        assert_proportional(&now, &[0, 0], 1000, 900, 900);
        assert_eq!(
            balance(&s, &a, "USD").await.0 + balance(&s, &b, "USD").await.0,
            100
        );
        assert_ledger_sound(&s).await;
    }

    // ----- the journal, the trial balance -----

    #[tokio::test]
    async fn the_journal_lists_entries_newest_first_with_filters_and_pages() {
        let s = Stack::start().await;
        let (a, b) = (
            recipient(&s, "seller").await,
            recipient(&s, "partner").await,
        );
        let item = s.create_item(1000, "USD", 10).await;
        rule(&s, item, json!([pct(&a, 5000), pct(&b, 5000)])).await;
        // A product sold in euros, shared between the seller and the platform.
        let euro = s.create_item(300, "EUR", 10).await;
        rule(&s, euro, json!([pct(&a, 5000), rest(PLATFORM)])).await;
        let o1 = s.checkout(json!({"itemId": item, "quantity": 1})).await;
        o1.expect(201, None);
        let p1 = id(&o1.json["paymentId"]);
        let p2 = id(&charge(
            &s,
            json!({"amount": 300, "currency": "EUR", "lines": [
                {"productId": euro, "quantity": 1, "amount": 300}
            ]}),
        )
        .await["paymentId"]);
        let refund = refund_part(&s, &p1, 100).await;
        refund.expect(201, None);

        // Every entry here has a leg of the seller's: the journal kept to the seller is this test's
        // three entries on any stack; on a stack of the suite's own, so is the whole journal.
        let seller = format!("recipientId={a}");
        let scopes: Vec<String> = if s.is_own() {
            vec![String::new(), format!("{seller}&")]
        } else {
            vec![format!("{seller}&")]
        };
        let whole = if s.is_own() { "" } else { seller.as_str() };
        let all = entries(&s, whole).await;
        assert_eq!(
            (
                all["total"].as_i64(),
                all["limit"].as_i64(),
                all["offset"].as_i64()
            ),
            (Some(3), Some(100), Some(0))
        );
        let list = all["entries"].as_array().unwrap();
        let seen: Vec<(&str, &str)> = list
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap(),
                    e["paymentId"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("refund", p1.as_str()),
                ("capture", p2.as_str()),
                ("capture", p1.as_str())
            ],
            "newest first"
        );
        assert!(list
            .windows(2)
            .all(|w| instant(&w[0]["at"]) >= instant(&w[1]["at"])));
        assert_eq!(list[0]["refundId"], refund.json["refundId"]);
        assert_eq!(list[0]["currency"], "USD");
        assert_eq!(list[1]["currency"], "EUR");
        assert_eq!(
            legs(&list[1]),
            [
                leg(("processor", None), ("pending", Some(&a)), 150),
                leg(("processor", None), ("pending", Some(PLATFORM)), 150)
            ]
        );
        for e in list {
            assert_eq!(
                (&e["transferId"], &e["payoutId"]),
                (&Value::Null, &Value::Null)
            );
            Uuid::parse_str(e["entryId"].as_str().unwrap()).unwrap();
        }

        let ids = |v: &Value| -> Vec<String> {
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| id(&e["entryId"]))
                .collect()
        };
        let all_ids = ids(&all);
        let mut cases: Vec<(String, Vec<usize>)> = vec![
            (format!("paymentId={p1}"), vec![0, 2]),
            (format!("paymentId={p2}"), vec![1]),
            (seller.clone(), vec![0, 1, 2]),
            (format!("recipientId={b}"), vec![0, 2]),
            (format!("recipientId={}", Uuid::new_v4()), vec![]),
            (format!("recipientId={b}&kind=capture"), vec![2]),
            (format!("paymentId={p2}&recipientId={PLATFORM}"), vec![1]),
            (format!("paymentId={p1}&recipientId={PLATFORM}"), vec![]),
            (
                format!("paymentId={p1}&kind=capture&recipientId={b}"),
                vec![2],
            ),
        ];
        if s.is_own() {
            cases.push((format!("recipientId={PLATFORM}"), vec![1]));
        }
        for scope in &scopes {
            for (query, expected) in [
                ("kind=capture", vec![1, 2]),
                ("kind=refund", vec![0]),
                ("kind=release", vec![]),
                ("limit=1&offset=1", vec![1]),
                ("limit=2", vec![0, 1]),
                ("offset=2", vec![2]),
                ("offset=10", vec![]),
            ] {
                cases.push((format!("{scope}{query}"), expected));
            }
        }
        for (query, expected) in cases {
            let page = entries(&s, &query).await;
            let expected: Vec<String> = expected.iter().map(|&i| all_ids[i].clone()).collect();
            assert_eq!(ids(&page), expected, "{query}");
        }
        for scope in &scopes {
            let page = entries(&s, &format!("{scope}limit=1&offset=1")).await;
            assert_eq!(
                (
                    page["total"].as_i64(),
                    page["limit"].as_i64(),
                    page["offset"].as_i64()
                ),
                (Some(3), Some(1), Some(1)),
                "{scope}"
            );
            assert_eq!(
                entries(&s, &format!("{scope}offset=10")).await["total"],
                3,
                "counted past the end too ({scope})"
            );
        }
        assert_eq!(entries(&s, &format!("paymentId={p1}")).await["total"], 2);

        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=x", "limit"),
            ("offset=-1", "offset"),
            ("kind=bonus", "kind"),
            ("recipientId=seller", "recipientId"),
            ("paymentId=42", "paymentId"),
        ] {
            refused_naming(
                &s.get(
                    &format!("/payment/ledger/entries?{query}"),
                    Some(service_token()),
                )
                .await,
                field,
            );
        }

        // Who may read what: the journal with either token, the trial balance with an admin's.
        let by_admin = s
            .get(
                &format!("/payment/ledger/entries?{whole}"),
                Some(admin_token()),
            )
            .await;
        by_admin.expect(200, None);
        assert_eq!(by_admin.json, all);
        s.get("/payment/ledger/entries", None)
            .await
            .expect(401, Some("unauthorized"));
        s.get("/payment/ledger/trial-balance", Some(service_token()))
            .await
            .expect(403, Some("forbidden"));
        s.get("/payment/ledger/trial-balance", None)
            .await
            .expect(401, Some("unauthorized"));
        // The totals are this test's alone only on a stack of its own (else the ledger check below
        // holds what is true of them in any snapshot).
        if s.is_own() {
            let tb = trial_balance(&s).await;
            assert_eq!(
                tb,
                json!({"consistent": true, "currencies": [
                    {"currency": "EUR", "debits": 300, "credits": 300, "processor": 300, "payouts": 0,
                     "recipientsPending": 300, "recipientsAvailable": 0},
                    {"currency": "USD", "debits": 1100, "credits": 1100, "processor": 900, "payouts": 0,
                     "recipientsPending": 900, "recipientsAvailable": 0}
                ]})
            );
        }
        assert_ledger_sound(&s).await;
    }
}
