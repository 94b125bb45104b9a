//! The payment domain: the pure rule that turns a processor's decision into the payment's next
//! state, and the money arithmetic of splits ([`split`]). No I/O here.

pub mod split;

use shared::contract::payment::PaymentStatus;
use uuid::Uuid;

/// What the processor decided about one attempt to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approved,
    /// Declined, with the processor's own code.
    Declined {
        code: String,
    },
}

/// A processor decision, as it is recorded on a pending payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub payment_id: Uuid,
    /// 0 for the first charge, n for the n-th retry.
    pub attempt: i32,
    pub status: PaymentStatus,
    pub failure_code: Option<String>,
}

impl Settlement {
    /// The state a decision settles a payment in: approved is `succeeded`; a decline is `failed`,
    /// or `exhausted` when it declines the last retry allowed (`max_retries`).
    pub fn of(payment_id: Uuid, attempt: i32, decision: &Decision, max_retries: i32) -> Self {
        let (status, failure_code) = match decision {
            Decision::Approved => (PaymentStatus::Succeeded, None),
            Decision::Declined { code } if attempt > 0 && attempt >= max_retries => {
                (PaymentStatus::Exhausted, Some(code.clone()))
            }
            Decision::Declined { code } => (PaymentStatus::Failed, Some(code.clone())),
        };
        Settlement {
            payment_id,
            attempt,
            status,
            failure_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_of_the_last_retry_exhausts_the_payment() {
        let declined = Decision::Declined { code: "x".into() };
        let status = |attempt, d: &Decision| Settlement::of(Uuid::nil(), attempt, d, 3).status;
        assert_eq!(status(0, &Decision::Approved), PaymentStatus::Succeeded);
        assert_eq!(status(3, &Decision::Approved), PaymentStatus::Succeeded);
        assert_eq!(status(0, &declined), PaymentStatus::Failed);
        assert_eq!(status(2, &declined), PaymentStatus::Failed);
        assert_eq!(status(3, &declined), PaymentStatus::Exhausted);
        let settled = Settlement::of(Uuid::nil(), 1, &declined, 3);
        assert_eq!(settled.failure_code.as_deref(), Some("x"));
        assert_eq!(
            Settlement::of(Uuid::nil(), 0, &Decision::Approved, 3).failure_code,
            None
        );
    }
}
