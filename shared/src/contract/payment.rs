//! payment's API: charges, refunds and retries. payment's routes write these bodies and the saga
//! reads them (and builds the requests it sends).

use super::stock::{one_of_two_ids, uuid_schema, IdBody};
use super::values::{
    ActiveCurrency, Amount, Attempt, Currency, CustomerId, Invalid, ItemId, Limit, Offset,
    OrderRef, Reference, Units,
};
use super::{CanceledOrder, OrderAttempt};
use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::ArrayBuilder;
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
#[serde(deny_unknown_fields, rename_all = "camelCase", try_from = "ChargeForm")]
pub struct ChargeRequest {
    /// One payment per order and attempt: a second charge for them under another key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderRef>,
    /// The order's attempt (1 when absent); only with `orderId` (else 400, naming attempt). Not
    /// written when it is 1, so a first attempt's charge is what it was before attempts were a
    /// field.
    #[serde(default, skip_serializing_if = "Attempt::is_first")]
    #[schema(nullable)]
    pub attempt: Attempt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    pub amount: Amount,
    #[schema(value_type = ActiveCurrency)]
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// What is sold, line by line, each split by its product's rule when the payment succeeds;
    /// the amounts sum to `amount`. Without lines, the payment goes wholly to the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<ChargeLines>,
}

/// [`ChargeRequest`] as written, before its lines are checked against its amount.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChargeForm {
    #[serde(default)]
    order_id: Option<OrderRef>,
    #[serde(default)]
    attempt: Option<Attempt>,
    #[serde(default)]
    customer_id: Option<CustomerId>,
    amount: Amount,
    currency: ActiveCurrency,
    #[serde(default)]
    reference: Option<Reference>,
    #[serde(default)]
    lines: Option<ChargeLines>,
}

impl TryFrom<ChargeForm> for ChargeRequest {
    type Error = Invalid;
    fn try_from(form: ChargeForm) -> Result<Self, Invalid> {
        if let Some(lines) = &form.lines {
            let sum = lines.sum();
            if sum != form.amount.get() {
                return Err(Invalid(format!(
                    "lines: the line amounts sum to {sum}, not to the amount {}",
                    form.amount
                )));
            }
        }
        if form.attempt.is_some() && form.order_id.is_none() {
            return Err(Invalid(
                "attempt: only a charge of an order (orderId) has an attempt".into(),
            ));
        }
        Ok(ChargeRequest {
            order_id: form.order_id,
            attempt: form.attempt.unwrap_or_default(),
            customer_id: form.customer_id,
            amount: form.amount,
            currency: form.currency.into(),
            reference: form.reference,
            lines: form.lines,
        })
    }
}

/// One line of a charge: `quantity` units of a product (a stock item) for `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChargeLine {
    pub product_id: ItemId,
    pub quantity: Units,
    pub amount: Amount,
}

/// The lines of a charge: 1 to 50.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ChargeLines(Vec<ChargeLine>);

impl ChargeRequest {
    /// The order's attempt this charge is for, if it is an order's.
    pub fn order_attempt(&self) -> Option<OrderAttempt> {
        self.order_id.clone().map(|order_id| OrderAttempt {
            order_id,
            attempt: self.attempt,
        })
    }
}

impl ChargeLines {
    pub const MAX: usize = 50;

    pub fn new(lines: Vec<ChargeLine>) -> Result<Self, Invalid> {
        if lines.is_empty() {
            Err(Invalid("must contain at least one line".into()))
        } else if lines.len() > Self::MAX {
            Err(Invalid(format!("must contain at most {} lines", Self::MAX)))
        } else {
            Ok(ChargeLines(lines))
        }
    }

    pub fn get(&self) -> &[ChargeLine] {
        &self.0
    }

    /// The amounts added up: at most 50 × 10¹², far within i64.
    pub fn sum(&self) -> i64 {
        self.0.iter().map(|l| l.amount.get()).sum()
    }
}

impl<'de> Deserialize<'de> for ChargeLines {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ChargeLines::new(Vec::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl PartialSchema for ChargeLines {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ChargeLine::schema())
            .min_items(Some(1))
            .max_items(Some(Self::MAX))
            .description(Some(
                "1 to 50 lines whose amounts sum to the charge's amount (else 400, naming lines).",
            ))
            .into()
    }
}

impl ToSchema for ChargeLines {}

/// `POST /refund`: `{"paymentId"}` or `{"orderId","attempt"?}` (the order's attempt, 1 when
/// absent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RefundForms")]
pub enum RefundTarget {
    Payment(Uuid),
    Order(OrderAttempt),
}

impl Serialize for RefundTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RefundTarget::Payment(id) => IdBody::Id("paymentId", id).serialize(serializer),
            RefundTarget::Order(order) => IdBody::Order(order).serialize(serializer),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefundForms {
    payment_id: Option<Uuid>,
    order_id: Option<OrderRef>,
    attempt: Option<Attempt>,
}

impl TryFrom<RefundForms> for RefundTarget {
    type Error = Invalid;
    fn try_from(forms: RefundForms) -> Result<Self, Invalid> {
        match (forms.payment_id, forms.order_id, forms.attempt) {
            (Some(_), None, Some(_)) => Err(Invalid(
                "attempt: goes with orderId, not with paymentId".into(),
            )),
            (Some(id), None, None) => Ok(RefundTarget::Payment(id)),
            (None, Some(order_id), attempt) => Ok(RefundTarget::Order(OrderAttempt {
                order_id,
                attempt: attempt.unwrap_or_default(),
            })),
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
    /// The order's attempt this payment is of: 1 unless its checkout was started again after a
    /// 503 (`dependency_unavailable`); 1 for a charge without an order. (Read as 1 when absent,
    /// as payment wrote it before attempts were a field.)
    #[serde(default = "super::first_attempt")]
    #[schema(required = true, minimum = 1)]
    pub attempt: i32,
    pub customer_id: Option<String>,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    /// Why the processor declined (its own code), for `failed` and `exhausted` payments.
    pub failure_code: Option<String>,
    /// Retries made after the first charge.
    pub retries: i32,
    /// What refunds gave back so far (the payment is `refunded` once it reaches `amount`).
    pub refunded_amount: i64,
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

/// `GET /payments?status=&orderId=&limit=&offset=`: `orderId` finds the payments of every attempt
/// of the order.
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
        assert!(c.lines.is_none());
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
            json!({"amount": 5, "currency": "EUR", "orderId": "o", "attempt": 0}),
            json!({"amount": 5, "currency": "EUR", "attempt": 2}),
        ] {
            assert!(
                serde_json::from_value::<ChargeRequest>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_charge_names_its_attempt_unless_it_is_the_first() {
        let c = |v: serde_json::Value| serde_json::from_value::<ChargeRequest>(v).unwrap();
        let first = json!({"orderId": "o", "amount": 5, "currency": "EUR"});
        assert_eq!(c(first.clone()).attempt, Attempt::FIRST);
        assert_eq!(serde_json::to_value(c(first.clone())).unwrap(), first);
        let explicit = c(json!({"orderId": "o", "attempt": 1, "amount": 5, "currency": "EUR"}));
        assert_eq!(serde_json::to_value(explicit).unwrap(), first);
        let second = json!({"orderId": "o", "attempt": 2, "amount": 5, "currency": "EUR"});
        let parsed = c(second.clone());
        assert_eq!(parsed.order_attempt().unwrap().attempt.get(), 2);
        assert_eq!(serde_json::to_value(parsed).unwrap(), second);
        let e = serde_json::from_value::<ChargeRequest>(
            json!({"attempt": 2, "amount": 5, "currency": "EUR"}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("attempt: "), "{e}");
    }

    #[test]
    fn lines_sum_to_the_amount() {
        let c = |v: serde_json::Value| serde_json::from_value::<ChargeRequest>(v);
        let ok = c(json!({"amount": 30, "currency": "EUR", "lines": [
            {"productId": 1, "quantity": 2, "amount": 20},
            {"productId": 2, "quantity": 1, "amount": 10}]}))
        .unwrap();
        assert_eq!(ok.lines.unwrap().get().len(), 2);
        let e = c(json!({"amount": 31, "currency": "EUR", "lines": [
            {"productId": 1, "quantity": 2, "amount": 20},
            {"productId": 2, "quantity": 1, "amount": 10}]}))
        .unwrap_err();
        assert!(e.to_string().starts_with("lines: "), "{e}");
        for bad in [
            json!({"amount": 5, "currency": "EUR", "lines": []}),
            json!({"amount": 5, "currency": "EUR", "lines": [{"productId": 0, "quantity": 1, "amount": 5}]}),
            json!({"amount": 5, "currency": "EUR", "lines": [{"productId": 1, "quantity": 0, "amount": 5}]}),
            json!({"amount": 5, "currency": "EUR", "lines": [{"productId": 1, "quantity": 1, "amount": 9_000_000_000_000_000_000_u64}]}),
        ] {
            assert!(c(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn refund_targets_need_exactly_one_id() {
        let t = |v: serde_json::Value| serde_json::from_value::<RefundTarget>(v);
        let first = t(json!({"orderId": "o"})).unwrap();
        assert_eq!(
            first,
            RefundTarget::Order(OrderAttempt::first(OrderRef::parse("o").unwrap()))
        );
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            json!({"orderId": "o"})
        );
        let second = t(json!({"orderId": "o", "attempt": 2})).unwrap();
        assert_eq!(
            serde_json::to_value(&second).unwrap(),
            json!({"orderId": "o", "attempt": 2})
        );
        assert_eq!(t(json!({"orderId": "o", "attempt": null})).unwrap(), first);
        assert!(t(json!({"paymentId": "x"})).is_err());
        assert!(t(json!({})).is_err());
        let id = Uuid::new_v4();
        assert_eq!(
            serde_json::to_value(t(json!({"paymentId": id})).unwrap()).unwrap(),
            json!({"paymentId": id})
        );
        let e = t(json!({"paymentId": id, "attempt": 2})).unwrap_err();
        assert!(e.to_string().starts_with("attempt: "), "{e}");
        assert!(t(json!({"orderId": "o", "attempt": 0})).is_err());
    }
}
