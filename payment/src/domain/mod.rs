//! The payment domain: the pure rule that turns a processor's decision into the payment's next
//! state, and the money arithmetic of splits ([`split`]). No I/O here.

pub mod ledger;
pub mod rules;
pub mod split;

use chrono::{DateTime, Utc};
use shared::contract::payment::{Payment, PaymentStatus};
use shared::contract::values::Currency;
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

/// A processor decision, as it is recorded on a pending payment (with what its capture needs to
/// know of the payment, if it succeeds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub payment_id: Uuid,
    /// 0 for the first charge, n for the n-th retry.
    pub attempt: i32,
    pub status: PaymentStatus,
    pub failure_code: Option<String>,
    pub amount: i64,
    pub currency: Currency,
    /// When the payment was made: its lines are split by the rules in force then.
    pub made_at: DateTime<Utc>,
}

impl Settlement {
    /// The state a decision settles a payment in: approved is `succeeded`; a decline is `failed`,
    /// or `exhausted` when it declines the last retry allowed (`max_retries`).
    pub fn of(payment: &Payment, attempt: i32, decision: &Decision, max_retries: i32) -> Self {
        let (status, failure_code) = match decision {
            Decision::Approved => (PaymentStatus::Succeeded, None),
            Decision::Declined { code } if attempt > 0 && attempt >= max_retries => {
                (PaymentStatus::Exhausted, Some(code.clone()))
            }
            Decision::Declined { code } => (PaymentStatus::Failed, Some(code.clone())),
        };
        Settlement {
            payment_id: payment.payment_id,
            attempt,
            status,
            failure_code,
            amount: payment.amount,
            currency: payment.currency,
            made_at: payment.created_at,
        }
    }
}

/// What a refund asks for: all that is left of the payment (`/refund`, the saga's compensation),
/// or an amount of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundAsk {
    Rest,
    Part(i64),
}

/// Why a payment cannot be refunded as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundRefusal {
    /// Only a `succeeded` payment gives money back (`refunded` has nothing left; a failed,
    /// exhausted or pending one took nothing).
    NotRefundable(PaymentStatus),
    /// The amount is more than what is left.
    Exceeds { left: i64 },
}

/// How much a refund gives back of `payment`.
pub fn refund_amount(payment: &Payment, ask: RefundAsk) -> Result<i64, RefundRefusal> {
    if payment.status != PaymentStatus::Succeeded {
        return Err(RefundRefusal::NotRefundable(payment.status));
    }
    let left = payment.amount - payment.refunded_amount;
    match ask {
        RefundAsk::Rest => Ok(left),
        RefundAsk::Part(amount) if amount > left => Err(RefundRefusal::Exceeds { left }),
        RefundAsk::Part(amount) => Ok(amount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(status: PaymentStatus, refunded: i64) -> Payment {
        Payment {
            payment_id: Uuid::nil(),
            order_id: None,
            attempt: 1,
            customer_id: None,
            amount: 1000,
            currency: Currency::parse("EUR").unwrap(),
            status,
            failure_code: None,
            retries: 0,
            refunded_amount: refunded,
            reference: None,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn refunds_give_back_at_most_what_is_left_of_a_succeeded_payment() {
        let ok = payment(PaymentStatus::Succeeded, 300);
        assert_eq!(refund_amount(&ok, RefundAsk::Rest), Ok(700));
        assert_eq!(refund_amount(&ok, RefundAsk::Part(700)), Ok(700));
        assert_eq!(
            refund_amount(&ok, RefundAsk::Part(701)),
            Err(RefundRefusal::Exceeds { left: 700 })
        );
        for status in [
            PaymentStatus::Refunded,
            PaymentStatus::Failed,
            PaymentStatus::Exhausted,
            PaymentStatus::Pending,
        ] {
            assert_eq!(
                refund_amount(&payment(status, 0), RefundAsk::Rest),
                Err(RefundRefusal::NotRefundable(status))
            );
        }
    }

    #[test]
    fn a_decline_of_the_last_retry_exhausts_the_payment() {
        let declined = Decision::Declined { code: "x".into() };
        let p = payment(PaymentStatus::Pending, 0);
        let status = |attempt, d: &Decision| Settlement::of(&p, attempt, d, 3).status;
        assert_eq!(status(0, &Decision::Approved), PaymentStatus::Succeeded);
        assert_eq!(status(3, &Decision::Approved), PaymentStatus::Succeeded);
        assert_eq!(status(0, &declined), PaymentStatus::Failed);
        assert_eq!(status(2, &declined), PaymentStatus::Failed);
        assert_eq!(status(3, &declined), PaymentStatus::Exhausted);
        let settled = Settlement::of(&p, 1, &declined, 3);
        assert_eq!(settled.failure_code.as_deref(), Some("x"));
        assert_eq!(
            Settlement::of(&p, 0, &Decision::Approved, 3).failure_code,
            None
        );
    }
}
