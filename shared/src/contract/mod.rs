//! The typed contract between the services: one Rust type per body, status and problem code that
//! crosses a service boundary. A participant's routes serialize these types and the saga's calls
//! deserialize the same types (and build the requests the participant parses), as mini-redis's
//! command types are used by both its client and its server; the OpenAPI documents are generated
//! from them. Renaming a field or a code here changes both sides, or fails to compile.
//!
//! Request bodies are made of parsed values ([`values`]): a body that deserializes is valid, and
//! each value's schema states exactly what its parser accepts.

pub mod cart;
pub mod order;
pub mod payment;
pub mod problem;
pub mod stock;
pub mod values;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

crate::text_enum! {
    /// The state of a tombstone: always `canceled`.
    pub enum TombstoneStatus {
        Canceled = "canceled",
    }
}

/// What `/release` (stock) and `/refund` (payment) answer for an order that had nothing yet: the
/// tombstone they left, which refuses a late `/reserve` or `/charge` for that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CanceledOrder {
    pub order_id: String,
    pub status: TombstoneStatus,
}

impl CanceledOrder {
    pub fn new(order_id: impl Into<String>) -> Self {
        CanceledOrder {
            order_id: order_id.into(),
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
        add::<OrderRef>(&mut all);
        add::<CustomerId>(&mut all);
        add::<ItemName>(&mut all);
        add::<Reference>(&mut all);
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
