//! The typed contract between the services: one Rust type per body, status and problem code that
//! crosses a service boundary. A participant's routes serialize these types and the saga's calls
//! deserialize the same types (and build the requests the participant parses), as mini-redis's
//! command types are used by both its client and its server; the OpenAPI documents are generated
//! from them. Renaming a field or a code here changes both sides, or fails to compile.
//!
//! Request bodies are made of parsed values ([`values`]): a body that deserializes is valid, and
//! each value's schema states exactly what its parser accepts.

pub mod cart;
pub mod ledger;
pub mod order;
pub mod payment;
pub mod problem;
pub mod splits;
pub mod stock;
pub mod transfers;
pub mod values;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use values::{Attempt, OrderRef};

crate::text_enum! {
    /// The state of a tombstone: always `canceled`.
    pub enum TombstoneStatus {
        Canceled = "canceled",
    }
}

/// An attempt of an order as stock and payment know it: the order's id and which attempt. Each
/// has at most one reservation and one payment, and a tombstone of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderAttempt {
    pub order_id: OrderRef,
    pub attempt: Attempt,
}

impl OrderAttempt {
    /// The first attempt of `order_id`.
    pub fn first(order_id: OrderRef) -> Self {
        OrderAttempt {
            order_id,
            attempt: Attempt::FIRST,
        }
    }
}

/// An order's first attempt, as stored (payments' and reservations' `attempt`).
pub(crate) fn first_attempt() -> i32 {
    1
}

/// What `/release` (stock) and `/refund` (payment) answer for an order's attempt that had nothing
/// yet: the tombstone they left, which refuses a late `/reserve` or `/charge` for that order and
/// attempt. `attempt` is written when it is not 1, so that a first attempt's answer is what it
/// was before attempts were a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CanceledOrder {
    pub order_id: String,
    /// The order's attempt; 1 when absent.
    #[serde(default, skip_serializing_if = "Attempt::is_first")]
    pub attempt: Attempt,
    pub status: TombstoneStatus,
}

impl CanceledOrder {
    pub fn new(order_id: impl Into<String>, attempt: Attempt) -> Self {
        CanceledOrder {
            order_id: order_id.into(),
            attempt,
            status: TombstoneStatus::Canceled,
        }
    }
}

/// The schema of every named type of the contract, by name: what a document's `$ref`s resolve to.
pub fn schemas() -> Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)> {
    use utoipa::ToSchema;
    fn add<T: ToSchema>(all: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        all.push((T::name().into_owned(), T::schema()));
        T::schemas(all);
    }
    let mut all = Vec::new();
    {
        use values::*;
        add::<ItemId>(&mut all);
        add::<Quantity>(&mut all);
        add::<Price>(&mut all);
        add::<StockLevel>(&mut all);
        add::<RestockQuantity>(&mut all);
        add::<Amount>(&mut all);
        add::<Limit>(&mut all);
        add::<Offset>(&mut all);
        add::<Currency>(&mut all);
        add::<ActiveCurrency>(&mut all);
        add::<OrderRef>(&mut all);
        add::<Attempt>(&mut all);
        add::<CustomerId>(&mut all);
        add::<ItemName>(&mut all);
        add::<Reference>(&mut all);
        add::<Units>(&mut all);
        add::<BasisPoints>(&mut all);
        add::<RecipientName>(&mut all);
        add::<Instant>(&mut all);
    }
    add::<cart::CartLine>(&mut all);
    add::<cart::CartLines>(&mut all);
    add::<CanceledOrder>(&mut all);
    add::<TombstoneStatus>(&mut all);
    add::<problem::ProblemBody>(&mut all);
    add::<problem::ProblemCode>(&mut all);
    {
        use stock::*;
        add::<ReservationStatus>(&mut all);
        add::<Item>(&mut all);
        add::<ItemList>(&mut all);
        add::<NewItem>(&mut all);
        add::<Restock>(&mut all);
        add::<ReserveRequest>(&mut all);
        add::<ReservationTarget>(&mut all);
        add::<ReservationLine>(&mut all);
        add::<Reservation>(&mut all);
        add::<Released>(&mut all);
    }
    {
        use payment::*;
        add::<PaymentStatus>(&mut all);
        add::<ChargeRequest>(&mut all);
        add::<RefundTarget>(&mut all);
        add::<Payment>(&mut all);
        add::<PaymentList>(&mut all);
        add::<Refunded>(&mut all);
        add::<ChargeLine>(&mut all);
        add::<ChargeLines>(&mut all);
    }
    {
        use splits::*;
        add::<PayoutDestination>(&mut all);
        add::<NewRecipient>(&mut all);
        add::<Recipient>(&mut all);
        add::<Balance>(&mut all);
        add::<Balances>(&mut all);
        add::<Share>(&mut all);
        add::<Shares>(&mut all);
        add::<NewSplitRule>(&mut all);
        add::<SplitRule>(&mut all);
        add::<SplitRules>(&mut all);
        add::<Allocation>(&mut all);
        add::<Splits>(&mut all);
        add::<NewRefund>(&mut all);
        add::<Refund>(&mut all);
    }
    {
        use ledger::*;
        add::<EntryKind>(&mut all);
        add::<Account>(&mut all);
        add::<AccountRef>(&mut all);
        add::<Leg>(&mut all);
        add::<Entry>(&mut all);
        add::<EntryList>(&mut all);
        add::<CurrencyTotals>(&mut all);
        add::<TrialBalance>(&mut all);
    }
    {
        use transfers::*;
        add::<TransferStatus>(&mut all);
        add::<NewTransfer>(&mut all);
        add::<Transfer>(&mut all);
        add::<TransferList>(&mut all);
        add::<PayoutStatus>(&mut all);
        add::<NewPayout>(&mut all);
        add::<Payout>(&mut all);
        add::<PayoutList>(&mut all);
    }
    {
        use order::*;
        add::<OrderStatus>(&mut all);
        add::<FailureCode>(&mut all);
        add::<Step>(&mut all);
        add::<RefundOutcome>(&mut all);
        add::<CheckoutRequest>(&mut all);
        add::<OrderLine>(&mut all);
        add::<OrderEventRecord>(&mut all);
        add::<OrderEvent>(&mut all);
        add::<Order>(&mut all);
        add::<OrderList>(&mut all);
        add::<Accepted>(&mut all);
    }
    all
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    /// Each request body that names a currency takes an active ISO 4217 code only, and its
    /// error names the value; each answer reads any currency as it was stored.
    #[test]
    fn request_bodies_take_only_active_currencies_and_answers_read_any() {
        fn takes<T: DeserializeOwned>(body: Value) {
            let with = |currency: &str| {
                let mut b = body.clone();
                b["currency"] = json!(currency);
                serde_json::from_value::<T>(b)
            };
            assert!(with("EUR").is_ok(), "{body}");
            assert!(with("XCG").is_ok(), "{body}");
            for bad in ["QQQ", "usd", "XTS", "XXX", "BOV", "XAU", "HRK"] {
                let e = with(bad).err().map(|e| e.to_string()).unwrap_or_default();
                assert!(e.contains("active ISO 4217"), "{bad} in {body}: {e:?}");
            }
        }
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        takes::<super::stock::NewItem>(json!({"name": "Pen", "price": 150, "stock": 3}));
        takes::<super::payment::ChargeRequest>(json!({"amount": 500}));
        takes::<super::transfers::NewTransfer>(
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 5}),
        );
        takes::<super::transfers::NewPayout>(json!({"recipientId": a, "amount": 5}));

        let item: super::stock::Item = serde_json::from_value(json!({
            "id": 7, "name": "old", "price": 700, "currency": "QQQ", "stock": 5, "reserved": 0,
            "available": 5
        }))
        .unwrap();
        assert_eq!(item.currency.as_str(), "QQQ");
    }

    /// The documents say so: a request's currency is an `ActiveCurrency` (the list), an answer's
    /// a `Currency` (three upper-case letters).
    #[test]
    fn request_currencies_are_documented_as_the_active_list() {
        use utoipa::PartialSchema;
        let currency = |schema: utoipa::openapi::RefOr<utoipa::openapi::Schema>| {
            serde_json::to_value(schema).unwrap()["properties"]["currency"]["$ref"].clone()
        };
        let active = json!("#/components/schemas/ActiveCurrency");
        assert_eq!(currency(super::stock::NewItem::schema()), active);
        assert_eq!(currency(super::payment::ChargeRequest::schema()), active);
        assert_eq!(currency(super::transfers::NewTransfer::schema()), active);
        assert_eq!(currency(super::transfers::NewPayout::schema()), active);
        assert_eq!(
            currency(super::stock::Item::schema()),
            json!("#/components/schemas/Currency")
        );
        let names: Vec<String> = super::schemas().into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().any(|n| n == "ActiveCurrency"), "{names:?}");
    }
}
