//! payment's API: charges, refunds and retries. payment's routes write these bodies and the saga
//! reads them (and builds the requests it sends).

use super::stock::{one_of_two_ids, uuid_schema};
use super::values::{Amount, Currency, CustomerId, Invalid, Limit, Offset, OrderRef, Reference};
use super::CanceledOrder;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

crate::text_enum! {
    /// A payment's state. `pending` is visible only while a processor call is unsettled.
    pub enum PaymentStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
        Exhausted = "exhausted",
        Refunded = "refunded",
    }
}

/// `POST /charge`. A decline is a created payment (`failed`), not an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChargeRequest {
    /// One payment per order: a second charge for it under another key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    pub amount: Amount,
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

/// `POST /refund`: `{"paymentId"}` or `{"orderId"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RefundForms")]
pub enum RefundTarget {
    #[serde(rename = "paymentId")]
    Payment(Uuid),
    #[serde(rename = "orderId")]
    Order(OrderRef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefundForms {
    payment_id: Option<Uuid>,
    order_id: Option<OrderRef>,
}

impl TryFrom<RefundForms> for RefundTarget {
    type Error = Invalid;
    fn try_from(forms: RefundForms) -> Result<Self, Invalid> {
        match (forms.payment_id, forms.order_id) {
            (Some(id), None) => Ok(RefundTarget::Payment(id)),
            (None, Some(order)) => Ok(RefundTarget::Order(order)),
            _ => Err(Invalid(
                "paymentId: give exactly one of paymentId or orderId".into(),
            )),
        }
    }
}

impl PartialSchema for RefundTarget {
    fn schema() -> RefOr<Schema> {
        one_of_two_ids(
            ("paymentId", uuid_schema()),
            ("orderId", OrderRef::schema()),
        )
    }
}

impl ToSchema for RefundTarget {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: Uuid,
    pub order_id: Option<String>,
    pub customer_id: Option<String>,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    /// Why the processor declined (its own code), for `failed` and `exhausted` payments.
    pub failure_code: Option<String>,
    /// Retries made after the first charge.
    pub retries: i32,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentList {
    pub payments: Vec<Payment>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `GET /payments?status=&orderId=&limit=&offset=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsQuery {
    pub status: Option<PaymentStatus>,
    #[param(rename = "orderId")]
    pub order_id: Option<OrderRef>,
    pub limit: Option<Limit>,
    pub offset: Option<Offset>,
}

/// What `/refund` answers: the payment, or — for an order that had none — the tombstone that now
/// refuses a late charge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Refunded {
    Payment(Payment),
    Tombstone(CanceledOrder),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_charge_needs_only_amount_and_currency() {
        let c: ChargeRequest =
            serde_json::from_value(json!({"amount": 1999, "currency": "EUR"})).unwrap();
        assert_eq!((c.amount.get(), c.currency.as_str()), (1999, "EUR"));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"amount": 1999, "currency": "EUR"})
        );
        for bad in [
            json!({"amount": 0, "currency": "EUR"}),
            json!({"amount": 1_000_000_000_001_i64, "currency": "EUR"}),
            json!({"amount": 5, "currency": "eur"}),
            json!({"amount": 5, "currency": "EUR", "orderId": ""}),
            json!({"amount": 5, "currency": "EUR", "customerId": "a b"}),
            json!({"amount": 5, "currency": "EUR", "reference": " "}),
        ] {
            assert!(
                serde_json::from_value::<ChargeRequest>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn refund_targets_need_exactly_one_id() {
        let t = |v: serde_json::Value| serde_json::from_value::<RefundTarget>(v);
        assert_eq!(
            t(json!({"orderId": "o"})).unwrap(),
            RefundTarget::Order(OrderRef::parse("o").unwrap())
        );
        assert!(t(json!({"paymentId": "x"})).is_err());
        assert!(t(json!({})).is_err());
    }
}
