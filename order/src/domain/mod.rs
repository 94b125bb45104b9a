//! The order domain: the checkout request, the saga's states and failure codes, and the order as
//! the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::cart::{self, Line, LineBody};
use shared::validate;
use shared::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

pub const MAX_CUSTOMER_ID: usize = 128;

/// `{"items":[{"itemId","quantity"}],"customerId"?}` or the one-line form `{"itemId","quantity"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CheckoutBody {
    pub items: Option<Vec<LineBody>>,
    pub item_id: Option<i64>,
    pub quantity: Option<i64>,
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    pub lines: Vec<Line>,
    pub customer_id: Option<String>,
}

impl TryFrom<CheckoutBody> for CheckoutRequest {
    type Error = Problem;
    fn try_from(body: CheckoutBody) -> Result<Self, Problem> {
        Ok(CheckoutRequest {
            lines: cart::parse_lines(body.items, body.item_id, body.quantity)?,
            customer_id: body
                .customer_id
                .map(|c| validate::identifier("customerId", &c, MAX_CUSTOMER_ID))
                .transpose()?,
        })
    }
}

/// The saga's states. `completed` and `failed` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Reserving,
    Charging,
    Completing,
    Compensating,
    Completed,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Self::Pending,
        Self::Reserving,
        Self::Charging,
        Self::Completing,
        Self::Compensating,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reserving => "reserving",
            Self::Charging => "charging",
            Self::Completing => "completing",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// Why an order failed; also the problem `code` its checkout answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    InsufficientStock,
    ItemNotFound,
    MixedCurrency,
    PaymentDeclined,
    ReservationExpired,
    DependencyUnavailable,
    /// A participant refused in a way the saga does not expect (a bug or tampering).
    Rejected,
}

impl FailureCode {
    pub const ALL: [FailureCode; 7] = [
        Self::InsufficientStock,
        Self::ItemNotFound,
        Self::MixedCurrency,
        Self::PaymentDeclined,
        Self::ReservationExpired,
        Self::DependencyUnavailable,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientStock => "insufficient_stock",
            Self::ItemNotFound => "item_not_found",
            Self::MixedCurrency => "mixed_currency",
            Self::PaymentDeclined => "payment_declined",
            Self::ReservationExpired => "reservation_expired",
            Self::DependencyUnavailable => "dependency_unavailable",
            Self::Rejected => "checkout_rejected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub item_id: i64,
    pub quantity: i64,
    pub unit_price: Option<i64>,
    pub amount: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    /// The event's own fields (`reservationId`, `paymentId`, `failureCode`, `step`, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: Uuid,
    /// `pending | reserving | charging | completing | compensating | completed | failed`
    pub status: String,
    pub failure_code: Option<String>,
    pub customer_id: Option<String>,
    pub items: Vec<OrderLine>,
    pub total_amount: Option<i64>,
    pub currency: Option<String>,
    pub reservation_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub events: Vec<OrderEvent>,
}

impl Order {
    pub fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Pending)
    }

    pub fn failure(&self) -> Option<FailureCode> {
        self.failure_code.as_deref().and_then(FailureCode::parse)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderList {
    pub orders: Vec<Order>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// The 202 answer while a checkout is still running.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub order_id: Uuid,
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(json: &str) -> Result<CheckoutRequest, Problem> {
        CheckoutRequest::try_from(serde_json::from_str::<CheckoutBody>(json).unwrap())
    }

    #[test]
    fn both_checkout_forms_parse() {
        let c = checkout(r#"{"itemId":1,"quantity":2}"#).unwrap();
        assert_eq!(
            c.lines,
            vec![Line {
                item_id: 1,
                quantity: 2
            }]
        );
        let c = checkout(r#"{"items":[{"itemId":2,"quantity":1}],"customerId":"c-9"}"#).unwrap();
        assert_eq!(c.customer_id.as_deref(), Some("c-9"));
        assert!(checkout(r#"{"items":[{"itemId":2,"quantity":1}],"customerId":""}"#).is_err());
        assert!(checkout(r#"{"customerId":"c"}"#).is_err());
    }

    #[test]
    fn statuses_and_failure_codes_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert!(OrderStatus::Completed.is_terminal() && OrderStatus::Failed.is_terminal());
        assert!(!OrderStatus::Compensating.is_terminal());
        for c in FailureCode::ALL {
            assert_eq!(FailureCode::parse(c.as_str()), Some(c));
        }
    }
}
