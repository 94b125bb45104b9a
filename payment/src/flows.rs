//! Charge, refund and retry as atomic phases around the processor call (Stripe-style recovery
//! points): the payment is written `pending` before the processor is asked, and the answer is
//! settled after. A crash or a processor outage in between leaves a `pending` payment that the
//! same request retried, or a refund, resumes with the same `(payment, attempt)` — the processor
//! is idempotent on it — so a payment is never charged twice and never forgotten.

use crate::domain::{ChargeRequest, Payment, PaymentStatus, RefundTarget};
use crate::processor::{ChargeAttempt, Decision, PaymentProcessor, ProcessorError};
use crate::storage::{self, Opened, RefundStart, RetryStart};
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

pub struct Payments<'a> {
    pub pool: &'a PgPool,
    /// Charges opened and settled together with concurrent ones.
    pub writes: &'a storage::Writes,
    pub processor: &'a dyn PaymentProcessor,
    pub max_retries: i32,
    /// `payments_total{status}`: each processor decision settled, and each refund made.
    pub settled: &'a prometheus::IntCounterVec,
}

pub enum Charged {
    Payment(Payment),
    OrderCanceled(Option<Uuid>),
    OrderHasPayment(Uuid),
    KeyReused,
}

pub enum Refunded {
    Payment(Payment),
    Tombstone(String),
    NotFound(Uuid),
}

pub enum Retried {
    Payment(Payment),
    NotRetryable(Payment),
    NotFound,
    KeyReused,
}

impl Payments<'_> {
    /// Asks the processor about `attempt` of a pending payment and settles its answer.
    async fn run_attempt(&self, payment: &Payment, attempt: i32) -> Result<Payment, FlowError> {
        let call = ChargeAttempt {
            payment_id: payment.payment_id,
            attempt,
            amount: payment.amount,
            currency: payment.currency.clone(),
        };
        let decision = self.processor.charge(&call).await?;
        let (approved, code) = match &decision {
            Decision::Approved => (true, None),
            Decision::Declined { code } => (false, Some(code.as_str())),
        };
        let settled = self
            .writes
            .settle(
                payment.payment_id,
                attempt,
                approved,
                code,
                self.max_retries,
            )
            .await?;
        self.settled.with_label_values(&[&settled.status]).inc();
        Ok(settled)
    }

    /// Settles a payment left pending (by a crash or an outage) before anything else is done.
    async fn resolve_pending(&self, payment: Payment) -> Result<Payment, FlowError> {
        if payment.status() != PaymentStatus::Pending {
            return Ok(payment);
        }
        let attempt = storage::open_attempt(self.pool, payment.payment_id).await?;
        self.run_attempt(&payment, attempt).await
    }

    pub async fn charge(
        &self,
        request: &ChargeRequest,
        idem: &IdempotencyContext,
    ) -> Result<Charged, FlowError> {
        match self.writes.open_charge(request, idem).await? {
            Opened::New(payment) => Ok(Charged::Payment(self.run_attempt(&payment, 0).await?)),
            Opened::Existing(payment) => Ok(Charged::Payment(self.resolve_pending(payment).await?)),
            Opened::OrderCanceled(id) => Ok(Charged::OrderCanceled(id)),
            Opened::OrderHasPayment(id) => Ok(Charged::OrderHasPayment(id)),
            Opened::KeyReused => Ok(Charged::KeyReused),
        }
    }

    pub async fn refund(&self, target: &RefundTarget) -> Result<Refunded, FlowError> {
        let payment = match storage::refund_target(self.pool, target).await? {
            RefundStart::Payment(p) => self.resolve_pending(p).await?,
            RefundStart::Tombstone(order_id) => return Ok(Refunded::Tombstone(order_id)),
            RefundStart::NotFound(id) => return Ok(Refunded::NotFound(id)),
        };
        if payment.status() != PaymentStatus::Succeeded {
            // Refunded already, or nothing was taken: nothing to give back.
            return Ok(Refunded::Payment(payment));
        }
        self.processor
            .refund(payment.payment_id, payment.amount)
            .await?;
        let refunded = storage::mark_refunded(self.pool, payment.payment_id).await?;
        self.settled.with_label_values(&[&refunded.status]).inc();
        Ok(Refunded::Payment(refunded))
    }

    pub async fn retry(
        &self,
        payment_id: Uuid,
        idem: &IdempotencyContext,
    ) -> Result<Retried, FlowError> {
        Ok(
            match storage::open_retry(self.pool, payment_id, idem).await? {
                RetryStart::Attempt(p, attempt) | RetryStart::Resume(p, attempt) => {
                    Retried::Payment(self.run_attempt(&p, attempt).await?)
                }
                RetryStart::Done(p) => Retried::Payment(p),
                RetryStart::NotRetryable(p) => Retried::NotRetryable(p),
                RetryStart::NotFound => Retried::NotFound,
                RetryStart::KeyReused => Retried::KeyReused,
            },
        )
    }
}
