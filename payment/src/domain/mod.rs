//! The payment domain: parsed requests and the payment as the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::validate::{self, Currency};
use shared::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
pub const MAX_ID: usize = 128;
pub const MAX_REFERENCE: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    Exhausted,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Exhausted => "exhausted",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "exhausted" => Self::Exhausted,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChargeBody {
    pub order_id: Option<String>,
    pub customer_id: Option<String>,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRequest {
    pub order_id: Option<String>,
    pub customer_id: Option<String>,
    pub amount: i64,
    pub currency: Currency,
    pub reference: Option<String>,
}

impl TryFrom<ChargeBody> for ChargeRequest {
    type Error = Problem;
    fn try_from(body: ChargeBody) -> Result<Self, Problem> {
        Ok(ChargeRequest {
            order_id: body
                .order_id
                .map(|o| validate::identifier("orderId", &o, MAX_ID))
                .transpose()?,
            customer_id: body
                .customer_id
                .map(|c| validate::identifier("customerId", &c, MAX_ID))
                .transpose()?,
            amount: validate::in_range("amount", body.amount, 1, MAX_AMOUNT)?,
            currency: Currency::parse("currency", &body.currency)?,
            reference: body
                .reference
                .map(|r| validate::text("reference", &r, MAX_REFERENCE))
                .transpose()?,
        })
    }
}

/// `{"paymentId"}` or `{"orderId"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundBody {
    pub payment_id: Option<String>,
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RefundTarget {
    Payment(Uuid),
    Order(String),
}

impl TryFrom<RefundBody> for RefundTarget {
    type Error = Problem;
    fn try_from(body: RefundBody) -> Result<Self, Problem> {
        match (body.payment_id, body.order_id) {
            (Some(id), None) => Uuid::parse_str(&id)
                .map(RefundTarget::Payment)
                .map_err(|_| Problem::validation("paymentId: must be a UUID")),
            (None, Some(order)) => {
                validate::identifier("orderId", &order, MAX_ID).map(RefundTarget::Order)
            }
            _ => Err(Problem::validation(
                "paymentId: give exactly one of paymentId or orderId",
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    #[sqlx(rename = "id")]
    pub payment_id: Uuid,
    pub order_id: Option<String>,
    pub customer_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    /// `succeeded | failed | exhausted | refunded`, or `pending` while a processor call is unsettled.
    pub status: String,
    pub failure_code: Option<String>,
    pub retries: i32,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Payment {
    pub fn status(&self) -> PaymentStatus {
        // The column is CHECK-constrained to the known values.
        PaymentStatus::parse(&self.status).unwrap_or(PaymentStatus::Pending)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentList {
    pub payments: Vec<Payment>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// What `/refund` answers for an order that had no payment: the tombstone it left.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanceledOrder {
    pub order_id: String,
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(json: &str) -> Result<ChargeRequest, Problem> {
        ChargeRequest::try_from(serde_json::from_str::<ChargeBody>(json).unwrap())
    }

    #[test]
    fn a_charge_needs_only_amount_and_currency() {
        let c = charge(r#"{"amount":1999,"currency":"EUR"}"#).unwrap();
        assert_eq!((c.amount, c.currency.as_str()), (1999, "EUR"));
        assert!(c.order_id.is_none());
    }

    #[test]
    fn bad_charges_name_the_field() {
        for (json, field) in [
            (r#"{"amount":0,"currency":"EUR"}"#, "amount"),
            (r#"{"amount":-5,"currency":"EUR"}"#, "amount"),
            (r#"{"amount":1000000000001,"currency":"EUR"}"#, "amount"),
            (r#"{"amount":5,"currency":"eur"}"#, "currency"),
            (r#"{"amount":5,"currency":"EUR","orderId":""}"#, "orderId"),
            (
                r#"{"amount":5,"currency":"EUR","customerId":"a b"}"#,
                "customerId",
            ),
        ] {
            let e = charge(json).unwrap_err();
            assert!(e.detail.starts_with(field), "{json}: {}", e.detail);
        }
    }

    #[test]
    fn refund_targets_need_exactly_one_id() {
        let t =
            |json: &str| RefundTarget::try_from(serde_json::from_str::<RefundBody>(json).unwrap());
        assert_eq!(
            t(r#"{"orderId":"o"}"#).unwrap(),
            RefundTarget::Order("o".into())
        );
        assert!(t(r#"{"paymentId":"x"}"#).is_err());
        assert!(t("{}").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["pending", "succeeded", "failed", "exhausted", "refunded"] {
            assert_eq!(PaymentStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(PaymentStatus::parse("canceled").is_none());
    }
}
