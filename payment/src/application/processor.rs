//! The payment processor port, and the simulated processor the system ships with.
//!
//! A real provider plugs in by implementing [`PaymentProcessor`]. Its contract: both calls are
//! idempotent — a charge by `(payment_id, attempt)`, a refund by `refund_id` — so the same call
//! made twice (after a crash, or by a retry that races a refund) has one effect and the same
//! answer, the way real providers behave when given an idempotency key. The service calls it
//! outside any database transaction.

pub use crate::domain::Decision;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use shared::contract::values::Currency;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ChargeAttempt {
    pub payment_id: Uuid,
    /// 0 for the first charge, n for the n-th retry.
    pub attempt: i32,
    pub amount: i64,
    pub currency: Currency,
}

/// Giving back part or all of a charged payment.
#[derive(Debug, Clone)]
pub struct RefundCall {
    pub refund_id: Uuid,
    pub payment_id: Uuid,
    pub amount: i64,
    pub currency: Currency,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The outcome is unknown; the same call may be made again.
    #[error("processor unavailable: {0}")]
    Unavailable(String),
}

pub trait PaymentProcessor: Send + Sync {
    fn charge<'a>(
        &'a self,
        attempt: &'a ChargeAttempt,
    ) -> BoxFuture<'a, Result<Decision, ProcessorError>>;
    fn refund<'a>(&'a self, refund: &'a RefundCall) -> BoxFuture<'a, Result<(), ProcessorError>>;
}

/// Declines first charges above `decline_above`; a retry succeeds with `retry_success_probability`.
/// Outcomes are a pure function of `(payment_id, attempt)`, which makes it idempotent. Every call
/// takes `latency`, like a slow provider.
#[derive(Debug, Clone)]
pub struct SimulatedProcessor {
    pub decline_above: i64,
    pub retry_success_probability: f64,
    pub latency: Duration,
}

impl SimulatedProcessor {
    pub fn decide(&self, attempt: &ChargeAttempt) -> Decision {
        if attempt.attempt == 0 {
            if attempt.amount > self.decline_above {
                Decision::Declined {
                    code: "amount_above_limit".into(),
                }
            } else {
                Decision::Approved
            }
        } else if draw(attempt.payment_id, attempt.attempt) < self.retry_success_probability {
            Decision::Approved
        } else {
            Decision::Declined {
                code: "retry_declined".into(),
            }
        }
    }
}

/// A uniform number in `[0, 1)` fixed by an id (a payment's, a payout's) and an attempt.
pub(crate) fn draw(payment_id: Uuid, attempt: i32) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(payment_id.as_bytes());
    hasher.update(attempt.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

impl PaymentProcessor for SimulatedProcessor {
    fn charge<'a>(
        &'a self,
        attempt: &'a ChargeAttempt,
    ) -> BoxFuture<'a, Result<Decision, ProcessorError>> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            Ok(self.decide(attempt))
        })
    }

    fn refund<'a>(&'a self, _refund: &'a RefundCall) -> BoxFuture<'a, Result<(), ProcessorError>> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(amount: i64, n: i32) -> ChargeAttempt {
        ChargeAttempt {
            payment_id: Uuid::new_v4(),
            attempt: n,
            amount,
            currency: Currency::parse("USD").unwrap(),
        }
    }

    #[test]
    fn first_charges_are_declined_above_the_limit_only() {
        let p = SimulatedProcessor {
            decline_above: 1000,
            retry_success_probability: 0.5,
            latency: Duration::ZERO,
        };
        assert_eq!(p.decide(&attempt(1000, 0)), Decision::Approved);
        assert!(matches!(
            p.decide(&attempt(1001, 0)),
            Decision::Declined { .. }
        ));
    }

    #[test]
    fn retries_follow_the_probability_and_repeat_their_answer() {
        let always = SimulatedProcessor {
            decline_above: 0,
            retry_success_probability: 1.0,
            latency: Duration::ZERO,
        };
        let never = SimulatedProcessor {
            decline_above: 0,
            retry_success_probability: 0.0,
            latency: Duration::ZERO,
        };
        let a = attempt(5000, 1);
        assert_eq!(always.decide(&a), Decision::Approved);
        assert!(matches!(never.decide(&a), Decision::Declined { .. }));
        let half = SimulatedProcessor {
            decline_above: 0,
            retry_success_probability: 0.5,
            latency: Duration::ZERO,
        };
        assert_eq!(half.decide(&a), half.decide(&a));
        let approved = (0..2000)
            .filter(|_| half.decide(&attempt(1, 1)) == Decision::Approved)
            .count();
        assert!((800..1200).contains(&approved), "{approved}");
    }
}
