//! The saga's policy: from the order's state and a participant's answer to the next state, the
//! events that record why, and the compensations to run. Pure functions — the driver
//! (`application::saga`) does the calls and the writes, and asks these what they mean.
//!
//! The decision table:
//!
//! | state | answer | next | why |
//! |---|---|---|---|
//! | pending | — | reserving | orders written by earlier versions start here |
//! | reserving | reserved | charging | the reservation's total is what is charged |
//! | reserving | refused: `insufficient_stock`, `item_not_found`, `mixed_currency` | failed | a business answer: final, nothing to undo |
//! | reserving | any other refusal, or an answer the contract does not know | compensating (`checkout_rejected`) | something is wrong; undo whatever happened |
//! | reserving | no answer, and no attempt reached stock, in a step this driver started | failed (`dependency_unavailable`) | nothing was reserved: nothing to undo |
//! | reserving | no answer otherwise | compensating (`dependency_unavailable`) | the reserve may have happened; releasing by order is safe either way |
//! | charging | succeeded | completing | |
//! | charging | failed or exhausted (declined) | compensating (`payment_declined`), no refund | nothing was taken; release |
//! | charging | a payment in another state, a refusal, or an unknown answer | compensating (`checkout_rejected`) | refund what may stand, release |
//! | charging | a total above the largest charge | compensating (`payment_declined`), no refund | payment is not asked; release |
//! | charging | no answer | compensating (`dependency_unavailable`), refund unless no attempt of a step this driver started reached payment | a charge may stand |
//! | completing | completed | completed | |
//! | completing | refused: `reservation_expired`, `reservation_canceled` | compensating (`reservation_expired`) | refund, release |
//! | completing | any other refusal or unknown answer | compensating (`checkout_rejected`) | |
//! | completing | no answer | (asked again until it answers) | a release cannot undo a completion that did happen |
//! | compensating | refund and release settled | failed (the reason recorded when compensation started) | |
//! | failed (`dependency_unavailable`) | the checkout's key retried | reserving, attempt + 1 | everything was undone; a new attempt has a new identity at the participants |
//!
//! Compensations are asked again until they settle: a refund settles when the payment is given
//! back, had nothing taken, or did not exist (a tombstone); a release when the reservation is
//! canceled or expired, did not exist (a tombstone), or was completed (`reservation_completed`:
//! it cannot be undone, and saying so again would not change that).

use super::order::Order;
use shared::client::{Answer, Reply, Unavailable};
use shared::contract::order::{FailureCode, OrderEvent, OrderStatus, RefundOutcome, Step};
use shared::contract::payment::{Payment, PaymentStatus, Refunded};
use shared::contract::problem::{ProblemBody, ProblemCode};
use shared::contract::stock::{Released, Reservation, ReservationStatus};
use shared::contract::values::{Currency, ItemId};
use uuid::Uuid;

/// A participant's answer to a call: a business answer (with the attempts it took), or none
/// within the step's budget.
pub type Call<T> = Result<Reply<T>, Unavailable>;

/// What stock priced when it reserved: recorded on the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub reservation_id: Uuid,
    pub total_amount: i64,
    pub currency: Currency,
    /// `(item, unit price, amount)` of each line.
    pub lines: Vec<(ItemId, i64, i64)>,
}

/// What a transition changes besides the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub priced: Option<Priced>,
    pub payment_id: Option<Uuid>,
    pub failure: Option<FailureCode>,
    pub refund_needed: Option<bool>,
    /// A new attempt (its number): what the previous attempt recorded is cleared.
    pub attempt: Option<i32>,
}

/// The next state of an order, what changes with it, and the events that record why.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: OrderStatus,
    pub changes: Changes,
    pub events: Vec<OrderEvent>,
}

impl Transition {
    fn new(to: OrderStatus, events: Vec<OrderEvent>) -> Self {
        Transition {
            to,
            changes: Changes::default(),
            events,
        }
    }

    /// A failure that needs no compensation.
    fn fail(code: FailureCode, mut events: Vec<OrderEvent>) -> Self {
        events.push(OrderEvent::OrderFailed { failure_code: code });
        Transition {
            to: OrderStatus::Failed,
            changes: Changes {
                failure: Some(code),
                ..Changes::default()
            },
            events,
        }
    }

    /// A failure whose effects must be undone first.
    fn compensate(
        code: FailureCode,
        refund_needed: Option<bool>,
        mut events: Vec<OrderEvent>,
    ) -> Self {
        events.push(OrderEvent::CompensationStarted { failure_code: code });
        Transition {
            to: OrderStatus::Compensating,
            changes: Changes {
                failure: Some(code),
                refund_needed,
                ..Changes::default()
            },
            events,
        }
    }

    /// How the checkout ended, if this transition ends it: `completed`, or the failure code.
    pub fn outcome(&self) -> Option<&'static str> {
        match (self.to, self.changes.failure) {
            (OrderStatus::Completed, _) => Some("completed"),
            (OrderStatus::Failed, Some(code)) => Some(code.as_str()),
            _ => None,
        }
    }
}

/// `step_retried` when a call took more than one attempt.
fn retried(step: Step, attempts: u32) -> Vec<OrderEvent> {
    if attempts > 1 {
        vec![OrderEvent::StepRetried { step, attempts }]
    } else {
        vec![]
    }
}

fn attempts<T>(call: &Call<T>) -> u32 {
    match call {
        Ok(reply) => reply.attempts,
        Err(unavailable) => unavailable.attempts,
    }
}

fn refusal(problem: &ProblemBody) -> (u16, ProblemCode) {
    (problem.status, problem.code)
}

/// An order written by an earlier version, before its first step.
pub fn start() -> Transition {
    Transition::new(OrderStatus::Reserving, vec![])
}

/// After `/reserve`. `fresh`: this driver moved the order into `reserving` itself, so no earlier
/// attempt of this step can have reached stock.
pub fn after_reserve(fresh: bool, call: &Call<Reservation>) -> Transition {
    let mut events = retried(Step::Reserve, attempts(call));
    match call {
        Ok(reply) => match &reply.answer {
            Answer::Done(r) => {
                events.push(OrderEvent::StockReserved {
                    reservation_id: r.reservation_id,
                    total_amount: r.total_amount,
                    currency: r.currency,
                });
                Transition {
                    to: OrderStatus::Charging,
                    changes: Changes {
                        priced: Some(Priced {
                            reservation_id: r.reservation_id,
                            total_amount: r.total_amount,
                            currency: r.currency,
                            lines: r
                                .items
                                .iter()
                                .map(|l| (l.item_id, l.unit_price, l.amount))
                                .collect(),
                        }),
                        ..Changes::default()
                    },
                    events,
                }
            }
            Answer::Refused(problem) => {
                let business = match refusal(problem) {
                    (409, ProblemCode::InsufficientStock) => Some(FailureCode::InsufficientStock),
                    (422, ProblemCode::ItemNotFound) => Some(FailureCode::ItemNotFound),
                    (422, ProblemCode::MixedCurrency) => Some(FailureCode::MixedCurrency),
                    _ => None,
                };
                match business {
                    Some(code) => {
                        events.push(OrderEvent::StockRefused {
                            code: Some(problem.code),
                            item_id: problem.context.item_id,
                            status: None,
                        });
                        Transition::fail(code, events)
                    }
                    None => {
                        events.push(OrderEvent::StockRefused {
                            code: Some(problem.code),
                            item_id: None,
                            status: Some(problem.status),
                        });
                        Transition::compensate(FailureCode::Rejected, None, events)
                    }
                }
            }
            Answer::Unexpected { status, .. } => {
                events.push(OrderEvent::StockRefused {
                    code: None,
                    item_id: None,
                    status: Some(*status),
                });
                Transition::compensate(FailureCode::Rejected, None, events)
            }
        },
        // No attempt ever reached stock: nothing was reserved, nothing to undo.
        Err(unavailable) if fresh && !unavailable.maybe_executed => {
            Transition::fail(FailureCode::DependencyUnavailable, events)
        }
        Err(_) => Transition::compensate(FailureCode::DependencyUnavailable, None, events),
    }
}

/// Whether a charge sent with its lines must be sent once more without them. A charge that a build
/// from before the lines existed sent for this order is stored at payment under the same key with
/// the fingerprint of a body without lines, so the same charge replayed with them (a recovery or a
/// retry after an upgrade) is answered 422 `idempotency_key_reused`. Sent again as it was then, it
/// is answered as the payment it made; a charge that really differs is refused again, and
/// [`after_charge`] takes that answer.
pub fn resend_charge_without_lines(call: &Call<Payment>) -> bool {
    matches!(
        call,
        Ok(Reply { answer: Answer::Refused(problem), .. })
            if problem.code == ProblemCode::IdempotencyKeyReused
    )
}

/// After `/charge`. `fresh` as for [`after_reserve`].
pub fn after_charge(fresh: bool, call: &Call<Payment>) -> Transition {
    let mut events = retried(Step::Charge, attempts(call));
    match call {
        Ok(reply) => match &reply.answer {
            Answer::Done(p) => match p.status {
                PaymentStatus::Succeeded => {
                    events.push(OrderEvent::PaymentCharged {
                        payment_id: p.payment_id,
                        amount: p.amount,
                    });
                    Transition {
                        to: OrderStatus::Completing,
                        changes: Changes {
                            payment_id: Some(p.payment_id),
                            refund_needed: Some(true),
                            ..Changes::default()
                        },
                        events,
                    }
                }
                PaymentStatus::Failed | PaymentStatus::Exhausted => {
                    events.push(OrderEvent::PaymentDeclined {
                        payment_id: p.payment_id,
                        failure_code: p.failure_code.clone(),
                    });
                    let mut t =
                        Transition::compensate(FailureCode::PaymentDeclined, Some(false), events);
                    t.changes.payment_id = Some(p.payment_id);
                    t
                }
                // A charge that answers a payment still pending, or refunded: unexpected.
                PaymentStatus::Pending | PaymentStatus::Refunded => {
                    let mut t = Transition::compensate(FailureCode::Rejected, Some(true), events);
                    t.changes.payment_id = Some(p.payment_id);
                    t
                }
            },
            Answer::Refused(problem) => {
                events.push(OrderEvent::PaymentRefused {
                    code: Some(problem.code),
                    status: problem.status,
                });
                Transition::compensate(FailureCode::Rejected, Some(true), events)
            }
            Answer::Unexpected { status, .. } => {
                events.push(OrderEvent::PaymentRefused {
                    code: None,
                    status: *status,
                });
                Transition::compensate(FailureCode::Rejected, Some(true), events)
            }
        },
        Err(unavailable) => Transition::compensate(
            FailureCode::DependencyUnavailable,
            Some(!fresh || unavailable.maybe_executed),
            events,
        ),
    }
}

/// When the order has no charge the contract allows (a total above the largest charge): payment
/// is not asked, and the checkout ends as a declined payment would — the reservation released.
pub fn charge_impossible() -> Transition {
    Transition::compensate(FailureCode::PaymentDeclined, Some(false), vec![])
}

/// After `/complete`, which is asked until it answers.
pub fn after_complete(reply: &Reply<Reservation>) -> Transition {
    let mut events = retried(Step::Complete, reply.attempts);
    match &reply.answer {
        Answer::Done(_) => {
            events.push(OrderEvent::StockCompleted);
            events.push(OrderEvent::OrderCompleted);
            Transition::new(OrderStatus::Completed, events)
        }
        Answer::Refused(problem) => {
            events.push(OrderEvent::CompletionRefused {
                code: Some(problem.code),
            });
            let code = match refusal(problem) {
                (409, ProblemCode::ReservationExpired | ProblemCode::ReservationCanceled) => {
                    FailureCode::ReservationExpired
                }
                _ => FailureCode::Rejected,
            };
            Transition::compensate(code, None, events)
        }
        Answer::Unexpected { .. } => {
            events.push(OrderEvent::CompletionRefused { code: None });
            Transition::compensate(FailureCode::Rejected, None, events)
        }
    }
}

/// An undoing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    Refund,
    Release,
}

impl Compensation {
    pub fn step(self) -> Step {
        match self {
            Compensation::Refund => Step::Refund,
            Compensation::Release => Step::Release,
        }
    }
}

/// What compensating an order runs, in order: a refund when a charge may stand, then the release
/// (safe whatever the reserve did).
pub fn compensations(order: &Order) -> Vec<Compensation> {
    if order.refund_needed {
        vec![Compensation::Refund, Compensation::Release]
    } else {
        vec![Compensation::Release]
    }
}

/// Whether a refund's answer settles it (the event recording how), or it must be asked again.
pub fn refunded(reply: &Reply<Refunded>) -> Option<OrderEvent> {
    let status = match &reply.answer {
        Answer::Done(Refunded::Payment(p)) => RefundOutcome::of(p.status)?,
        Answer::Done(Refunded::Tombstone(_)) => RefundOutcome::Canceled,
        Answer::Refused(_) | Answer::Unexpected { .. } => return None,
    };
    Some(OrderEvent::PaymentRefunded { status })
}

/// Whether a release's answer settles it (the event recording how), or it must be asked again.
pub fn released(reply: &Reply<Released>) -> Option<OrderEvent> {
    match &reply.answer {
        Answer::Done(Released::Reservation(r)) => match r.status {
            ReservationStatus::Canceled | ReservationStatus::Expired => {
                Some(OrderEvent::StockReleased { status: r.status })
            }
            ReservationStatus::Reserved | ReservationStatus::Completed => None,
        },
        Answer::Done(Released::Tombstone(_)) => Some(OrderEvent::StockReleased {
            status: ReservationStatus::Canceled,
        }),
        Answer::Refused(problem)
            if refusal(problem) == (409, ProblemCode::ReservationCompleted) =>
        {
            Some(OrderEvent::ReleaseImpossible {
                code: ProblemCode::ReservationCompleted,
            })
        }
        Answer::Refused(_) | Answer::Unexpected { .. } => None,
    }
}

/// Once every compensation has settled (`events` record how): the order fails with the reason
/// recorded when compensation started.
pub fn after_compensation(order: &Order, events: Vec<OrderEvent>) -> Transition {
    Transition::fail(order.failure.unwrap_or(FailureCode::Rejected), events)
}

/// A retry of the checkout's key finds its order: a new attempt starts if the order failed only
/// because stock or payment could not be reached (everything was undone before it failed).
pub fn restart(order: &Order) -> Option<Transition> {
    if order.status != OrderStatus::Failed
        || order.failure != Some(FailureCode::DependencyUnavailable)
    {
        return None;
    }
    let attempt = order.attempt + 1;
    Some(Transition {
        to: OrderStatus::Reserving,
        changes: Changes {
            attempt: Some(attempt),
            ..Changes::default()
        },
        events: vec![OrderEvent::AttemptStarted { attempt }],
    })
}

/// The status and detail a failed checkout answers with.
pub fn failure_answer(code: FailureCode) -> (u16, &'static str) {
    match code {
        FailureCode::InsufficientStock => (409, "an item is out of stock; nothing was charged"),
        FailureCode::ItemNotFound => (422, "an item does not exist; nothing was charged"),
        FailureCode::MixedCurrency => (
            422,
            "the items are priced in different currencies; nothing was charged",
        ),
        FailureCode::PaymentDeclined => (402, "the payment was declined; the stock was released"),
        FailureCode::ReservationExpired => (
            409,
            "the reservation expired before completion; the payment was refunded",
        ),
        FailureCode::DependencyUnavailable => (
            503,
            "stock or payment did not answer; everything was undone, nothing is charged; \
             retrying with the same Idempotency-Key tries again",
        ),
        FailureCode::Rejected => (
            502,
            "a service refused the checkout unexpectedly; everything was undone",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::tests::order;
    use chrono::Utc;
    use shared::contract::problem::ProblemContext;
    use shared::contract::stock::ReservationLine;
    use shared::contract::values::Attempt;
    use shared::contract::CanceledOrder;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn done<T>(value: T, attempts: u32) -> Call<T> {
        Ok(Reply {
            answer: Answer::Done(value),
            attempts,
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
                context: ProblemContext {
                    item_id: Some(7),
                    ..ProblemContext::default()
                },
            })),
            attempts: 1,
        })
    }

    #[test]
    fn a_charge_refused_as_a_reused_key_is_sent_again_without_lines_and_nothing_else_is() {
        assert!(resend_charge_without_lines(&refused(
            422,
            ProblemCode::IdempotencyKeyReused
        )));
        for other in [
            refused(400, ProblemCode::ValidationError),
            refused(409, ProblemCode::RequestInProgress),
            unexpected(),
            unanswered(true),
        ] {
            assert!(!resend_charge_without_lines(&other));
        }
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
            target: "stock",
            reason: "connection refused".into(),
            attempts: 4,
            maybe_executed,
        })
    }

    fn reservation(status: ReservationStatus) -> Reservation {
        Reservation {
            reservation_id: Uuid::from_u128(1),
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
            currency: usd(),
            expires_at: Utc::now(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn payment(status: PaymentStatus) -> Payment {
        Payment {
            payment_id: Uuid::from_u128(2),
            order_id: Some("o".into()),
            attempt: 1,
            customer_id: None,
            amount: 2000,
            currency: usd(),
            status,
            failure_code: (status == PaymentStatus::Failed).then(|| "amount_above_limit".into()),
            retries: 0,
            refunded_amount: 0,
            reference: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn kinds(t: &Transition) -> Vec<&'static str> {
        t.events
            .iter()
            .map(|e| match e {
                OrderEvent::OrderCreated => "order_created",
                OrderEvent::AttemptStarted { .. } => "attempt_started",
                OrderEvent::StockReserved { .. } => "stock_reserved",
                OrderEvent::StockRefused { .. } => "stock_refused",
                OrderEvent::PaymentCharged { .. } => "payment_charged",
                OrderEvent::PaymentDeclined { .. } => "payment_declined",
                OrderEvent::PaymentRefused { .. } => "payment_refused",
                OrderEvent::StockCompleted => "stock_completed",
                OrderEvent::CompletionRefused { .. } => "completion_refused",
                OrderEvent::CompensationStarted { .. } => "compensation_started",
                OrderEvent::PaymentRefunded { .. } => "payment_refunded",
                OrderEvent::StockReleased { .. } => "stock_released",
                OrderEvent::ReleaseImpossible { .. } => "release_impossible",
                OrderEvent::OrderCompleted => "order_completed",
                OrderEvent::OrderFailed { .. } => "order_failed",
                OrderEvent::StepRetried { .. } => "step_retried",
                OrderEvent::OrderRecovered => "order_recovered",
            })
            .collect()
    }

    #[test]
    fn pending_orders_start_reserving() {
        assert_eq!(start().to, OrderStatus::Reserving);
    }

    #[test]
    fn reserved_moves_to_charging_with_the_prices() {
        let t = after_reserve(true, &done(reservation(ReservationStatus::Reserved), 1));
        assert_eq!(t.to, OrderStatus::Charging);
        let priced = t.changes.priced.clone().unwrap();
        assert_eq!((priced.total_amount, priced.lines.len()), (2000, 1));
        assert_eq!(kinds(&t), ["stock_reserved"]);
        let retried = after_reserve(true, &done(reservation(ReservationStatus::Reserved), 3));
        assert_eq!(kinds(&retried), ["step_retried", "stock_reserved"]);
    }

    #[test]
    fn business_refusals_of_a_reserve_fail_the_order_with_nothing_to_undo() {
        for (status, code, failure) in [
            (
                409,
                ProblemCode::InsufficientStock,
                FailureCode::InsufficientStock,
            ),
            (422, ProblemCode::ItemNotFound, FailureCode::ItemNotFound),
            (422, ProblemCode::MixedCurrency, FailureCode::MixedCurrency),
        ] {
            let t = after_reserve(false, &refused(status, code));
            assert_eq!(
                (t.to, t.changes.failure),
                (OrderStatus::Failed, Some(failure))
            );
            assert_eq!(kinds(&t), ["stock_refused", "order_failed"]);
            assert_eq!(t.outcome(), Some(failure.as_str()));
        }
    }

    #[test]
    fn other_refusals_and_unknown_answers_of_a_reserve_are_compensated() {
        for call in [
            refused(409, ProblemCode::ReservationExists),
            refused(401, ProblemCode::Unauthorized),
            refused(409, ProblemCode::ItemNotFound),
            unexpected(),
        ] {
            let t = after_reserve(true, &call);
            assert_eq!(
                (t.to, t.changes.failure),
                (OrderStatus::Compensating, Some(FailureCode::Rejected))
            );
            assert_eq!(kinds(&t), ["stock_refused", "compensation_started"]);
            assert_eq!(t.outcome(), None);
        }
    }

    #[test]
    fn a_reserve_without_answer_fails_at_once_only_if_it_never_reached_stock() {
        let t = after_reserve(true, &unanswered(false));
        assert_eq!(
            (t.to, t.changes.failure),
            (
                OrderStatus::Failed,
                Some(FailureCode::DependencyUnavailable)
            )
        );
        assert_eq!(kinds(&t), ["step_retried", "order_failed"]);
        for (fresh, reached) in [(true, true), (false, false), (false, true)] {
            let t = after_reserve(fresh, &unanswered(reached));
            assert_eq!(
                (t.to, t.changes.failure),
                (
                    OrderStatus::Compensating,
                    Some(FailureCode::DependencyUnavailable)
                ),
                "fresh {fresh}, reached {reached}"
            );
        }
    }

    #[test]
    fn a_succeeded_charge_moves_to_completing_and_may_need_a_refund() {
        let t = after_charge(true, &done(payment(PaymentStatus::Succeeded), 1));
        assert_eq!(t.to, OrderStatus::Completing);
        assert_eq!(t.changes.refund_needed, Some(true));
        assert_eq!(t.changes.payment_id, Some(Uuid::from_u128(2)));
        assert_eq!(kinds(&t), ["payment_charged"]);
    }

    #[test]
    fn a_declined_charge_releases_without_refund() {
        for status in [PaymentStatus::Failed, PaymentStatus::Exhausted] {
            let t = after_charge(true, &done(payment(status), 1));
            assert_eq!(
                (t.to, t.changes.failure, t.changes.refund_needed),
                (
                    OrderStatus::Compensating,
                    Some(FailureCode::PaymentDeclined),
                    Some(false)
                )
            );
            assert_eq!(kinds(&t), ["payment_declined", "compensation_started"]);
        }
    }

    #[test]
    fn unexpected_charges_are_compensated_with_a_refund() {
        for call in [
            done(payment(PaymentStatus::Pending), 1),
            done(payment(PaymentStatus::Refunded), 1),
            refused(409, ProblemCode::PaymentExists),
            unexpected(),
        ] {
            let t = after_charge(true, &call);
            assert_eq!(
                (t.to, t.changes.failure, t.changes.refund_needed),
                (
                    OrderStatus::Compensating,
                    Some(FailureCode::Rejected),
                    Some(true)
                )
            );
        }
        let t = charge_impossible();
        assert_eq!(
            (t.to, t.changes.failure, t.changes.refund_needed),
            (
                OrderStatus::Compensating,
                Some(FailureCode::PaymentDeclined),
                Some(false)
            )
        );
    }

    #[test]
    fn a_charge_without_answer_refunds_unless_it_certainly_never_reached_payment() {
        for (fresh, reached, refund) in [
            (true, false, false),
            (true, true, true),
            (false, false, true),
            (false, true, true),
        ] {
            let t = after_charge(fresh, &unanswered(reached));
            assert_eq!(
                (t.to, t.changes.failure, t.changes.refund_needed),
                (
                    OrderStatus::Compensating,
                    Some(FailureCode::DependencyUnavailable),
                    Some(refund)
                ),
                "fresh {fresh}, reached {reached}"
            );
        }
    }

    #[test]
    fn completion_completes_or_compensates() {
        let reply = |call: Call<Reservation>| call.unwrap();
        let t = after_complete(&reply(done(reservation(ReservationStatus::Completed), 1)));
        assert_eq!(t.to, OrderStatus::Completed);
        assert_eq!(kinds(&t), ["stock_completed", "order_completed"]);
        assert_eq!(t.outcome(), Some("completed"));
        for code in [
            ProblemCode::ReservationExpired,
            ProblemCode::ReservationCanceled,
        ] {
            let t = after_complete(&reply(refused(409, code)));
            assert_eq!(
                (t.to, t.changes.failure),
                (
                    OrderStatus::Compensating,
                    Some(FailureCode::ReservationExpired)
                )
            );
            assert_eq!(kinds(&t), ["completion_refused", "compensation_started"]);
        }
        for call in [refused(404, ProblemCode::ReservationNotFound), unexpected()] {
            let t = after_complete(&reply(call));
            assert_eq!(t.changes.failure, Some(FailureCode::Rejected));
        }
    }

    #[test]
    fn compensation_refunds_only_what_may_stand_then_releases() {
        let mut o = order(OrderStatus::Compensating);
        assert_eq!(compensations(&o), [Compensation::Release]);
        o.refund_needed = true;
        assert_eq!(
            compensations(&o),
            [Compensation::Refund, Compensation::Release]
        );
    }

    #[test]
    fn a_refund_settles_once_nothing_stands() {
        let reply = |call: Call<Refunded>| call.unwrap();
        for (status, outcome) in [
            (PaymentStatus::Refunded, RefundOutcome::Refunded),
            (PaymentStatus::Failed, RefundOutcome::Failed),
            (PaymentStatus::Exhausted, RefundOutcome::Exhausted),
        ] {
            assert_eq!(
                refunded(&reply(done(Refunded::Payment(payment(status)), 1))),
                Some(OrderEvent::PaymentRefunded { status: outcome })
            );
        }
        assert_eq!(
            refunded(&reply(done(
                Refunded::Tombstone(CanceledOrder::new("o", Attempt::FIRST)),
                1
            ))),
            Some(OrderEvent::PaymentRefunded {
                status: RefundOutcome::Canceled
            })
        );
        for call in [
            done(Refunded::Payment(payment(PaymentStatus::Succeeded)), 1),
            done(Refunded::Payment(payment(PaymentStatus::Pending)), 1),
            refused(401, ProblemCode::Unauthorized),
            unexpected(),
        ] {
            assert_eq!(refunded(&reply(call)), None, "asked again");
        }
    }

    #[test]
    fn a_release_settles_once_nothing_is_held_or_it_cannot_be() {
        let reply = |call: Call<Released>| call.unwrap();
        for status in [ReservationStatus::Canceled, ReservationStatus::Expired] {
            assert_eq!(
                released(&reply(done(Released::Reservation(reservation(status)), 1))),
                Some(OrderEvent::StockReleased { status })
            );
        }
        assert_eq!(
            released(&reply(done(
                Released::Tombstone(CanceledOrder::new("o", Attempt::FIRST)),
                1
            ))),
            Some(OrderEvent::StockReleased {
                status: ReservationStatus::Canceled
            })
        );
        assert_eq!(
            released(&reply(refused(409, ProblemCode::ReservationCompleted))),
            Some(OrderEvent::ReleaseImpossible {
                code: ProblemCode::ReservationCompleted
            })
        );
        for call in [
            done(
                Released::Reservation(reservation(ReservationStatus::Reserved)),
                1,
            ),
            refused(404, ProblemCode::ReservationNotFound),
            unexpected(),
        ] {
            assert_eq!(released(&reply(call)), None, "asked again");
        }
    }

    #[test]
    fn after_compensation_the_order_fails_for_the_recorded_reason() {
        let mut o = order(OrderStatus::Compensating);
        o.failure = Some(FailureCode::PaymentDeclined);
        let t = after_compensation(
            &o,
            vec![OrderEvent::StockReleased {
                status: ReservationStatus::Canceled,
            }],
        );
        assert_eq!(
            (t.to, t.changes.failure),
            (OrderStatus::Failed, Some(FailureCode::PaymentDeclined))
        );
        assert_eq!(kinds(&t), ["stock_released", "order_failed"]);
        o.failure = None;
        assert_eq!(
            after_compensation(&o, vec![]).changes.failure,
            Some(FailureCode::Rejected)
        );
    }

    #[test]
    fn only_an_order_failed_for_an_outage_starts_again() {
        let mut o = order(OrderStatus::Failed);
        o.failure = Some(FailureCode::DependencyUnavailable);
        o.attempt = 2;
        let t = restart(&o).unwrap();
        assert_eq!((t.to, t.changes.attempt), (OrderStatus::Reserving, Some(3)));
        assert_eq!(kinds(&t), ["attempt_started"]);
        for failure in [
            FailureCode::InsufficientStock,
            FailureCode::ItemNotFound,
            FailureCode::MixedCurrency,
            FailureCode::PaymentDeclined,
            FailureCode::ReservationExpired,
            FailureCode::Rejected,
        ] {
            o.failure = Some(failure);
            assert!(restart(&o).is_none(), "{failure}");
        }
        let mut running = order(OrderStatus::Compensating);
        running.failure = Some(FailureCode::DependencyUnavailable);
        assert!(restart(&running).is_none());
        assert!(restart(&order(OrderStatus::Completed)).is_none());
    }

    #[test]
    fn every_failure_answers_its_status() {
        use shared::text::TextEnum;
        for code in FailureCode::ALL {
            let (status, detail) = failure_answer(*code);
            assert!((400..600).contains(&status) && !detail.is_empty());
        }
        assert_eq!(failure_answer(FailureCode::PaymentDeclined).0, 402);
        assert_eq!(failure_answer(FailureCode::DependencyUnavailable).0, 503);
    }
}
