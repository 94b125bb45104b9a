//! The saga's driver against a real PostgreSQL (a database of each test's own, migrated) with
//! fake participants: scripted answers, and a record of every call — so that each path of the
//! driver is seen doing its I/O: what it sends (requests and keys), what it writes, and when it
//! asks again.

use chrono::Utc;
use order::application::{Participants, Saga};
use order::domain::{policy, Order};
use order::metrics::SagaMetrics;
use order::storage::{orders, Lease, Opened, Writes, MIGRATOR};
use shared::client::{Answer, CallContext, Reply, Unavailable};
use shared::contract::order::{FailureCode, OrderStatus, RefundOutcome};
use shared::contract::payment::{ChargeRequest, Payment, PaymentStatus, RefundTarget, Refunded};
use shared::contract::problem::{ProblemBody, ProblemCode, ProblemContext};
use shared::contract::stock::{
    Released, Reservation, ReservationLine, ReservationStatus, ReservationTarget, ReserveRequest,
};
use shared::contract::values::{Attempt, Currency, ItemId};
use shared::contract::CanceledOrder;
use shared::idempotency::{IdempotencyContext, IdempotencyKey};
use sqlx::PgPool;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

type Call<T> = policy::Call<T>;

/// Answers scripted per call, in order; a call with nothing scripted left gets the last answer
/// again. Every call is recorded as `step key`.
#[derive(Default)]
struct Fake {
    reserve: Script<Reservation>,
    charge: Script<Payment>,
    complete: Script<Reservation>,
    refund: Script<Refunded>,
    release: Script<Released>,
    calls: Mutex<Vec<String>>,
}

struct Script<T>(Mutex<VecDeque<Call<T>>>);

impl<T> Default for Script<T> {
    fn default() -> Self {
        Script(Mutex::new(VecDeque::new()))
    }
}

impl<T: Clone> Script<T> {
    fn then(&self, answers: impl IntoIterator<Item = Call<T>>) {
        self.0.lock().unwrap().extend(answers);
    }

    fn next(&self) -> Call<T> {
        let mut answers = self.0.lock().unwrap();
        match answers.len() {
            0 => panic!("an unscripted call"),
            1 => answers[0].clone(),
            _ => answers.pop_front().unwrap(),
        }
    }
}

impl Fake {
    fn record(&self, step: &str, key: &str) {
        self.calls.lock().unwrap().push(format!("{step} {key}"));
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// The fake as the saga holds it (the test keeps another handle to script and inspect it).
struct Shared(Arc<Fake>);

impl std::ops::Deref for Shared {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

impl Participants for Shared {
    async fn reserve(&self, _: &ReserveRequest, key: &str, _: &CallContext) -> Call<Reservation> {
        self.record("reserve", key);
        self.reserve.next()
    }
    async fn charge(&self, request: &ChargeRequest, key: &str, _: &CallContext) -> Call<Payment> {
        if request.lines.is_some() {
            self.record("charge", key);
        } else {
            self.record("charge (without lines)", key);
        }
        let mut answer = self.charge.next();
        if let Ok(Reply {
            answer: Answer::Done(p),
            ..
        }) = &mut answer
        {
            p.amount = request.amount.get();
        }
        answer
    }
    async fn complete(
        &self,
        _: &ReservationTarget,
        key: &str,
        _: &CallContext,
    ) -> Call<Reservation> {
        self.record("complete", key);
        self.complete.next()
    }
    async fn refund(&self, _: &RefundTarget, key: &str, _: &CallContext) -> Call<Refunded> {
        self.record("refund", key);
        self.refund.next()
    }
    async fn release(&self, _: &ReservationTarget, key: &str, _: &CallContext) -> Call<Released> {
        self.record("release", key);
        self.release.next()
    }
}

fn done<T>(value: T) -> Call<T> {
    Ok(Reply {
        answer: Answer::Done(value),
        attempts: 1,
    })
}

fn refused<T>(status: u16, code: ProblemCode) -> Call<T> {
    Ok(Reply {
        answer: Answer::Refused(Box::new(ProblemBody {
            type_uri: ProblemBody::type_uri(code),
            title: String::new(),
            status,
            detail: String::new(),
            code,
            context: ProblemContext::default(),
        })),
        attempts: 1,
    })
}

fn unexpected<T>() -> Call<T> {
    Ok(Reply {
        answer: Answer::Unexpected {
            status: 200,
            reason: "not the contract's".into(),
        },
        attempts: 1,
    })
}

fn unanswered<T>(maybe_executed: bool) -> Call<T> {
    Err(Unavailable {
        target: "participant",
        reason: "connection refused".into(),
        attempts: 3,
        maybe_executed,
    })
}

fn reservation(status: ReservationStatus) -> Reservation {
    Reservation {
        reservation_id: Uuid::from_u128(7),
        order_id: "o".into(),
        attempt: 1,
        status,
        items: vec![ReservationLine {
            item_id: ItemId::new(1).unwrap(),
            quantity: 2,
            unit_price: 1000,
            amount: 2000,
        }],
        total_amount: 2000,
        currency: Currency::parse("USD").unwrap(),
        expires_at: Utc::now(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn payment(status: PaymentStatus) -> Payment {
    Payment {
        payment_id: Uuid::from_u128(9),
        order_id: Some("o".into()),
        attempt: 1,
        customer_id: None,
        amount: 0,
        currency: Currency::parse("USD").unwrap(),
        status,
        failure_code: (status == PaymentStatus::Failed).then(|| "amount_above_limit".into()),
        retries: 0,
        refunded_amount: 0,
        reference: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

/// A database of the test's own in the test PostgreSQL server, migrated.
async fn database() -> PgPool {
    use sqlx::migrate::MigrateDatabase;
    let server = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack.sh");
            let out = std::process::Command::new("bash")
                .args([script, "test-postgres"])
                .output()
                .expect("scripts/stack.sh test-postgres runs");
            assert!(out.status.success(), "no test PostgreSQL");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let url = format!("{server}/order_driver_{}", Uuid::new_v4().simple());
    sqlx::Postgres::create_database(&url).await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    pool
}

struct Harness {
    saga: Arc<Saga<Shared>>,
    fake: Arc<Fake>,
}

impl Harness {
    async fn new() -> Self {
        let pool = database().await;
        let lease = Lease {
            length: Duration::from_secs(30),
            step: Duration::from_secs(5),
        };
        let fake = Arc::new(Fake::default());
        let saga = Arc::new(Saga {
            writes: Writes::start(pool, lease, 8),
            participants: Shared(fake.clone()),
            metrics: SagaMetrics::register(&prometheus::Registry::new()).unwrap(),
            lease: lease.length,
            compensation_max_backoff: Duration::from_millis(10),
            runtime: tokio::runtime::Handle::current(),
        });
        Harness { saga, fake }
    }

    /// Opens an order of two units of item 1, as a checkout would.
    async fn open(&self) -> Order {
        let key = Uuid::new_v4().to_string();
        let idem = IdempotencyContext {
            key: IdempotencyKey::parse(Some(key.as_bytes())).unwrap(),
            scoped: format!("public:{key}"),
            fingerprint: "f".into(),
        };
        let opened = self
            .saga
            .writes
            .open(
                vec![(ItemId::new(1).unwrap(), 2)],
                None,
                &idem,
                &CallContext::default(),
            )
            .await
            .unwrap();
        match opened {
            Opened::New(order) => order,
            _ => panic!("a new key opens a new order"),
        }
    }

    async fn drive(&self, order: Order) -> Order {
        self.saga
            .drive(order.id, Some((order, CallContext::default())))
            .await
            .unwrap()
    }

    /// The order as stored, and the types of its events.
    async fn stored(&self, id: Uuid) -> (Order, Vec<String>) {
        let order = orders::get(self.saga.pool(), id).await.unwrap().unwrap();
        let types = order
            .events
            .iter()
            .map(|e| {
                serde_json::to_value(&e.event).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        (order, types)
    }
}

#[tokio::test]
async fn a_charge_whose_key_holds_one_sent_before_lines_existed_is_sent_again_as_it_was() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    // payment holds this order's charge as a build before lines sent it: the same key with lines
    // is another request to it.
    h.fake.charge.then([
        refused(422, ProblemCode::IdempotencyKeyReused),
        done(payment(PaymentStatus::Succeeded)),
    ]);
    h.fake
        .complete
        .then([done(reservation(ReservationStatus::Completed))]);
    let order = h.open().await;
    let id = order.id;
    let finished = h.drive(order).await;
    assert_eq!(finished.status, OrderStatus::Completed);
    assert_eq!(
        h.fake.calls(),
        [
            format!("reserve {id}:reserve"),
            format!("charge {id}:charge"),
            format!("charge (without lines) {id}:charge"),
            format!("complete {id}:complete")
        ]
    );
}

#[tokio::test]
async fn a_charge_refused_as_a_reused_key_twice_is_undone() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    h.fake
        .charge
        .then([refused(422, ProblemCode::IdempotencyKeyReused)]);
    h.fake
        .refund
        .then([done(Refunded::Payment(payment(PaymentStatus::Refunded)))]);
    h.fake.release.then([done(Released::Reservation(reservation(
        ReservationStatus::Canceled,
    )))]);
    let order = h.open().await;
    let id = order.id;
    let finished = h.drive(order).await;
    assert_eq!(finished.status, OrderStatus::Failed);
    let calls = h.fake.calls();
    assert_eq!(
        calls[..3],
        [
            format!("reserve {id}:reserve"),
            format!("charge {id}:charge"),
            format!("charge (without lines) {id}:charge"),
        ]
    );
    assert!(
        calls.iter().filter(|c| c.starts_with("charge")).count() == 2,
        "sent again once, not more: {calls:?}"
    );
}

#[tokio::test]
async fn a_checkout_reserves_charges_and_completes_with_keys_derived_from_the_order() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    h.fake
        .charge
        .then([done(payment(PaymentStatus::Succeeded))]);
    h.fake
        .complete
        .then([done(reservation(ReservationStatus::Completed))]);
    let order = h.open().await;
    let id = order.id;
    let finished = h.drive(order).await;
    assert_eq!(finished.status, OrderStatus::Completed);
    assert_eq!(
        h.fake.calls(),
        [
            format!("reserve {id}:reserve"),
            format!("charge {id}:charge"),
            format!("complete {id}:complete")
        ]
    );
    let (stored, events) = h.stored(id).await;
    assert_eq!(
        stored, finished,
        "what the driver returns is what is stored"
    );
    assert_eq!(
        events,
        [
            "order_created",
            "stock_reserved",
            "payment_charged",
            "stock_completed",
            "order_completed"
        ]
    );
    assert_eq!(
        (stored.total_amount, stored.lines[0].amount),
        (Some(2000), Some(2000))
    );
    assert_eq!(stored.payment_id, Some(Uuid::from_u128(9)));
}

#[tokio::test]
async fn a_declined_charge_is_released_without_a_refund() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    h.fake.charge.then([done(payment(PaymentStatus::Failed))]);
    h.fake.release.then([done(Released::Reservation(reservation(
        ReservationStatus::Canceled,
    )))]);
    let order = h.open().await;
    let finished = h.drive(order).await;
    assert_eq!(
        (finished.status, finished.failure),
        (OrderStatus::Failed, Some(FailureCode::PaymentDeclined))
    );
    let calls = h.fake.calls();
    assert!(calls.iter().all(|c| !c.starts_with("refund")), "{calls:?}");
    let (_, events) = h.stored(finished.id).await;
    assert_eq!(
        events,
        [
            "order_created",
            "stock_reserved",
            "payment_declined",
            "compensation_started",
            "stock_released",
            "order_failed"
        ]
    );
}

#[tokio::test]
async fn compensations_are_asked_again_until_they_settle() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    // The charge's outcome is unknown: it may stand, so it is refunded.
    h.fake.charge.then([unanswered(true)]);
    h.fake.refund.then([
        refused(401, ProblemCode::Unauthorized),
        unanswered(true),
        done(Refunded::Payment(payment(PaymentStatus::Refunded))),
    ]);
    h.fake.release.then([
        unexpected(),
        done(Released::Tombstone(CanceledOrder::new("o", Attempt::FIRST))),
    ]);
    let order = h.open().await;
    let id = order.id;
    let finished = h.drive(order).await;
    assert_eq!(
        (finished.status, finished.failure),
        (
            OrderStatus::Failed,
            Some(FailureCode::DependencyUnavailable)
        )
    );
    let calls = h.fake.calls();
    let count = |step: &str| calls.iter().filter(|c| c.starts_with(step)).count();
    assert_eq!((count("refund"), count("release")), (3, 2), "{calls:?}");
    assert!(calls.contains(&format!("refund {id}:refund")));
    let stored = h.stored(id).await.0;
    assert!(stored.events.iter().any(|e| matches!(
        e.event,
        shared::contract::order::OrderEvent::PaymentRefunded {
            status: RefundOutcome::Refunded
        }
    )));
}

#[tokio::test]
async fn a_completion_without_answer_is_asked_again_never_compensated() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    h.fake
        .charge
        .then([done(payment(PaymentStatus::Succeeded))]);
    h.fake.complete.then([
        unanswered(true),
        unanswered(false),
        done(reservation(ReservationStatus::Completed)),
    ]);
    let finished = h.drive(h.open().await).await;
    assert_eq!(finished.status, OrderStatus::Completed);
    let calls = h.fake.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("complete")).count(),
        3
    );
    assert!(calls
        .iter()
        .all(|c| !c.starts_with("release") && !c.starts_with("refund")));
}

#[tokio::test]
async fn an_outage_before_stock_fails_at_once_and_a_new_attempt_has_keys_of_its_own() {
    let h = Harness::new().await;
    h.fake.reserve.then([
        unanswered(false),
        done(reservation(ReservationStatus::Reserved)),
    ]);
    h.fake
        .charge
        .then([done(payment(PaymentStatus::Succeeded))]);
    h.fake
        .complete
        .then([done(reservation(ReservationStatus::Completed))]);
    let order = h.open().await;
    let id = order.id;
    let failed = h.drive(order).await;
    assert_eq!(failed.failure, Some(FailureCode::DependencyUnavailable));
    assert_eq!(
        h.fake.calls(),
        [format!("reserve {id}:reserve")],
        "nothing to undo"
    );

    // The checkout's key is retried: a new attempt, under new keys.
    let restart = policy::restart(&failed).expect("an outage failure starts again");
    let restarted = h
        .saga
        .writes
        .transition(&failed, &restart)
        .await
        .unwrap()
        .expect("the order moves");
    assert_eq!(
        (restarted.status, restarted.attempt),
        (OrderStatus::Reserving, 2)
    );
    assert_eq!(restarted.failure, None);
    assert!(
        h.saga
            .writes
            .transition(&failed, &restart)
            .await
            .unwrap()
            .is_none(),
        "a second retry does not start it twice"
    );
    let finished = h.drive(restarted).await;
    assert_eq!(finished.status, OrderStatus::Completed);
    assert_eq!(
        h.fake.calls()[1..],
        [
            format!("reserve {id}.2:reserve"),
            format!("charge {id}.2:charge"),
            format!("complete {id}.2:complete")
        ]
    );
    let (_, events) = h.stored(id).await;
    assert_eq!(
        events,
        [
            "order_created",
            "step_retried",
            "order_failed",
            "attempt_started",
            "stock_reserved",
            "payment_charged",
            "stock_completed",
            "order_completed"
        ]
    );
}

#[tokio::test]
async fn an_order_another_driver_moved_is_read_again_not_moved_twice() {
    let h = Harness::new().await;
    h.fake
        .reserve
        .then([done(reservation(ReservationStatus::Reserved))]);
    h.fake
        .charge
        .then([done(payment(PaymentStatus::Succeeded))]);
    h.fake
        .complete
        .then([done(reservation(ReservationStatus::Completed))]);
    let order = h.open().await;
    // Another driver records the reserve first.
    let reserved = policy::after_reserve(true, &done(reservation(ReservationStatus::Reserved)));
    h.saga
        .writes
        .transition(&order, &reserved)
        .await
        .unwrap()
        .unwrap();
    let finished = h.drive(order).await;
    assert_eq!(finished.status, OrderStatus::Completed);
    let (_, events) = h.stored(finished.id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "stock_reserved").count(),
        1,
        "{events:?}"
    );
}
