//! Error answers (RFC 9457 `application/problem+json`) as they travel: the stable machine `code`
//! every service and nginx answer with, and the body both the answering service writes and the
//! calling saga reads.

use super::order::OrderStatus;
use super::payment::PaymentStatus;
use super::transfers::TransferStatus;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

pub const CONTENT_TYPE: &str = "application/problem+json";

crate::text_enum! {
    /// Every problem `code` the platform answers with. Which codes an operation answers, and with
    /// which status, is in its OpenAPI document.
    pub enum ProblemCode {
        /// A body, path or query that is not what the operation takes; `detail` names the field.
        ValidationError = "validation_error",
        PayloadTooLarge = "payload_too_large",
        UnsupportedMediaType = "unsupported_media_type",
        IdempotencyKeyMissing = "idempotency_key_missing",
        IdempotencyKeyInvalid = "idempotency_key_invalid",
        IdempotencyKeyReused = "idempotency_key_reused",
        RequestInProgress = "request_in_progress",
        Unauthorized = "unauthorized",
        Forbidden = "forbidden",
        NotFound = "not_found",
        MethodNotAllowed = "method_not_allowed",
        InternalError = "internal_error",
        /// A dependency (PostgreSQL, Redis, stock, payment) cannot be reached; retry later.
        DependencyUnavailable = "dependency_unavailable",
        /// The service itself is not answering (nginx), or refuses for a while (fault injection).
        ServiceUnavailable = "service_unavailable",
        ItemNotFound = "item_not_found",
        InsufficientStock = "insufficient_stock",
        MixedCurrency = "mixed_currency",
        ReservationNotFound = "reservation_not_found",
        ReservationExists = "reservation_exists",
        ReservationCanceled = "reservation_canceled",
        ReservationCompleted = "reservation_completed",
        ReservationExpired = "reservation_expired",
        PaymentNotFound = "payment_not_found",
        PaymentExists = "payment_exists",
        OrderCanceled = "order_canceled",
        PaymentNotRetryable = "payment_not_retryable",
        ProcessorUnavailable = "processor_unavailable",
        OrderNotFound = "order_not_found",
        PaymentDeclined = "payment_declined",
        /// A participant refused a checkout in a way the saga does not expect; everything was undone.
        CheckoutRejected = "checkout_rejected",
        RecipientNotFound = "recipient_not_found",
        SplitRuleNotFound = "split_rule_not_found",
        /// A split rule's shares do not make a rule; `detail` says why.
        SplitSharesInvalid = "split_shares_invalid",
        EffectiveFromInPast = "effective_from_in_past",
        /// A new rule of a product must start after every rule it already has.
        SplitRuleOverlap = "split_rule_overlap",
        PaymentNotRefundable = "payment_not_refundable",
        RefundExceedsPayment = "refund_exceeds_payment",
        /// The source's `available − held` is less than the amount asked for.
        InsufficientFunds = "insufficient_funds",
        SameRecipient = "same_recipient",
        TransferNotFound = "transfer_not_found",
        /// The transfer was posted already.
        TransferNotCancelable = "transfer_not_cancelable",
        PayoutNotFound = "payout_not_found",
    }
}

/// The members a problem may carry besides the standard ones, naming what it is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemContext {
    /// The order: a caller's order id at stock and payment, the order's id at order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<Uuid>,
    /// The state of the order a failed checkout answers about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_status: Option<OrderStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_status: Option<PaymentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_rule_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_status: Option<TransferStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<Uuid>,
}

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemBody {
    /// `urn:checkout:problem:{code}`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What happened, for people; never a stack trace, SQL or an internal address.
    pub detail: String,
    pub code: ProblemCode,
    #[serde(flatten)]
    pub context: ProblemContext,
}

impl ProblemBody {
    pub fn type_uri(code: ProblemCode) -> String {
        format!("urn:checkout:problem:{code}")
    }
}

/// The schema of a problem answered with `status` and one of `codes`.
pub fn schema_for(status: u16, codes: &[ProblemCode]) -> RefOr<Schema> {
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().map(|c| c.as_str())));
    let status = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([status]));
    members(status.into(), code.into())
}

fn members(status: RefOr<Schema>, code: RefOr<Schema>) -> RefOr<Schema> {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let integer = || ObjectBuilder::new().schema_type(Type::Integer);
    let uuid = || {
        string().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Uuid,
        )))
    };
    ObjectBuilder::new()
        .description(Some(
            "RFC 9457 problem details with a stable machine `code`; extra members name what the problem is about.",
        ))
        .property("type", string().description(Some("`urn:checkout:problem:{code}`")))
        .property("title", string())
        .property("status", status)
        .property("detail", string())
        .property("code", code)
        .property("orderId", string())
        .property("itemId", integer())
        .property("requested", integer())
        .property("available", integer())
        .property("reservationId", uuid())
        .property("paymentId", uuid())
        .property("orderStatus", OrderStatus::schema())
        .property("paymentStatus", PaymentStatus::schema())
        .property("recipientId", uuid())
        .property("splitRuleId", uuid())
        .property("productId", integer())
        .property("transferId", uuid())
        .property("transferStatus", TransferStatus::schema())
        .property("payoutId", uuid())
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .required("code")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

impl PartialSchema for ProblemBody {
    fn schema() -> RefOr<Schema> {
        members(
            ObjectBuilder::new().schema_type(Type::Integer).into(),
            ProblemCode::schema(),
        )
    }
}

impl ToSchema for ProblemBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "Problem".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_body_round_trips_with_its_context_flat() {
        let body = ProblemBody {
            type_uri: ProblemBody::type_uri(ProblemCode::InsufficientStock),
            title: "Conflict".into(),
            status: 409,
            detail: "item 1: 3 requested, 0 available".into(),
            code: ProblemCode::InsufficientStock,
            context: ProblemContext {
                item_id: Some(1),
                requested: Some(3),
                available: Some(0),
                ..ProblemContext::default()
            },
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["type"], "urn:checkout:problem:insufficient_stock");
        assert_eq!(json["itemId"], 1);
        assert!(json.get("orderId").is_none());
        assert_eq!(serde_json::from_value::<ProblemBody>(json).unwrap(), body);
    }

    #[test]
    fn an_unknown_code_does_not_parse() {
        let json = serde_json::json!({"type": "x", "title": "x", "status": 409, "detail": "x", "code": "out_of_stock"});
        assert!(serde_json::from_value::<ProblemBody>(json).is_err());
    }
}
