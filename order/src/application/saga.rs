//! The saga's driver: reserve stock → charge → complete the reservation, with compensation
//! (refund, release) when a step fails for good. The driver only does I/O — it calls the
//! participants, asks the policy ([`crate::domain::policy`]) what each answer means, and writes
//! the transition the policy decides.
//!
//! Every step's outcome is written (a conditional transition) before the next step starts, so a
//! driver that dies anywhere leaves an order the recovery worker resumes from its last written
//! state, repeating at most the step in flight — with the same derived key, which the participant
//! replays.

use super::participants::Participants;
use super::retry::until_done;
use crate::domain::policy::{self, Call, Compensation};
use crate::domain::{Order, Transition};
use crate::metrics::SagaMetrics;
use crate::storage::{orders, StorageError, Writes};
use prometheus::{IntGauge, IntGaugeVec};
use shared::client::{CallContext, Reply};
use shared::contract::order::{FailureCode, OrderEvent, OrderStatus, Step};
use shared::contract::payment::ChargeRequest;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

pub struct Saga<P> {
    /// The order's writes, group-committed with other sagas'.
    pub writes: Writes,
    pub participants: P,
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

/// Why a step that must succeed is being asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryReason {
    Refused,
    Unavailable,
}

impl RetryReason {
    fn as_str(self) -> &'static str {
        match self {
            RetryReason::Refused => "refused",
            RetryReason::Unavailable => "unavailable",
        }
    }
}

/// One order's step while it is asked again, as an operator sees it: counted in
/// `saga_steps_retrying{step,reason}` for as long as it lasts (however the drive ends), and logged
/// once when it starts being retried for a reason and once when it settles — not at every
/// attempt, which for a step refused for hours would bury everything else in the log.
struct Retrying<'a> {
    gauge: &'a IntGaugeVec,
    order: Uuid,
    step: Step,
    reason: std::sync::Mutex<Option<RetryReason>>,
}

impl<'a> Retrying<'a> {
    fn new(gauge: &'a IntGaugeVec, order: Uuid, step: Step) -> Self {
        Retrying {
            gauge,
            order,
            step,
            reason: std::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<RetryReason>> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This attempt failed for `reason`; `what` says how, for the log line.
    fn failed(&self, reason: RetryReason, attempt: u32, what: &dyn std::fmt::Display) {
        let mut current = self.current();
        if *current == Some(reason) {
            tracing::debug!(order_id = %self.order, step = %self.step, attempt, reason = reason.as_str(), %what, "retrying");
            return;
        }
        if let Some(previous) = current.replace(reason) {
            self.gauge
                .with_label_values(&[self.step.as_str(), previous.as_str()])
                .dec();
        }
        self.gauge
            .with_label_values(&[self.step.as_str(), reason.as_str()])
            .inc();
        match reason {
            RetryReason::Refused => {
                tracing::error!(order_id = %self.order, step = %self.step, attempt, answer = %what, "a participant refuses a step that must succeed; asking again until it accepts (counted in saga_steps_retrying)")
            }
            RetryReason::Unavailable => {
                tracing::warn!(order_id = %self.order, step = %self.step, attempt, error = %what, "no answer to a step that must succeed; asking again until it answers")
            }
        }
    }

    fn settled(&self, attempts: u32) {
        if let Some(reason) = *self.current() {
            tracing::info!(order_id = %self.order, step = %self.step, attempts, after = reason.as_str(), "the step settled after being asked again");
        }
    }
}

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        if let Some(reason) = *self.current() {
            self.gauge
                .with_label_values(&[self.step.as_str(), reason.as_str()])
                .dec();
        }
    }
}

/// The order as this driver moved it, or `None` when another driver had moved it.
type Moved = Option<Order>;

/// The span of one saga step, exported under `name`.
fn step_span(step: Step) -> tracing::Span {
    let name = match step {
        Step::Reserve => "saga.reserve",
        Step::Charge => "saga.charge",
        Step::Complete => "saga.complete",
        Step::Refund | Step::Release => "saga.compensate",
    };
    tracing::info_span!("saga.step", otel.name = name)
}

/// A request a step cannot build for an order that the contract's rules accepted: a bug.
fn unbuildable(what: impl std::fmt::Display) -> StorageError {
    StorageError::other(format!("the saga cannot build its request: {what}"))
}

impl<P: Participants> Saga<P> {
    pub fn pool(&self) -> &PgPool {
        self.writes.pool()
    }

    /// Starts driving an order this instance holds the lease of (a recovered or orphaned one).
    pub fn spawn(self: &Arc<Self>, id: Uuid) -> JoinHandle<Result<Order, StorageError>> {
        self.spawn_driver(id, None)
    }

    /// Starts driving an order this driver has just written, from the state it was written in.
    pub fn spawn_new(
        self: &Arc<Self>,
        order: Order,
        context: CallContext,
    ) -> JoinHandle<Result<Order, StorageError>> {
        self.spawn_driver(order.id, Some((order, context)))
    }

    fn spawn_driver(
        self: &Arc<Self>,
        id: Uuid,
        fresh: Option<(Order, CallContext)>,
    ) -> JoinHandle<Result<Order, StorageError>> {
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
    ) -> Result<Order, StorageError> {
        let _in_flight = InFlight::new(&self.metrics.in_flight);
        let (order, context, entered) = match fresh {
            Some((order, context)) => {
                let entered = Some(order.status);
                (Some(order), context, entered)
            }
            None => (None, orders::call_context(self.pool(), id).await?, None),
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
    ) -> Result<Order, StorageError> {
        // The state this driver moved the order into: its steps are ones this driver started.
        let mut entered = entered;
        let mut known = known;
        loop {
            let order = match known.take() {
                Some(order) => order,
                None => orders::get(self.pool(), id)
                    .await?
                    .ok_or(StorageError::NotFound("order"))?,
            };
            let fresh = entered == Some(order.status);
            let moved = match order.status {
                OrderStatus::Completed | OrderStatus::Failed => return Ok(order),
                OrderStatus::Pending => self.apply(&order, policy::start()).await?,
                OrderStatus::Reserving => {
                    self.reserve(&order, fresh, context)
                        .instrument(step_span(Step::Reserve))
                        .await?
                }
                OrderStatus::Charging => {
                    self.charge(&order, fresh, context)
                        .instrument(step_span(Step::Charge))
                        .await?
                }
                OrderStatus::Completing => {
                    self.complete(&order, context)
                        .instrument(step_span(Step::Complete))
                        .await?
                }
                OrderStatus::Compensating => {
                    self.compensate(&order, context)
                        .instrument(step_span(Step::Refund))
                        .await?
                }
            };
            entered = moved.as_ref().map(|o| o.status);
            known = moved;
        }
    }

    /// Writes a transition the policy decided, and counts the checkout when it ends it.
    async fn apply(&self, order: &Order, transition: Transition) -> Result<Moved, StorageError> {
        if transition.to == OrderStatus::Compensating
            && transition.changes.failure == Some(FailureCode::Rejected)
        {
            tracing::error!(order_id = %order.id, events = ?transition.events, "a participant refused the checkout unexpectedly; undoing it");
        }
        let moved = self.writes.transition(order, &transition).await?;
        if let (Some(_), Some(outcome)) = (&moved, transition.outcome()) {
            self.metrics.checkouts.with_label_values(&[outcome]).inc();
            tracing::info!(order_id = %order.id, outcome, "checkout finished");
        }
        Ok(moved)
    }

    fn observe(&self, step: Step, started: Instant) {
        self.metrics
            .step_duration
            .with_label_values(&[step.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn reserve(
        &self,
        order: &Order,
        fresh: bool,
        context: &CallContext,
    ) -> Result<Moved, StorageError> {
        let request = order.reserve_request().map_err(unbuildable)?;
        let started = Instant::now();
        let call = self
            .participants
            .reserve(&request, &order.key(Step::Reserve), context)
            .await;
        self.observe(Step::Reserve, started);
        log_answer(order, Step::Reserve, &call);
        self.apply(order, policy::after_reserve(fresh, &call)).await
    }

    async fn charge(
        &self,
        order: &Order,
        fresh: bool,
        context: &CallContext,
    ) -> Result<Moved, StorageError> {
        let Some(request) = order.charge_request() else {
            tracing::warn!(order_id = %order.id, total = ?order.total_amount, "the order cannot be charged (its total is more than one payment can charge, or a line is not priced); declined");
            return self.apply(order, policy::charge_impossible()).await;
        };
        let started = Instant::now();
        let key = order.key(Step::Charge);
        let mut call = self.participants.charge(&request, &key, context).await;
        if request.lines.is_some() && policy::resend_charge_without_lines(&call) {
            tracing::info!(order_id = %order.id, "the charge's key holds a charge without lines (sent before an upgrade); sending it again as it was");
            let legacy = ChargeRequest {
                lines: None,
                ..request
            };
            call = self.participants.charge(&legacy, &key, context).await;
        }
        self.observe(Step::Charge, started);
        log_answer(order, Step::Charge, &call);
        self.apply(order, policy::after_charge(fresh, &call)).await
    }

    /// Calls `call` until `settled` says its answer settles the step, renewing the lease while
    /// it waits; returns the answer and what `settled` made of it.
    async fn persist<T, R, F, Fut>(
        &self,
        order: &Order,
        step: Step,
        call: F,
        settled: impl Fn(&Reply<T>) -> Option<R>,
    ) -> (Reply<T>, R)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Call<T>>,
        T: std::fmt::Debug,
    {
        let id = order.id;
        let retrying = Retrying::new(&self.metrics.steps_retrying, id, step);
        let (reply, outcome, attempts) = until_done(self.compensation_max_backoff, |n| {
            let (call, settled, retrying) = (&call, &settled, &retrying);
            async move {
                if n > 1 {
                    if let Err(e) = orders::renew_lease(self.pool(), id, self.lease).await {
                        tracing::warn!(order_id = %id, error = %e, "could not renew the lease");
                    }
                }
                match call().await {
                    Ok(reply) => match settled(&reply) {
                        Some(outcome) => Some((reply, outcome, n)),
                        None => {
                            // Something is wrong (a token, a bug): counted, logged once, and
                            // asked again.
                            let answer = format!("{:?}", reply.answer);
                            retrying.failed(RetryReason::Refused, n, &answer);
                            None
                        }
                    },
                    Err(unavailable) => {
                        retrying.failed(RetryReason::Unavailable, n, &unavailable);
                        None
                    }
                }
            }
        })
        .await;
        retrying.settled(attempts);
        (reply, outcome)
    }

    /// Completes the reservation, asking until stock answers: a release cannot undo a completion
    /// that did happen, so an unknown outcome is never compensated.
    async fn complete(&self, order: &Order, context: &CallContext) -> Result<Moved, StorageError> {
        let target = order.reservation_target().map_err(unbuildable)?;
        let key = order.key(Step::Complete);
        let started = Instant::now();
        let (reply, ()) = self
            .persist(
                order,
                Step::Complete,
                || self.participants.complete(&target, &key, context),
                |_| Some(()),
            )
            .await;
        self.observe(Step::Complete, started);
        log_answer(order, Step::Complete, &Ok(reply.clone()));
        self.apply(order, policy::after_complete(&reply)).await
    }

    /// Runs the compensations the policy lists, each until it settles, then fails the order.
    async fn compensate(
        &self,
        order: &Order,
        context: &CallContext,
    ) -> Result<Moved, StorageError> {
        let mut events = Vec::new();
        for compensation in policy::compensations(order) {
            let step = compensation.step();
            let key = order.key(step);
            let started = Instant::now();
            let event = match compensation {
                Compensation::Refund => {
                    let target = order.refund_target().map_err(unbuildable)?;
                    self.persist(
                        order,
                        step,
                        || self.participants.refund(&target, &key, context),
                        policy::refunded,
                    )
                    .await
                    .1
                }
                Compensation::Release => {
                    let target = order.reservation_target().map_err(unbuildable)?;
                    self.persist(
                        order,
                        step,
                        || self.participants.release(&target, &key, context),
                        policy::released,
                    )
                    .await
                    .1
                }
            };
            self.observe(step, started);
            self.metrics
                .compensations
                .with_label_values(&[step.as_str()])
                .inc();
            if let OrderEvent::ReleaseImpossible { .. } = event {
                tracing::error!(order_id = %order.id, "the reservation was completed and cannot be released");
            }
            events.push(event);
        }
        self.apply(order, policy::after_compensation(order, events))
            .await
    }
}

/// Logs what a step's call got when it is not the expected answer: a refusal the policy treats as
/// unexpected is an error (a bug or a version skew), no answer a warning.
fn log_answer<T>(order: &Order, step: Step, call: &Call<T>) {
    use shared::client::Answer;
    match call {
        Ok(Reply {
            answer: Answer::Unexpected { status, reason },
            ..
        }) => {
            tracing::error!(order_id = %order.id, %step, status, reason, "a participant answered outside the contract");
        }
        Ok(Reply {
            answer: Answer::Refused(problem),
            ..
        }) => {
            tracing::debug!(order_id = %order.id, %step, status = problem.status, code = %problem.code, "a participant refused");
        }
        Ok(_) => {}
        Err(unavailable) => {
            tracing::warn!(order_id = %order.id, %step, error = %unavailable, "no answer");
        }
    }
}
