//! The order as the saga knows it, and the requests each step sends for it.

use chrono::{DateTime, Utc};
use shared::contract::cart::{CartLine, CartLines};
use shared::contract::order::{self as contract, FailureCode, OrderEventRecord, OrderStatus, Step};
use shared::contract::payment::{ChargeLine, ChargeLines, ChargeRequest, RefundTarget};
use shared::contract::stock::{ReservationTarget, ReserveRequest};
use shared::contract::values::{
    Amount, Attempt, Currency, CustomerId, Invalid, ItemId, OrderRef, Quantity, Reference, Units,
};
use shared::contract::OrderAttempt;
use uuid::Uuid;

/// One line of an order: the units wanted of an item (the cart's lines of that item added
/// together), priced once stock has reserved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub item_id: ItemId,
    pub quantity: i64,
    pub unit_price: Option<i64>,
    pub amount: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: Uuid,
    pub status: OrderStatus,
    /// 1, then 2, 3... for each new attempt after a `dependency_unavailable` failure.
    pub attempt: i32,
    pub failure: Option<FailureCode>,
    pub customer_id: Option<String>,
    pub lines: Vec<Line>,
    pub total_amount: Option<i64>,
    pub currency: Option<Currency>,
    pub reservation_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    /// Whether a charge may stand, so that compensation must refund.
    pub refund_needed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The audit trail, oldest first.
    pub events: Vec<OrderEventRecord>,
}

impl Order {
    /// The base of this attempt's Idempotency-Keys: the order's id for the first attempt (as
    /// before attempts existed), `{id}.{attempt}` for the next ones, so that each attempt's steps
    /// are requests of their own.
    pub fn participant_ref(&self) -> String {
        participant_ref(self.id, self.attempt)
    }

    /// The Idempotency-Key of a step of this attempt: `{participant ref}:{step}`, so that a
    /// repeated step is the same request and the participant replays it.
    pub fn key(&self, step: Step) -> String {
        format!("{}:{step}", self.participant_ref())
    }

    /// How stock and payment know this attempt: the order's id and the attempt — a new identity
    /// for each attempt, which the tombstones of the attempts before do not refuse. A first
    /// attempt's requests leave `attempt` out, as they were before it was a field.
    pub fn order_attempt(&self) -> Result<OrderAttempt, Invalid> {
        Ok(OrderAttempt {
            order_id: OrderRef::parse(&self.id.to_string())?,
            attempt: Attempt::new(self.attempt.into())?,
        })
    }

    /// `/reserve` for this attempt. Lines above 1,000 units (carts that named an item several
    /// times) are sent as several lines, which stock adds together again.
    pub fn reserve_request(&self) -> Result<ReserveRequest, Invalid> {
        let mut lines = Vec::new();
        for line in &self.lines {
            let mut left = line.quantity;
            while left > 0 {
                let units = left.min(Quantity::MAX);
                lines.push(CartLine {
                    item_id: line.item_id,
                    quantity: Quantity::new(units)?,
                });
                left -= units;
            }
        }
        let order = self.order_attempt()?;
        Ok(ReserveRequest {
            order_id: order.order_id,
            attempt: order.attempt,
            items: CartLines::new(lines)?,
        })
    }

    /// `/charge` for this attempt: the reservation's total, with the priced lines (product = stock
    /// item) that payment splits among the products' recipients. `None` when there is nothing to
    /// charge by the contract's rules (no priced total or line, or one above the largest charge).
    pub fn charge_request(&self) -> Option<ChargeRequest> {
        let lines = self
            .lines
            .iter()
            .map(|l| {
                Some(ChargeLine {
                    product_id: l.item_id,
                    quantity: Units::new(l.quantity).ok()?,
                    amount: Amount::new(l.amount?).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let order = self.order_attempt().ok()?;
        Some(ChargeRequest {
            lines: Some(ChargeLines::new(lines).ok()?),
            order_id: Some(order.order_id),
            attempt: order.attempt,
            customer_id: self
                .customer_id
                .as_deref()
                .and_then(|c| CustomerId::parse(c).ok()),
            amount: Amount::new(self.total_amount?).ok()?,
            currency: self.currency?,
            reference: Reference::parse(&format!("order {}", self.id)).ok(),
        })
    }

    /// `/complete` and `/release` for this attempt: by order, which is safe whatever the reserve
    /// did (a release of an order stock never saw leaves a tombstone).
    pub fn reservation_target(&self) -> Result<ReservationTarget, Invalid> {
        Ok(ReservationTarget::Order(self.order_attempt()?))
    }

    /// `/refund` for this attempt, by order, for the same reason.
    pub fn refund_target(&self) -> Result<RefundTarget, Invalid> {
        Ok(RefundTarget::Order(self.order_attempt()?))
    }

    /// The order as the API shows it.
    pub fn body(&self) -> contract::Order {
        contract::Order {
            order_id: self.id,
            status: self.status,
            failure_code: self.failure,
            customer_id: self.customer_id.clone(),
            items: self
                .lines
                .iter()
                .map(|l| contract::OrderLine {
                    item_id: l.item_id,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    amount: l.amount,
                })
                .collect(),
            total_amount: self.total_amount,
            currency: self.currency,
            reservation_id: self.reservation_id,
            payment_id: self.payment_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            events: self.events.clone(),
        }
    }
}

/// The base of an attempt's Idempotency-Keys: see [`Order::participant_ref`].
pub fn participant_ref(id: Uuid, attempt: i32) -> String {
    if attempt <= 1 {
        id.to_string()
    } else {
        format!("{id}.{attempt}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn order(status: OrderStatus) -> Order {
        Order {
            id: Uuid::nil(),
            status,
            attempt: 1,
            failure: None,
            customer_id: Some("cust-1".into()),
            lines: vec![Line {
                item_id: ItemId::new(1).unwrap(),
                quantity: 2,
                unit_price: None,
                amount: None,
            }],
            total_amount: None,
            currency: None,
            reservation_id: None,
            payment_id: None,
            refund_needed: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            events: vec![],
        }
    }

    #[test]
    fn each_attempt_has_its_own_identity_and_keys() {
        let mut o = order(OrderStatus::Reserving);
        assert_eq!(o.key(Step::Reserve), format!("{}:reserve", Uuid::nil()));
        o.attempt = 2;
        assert_eq!(o.participant_ref(), format!("{}.2", Uuid::nil()));
        assert_eq!(o.key(Step::Charge), format!("{}.2:charge", Uuid::nil()));
        let ReservationTarget::Order(r) = o.reservation_target().unwrap() else {
            panic!("by order")
        };
        assert_eq!(
            (r.order_id.as_str(), r.attempt.get()),
            (Uuid::nil().to_string().as_str(), 2),
            "the order's id and the attempt"
        );
        assert_eq!(
            serde_json::to_value(o.refund_target().unwrap()).unwrap(),
            serde_json::json!({"orderId": Uuid::nil(), "attempt": 2})
        );
    }

    /// A first attempt's requests are what they were before `attempt` was a field, so that a
    /// saga in flight across an upgrade sends the same requests (and fingerprints) again.
    #[test]
    fn a_first_attempts_requests_are_as_they_were() {
        let mut o = order(OrderStatus::Reserving);
        let id = Uuid::nil().to_string();
        assert_eq!(
            serde_json::to_value(o.reserve_request().unwrap()).unwrap(),
            serde_json::json!({"orderId": id, "items": [{"itemId": 1, "quantity": 2}]})
        );
        assert_eq!(
            serde_json::to_value(o.reservation_target().unwrap()).unwrap(),
            serde_json::json!({"orderId": id})
        );
        assert_eq!(
            serde_json::to_value(o.refund_target().unwrap()).unwrap(),
            serde_json::json!({"orderId": id})
        );
        o.total_amount = Some(2000);
        o.currency = Some(Currency::parse("USD").unwrap());
        o.lines[0].unit_price = Some(1000);
        o.lines[0].amount = Some(2000);
        let charge = serde_json::to_value(o.charge_request().unwrap()).unwrap();
        assert_eq!(charge.get("attempt"), None, "{charge}");
        assert_eq!(charge["orderId"], id);
        o.attempt = 3;
        let charge = serde_json::to_value(o.charge_request().unwrap()).unwrap();
        assert_eq!(
            (&charge["orderId"], &charge["attempt"]),
            (&serde_json::json!(id), &serde_json::json!(3))
        );
        let reserve = serde_json::to_value(o.reserve_request().unwrap()).unwrap();
        assert_eq!(reserve["attempt"], 3);
    }

    #[test]
    fn lines_above_a_thousand_units_are_sent_split() {
        let mut o = order(OrderStatus::Reserving);
        o.lines[0].quantity = 2500;
        let request = o.reserve_request().unwrap();
        let units: Vec<i64> = request
            .items
            .lines()
            .iter()
            .map(|l| l.quantity.get())
            .collect();
        assert_eq!(units, [1000, 1000, 500]);
        assert_eq!(request.items.merged(), [(ItemId::new(1).unwrap(), 2500)]);
    }

    #[test]
    fn a_charge_needs_a_total_within_the_contract() {
        let mut o = order(OrderStatus::Charging);
        assert!(o.charge_request().is_none());
        o.total_amount = Some(2000);
        o.currency = Some(Currency::parse("USD").unwrap());
        assert!(o.charge_request().is_none(), "the lines are not priced yet");
        o.lines[0].unit_price = Some(1000);
        o.lines[0].amount = Some(2000);
        let charge = o.charge_request().unwrap();
        assert_eq!(charge.amount.get(), 2000);
        assert_eq!(charge.customer_id.unwrap().as_str(), "cust-1");
        let lines = charge.lines.unwrap();
        let line = lines.get()[0];
        assert_eq!(
            (
                line.product_id.get(),
                line.quantity.get(),
                line.amount.get()
            ),
            (1, 2, 2000)
        );
        o.total_amount = Some(Amount::MAX + 1);
        assert!(o.charge_request().is_none());
    }
}
