//! order's API: the checkout, the order with its audit trail, the saga's states and failure codes.

use super::cart::{either_form, either_form_schema, CartLines};
use super::payment::PaymentStatus;
use super::problem::ProblemCode;
use super::stock::ReservationStatus;
use super::values::{Currency, CustomerId, Invalid, ItemId, Limit, Offset, Quantity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

crate::text_enum! {
    /// The saga's states: `completed` and `failed` are final.
    pub enum OrderStatus {
        /// Written by earlier versions before the first step; orders are now written `reserving`.
        Pending = "pending",
        Reserving = "reserving",
        Charging = "charging",
        Completing = "completing",
        Compensating = "compensating",
        Completed = "completed",
        Failed = "failed",
    }
}

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

crate::text_enum! {
    /// Why an order failed; also the problem `code` its checkout answers with.
    pub enum FailureCode {
        InsufficientStock = "insufficient_stock",
        ItemNotFound = "item_not_found",
        MixedCurrency = "mixed_currency",
        PaymentDeclined = "payment_declined",
        ReservationExpired = "reservation_expired",
        /// stock or payment did not answer; everything was undone, and a retry of the
        /// checkout's key runs a new attempt of the order.
        DependencyUnavailable = "dependency_unavailable",
        /// A participant refused in a way the saga does not expect (a bug or tampering).
        Rejected = "checkout_rejected",
    }
}

impl From<FailureCode> for ProblemCode {
    fn from(code: FailureCode) -> ProblemCode {
        match code {
            FailureCode::InsufficientStock => ProblemCode::InsufficientStock,
            FailureCode::ItemNotFound => ProblemCode::ItemNotFound,
            FailureCode::MixedCurrency => ProblemCode::MixedCurrency,
            FailureCode::PaymentDeclined => ProblemCode::PaymentDeclined,
            FailureCode::ReservationExpired => ProblemCode::ReservationExpired,
            FailureCode::DependencyUnavailable => ProblemCode::DependencyUnavailable,
            FailureCode::Rejected => ProblemCode::CheckoutRejected,
        }
    }
}

crate::text_enum! {
    /// A step of the saga, as events name it.
    pub enum Step {
        Reserve = "reserve",
        Charge = "charge",
        Complete = "complete",
        Refund = "refund",
        Release = "release",
    }
}

crate::text_enum! {
    /// What a refund found: the money given back, nothing taken, or no payment (a tombstone).
    pub enum RefundOutcome {
        Refunded = "refunded",
        Failed = "failed",
        Exhausted = "exhausted",
        Canceled = "canceled",
    }
}

impl RefundOutcome {
    /// The outcome a refund's answer shows, if it shows one: a payment still standing (or still
    /// pending) is no outcome.
    pub fn of(status: PaymentStatus) -> Option<RefundOutcome> {
        match status {
            PaymentStatus::Refunded => Some(RefundOutcome::Refunded),
            PaymentStatus::Failed => Some(RefundOutcome::Failed),
            PaymentStatus::Exhausted => Some(RefundOutcome::Exhausted),
            PaymentStatus::Succeeded | PaymentStatus::Pending => None,
        }
    }
}

/// `POST /checkout`: `{"items":[{"itemId","quantity"}],"customerId"?}`, or the one-line form
/// `{"itemId","quantity","customerId"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CheckoutForms", rename_all = "camelCase")]
pub struct CheckoutRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    pub items: CartLines,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CheckoutForms {
    customer_id: Option<CustomerId>,
    items: Option<CartLines>,
    item_id: Option<ItemId>,
    quantity: Option<Quantity>,
}

impl TryFrom<CheckoutForms> for CheckoutRequest {
    type Error = Invalid;
    fn try_from(forms: CheckoutForms) -> Result<Self, Invalid> {
        Ok(CheckoutRequest {
            customer_id: forms.customer_id,
            items: either_form(forms.items, forms.item_id, forms.quantity)?,
        })
    }
}

impl PartialSchema for CheckoutRequest {
    fn schema() -> RefOr<Schema> {
        either_form_schema(&[("customerId", CustomerId::schema(), false)])
    }
}

impl ToSchema for CheckoutRequest {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub item_id: ItemId,
    pub quantity: i64,
    /// Known once stock has priced the reservation.
    pub unit_price: Option<i64>,
    pub amount: Option<i64>,
}

/// An entry of an order's audit trail: what happened (`type` and its own members) and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderEventRecord {
    #[serde(flatten)]
    pub event: OrderEvent,
    pub at: DateTime<Utc>,
}

/// What can happen to an order. Each is stored once, in its order's append-only trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEvent {
    OrderCreated,
    /// A retry of the checkout's key after `dependency_unavailable` started the order again.
    #[serde(rename_all = "camelCase")]
    AttemptStarted {
        attempt: i32,
    },
    #[serde(rename_all = "camelCase")]
    StockReserved {
        reservation_id: Uuid,
        total_amount: i64,
        currency: Currency,
    },
    /// stock refused the reserve (`code`), about `itemId`, or with an unexpected `status`.
    #[serde(rename_all = "camelCase")]
    StockRefused {
        code: Option<ProblemCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    #[serde(rename_all = "camelCase")]
    PaymentCharged {
        payment_id: Uuid,
        amount: i64,
    },
    #[serde(rename_all = "camelCase")]
    PaymentDeclined {
        payment_id: Uuid,
        failure_code: Option<String>,
    },
    /// payment refused the charge unexpectedly.
    #[serde(rename_all = "camelCase")]
    PaymentRefused {
        code: Option<ProblemCode>,
        status: u16,
    },
    StockCompleted,
    /// stock refused the completion (the reservation expired or was released).
    #[serde(rename_all = "camelCase")]
    CompletionRefused {
        code: Option<ProblemCode>,
    },
    #[serde(rename_all = "camelCase")]
    CompensationStarted {
        failure_code: FailureCode,
    },
    #[serde(rename_all = "camelCase")]
    PaymentRefunded {
        status: RefundOutcome,
    },
    #[serde(rename_all = "camelCase")]
    StockReleased {
        status: ReservationStatus,
    },
    /// The reservation was completed, so it cannot be released.
    #[serde(rename_all = "camelCase")]
    ReleaseImpossible {
        code: ProblemCode,
    },
    OrderCompleted,
    #[serde(rename_all = "camelCase")]
    OrderFailed {
        failure_code: FailureCode,
    },
    /// A step needed more than one attempt to get an answer.
    #[serde(rename_all = "camelCase")]
    StepRetried {
        step: Step,
        attempts: u32,
    },
    /// The recovery worker took the order over from a driver that stopped.
    OrderRecovered,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: Uuid,
    pub status: OrderStatus,
    pub failure_code: Option<FailureCode>,
    pub customer_id: Option<String>,
    pub items: Vec<OrderLine>,
    /// Known once stock has priced the reservation; minor units of `currency`.
    pub total_amount: Option<i64>,
    pub currency: Option<Currency>,
    pub reservation_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The append-only audit trail, oldest first.
    pub events: Vec<OrderEventRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderList {
    pub orders: Vec<Order>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// The answer while a checkout is still running (202): `GET` its `Location` for the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub order_id: Uuid,
    pub status: OrderStatus,
}

/// `GET /orders?status=&limit=&offset=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrdersQuery {
    pub status: Option<OrderStatus>,
    pub limit: Option<Limit>,
    pub offset: Option<Offset>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_checkout_forms_parse() {
        let one: CheckoutRequest =
            serde_json::from_value(json!({"itemId": 1, "quantity": 2})).unwrap();
        assert_eq!(one.items.lines().len(), 1);
        let list: CheckoutRequest = serde_json::from_value(
            json!({"items": [{"itemId": 2, "quantity": 1}], "customerId": "c-9"}),
        )
        .unwrap();
        assert_eq!(list.customer_id.unwrap().as_str(), "c-9");
        assert!(serde_json::from_value::<CheckoutRequest>(
            json!({"items": [{"itemId": 2, "quantity": 1}], "customerId": ""})
        )
        .is_err());
        assert!(serde_json::from_value::<CheckoutRequest>(json!({"customerId": "c"})).is_err());
    }

    #[test]
    fn events_are_written_and_read_with_their_type_and_time() {
        let at = Utc::now();
        let record = OrderEventRecord {
            event: OrderEvent::StockReserved {
                reservation_id: Uuid::nil(),
                total_amount: 3500,
                currency: Currency::parse("USD").unwrap(),
            },
            at,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["type"], "stock_reserved");
        assert_eq!(json["totalAmount"], 3500);
        assert_eq!(
            serde_json::from_value::<OrderEventRecord>(json).unwrap(),
            record
        );
        let unit = serde_json::to_value(OrderEventRecord {
            event: OrderEvent::OrderCreated,
            at,
        })
        .unwrap();
        assert_eq!(unit.as_object().unwrap().len(), 2, "{unit}");
        let unknown = json!({"type": "order_teleported", "at": at});
        assert!(serde_json::from_value::<OrderEventRecord>(unknown).is_err());
    }

    #[test]
    fn every_failure_code_is_a_problem_code_of_the_same_text() {
        use crate::text::TextEnum;
        for code in FailureCode::ALL {
            assert_eq!(ProblemCode::from(*code).as_str(), code.as_str());
        }
    }
}
