//! Transfers between recipients and payouts out of the platform (docs/api.md,
//! docs/design/ledger.md), through nginx: accepted with a hold on the available money — under any
//! concurrency, transfers and payouts together, never beyond it — then a transfer posted once by
//! its worker with one `transfer` entry, or canceled while pending (a cancel racing the worker ends
//! in exactly one of the two); a payout paid once through the provider with one `payout` entry, or
//! failed with its hold released, and paid once even when payment dies between the provider's
//! answer and its recording; refusals answered with the problem that says why, nothing written.
//! Every test ends with the ledger's invariants checked: the trial balance, and on a stack of the
//! suite's own the stored rows (held = what pending transfers and payouts hold, one entry per posted
//! transfer and paid payout, the provider's records). The tests of `black_box` speak only HTTP to
//! nginx and also run against a stack the suite did not start, shared with others, whose workers
//! post and pay every 100 ms ([`stack`]): they look only at their own recipients' balances,
//! transfers, payouts and entries there, and wait for the workers where a pending transfer or
//! payout would not stay pending.

use crate::splits::{
    assert_ledger_sound, balance, detail, entries, eventually, id, leg, legs, pct, recipient,
    refund_part, refused_naming, rule, sample, scrape,
};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;
use tests::{admin_token, new_key, service_token, Answer, Options, Part, Stack};

/// How often the transfer and payout workers run on the black-box tests' stack.
const EVERY_MS: u64 = 100;

/// The black-box tests' stack: captures released at once, the transfer and payout workers every
/// [`EVERY_MS`]. A stack the suite did not start runs them only with exactly these settings:
/// `TEST_STACK_SETTINGS=SPLIT_HOLD_SECS=0,SPLIT_RELEASE_INTERVAL_MS=100,TRANSFER_INTERVAL_MS=100`.
async fn stack() -> Stack {
    stack_with(EVERY_MS, &[]).await
}

/// A stack whose captures are released at once, with the transfer and payout workers every
/// `every_ms`, and more settings.
async fn stack_with(every_ms: u64, env: &[(&str, &str)]) -> Stack {
    let mut options = Options::default()
        .env("SPLIT_HOLD_SECS", 0)
        .env("SPLIT_RELEASE_INTERVAL_MS", 100)
        .env("TRANSFER_INTERVAL_MS", every_ms);
    for (name, value) in env {
        options = options.env(name, value);
    }
    Stack::start_with(options).await
}

/// A new recipient with `amount` USD available (a sale wholly theirs, released); returns it with
/// the sale's payment.
async fn funded(s: &Stack, name: &str, amount: i64) -> (String, String) {
    let who = recipient(s, name).await;
    let item = s.create_item(amount, "USD", 1).await;
    rule(s, item, json!([pct(&who, 10_000)])).await;
    let order = s.checkout(json!({"itemId": item, "quantity": 1})).await;
    order.expect(201, None);
    eventually("the sale released", || {
        let (s, who) = (s, &who);
        async move { balance(s, who, "USD").await == (0, amount, 0) }
    })
    .await;
    (who, id(&order.json["paymentId"]))
}

async fn transfer(s: &Stack, from: &str, to: &str, amount: i64) -> Answer {
    s.call(
        "/payment/transfers",
        &json!({"fromRecipientId": from, "toRecipientId": to, "amount": amount, "currency": "USD"}),
    )
    .await
}

async fn cancel(s: &Stack, transfer: &str) -> Answer {
    s.call(&format!("/payment/transfers/{transfer}/cancel"), &json!({}))
        .await
}

async fn get(s: &Stack, transfer: &str) -> Value {
    let a = s
        .get(
            &format!("/payment/transfers/{transfer}"),
            Some(service_token()),
        )
        .await;
    a.expect(200, None);
    a.json
}

async fn status(s: &Stack, transfer: &str) -> String {
    id(&get(s, transfer).await["status"])
}

async fn payout(s: &Stack, who: &str, amount: i64) -> Answer {
    s.call(
        "/payment/payouts",
        &json!({"recipientId": who, "amount": amount, "currency": "USD"}),
    )
    .await
}

async fn payout_status(s: &Stack, payout: &str) -> Value {
    let a = s
        .get(&format!("/payment/payouts/{payout}"), Some(service_token()))
        .await;
    a.expect(200, None);
    a.json
}

async fn until_payout_settled(s: &Stack, payout: &str) -> Value {
    eventually("the payout settled", || async move {
        payout_status(s, payout).await["status"] != "pending"
    })
    .await;
    payout_status(s, payout).await
}

/// The stored rows hold every invariant, the transfers' included.
async fn assert_sound(s: &Stack) {
    assert_ledger_sound(s).await;
    let violations = s.quiet_and_check(Duration::from_secs(30)).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn a_payout_the_provider_refuses_fails_and_releases_its_hold() {
    let s = stack_with(100, &[("PAYOUT_FAILURE_RATE", "1")]).await;
    let (a, _) = funded(&s, "seller", 1000).await;
    let p = payout(&s, &a, 400).await;
    p.expect(202, None);
    let failed = until_payout_settled(&s, &id(&p.json["payoutId"])).await;
    assert_eq!(
        (&failed["status"], &failed["failureCode"]),
        (&json!("failed"), &json!("payout_refused"))
    );
    assert_eq!(balance(&s, &a, "USD").await, (0, 1000, 0));
    assert_eq!(entries(&s, "kind=payout").await["total"], 0);
    assert_eq!(
        sample(
            &scrape(&s).await,
            r#"payouts_total{status="failed",service="payment"}"#
        ),
        Some(1.0)
    );
    assert_sound(&s).await;
}

#[tokio::test]
async fn payment_killed_between_the_providers_answer_and_its_recording_pays_out_once() {
    // The provider acts at once and answers 3 s later: payment is killed in between.
    let s = stack_with(100, &[("PAYOUT_LATENCY_MS", "3000")]).await;
    let (a, _) = funded(&s, "seller", 1000).await;
    let p = payout(&s, &a, 400).await;
    p.expect(202, None);
    let pid = id(&p.json["payoutId"]);
    let db = s.db(Part::Payment).await;
    let sent = "SELECT count(*) FROM simulated_payouts WHERE payout_id = $1::uuid";
    eventually("the provider sent it", || {
        let (db, pid) = (&db, &pid);
        async move {
            sqlx::query_scalar::<_, i64>(sent)
                .bind(pid)
                .fetch_one(db)
                .await
                .unwrap()
                == 1
        }
    })
    .await;
    s.kill(Part::Payment).await;
    s.start_part(Part::Payment, &[("PAYOUT_LATENCY_MS", "0")])
        .await;
    assert_eq!(
        payout_status(&s, &pid).await["status"],
        "pending",
        "not recorded"
    );
    // Once the dead worker's lease runs out, a worker asks again, with the same id.
    let paid = until_payout_settled(&s, &pid).await;
    assert_eq!(paid["status"], "paid");
    let (rows, asked): (i64, i64) =
        sqlx::query_as("SELECT count(*), coalesce(sum(asked), 0)::bigint FROM simulated_payouts")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(rows, 1, "one payout sent");
    assert!(asked >= 2, "asked again after the crash: {asked}");
    assert_eq!(entries(&s, "kind=payout").await["total"], 1);
    assert_eq!(balance(&s, &a, "USD").await, (0, 600, 0));
    assert_sound(&s).await;
}

#[tokio::test]
async fn payment_killed_while_the_worker_posts_a_backlog_posts_each_transfer_once() {
    // The worker waits an hour while a backlog of 3000 builds up.
    let s = stack_with(3_600_000, &[]).await;
    let (a, _) = funded(&s, "seller", 100_000).await;
    let b = recipient(&s, "partner").await;
    for _ in 0..30 {
        let sent = join_all((0..100).map(|_| transfer(&s, &a, &b, 10))).await;
        assert!(sent.iter().all(|t| t.status == 202));
    }
    // Started with a short interval, the worker posts the backlog, 200 a transaction, one after
    // the other; killed as soon as the first batch is in, it dies in the middle of the backlog —
    // most likely within a batch, which is then written whole or not at all.
    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[("TRANSFER_INTERVAL_MS", "10")])
        .await;
    let db = s.db(Part::Payment).await;
    let posted = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM transfers WHERE status = 'posted'")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    while posted().await == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.kill(Part::Payment).await;
    let posted = posted().await;
    eprintln!("posted when payment was killed: {posted} of 3000");
    assert!(posted < 3000, "killed while the backlog was being posted");
    assert_eq!(posted % 200, 0, "whole batches: {posted}");
    s.start_part(Part::Payment, &[("TRANSFER_INTERVAL_MS", "10")])
        .await;
    eventually("the backlog posted", || async {
        s.get(
            &format!("/payment/transfers?recipientId={a}&status=pending"),
            Some(service_token()),
        )
        .await
        .json["total"]
            == 0
    })
    .await;
    assert_eq!(entries(&s, "kind=transfer&limit=1").await["total"], 3000);
    assert_eq!(balance(&s, &a, "USD").await, (0, 70_000, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 30_000, 0));
    assert_sound(&s).await;
}

#[tokio::test]
async fn two_payment_instances_share_the_backlogs_and_settle_each_transfer_and_payout_once() {
    let s = stack_with(3_600_000, &[]).await;
    let (a, _) = funded(&s, "seller", 100_000).await;
    let b = recipient(&s, "partner").await;
    let (s_, a_, b_) = (&s, &a, &b);
    for _ in 0..10 {
        let sent = join_all((0..100).map(|i| async move {
            if i % 4 == 0 {
                payout(s_, a_, 10).await
            } else {
                transfer(s_, a_, b_, 10).await
            }
        }))
        .await;
        assert!(sent.iter().all(|t| t.status == 202));
    }
    // Both instances run the workers every 10 ms, claiming with SKIP LOCKED.
    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[("TRANSFER_INTERVAL_MS", "10")])
        .await;
    let _other = s
        .start_instance(Part::Payment, &[("TRANSFER_INTERVAL_MS", "10")])
        .await;
    eventually("both backlogs settled", || async {
        let pending = |path: &'static str| {
            let s = &s;
            async move {
                s.get(path, Some(service_token())).await.json["total"]
                    .as_i64()
                    .unwrap_or(-1)
            }
        };
        pending("/payment/transfers?status=pending").await == 0
            && pending("/payment/payouts?status=pending").await == 0
    })
    .await;
    assert_eq!(entries(&s, "kind=transfer&limit=1").await["total"], 750);
    assert_eq!(entries(&s, "kind=payout&limit=1").await["total"], 250);
    assert_eq!(balance(&s, &a, "USD").await, (0, 90_000, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 7_500, 0));
    let db = s.db(Part::Payment).await;
    let (sent, asked): (i64, i64) =
        sqlx::query_as("SELECT count(*), coalesce(sum(asked), 0)::bigint FROM simulated_payouts")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (sent, asked),
        (250, 250),
        "each payout sent once, asked once"
    );
    assert_sound(&s).await;
}

/// Every writer of balance rows locks them in one order (by currency, then recipient). A batch
/// with A→B and B→C nets B's balance to zero; the worker must still lock B's row in its place —
/// before C's — not afterwards, when it lowers B's hold, or a refund that debits B then C deadlocks
/// with it. No request can force that interleaving, so this test plays the refund by hand: its
/// transaction locks B's row, the worker is let run (payment restarted with its worker on) and
/// waits for B; the "refund" then asks for C's row without waiting, which it gets only if the
/// worker has not taken C before B.
#[tokio::test]
async fn the_transfer_worker_locks_balance_rows_in_order_when_a_recipient_nets_to_zero() {
    // The worker looks at startup, then not for ten minutes: the transfers stay pending.
    let s = stack_with(600_000, &[]).await;
    let (a, _) = funded(&s, "a", 1000).await;
    let (x, _) = funded(&s, "x", 1000).await;
    let (y, _) = funded(&s, "y", 1000).await;
    // B sorts before C, so that a refund debiting both locks B first.
    let (b, c) = if x < y { (x, y) } else { (y, x) };
    let ab = transfer(&s, &a, &b, 100).await;
    ab.expect(202, None);
    let bc = transfer(&s, &b, &c, 100).await;
    bc.expect(202, None);
    s.stop(Part::Payment).await;

    let db = s.db(Part::Payment).await;
    let mut refund = db.begin().await.unwrap();
    let lock = |who: &str| {
        format!(
            "SELECT recipient_id FROM balances WHERE recipient_id = '{who}' AND currency = 'USD' FOR UPDATE"
        )
    };
    sqlx::query(&lock(&b))
        .fetch_one(&mut *refund)
        .await
        .unwrap();
    let me: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *refund)
        .await
        .unwrap();
    s.start_part(Part::Payment, &[("TRANSFER_INTERVAL_MS", "100")])
        .await;
    eventually("the worker waits for B's row", || {
        let db = &db;
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(me)
            .fetch_one(db)
            .await
            .unwrap();
            waiting > 0
        }
    })
    .await;
    let c_row = sqlx::query(&format!("{} NOWAIT", lock(&c)))
        .fetch_one(&mut *refund)
        .await;
    assert!(
        c_row.is_ok(),
        "the worker took C's row before B's (it waits for B while holding C): a refund debiting B \
         then C would deadlock with it: {c_row:?}"
    );
    refund.commit().await.unwrap();
    for t in [&ab, &bc] {
        let t = id(&t.json["transferId"]);
        eventually("the transfer posted", || {
            let (s, t) = (&s, &t);
            async move { status(s, t).await == "posted" }
        })
        .await;
    }
    assert_eq!(balance(&s, &a, "USD").await, (0, 900, 0));
    assert_eq!(balance(&s, &b, "USD").await, (0, 1000, 0));
    assert_eq!(balance(&s, &c, "USD").await, (0, 1100, 0));
    assert_sound(&s).await;
}

/// These speak only HTTP to nginx, and also run against a stack the suite did not start (`TEST_STACK_URL`).
mod black_box {
    use super::*;

    /// A 202 is a result like any other: a transfer and a payout sent again under their key are
    /// answered as first accepted (`pending`, replayed) even once the worker settled them; another
    /// request under the key is `idempotency_key_reused` before anything else is said of it; and
    /// after Redis lost its data the retry is answered from PostgreSQL with the same resource as
    /// first answered.
    #[tokio::test]
    async fn a_transfer_or_payout_sent_again_is_answered_as_first_accepted_after_it_settled() {
        let s = stack().await;
        let (a, _) = funded(&s, "sender", 1000).await;
        let b = recipient(&s, "receiver").await;
        let unknown = "00000000-0000-7000-8000-00000000beef";

        let key = new_key();
        let body =
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 10, "currency": "USD"});
        let send = |key: String, body: Value| {
            let s = &s;
            async move {
                s.post(
                    "/payment/transfers",
                    Some(service_token()),
                    Some(&key),
                    &body,
                )
                .await
            }
        };
        let first = send(key.clone(), body.clone()).await;
        first.expect(202, None);
        assert_eq!(first.json["status"], "pending");
        let transfer = id(&first.json["transferId"]);
        eventually("the transfer posted", || {
            let (s, t) = (&s, &transfer);
            async move { status(s, t).await == "posted" }
        })
        .await;
        let again = send(key.clone(), body.clone()).await;
        again.expect(202, None);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, first.text, "replayed as first answered");
        assert_eq!(again.header("location"), first.header("location"));
        for other in [
            json!({"fromRecipientId": a, "toRecipientId": a, "amount": 10, "currency": "USD"}),
            json!({"fromRecipientId": a, "toRecipientId": unknown, "amount": 10, "currency": "USD"}),
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 11, "currency": "USD"}),
        ] {
            send(key.clone(), other)
                .await
                .expect(422, Some("idempotency_key_reused"));
        }

        let payout_key = new_key();
        let payout_body = json!({"recipientId": a, "amount": 5, "currency": "USD"});
        let pay = |key: String, body: Value| {
            let s = &s;
            async move {
                s.post("/payment/payouts", Some(service_token()), Some(&key), &body)
                    .await
            }
        };
        let paid = pay(payout_key.clone(), payout_body.clone()).await;
        paid.expect(202, None);
        assert_eq!(paid.json["status"], "pending");
        let payout_id = id(&paid.json["payoutId"]);
        assert_eq!(until_payout_settled(&s, &payout_id).await["status"], "paid");
        let again = pay(payout_key.clone(), payout_body.clone()).await;
        again.expect(202, None);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, paid.text, "replayed as first answered");
        for other in [
            json!({"recipientId": unknown, "amount": 5, "currency": "USD"}),
            json!({"recipientId": a, "amount": 6, "currency": "USD"}),
        ] {
            pay(payout_key.clone(), other)
                .await
                .expect(422, Some("idempotency_key_reused"));
        }

        if s.is_own() {
            // Redis forgets every answer: PostgreSQL answers, with the resource as first answered.
            assert_eq!(s.redis("FLUSHALL"), "+OK");
            let from_db = send(key.clone(), body.clone()).await;
            from_db.expect(202, None);
            assert_eq!(from_db.json, first.json, "the transfer as first answered");
            assert_eq!(from_db.header("location"), first.header("location"));
            let from_db = pay(payout_key.clone(), payout_body.clone()).await;
            from_db.expect(202, None);
            assert_eq!(from_db.json, paid.json, "the payout as first answered");
            assert_eq!(s.redis("FLUSHALL"), "+OK");
            send(
                key.clone(),
                json!({"fromRecipientId": a, "toRecipientId": a, "amount": 10, "currency": "USD"}),
            )
            .await
            .expect(422, Some("idempotency_key_reused"));
            assert_eq!(s.redis("FLUSHALL"), "+OK");
            pay(
                payout_key.clone(),
                json!({"recipientId": unknown, "amount": 5, "currency": "USD"}),
            )
            .await
            .expect(422, Some("idempotency_key_reused"));
        }
        let all = s
            .get(
                &format!("/payment/transfers?recipientId={a}"),
                Some(admin_token()),
            )
            .await;
        assert_eq!(all.json["total"], 1, "one transfer for the key");
        let all = s
            .get(
                &format!("/payment/payouts?recipientId={a}"),
                Some(admin_token()),
            )
            .await;
        assert_eq!(all.json["total"], 1, "one payout for the key");
        assert_eq!(balance(&s, &a, "USD").await, (0, 985, 0));
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn a_transfer_holds_its_amount_then_is_posted_once_moving_available_money() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 1000).await;
        let b = recipient(&s, "partner").await;

        let t = transfer(&s, &a, &b, 300).await;
        t.expect(202, None);
        let tid = id(&t.json["transferId"]);
        assert_eq!(
            t.header("location"),
            Some(format!("/payment/transfers/{tid}").as_str())
        );
        assert_eq!(
            (
                &t.json["fromRecipientId"],
                &t.json["toRecipientId"],
                &t.json["amount"],
                &t.json["currency"],
                &t.json["status"],
                &t.json["reference"]
            ),
            (
                &json!(a),
                &json!(b),
                &json!(300),
                &json!("USD"),
                &json!("pending"),
                &Value::Null
            )
        );
        // Held until the worker posts it (which it may have done already).
        let now = balance(&s, &a, "USD").await;
        assert!(
            now == (0, 1000, 300) || now == (0, 700, 0),
            "held until posted: {now:?}"
        );
        eventually("the transfer posted", || {
            let (s, tid) = (&s, &tid);
            async move { status(s, tid).await == "posted" }
        })
        .await;
        assert_eq!(balance(&s, &a, "USD").await, (0, 700, 0));
        assert_eq!(balance(&s, &b, "USD").await, (0, 300, 0));
        if s.is_own() {
            assert_eq!(entries(&s, "kind=transfer").await["total"], 1);
        }
        let journal = entries(&s, &format!("recipientId={a}&kind=transfer")).await;
        assert_eq!(journal["total"], 1);
        let entry = &journal["entries"][0];
        assert_eq!(entry["transferId"], json!(tid));
        assert_eq!(
            legs(entry),
            [leg(("available", Some(&a)), ("available", Some(&b)), 300)]
        );
        // Posted: it cannot be canceled, and the money stays moved.
        let c = cancel(&s, &tid).await;
        c.expect(409, Some("transfer_not_cancelable"));
        assert_eq!(c.json["transferId"], json!(tid));
        assert_eq!(c.json["transferStatus"], "posted");
        assert_eq!(balance(&s, &b, "USD").await, (0, 300, 0));
        // Listed for either side, filtered by status.
        for who in [&a, &b] {
            let list = s
                .get(
                    &format!("/payment/transfers?recipientId={who}&status=posted"),
                    Some(admin_token()),
                )
                .await;
            list.expect(200, None);
            assert_eq!(list.json["total"], 1);
            assert_eq!(list.json["transfers"][0]["transferId"], json!(tid));
        }
        let none = s
            .get(
                &format!("/payment/transfers?recipientId={a}&status=pending"),
                Some(service_token()),
            )
            .await;
        none.expect(200, None);
        assert_eq!(none.json["total"], 0);
        if s.is_own() {
            let metrics = scrape(&s).await;
            for series in [
                r#"transfers_total{status="pending",service="payment"}"#,
                r#"transfers_total{status="posted",service="payment"}"#,
                r#"ledger_entries_total{kind="transfer",service="payment"}"#,
            ] {
                assert_eq!(sample(&metrics, series), Some(1.0), "{series}");
            }
        }
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn fifty_parallel_transfers_of_a_third_of_a_balance_accept_exactly_three() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 900).await;
        let b = recipient(&s, "partner").await;
        let answers = join_all((0..50).map(|_| transfer(&s, &a, &b, 300))).await;
        let accepted = answers.iter().filter(|a| a.status == 202).count();
        assert_eq!(accepted, 3, "exactly ⌊900 / 300⌋ accepted");
        for refused in answers.iter().filter(|a| a.status != 202) {
            refused.expect(409, Some("insufficient_funds"));
            assert_eq!(refused.json["recipientId"], json!(a));
            assert_eq!(refused.json["requested"], 300);
            assert_eq!(refused.json["available"], 0);
        }
        // Each accepted transfer holds its amount until the worker posts it (meanwhile, maybe): what
        // is available is what is held.
        let (pending, available, held) = balance(&s, &a, "USD").await;
        assert_eq!((pending, available), (0, held));
        assert!([0, 300, 600, 900].contains(&held), "{held} held");
        eventually("the three posted", || {
            let (s, a) = (&s, &a);
            async move { balance(s, a, "USD").await == (0, 0, 0) }
        })
        .await;
        assert_eq!(balance(&s, &b, "USD").await, (0, 900, 0));
        let written = s
            .get(
                &format!("/payment/transfers?recipientId={a}"),
                Some(service_token()),
            )
            .await;
        assert_eq!(written.json["total"], 3, "nothing refused was written");
        let posted = s
            .get(
                &format!("/payment/transfers?recipientId={a}&status=posted"),
                Some(service_token()),
            )
            .await;
        assert_eq!(posted.json["total"], 3);
        assert_eq!(
            entries(&s, &format!("recipientId={a}&kind=transfer")).await["total"],
            3
        );
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn a_cancel_releases_the_hold_once_and_a_canceled_transfer_stays_canceled() {
        let s = stack().await;
        // The worker posts pending transfers every EVERY_MS: a cancel finds one pending only if it
        // comes first. Until one does, each try is with a seller and a partner of its own (in a try
        // the worker won, the money moved once, the hold with it).
        let mut tries = 0;
        let (a, b, tid) = loop {
            tries += 1;
            assert!(
                tries <= 20,
                "the worker posted the transfer before its cancel 20 times"
            );
            let (a, _) = funded(&s, "seller", 1000).await;
            let b = recipient(&s, "partner").await;
            let t = transfer(&s, &a, &b, 400).await;
            t.expect(202, None);
            let tid = id(&t.json["transferId"]);
            let before = balance(&s, &a, "USD").await;
            // What is held cannot be transferred again (nor, once posted, what moved).
            let more = transfer(&s, &a, &b, 601).await;
            more.expect(409, Some("insufficient_funds"));
            assert_eq!(more.json["available"], 600);
            let c = cancel(&s, &tid).await;
            if c.status == 409 {
                c.expect(409, Some("transfer_not_cancelable"));
                assert_eq!(c.json["transferStatus"], "posted");
                assert_eq!(balance(&s, &a, "USD").await, (0, 600, 0));
                assert_eq!(balance(&s, &b, "USD").await, (0, 400, 0));
                eprintln!("try {tries}: the worker posted the transfer before its cancel");
                continue;
            }
            c.expect(200, None);
            assert_eq!(c.json["status"], "canceled");
            // Pending until its cancel: read before it, its amount was held.
            assert_eq!(before, (0, 1000, 400));
            break (a, b, tid);
        };
        assert_eq!(balance(&s, &a, "USD").await, (0, 1000, 0));
        // Again, under a new key: as it is, the hold not released twice.
        cancel(&s, &tid).await.expect(200, None);
        assert_eq!(balance(&s, &a, "USD").await, (0, 1000, 0));
        assert_eq!(balance(&s, &b, "USD").await, (0, 0, 0));
        assert_eq!(status(&s, &tid).await, "canceled");
        let unknown = uuid::Uuid::now_v7();
        let c = cancel(&s, &unknown.to_string()).await;
        c.expect(404, Some("transfer_not_found"));
        assert_eq!(c.json["transferId"], json!(unknown));
        s.get(
            &format!("/payment/transfers/{unknown}"),
            Some(service_token()),
        )
        .await
        .expect(404, Some("transfer_not_found"));
        if s.is_own() {
            assert_eq!(
                sample(
                    &scrape(&s).await,
                    r#"transfers_total{status="canceled",service="payment"}"#
                ),
                Some(1.0),
                "counted once"
            );
        }
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn cancels_racing_the_worker_end_each_transfer_once_canceled_or_posted() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 1000).await;
        let b = recipient(&s, "partner").await;
        // Thirty at once, each canceled some time after it was accepted — at once for the first,
        // up to one of the worker's rounds later for the last: the worker posts some before their
        // cancels, some cancels come first, and some meet it as it posts.
        let (s_, a_, b_) = (&s, &a, &b);
        let (ids, answers): (Vec<String>, Vec<Answer>) = join_all((0..30u64).map(|i| async move {
            let t = transfer(s_, a_, b_, 10).await;
            t.expect(202, None);
            let tid = id(&t.json["transferId"]);
            tokio::time::sleep(Duration::from_millis(i * EVERY_MS / 30)).await;
            let answer = cancel(s_, &tid).await;
            (tid, answer)
        }))
        .await
        .into_iter()
        .unzip();
        let mut canceled = 0;
        for (t, answer) in ids.iter().zip(&answers) {
            let now = status(&s, t).await;
            match answer.status {
                200 => {
                    assert_eq!(now, "canceled", "{t}");
                    canceled += 1;
                }
                409 => {
                    answer.expect(409, Some("transfer_not_cancelable"));
                    assert_eq!(now, "posted", "{t}");
                }
                other => panic!("cancel of {t} answered {other}: {}", answer.text),
            }
        }
        let posted = 30 - canceled;
        eprintln!("{posted} of 30 posted, {canceled} canceled");
        assert_eq!(balance(&s, &a, "USD").await, (0, 1000 - 10 * posted, 0));
        assert_eq!(balance(&s, &b, "USD").await, (0, 10 * posted, 0));
        assert_eq!(
            entries(&s, &format!("recipientId={a}&kind=transfer")).await["total"],
            json!(posted),
            "one entry per posted transfer"
        );
        if s.is_own() {
            assert_eq!(entries(&s, "kind=transfer").await["total"], json!(posted));
        }
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn a_refund_after_the_release_can_leave_available_negative_which_refuses_transfers() {
        let s = stack().await;
        let (a, p) = funded(&s, "seller", 1000).await;
        let b = recipient(&s, "partner").await;
        let t = transfer(&s, &a, &b, 800).await;
        t.expect(202, None);
        let tid = id(&t.json["transferId"]);
        eventually("the transfer posted", || {
            let (s, tid) = (&s, &tid);
            async move { status(s, tid).await == "posted" }
        })
        .await;
        // The whole sale refunded: taken back from the seller's available, 800 of it already moved.
        refund_part(&s, &p, 1000).await.expect(201, None);
        assert_eq!(balance(&s, &a, "USD").await, (0, -800, 0));
        let refused = transfer(&s, &a, &b, 1).await;
        refused.expect(409, Some("insufficient_funds"));
        assert_eq!(refused.json["available"], -800);
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn transfers_that_cannot_be_are_refused_naming_why_and_write_nothing() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 1000).await;
        let b = recipient(&s, "partner").await;
        let body = |amount: Value, currency: Value| json!({"fromRecipientId": a, "toRecipientId": b, "amount": amount, "currency": currency});
        for (bad, field) in [
            (body(json!(0), json!("USD")), "amount"),
            (body(json!(-5), json!("USD")), "amount"),
            (body(json!(1.5), json!("USD")), "amount"),
            (body(json!("5"), json!("USD")), "amount"),
            (body(json!(i64::MAX as f64 * 4.0), json!("USD")), "amount"),
            (body(json!(5), json!("usd")), "currency"),
            (body(json!(5), json!("QQQ")), "currency"),
            (body(json!(5), json!("XTS")), "currency"),
            (
                json!({"fromRecipientId": "nobody", "toRecipientId": b, "amount": 5, "currency": "USD"}),
                "fromRecipientId",
            ),
            (
                json!({"toRecipientId": b, "amount": 5, "currency": "USD"}),
                "fromRecipientId",
            ),
            (
                json!({"fromRecipientId": a, "toRecipientId": b, "amount": 5, "currency": "USD", "memo": 1}),
                "memo",
            ),
        ] {
            refused_naming(&s.call("/payment/transfers", &bad).await, field);
        }
        let same = transfer(&s, &a, &a, 5).await;
        same.expect(422, Some("same_recipient"));
        assert_eq!(same.json["recipientId"], json!(a));
        let nobody = uuid::Uuid::now_v7();
        let unknown = transfer(&s, &a, &nobody.to_string(), 5).await;
        unknown.expect(422, Some("recipient_not_found"));
        assert_eq!(unknown.json["recipientId"], json!(nobody));
        assert!(detail(&unknown).contains(&nobody.to_string()));
        // No balance in the currency at all.
        let euros = s
            .call(
                "/payment/transfers",
                &json!({"fromRecipientId": a, "toRecipientId": b, "amount": 5, "currency": "EUR"}),
            )
            .await;
        euros.expect(409, Some("insufficient_funds"));
        assert_eq!(euros.json["available"], 0);
        // Cancels and reads of what is not a transfer id.
        s.call("/payment/transfers/nope/cancel", &json!({}))
            .await
            .expect(400, Some("validation_error"));
        // A key is one request.
        let key = new_key();
        let first =
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 5, "currency": "USD"});
        let sent = s
            .post(
                "/payment/transfers",
                Some(service_token()),
                Some(&key),
                &first,
            )
            .await;
        sent.expect(202, None);
        let again = s
            .post(
                "/payment/transfers",
                Some(service_token()),
                Some(&key),
                &first,
            )
            .await;
        again.expect(202, None);
        assert_eq!(again.json["transferId"], sent.json["transferId"]);
        let other = s
            .post(
                "/payment/transfers",
                Some(service_token()),
                Some(&key),
                &json!({"fromRecipientId": a, "toRecipientId": b, "amount": 6, "currency": "USD"}),
            )
            .await;
        other.expect(422, Some("idempotency_key_reused"));
        for who in [&a, &b] {
            let all = s
                .get(
                    &format!("/payment/transfers?recipientId={who}"),
                    Some(admin_token()),
                )
                .await;
            all.expect(200, None);
            assert_eq!(
                all.json["total"], 1,
                "only the one accepted transfer was written"
            );
        }
        if s.is_own() {
            let all = s.get("/payment/transfers", Some(admin_token())).await;
            assert_eq!(all.json["total"], 1);
        }
        // Posted by the worker, once: 5 moved.
        let tid = id(&sent.json["transferId"]);
        eventually("the transfer posted", || {
            let (s, tid) = (&s, &tid);
            async move { status(s, tid).await == "posted" }
        })
        .await;
        assert_eq!(balance(&s, &a, "USD").await, (0, 995, 0));
        assert_eq!(balance(&s, &b, "USD").await, (0, 5, 0));
        // Tokens: service or admin; none is refused.
        s.post("/payment/transfers", None, Some(&new_key()), &first)
            .await
            .expect(401, Some("unauthorized"));
        // The database refuses a transfer to oneself and a second entry, whatever the code does.
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            let e = sqlx::query(
                "INSERT INTO transfers (id, from_recipient_id, to_recipient_id, amount, currency)
                 VALUES (gen_random_uuid(), $1::uuid, $1::uuid, 5, 'USD')",
            )
            .bind(&a)
            .execute(&db)
            .await
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains("a_transfer_moves_between_two_recipients"),
                "{e}"
            );
        }
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn a_payout_holds_its_amount_then_is_paid_once_out_of_the_platform() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 1000).await;
        let p = payout(&s, &a, 400).await;
        p.expect(202, None);
        let pid = id(&p.json["payoutId"]);
        assert_eq!(
            p.header("location"),
            Some(format!("/payment/payouts/{pid}").as_str())
        );
        assert_eq!(
            (
                &p.json["recipientId"],
                &p.json["amount"],
                &p.json["status"],
                &p.json["failureCode"]
            ),
            (&json!(a), &json!(400), &json!("pending"), &Value::Null)
        );
        // Held until the worker pays it (which it may have done already).
        let now = balance(&s, &a, "USD").await;
        assert!(
            now == (0, 1000, 400) || now == (0, 600, 0),
            "held until paid: {now:?}"
        );
        let paid = until_payout_settled(&s, &pid).await;
        assert_eq!(paid["status"], "paid");
        assert_eq!(balance(&s, &a, "USD").await, (0, 600, 0));
        let journal = entries(&s, &format!("recipientId={a}&kind=payout")).await;
        assert_eq!(journal["total"], 1);
        assert_eq!(journal["entries"][0]["payoutId"], json!(pid));
        assert_eq!(
            legs(&journal["entries"][0]),
            [leg(("available", Some(&a)), ("payouts", None), 400)]
        );
        // The totals are this test's alone only on a stack of its own.
        if s.is_own() {
            assert_eq!(entries(&s, "kind=payout").await["total"], 1);
            let tb = s
                .get("/payment/ledger/trial-balance", Some(admin_token()))
                .await;
            let usd = tb.json["currencies"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["currency"] == "USD")
                .cloned()
                .unwrap();
            assert_eq!(
                (&usd["payouts"], &usd["recipientsAvailable"]),
                (&json!(400), &json!(600))
            );
        }
        let list = s
            .get(
                &format!("/payment/payouts?recipientId={a}&status=paid"),
                Some(admin_token()),
            )
            .await;
        list.expect(200, None);
        assert_eq!(list.json["total"], 1);
        assert_eq!(list.json["payouts"][0]["payoutId"], json!(pid));
        if s.is_own() {
            let metrics = scrape(&s).await;
            for series in [
                r#"payouts_total{status="pending",service="payment"}"#,
                r#"payouts_total{status="paid",service="payment"}"#,
                r#"ledger_entries_total{kind="payout",service="payment"}"#,
            ] {
                assert_eq!(sample(&metrics, series), Some(1.0), "{series}");
            }
        }
        let unknown = uuid::Uuid::now_v7();
        let missing = s
            .get(
                &format!("/payment/payouts/{unknown}"),
                Some(service_token()),
            )
            .await;
        missing.expect(404, Some("payout_not_found"));
        assert_eq!(missing.json["payoutId"], json!(unknown));
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn transfers_and_payouts_racing_for_one_balance_never_hold_more_than_it() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 1000).await;
        let b = recipient(&s, "partner").await;
        let (transfers, payouts) = futures_util::join!(
            join_all((0..30).map(|_| transfer(&s, &a, &b, 100))),
            join_all((0..30).map(|_| payout(&s, &a, 100))),
        );
        let accepted = transfers
            .iter()
            .chain(&payouts)
            .filter(|a| a.status == 202)
            .count();
        assert_eq!(accepted, 10, "exactly ⌊1000 / 100⌋ accepted");
        for refused in transfers.iter().chain(&payouts).filter(|a| a.status != 202) {
            refused.expect(409, Some("insufficient_funds"));
        }
        // Each accepted one holds its amount until the workers settle it (meanwhile, maybe): what is
        // available is what is held.
        let (pending, available, held) = balance(&s, &a, "USD").await;
        assert_eq!((pending, available), (0, held));
        eventually("all of it settled", || {
            let (s, a) = (&s, &a);
            async move { balance(s, a, "USD").await == (0, 0, 0) }
        })
        .await;
        let moved = transfers.iter().filter(|a| a.status == 202).count() as i64;
        let paid = payouts.iter().filter(|a| a.status == 202).count() as i64;
        assert_eq!(balance(&s, &b, "USD").await, (0, 100 * moved, 0));
        for (path, n) in [
            (
                format!("/payment/transfers?recipientId={a}&status=posted"),
                moved,
            ),
            (format!("/payment/transfers?recipientId={a}"), moved),
            (
                format!("/payment/payouts?recipientId={a}&status=paid"),
                paid,
            ),
            (format!("/payment/payouts?recipientId={a}"), paid),
        ] {
            let listed = s.get(&path, Some(service_token())).await;
            listed.expect(200, None);
            assert_eq!(listed.json["total"], n, "{path}");
        }
        assert_sound(&s).await;
    }

    #[tokio::test]
    async fn payouts_that_cannot_be_are_refused_naming_why_and_write_nothing() {
        let s = stack().await;
        let (a, _) = funded(&s, "seller", 1000).await;
        for (bad, field) in [
            (
                json!({"recipientId": a, "amount": 0, "currency": "USD"}),
                "amount",
            ),
            (
                json!({"recipientId": a, "amount": 5, "currency": "US"}),
                "currency",
            ),
            (
                json!({"recipientId": a, "amount": 5, "currency": "QQQ"}),
                "currency",
            ),
            (
                json!({"recipientId": a, "amount": 5, "currency": "XAU"}),
                "currency",
            ),
            (
                json!({"recipientId": 7, "amount": 5, "currency": "USD"}),
                "recipientId",
            ),
            (json!({"amount": 5, "currency": "USD"}), "recipientId"),
            (
                json!({"recipientId": a, "amount": 5, "currency": "USD", "destination": {}}),
                "destination",
            ),
        ] {
            refused_naming(&s.call("/payment/payouts", &bad).await, field);
        }
        let nobody = uuid::Uuid::now_v7();
        let unknown = payout(&s, &nobody.to_string(), 5).await;
        unknown.expect(422, Some("recipient_not_found"));
        assert_eq!(unknown.json["recipientId"], json!(nobody));
        let more = payout(&s, &a, 1001).await;
        more.expect(409, Some("insufficient_funds"));
        assert_eq!(
            (&more.json["requested"], &more.json["available"]),
            (&json!(1001), &json!(1000))
        );
        let all = s
            .get(
                &format!("/payment/payouts?recipientId={a}"),
                Some(admin_token()),
            )
            .await;
        all.expect(200, None);
        assert_eq!(all.json["total"], 0, "nothing written");
        if s.is_own() {
            let all = s.get("/payment/payouts", Some(admin_token())).await;
            assert_eq!(all.json["total"], 0, "nothing written");
        }
        assert_eq!(balance(&s, &a, "USD").await, (0, 1000, 0));
        // A key is one request: sent again, the same payout; another body under it, refused.
        let key = new_key();
        let body = json!({"recipientId": a, "amount": 5, "currency": "USD"});
        let sent = s
            .post("/payment/payouts", Some(service_token()), Some(&key), &body)
            .await;
        sent.expect(202, None);
        let again = s
            .post("/payment/payouts", Some(service_token()), Some(&key), &body)
            .await;
        again.expect(202, None);
        assert_eq!(again.json["payoutId"], sent.json["payoutId"]);
        s.post(
            "/payment/payouts",
            Some(service_token()),
            Some(&key),
            &json!({"recipientId": a, "amount": 6, "currency": "USD"}),
        )
        .await
        .expect(422, Some("idempotency_key_reused"));
        s.post("/payment/payouts", None, Some(&new_key()), &body)
            .await
            .expect(401, Some("unauthorized"));
        let all = s
            .get(
                &format!("/payment/payouts?recipientId={a}"),
                Some(admin_token()),
            )
            .await;
        assert_eq!(all.json["total"], 1, "one payout for the key");
        if s.is_own() {
            let all = s.get("/payment/payouts", Some(admin_token())).await;
            assert_eq!(all.json["total"], 1, "one payout for the key");
        }
        // Paid by the worker, once: 5 left.
        let paid = until_payout_settled(&s, &id(&sent.json["payoutId"])).await;
        assert_eq!(paid["status"], "paid");
        assert_eq!(balance(&s, &a, "USD").await, (0, 995, 0));
        assert_sound(&s).await;
    }
}
