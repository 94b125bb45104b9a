//! Charge, refund and retry as atomic phases around the processor call (Stripe-style recovery
//! points): the payment is written `pending` before the processor is asked, and the answer is
//! settled after. A crash or a processor outage in between leaves a `pending` payment that the
//! same request retried, or a refund, resumes with the same `(payment, attempt)` — the processor
//! is idempotent on it — so a payment is never charged twice and never forgotten.
//!
//! Opening and settling charges are group-committed (see [`shared::batch`]): charges opened or
//! settled at the same time share one statement and one commit; a charge the batch cannot take
//! (its key or order taken, its order canceled, settled already) is decided alone — by the same
//! statement, for a batch of one.

use super::processor::{ChargeAttempt, PaymentProcessor, ProcessorError};
use crate::domain::ledger::{self as split, Capture};
use crate::domain::Settlement;
use crate::metrics::PaymentMetrics;
use crate::storage::ledger::CaptureRows;
use crate::storage::payments::{self as store, ChargeJob, RetryStart, Taken};
use crate::storage::StorageError;
use shared::batch::{Batched, Batcher};
use shared::contract::ledger::EntryKind;
use shared::contract::payment::{ChargeRequest, Payment, PaymentStatus};
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How many times a charge decided alone tries again after losing a race, and a capture after a
/// split rule was written while it was being split.
const ATTEMPTS: usize = 3;
/// The constraint that refuses a settlement whose captures were split by rules read before a rule
/// was written (migration `0008`).
const RULES_CHANGED: &str = "split_rules_unchanged_since_read";

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for FlowError {
    fn from(e: sqlx::Error) -> Self {
        FlowError::Storage(e.into())
    }
}

pub enum Charged {
    Payment(Payment),
    /// The order was refunded or canceled before this charge (with its payment, if it had one).
    OrderCanceled(Option<Uuid>),
    OrderHasPayment(Uuid),
    KeyReused,
}

pub enum Retried {
    Payment(Payment),
    /// With whether its order was compensated already.
    NotRetryable(Payment, bool),
    NotFound,
    KeyReused,
}

/// Charges, refunds and retries of payments.
#[derive(Clone)]
pub struct Payments {
    pub(super) pool: PgPool,
    pub(super) processor: Arc<dyn PaymentProcessor>,
    max_retries: i32,
    pub(super) metrics: PaymentMetrics,
    /// How long captured money stays pending.
    hold: Duration,
    charges: Batcher<ChargeJob, Batched<Payment>>,
    settles: Batcher<Settlement, Batched<Payment>>,
}

impl Payments {
    /// Starts the batch tasks (on the current runtime); `batch` is the largest batch.
    pub fn start(
        pool: PgPool,
        processor: Arc<dyn PaymentProcessor>,
        max_retries: i32,
        metrics: PaymentMetrics,
        batch: usize,
        hold: Duration,
    ) -> Self {
        let charges = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs: Vec<ChargeJob>| {
                let pool = pool.clone();
                async move { batched(store::open(&pool, &jobs).await, jobs.len(), "charge") }
            })
        };
        let settles = {
            let (pool, metrics) = (pool.clone(), metrics.clone());
            Batcher::start(batch, move |settlements: Vec<Settlement>| {
                let (pool, metrics) = (pool.clone(), metrics.clone());
                async move {
                    batched(
                        settle_and_capture(&pool, &settlements, hold, &metrics).await,
                        settlements.len(),
                        "settle",
                    )
                }
            })
        };
        Payments {
            pool,
            processor,
            max_retries,
            metrics,
            hold,
            charges,
            settles,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Asks the processor about `attempt` of a pending payment and settles its answer.
    async fn run_attempt(&self, payment: &Payment, attempt: i32) -> Result<Payment, FlowError> {
        let call = ChargeAttempt {
            payment_id: payment.payment_id,
            attempt,
            amount: payment.amount,
            currency: payment.currency,
        };
        let decision = self.processor.charge(&call).await?;
        let settlement = Settlement::of(payment, attempt, &decision, self.max_retries);
        let settled = self.settle(settlement).await?;
        self.metrics
            .payments
            .with_label_values(&[settled.status.as_str()])
            .inc();
        Ok(settled)
    }

    /// Records a settlement in the next batch, or alone; a payment settled already (by a
    /// concurrent request) is answered as it is.
    async fn settle(&self, settlement: Settlement) -> Result<Payment, StorageError> {
        if let Some(Batched::Done(payment)) = self.settles.run(settlement.clone()).await {
            return Ok(payment);
        }
        let id = settlement.payment_id;
        if let Some(Some(payment)) =
            settle_and_capture(&self.pool, &[settlement], self.hold, &self.metrics)
                .await?
                .pop()
        {
            return Ok(payment);
        }
        store::get(&mut *self.pool.acquire().await?, id)
            .await?
            .ok_or(StorageError::NotFound("payment"))
    }

    /// Settles a payment left pending (by a crash or an outage) before anything else is done.
    pub(super) async fn resolve_pending(&self, payment: Payment) -> Result<Payment, FlowError> {
        if payment.status != PaymentStatus::Pending {
            return Ok(payment);
        }
        let attempt =
            store::open_attempt(&mut *self.pool.acquire().await?, payment.payment_id).await?;
        self.run_attempt(&payment, attempt).await
    }

    pub async fn charge(
        &self,
        request: &ChargeRequest,
        idem: &IdempotencyContext,
    ) -> Result<Charged, FlowError> {
        let job = || ChargeJob {
            id: Uuid::new_v4(),
            request: request.clone(),
            key: idem.scoped.clone(),
            fingerprint: idem.fingerprint.clone(),
        };
        if let Some(Batched::Done(payment)) = self.charges.run(job()).await {
            return Ok(Charged::Payment(self.run_attempt(&payment, 0).await?));
        }
        // Alone: the same statement for this charge only, then why it was not opened.
        for _ in 0..ATTEMPTS {
            if let Some(Some(payment)) = store::open(&self.pool, &[job()]).await?.pop() {
                return Ok(Charged::Payment(self.run_attempt(&payment, 0).await?));
            }
            let order = request
                .order_id
                .as_ref()
                .map(|o| (o.as_str(), request.attempt.as_i32()));
            let mut conn = self.pool.acquire().await?;
            match store::taken(&mut conn, &idem.scoped, order).await? {
                Some(Taken::ByKey { fingerprint, .. }) if fingerprint != idem.fingerprint => {
                    return Ok(Charged::KeyReused)
                }
                Some(Taken::ByKey { id, .. }) => {
                    let payment = store::get(&mut conn, id)
                        .await?
                        .ok_or(StorageError::NotFound("payment"))?;
                    drop(conn);
                    return Ok(Charged::Payment(self.resolve_pending(payment).await?));
                }
                Some(Taken::ByOrder {
                    id,
                    status: PaymentStatus::Refunded,
                }) => return Ok(Charged::OrderCanceled(Some(id))),
                Some(Taken::ByOrder { id, .. }) => return Ok(Charged::OrderHasPayment(id)),
                Some(Taken::OrderCanceled) => return Ok(Charged::OrderCanceled(None)),
                // The conflicting charge rolled back meanwhile: try again.
                None => {}
            }
        }
        Err(StorageError::LostRace("the charge kept racing with another").into())
    }

    pub async fn retry(
        &self,
        payment_id: Uuid,
        idem: &IdempotencyContext,
    ) -> Result<Retried, FlowError> {
        Ok(
            match store::open_retry(&self.pool, payment_id, &idem.scoped, &idem.fingerprint).await?
            {
                RetryStart::Attempt(p, attempt) | RetryStart::Resume(p, attempt) => {
                    Retried::Payment(self.run_attempt(&p, attempt).await?)
                }
                RetryStart::Done(p) => Retried::Payment(p),
                RetryStart::NotRetryable(p, compensated) => Retried::NotRetryable(p, compensated),
                RetryStart::NotFound => Retried::NotFound,
                RetryStart::KeyReused => Retried::KeyReused,
            },
        )
    }
}

/// Settles payments and captures those that succeed, in one statement: each line split by the
/// rule of its product in force when the payment was made (read for the batch in one query
/// before, and read again if a rule was written meanwhile), the allocations, the capture entries
/// and the pending credits written by the statement that settles — for the payments it settles
/// only. A payment settled already is not settled
/// again, so it is never captured twice (and the unique index
/// `one_entry_per_payment_kind_and_refund` would refuse a second capture entry).
async fn settle_and_capture(
    pool: &PgPool,
    settlements: &[Settlement],
    hold: Duration,
    metrics: &PaymentMetrics,
) -> Result<Vec<Option<Payment>>, StorageError> {
    let succeeding: Vec<Uuid> = settlements
        .iter()
        .filter(|s| s.status == PaymentStatus::Succeeded)
        .map(|s| s.payment_id)
        .collect();
    let mut tries = 0;
    let (captures, settled) = loop {
        let (inputs, rules_read_at) = if succeeding.is_empty() {
            (Vec::new(), None)
        } else {
            store::capture_inputs(pool, &succeeding).await?
        };
        // Lines without products are not split by rules: nothing to line up with.
        let rules_read_at = rules_read_at.filter(|_| inputs.iter().any(|i| i.lines.is_some()));
        let captures: Vec<(&Settlement, Capture)> = settlements
            .iter()
            .filter(|s| s.status == PaymentStatus::Succeeded)
            .filter_map(|s| {
                let input = inputs.iter().find(|i| i.payment_id == s.payment_id)?;
                Some((
                    s,
                    split::capture(s.amount, input.lines.as_deref(), |product| {
                        input.rules.iter().find(|r| r.applies(product, s.made_at))
                    }),
                ))
            })
            .collect();
        let rows = CaptureRows::of(
            &captures
                .iter()
                .map(|(s, capture)| (s.payment_id, s.currency, capture))
                .collect::<Vec<_>>(),
        );
        match store::settle(pool, settlements, &rows, rules_read_at, hold).await {
            Ok(settled) => break (captures, settled),
            // A rule was written since the rules were read: read them again.
            Err(e) if e.violates(RULES_CHANGED) && tries + 1 < ATTEMPTS => tries += 1,
            Err(e) if e.violates(RULES_CHANGED) => {
                return Err(StorageError::LostRace(
                    "split rules kept being written while the payment was captured",
                ))
            }
            Err(e) => return Err(e),
        }
    };
    // Counted for what this statement captured: the payments it settled as succeeded.
    for (s, capture) in &captures {
        let now = settled
            .iter()
            .flatten()
            .any(|p| p.payment_id == s.payment_id && p.status == PaymentStatus::Succeeded);
        if !now {
            continue;
        }
        metrics
            .split_allocations
            .inc_by(capture.allocations.len() as u64);
        metrics
            .ledger_entries
            .with_label_values(&[EntryKind::Capture.as_str()])
            .inc();
        for anomaly in &capture.anomalies {
            tracing::warn!(payment_id = %s.payment_id, anomaly = anomaly.as_str(), "a line was not split as its rule says");
            metrics
                .split_anomalies
                .with_label_values(&[anomaly.as_str()])
                .inc();
        }
    }
    Ok(settled)
}

/// A batch statement's rows as the batch's answers: each job's row, or `Alone` for a job it wrote
/// none for — or for every job, when the statement failed.
fn batched(
    written: Result<Vec<Option<Payment>>, StorageError>,
    jobs: usize,
    what: &str,
) -> Vec<Batched<Payment>> {
    match written {
        Ok(rows) => rows
            .into_iter()
            .map(|p| p.map_or(Batched::Alone, Batched::Done))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, size = jobs, "a {what} batch failed; its requests go alone");
            (0..jobs).map(|_| Batched::Alone).collect()
        }
    }
}
