//! The checkout saga: reserve stock → charge → complete the reservation, with compensation
//! (refund, release) when a step fails for good.
//!
//! Every step's outcome is written (a conditional transition) before the next step starts, so a
//! driver that dies anywhere leaves an order the recovery worker resumes from its last written
//! state, repeating at most the step in flight — with the same derived key, which the participant
//! replays. Decisions:
//! - a business refusal is final and never retried;
//! - a forward step that gets no answer within its budget is compensated — safe whatever its real
//!   outcome, because compensations go by order id and participants leave tombstones — except when
//!   the call certainly never reached the participant (every attempt failed to connect), in which
//!   case there is nothing to undo;
//! - completion is never compensated on an unknown outcome: it is retried until stock answers,
//!   because a release cannot undo a completion that did happen;
//! - compensations are retried until they succeed.

use crate::domain::{FailureCode, Order, OrderStatus};
use crate::metrics::SagaMetrics;
use crate::participants::{Answer, Participants};
use crate::retry::until_done;
use crate::storage::{self, Changes, Event};
use prometheus::IntGauge;
use serde_json::Value;
use shared::http_client::CallContext;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use OrderStatus::{Charging, Compensating, Completed, Completing, Failed, Pending, Reserving};

pub struct Saga {
    pub pool: PgPool,
    /// The order's writes, group-committed with other sagas'.
    pub writes: storage::Writes,
    pub participants: Participants,
    pub metrics: SagaMetrics,
    pub lease: Duration,
    pub compensation_max_backoff: Duration,
    /// The service's main runtime: drivers run there, not on the HTTP worker that started them,
    /// so they outlive the workers at shutdown and can be drained.
    pub runtime: tokio::runtime::Handle,
}

/// Keeps `orders_in_flight` right however a drive ends.
struct InFlight(IntGauge);

impl InFlight {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The order as this driver moved it (without events), or `None` when another driver had moved it.
type Moved = Option<Order>;

fn retried(step: &str, answer: &Answer) -> Vec<Event> {
    let attempts = match answer {
        Ok(reply) => reply.attempts,
        Err(unavailable) => unavailable.attempts,
    };
    if attempts > 1 {
        vec![Event::new("step_retried")
            .with("step", step)
            .with("attempts", attempts)]
    } else {
        vec![]
    }
}

/// For compensations, which must succeed: a refusal (other than the `final_codes`) is retried like
/// an outage, and logged, since it means something is wrong (a token, a bug).
fn until_accepted(answer: Answer, final_codes: &[&str]) -> Answer {
    match answer {
        Ok(r) if !r.status.is_success() && !final_codes.contains(&r.code()) => {
            tracing::error!(status = %r.status, body = %r.body, "a compensation was refused; retrying");
            Err(shared::http_client::Unavailable {
                target: "participant",
                reason: format!("refused with {}", r.status),
                attempts: r.attempts,
                maybe_executed: true,
            })
        }
        other => other,
    }
}

/// The span of one saga step, exported under `name`.
fn step(name: &'static str) -> tracing::Span {
    tracing::info_span!("saga.step", otel.name = name)
}

fn uuid_of(body: &Value, field: &str) -> Option<Uuid> {
    body[field].as_str().and_then(|s| Uuid::parse_str(s).ok())
}

impl Saga {
    /// Starts driving an order this instance holds the lease of (a recovered or orphaned one).
    pub fn spawn(self: &Arc<Self>, id: Uuid) -> JoinHandle<Result<Order, sqlx::Error>> {
        self.spawn_driver(id, None)
    }

    /// Starts driving an order this driver has just written, from the state it was written in.
    pub fn spawn_new(
        self: &Arc<Self>,
        order: Order,
        context: CallContext,
    ) -> JoinHandle<Result<Order, sqlx::Error>> {
        self.spawn_driver(order.order_id, Some((order, context)))
    }

    fn spawn_driver(
        self: &Arc<Self>,
        id: Uuid,
        fresh: Option<(Order, CallContext)>,
    ) -> JoinHandle<Result<Order, sqlx::Error>> {
        let saga = Arc::clone(self);
        self.runtime.spawn(async move {
            let result = saga.drive(id, fresh).await;
            if let Err(e) = &result {
                tracing::warn!(order_id = %id, error = %e, "saga interrupted; recovery will resume it");
            }
            result
        })
    }

    /// Waits, up to `timeout`, for the drivers in flight to finish (at shutdown).
    pub async fn drain(&self, timeout: Duration) {
        let started = Instant::now();
        while self.metrics.in_flight.get() > 0 && started.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.metrics.in_flight.get();
        if left > 0 {
            tracing::warn!(
                left,
                "shutting down with sagas in flight; recovery will resume them"
            );
        }
    }

    /// Drives an order until it is terminal and returns it, in the trace of the checkout that made
    /// it: one span for the saga, one per step. `fresh` is the order this driver has just written
    /// and the context of its request; without it, both are read.
    pub async fn drive(
        &self,
        id: Uuid,
        fresh: Option<(Order, CallContext)>,
    ) -> Result<Order, sqlx::Error> {
        let _in_flight = InFlight::new(&self.metrics.in_flight);
        let (order, context, entered) = match fresh {
            Some((order, context)) => {
                let entered = Some(order.status());
                (Some(order), context, entered)
            }
            None => (None, storage::call_context(&self.pool, id).await?, None),
        };
        let span = tracing::info_span!(
            "saga",
            otel.name = "checkout.saga",
            order_id = %id,
            request_id = %context.request_id,
        );
        if let Some(traceparent) = &context.traceparent {
            shared::telemetry::continue_trace(&span, traceparent);
        }
        self.drive_steps(id, order, entered, &context)
            .instrument(span)
            .await
    }

    /// Runs steps until the order is terminal. The order is read when the driver does not know it
    /// (at the start of a recovery, and after another driver moved it); otherwise each step's
    /// transition returns it.
    async fn drive_steps(
        &self,
        id: Uuid,
        known: Option<Order>,
        entered: Option<OrderStatus>,
        context: &CallContext,
    ) -> Result<Order, sqlx::Error> {
        // The state this driver moved the order into: its steps are ones this driver started.
        let mut entered = entered;
        let mut known = known;
        loop {
            let order = match known.take() {
                Some(order) => order,
                None => storage::get(&self.pool, id)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)?,
            };
            let status = order.status();
            let fresh = entered == Some(status);
            let moved = match status {
                // The whole order, events included: read, or opened and moved by this driver,
                // each write returning the events it added.
                Completed | Failed => return Ok(order),
                Pending => {
                    self.move_to(&order, Reserving, Changes::default(), vec![])
                        .await?
                }
                Reserving => {
                    self.reserve(&order, fresh, context)
                        .instrument(step("saga.reserve"))
                        .await?
                }
                Charging => {
                    self.charge(&order, fresh, context)
                        .instrument(step("saga.charge"))
                        .await?
                }
                Completing => {
                    self.complete(&order, context)
                        .instrument(step("saga.complete"))
                        .await?
                }
                Compensating => {
                    self.compensate(&order, context)
                        .instrument(step("saga.compensate"))
                        .await?
                }
            };
            entered = moved.as_ref().map(Order::status);
            known = moved;
        }
    }

    async fn move_to(
        &self,
        order: &Order,
        to: OrderStatus,
        changes: Changes,
        events: Vec<Event>,
    ) -> Result<Moved, sqlx::Error> {
        let id = order.order_id;
        let outcome = match (to, changes.failure_code) {
            (Completed, _) => Some("completed"),
            (Failed, Some(code)) => Some(code.as_str()),
            _ => None,
        };
        let moved = self.writes.transition(order, to, changes, &events).await?;
        if let (Some(_), Some(outcome)) = (&moved, outcome) {
            self.metrics.checkouts.with_label_values(&[outcome]).inc();
            tracing::info!(order_id = %id, outcome, "checkout finished");
        }
        Ok(moved)
    }

    async fn fail(
        &self,
        order: &Order,
        code: FailureCode,
        mut events: Vec<Event>,
    ) -> Result<Moved, sqlx::Error> {
        events.push(Event::new("order_failed").with("failureCode", code.as_str()));
        let changes = Changes {
            failure_code: Some(code),
            ..Changes::default()
        };
        self.move_to(order, Failed, changes, events).await
    }

    async fn start_compensation(
        &self,
        order: &Order,
        code: FailureCode,
        mut changes: Changes,
        mut events: Vec<Event>,
    ) -> Result<Moved, sqlx::Error> {
        events.push(Event::new("compensation_started").with("failureCode", code.as_str()));
        changes.failure_code = Some(code);
        self.move_to(order, Compensating, changes, events).await
    }

    fn observe(&self, step: &str, started: Instant) {
        self.metrics
            .step_duration
            .with_label_values(&[step])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn reserve(
        &self,
        order: &Order,
        fresh: bool,
        context: &CallContext,
    ) -> Result<Moved, sqlx::Error> {
        let started = Instant::now();
        let answer = self.participants.reserve(order, context).await;
        self.observe("reserve", started);
        let id = order.order_id;
        let mut events = retried("reserve", &answer);
        match answer {
            Ok(r) if r.status.as_u16() == 201 => {
                let b = &r.body;
                let prices = b["items"]
                    .as_array()
                    .map(|lines| {
                        lines
                            .iter()
                            .filter_map(|l| {
                                Some((
                                    l["itemId"].as_i64()?,
                                    l["unitPrice"].as_i64()?,
                                    l["amount"].as_i64()?,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                events.push(
                    Event::new("stock_reserved")
                        .with("reservationId", b["reservationId"].clone())
                        .with("totalAmount", b["totalAmount"].clone())
                        .with("currency", b["currency"].clone()),
                );
                let changes = Changes {
                    reservation_id: uuid_of(b, "reservationId"),
                    total_amount: b["totalAmount"].as_i64(),
                    currency: b["currency"].as_str().map(str::to_string),
                    prices,
                    ..Changes::default()
                };
                self.move_to(order, Charging, changes, events).await
            }
            Ok(r) => {
                let refusal = match (r.status.as_u16(), r.code()) {
                    (409, "insufficient_stock") => Some(FailureCode::InsufficientStock),
                    (422, "item_not_found") => Some(FailureCode::ItemNotFound),
                    (422, "mixed_currency") => Some(FailureCode::MixedCurrency),
                    _ => None,
                };
                match refusal {
                    Some(code) => {
                        if let Some(item) = r.body.get("itemId") {
                            events.push(
                                Event::new("stock_refused")
                                    .with("code", r.code())
                                    .with("itemId", item.clone()),
                            );
                        }
                        self.fail(order, code, events).await
                    }
                    None => {
                        tracing::error!(order_id = %id, status = %r.status, body = %r.body, "stock refused a reserve unexpectedly");
                        events.push(
                            Event::new("stock_refused")
                                .with("code", r.code())
                                .with("status", r.status.as_u16()),
                        );
                        self.start_compensation(
                            order,
                            FailureCode::Rejected,
                            Changes::default(),
                            events,
                        )
                        .await
                    }
                }
            }
            Err(unavailable) => {
                tracing::warn!(order_id = %id, error = %unavailable, "reserve got no answer");
                if fresh && !unavailable.maybe_executed {
                    // No attempt ever reached stock: nothing was reserved, nothing to undo.
                    self.fail(order, FailureCode::DependencyUnavailable, events)
                        .await
                } else {
                    self.start_compensation(
                        order,
                        FailureCode::DependencyUnavailable,
                        Changes::default(),
                        events,
                    )
                    .await
                }
            }
        }
    }

    async fn charge(
        &self,
        order: &Order,
        fresh: bool,
        context: &CallContext,
    ) -> Result<Moved, sqlx::Error> {
        let started = Instant::now();
        let answer = self.participants.charge(order, context).await;
        self.observe("charge", started);
        let id = order.order_id;
        let mut events = retried("charge", &answer);
        match answer {
            Ok(r) if r.status.as_u16() == 201 => {
                let b = &r.body;
                let payment_id = uuid_of(b, "paymentId");
                match b["status"].as_str() {
                    Some("succeeded") => {
                        events.push(
                            Event::new("payment_charged")
                                .with("paymentId", b["paymentId"].clone())
                                .with("amount", b["amount"].clone()),
                        );
                        let changes = Changes {
                            payment_id,
                            refund_needed: Some(true),
                            ..Changes::default()
                        };
                        self.move_to(order, Completing, changes, events).await
                    }
                    Some("failed") | Some("exhausted") => {
                        events.push(
                            Event::new("payment_declined")
                                .with("paymentId", b["paymentId"].clone())
                                .with("failureCode", b["failureCode"].clone()),
                        );
                        let changes = Changes {
                            payment_id,
                            refund_needed: Some(false),
                            ..Changes::default()
                        };
                        self.start_compensation(
                            order,
                            FailureCode::PaymentDeclined,
                            changes,
                            events,
                        )
                        .await
                    }
                    _ => {
                        tracing::error!(order_id = %id, body = %b, "payment answered an unexpected payment");
                        let changes = Changes {
                            payment_id,
                            refund_needed: Some(true),
                            ..Changes::default()
                        };
                        self.start_compensation(order, FailureCode::Rejected, changes, events)
                            .await
                    }
                }
            }
            Ok(r) => {
                tracing::error!(order_id = %id, status = %r.status, body = %r.body, "payment refused a charge unexpectedly");
                events.push(
                    Event::new("payment_refused")
                        .with("code", r.code())
                        .with("status", r.status.as_u16()),
                );
                let changes = Changes {
                    refund_needed: Some(true),
                    ..Changes::default()
                };
                self.start_compensation(order, FailureCode::Rejected, changes, events)
                    .await
            }
            Err(unavailable) => {
                tracing::warn!(order_id = %id, error = %unavailable, "charge got no answer");
                let changes = Changes {
                    refund_needed: Some(!fresh || unavailable.maybe_executed),
                    ..Changes::default()
                };
                self.start_compensation(order, FailureCode::DependencyUnavailable, changes, events)
                    .await
            }
        }
    }

    /// Calls `call` until it gets a business answer, renewing the lease while it waits.
    async fn persist<F, Fut>(
        &self,
        id: Uuid,
        step: &'static str,
        call: F,
    ) -> shared::http_client::Reply
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        until_done(self.compensation_max_backoff, |n| {
            let call = &call;
            async move {
                if n > 1 {
                    if let Err(e) = storage::renew_lease(&self.pool, id, self.lease).await {
                        tracing::warn!(order_id = %id, error = %e, "could not renew the lease");
                    }
                }
                match call().await {
                    Ok(reply) => Some(reply),
                    Err(unavailable) => {
                        tracing::warn!(order_id = %id, step, attempt = n, error = %unavailable, "retrying");
                        None
                    }
                }
            }
        })
        .await
    }

    async fn complete(&self, order: &Order, context: &CallContext) -> Result<Moved, sqlx::Error> {
        let started = Instant::now();
        let id = order.order_id;
        let reply = self
            .persist(id, "complete", || self.participants.complete(id, context))
            .await;
        self.observe("complete", started);
        let mut events = retried("complete", &Ok(reply.clone()));
        match (reply.status.as_u16(), reply.code()) {
            (200, _) => {
                events.push(Event::new("stock_completed"));
                events.push(Event::new("order_completed"));
                self.move_to(order, Completed, Changes::default(), events)
                    .await
            }
            (409, code @ ("reservation_expired" | "reservation_canceled")) => {
                events.push(Event::new("completion_refused").with("code", code));
                self.start_compensation(
                    order,
                    FailureCode::ReservationExpired,
                    Changes::default(),
                    events,
                )
                .await
            }
            _ => {
                tracing::error!(order_id = %id, status = %reply.status, body = %reply.body, "stock refused a completion unexpectedly");
                events.push(Event::new("completion_refused").with("code", reply.code()));
                self.start_compensation(order, FailureCode::Rejected, Changes::default(), events)
                    .await
            }
        }
    }

    /// Refunds (when a charge may stand) and releases, each until it succeeds, then fails the order.
    async fn compensate(&self, order: &Order, context: &CallContext) -> Result<Moved, sqlx::Error> {
        let id = order.order_id;
        let mut events = Vec::new();
        if storage::refund_needed(&self.pool, id).await? {
            let started = Instant::now();
            let reply = self
                .persist(id, "refund", || async {
                    until_accepted(self.participants.refund(id, context).await, &[])
                })
                .await;
            self.observe("refund", started);
            self.metrics
                .compensations
                .with_label_values(&["refund"])
                .inc();
            events
                .push(Event::new("payment_refunded").with("status", reply.body["status"].clone()));
        }
        let started = Instant::now();
        let reply = self
            .persist(id, "release", || async {
                // A completed reservation cannot be released: retrying would not change that.
                until_accepted(
                    self.participants.release(id, context).await,
                    &["reservation_completed"],
                )
            })
            .await;
        self.observe("release", started);
        self.metrics
            .compensations
            .with_label_values(&["release"])
            .inc();
        if reply.status.is_success() {
            events.push(Event::new("stock_released").with("status", reply.body["status"].clone()));
        } else {
            tracing::error!(order_id = %id, "the reservation was completed and cannot be released");
            events.push(Event::new("release_impossible").with("code", reply.code()));
        }
        let code = order.failure().unwrap_or(FailureCode::Rejected);
        events.push(Event::new("order_failed").with("failureCode", code.as_str()));
        let changes = Changes {
            failure_code: Some(code),
            ..Changes::default()
        };
        self.move_to(order, Failed, changes, events).await
    }
}
