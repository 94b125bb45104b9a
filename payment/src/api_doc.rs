//! The OpenAPI document of the payment service: generated from the contract types and the
//! handlers' descriptions, completed from the table of operations below with what the shared
//! layers add.

use crate::routes::ledger::{self, LedgerError};
use crate::routes::payments::{self, PaymentError};
use crate::routes::payouts;
use crate::routes::recipients;
use crate::routes::refunds::{self, RefundError};
use crate::routes::split_rules;
use crate::routes::transfers;
use shared::http::problem::{Answers, ProblemCode};
use shared::openapi::{Access, Link, Operation};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment",
        description = "Charges, refunds and payment retries; the marketplace's recipients, split rules and double-entry ledger. Money is in minor units; errors are application/problem+json."
    ),
    paths(
        payments::charge,
        payments::refund,
        payments::retry,
        payments::get,
        payments::list,
        refunds::create,
        ledger::splits,
        ledger::entries,
        ledger::trial_balance,
        recipients::create,
        recipients::get,
        recipients::balances,
        split_rules::create,
        split_rules::get,
        split_rules::list,
        transfers::create,
        transfers::cancel,
        transfers::get,
        transfers::list,
        payouts::create,
        payouts::get,
        payouts::list
    )
)]
struct ApiDoc;

/// A new payment can be read, retried and refunded.
const PAYMENT_LINKS: &[Link] = &[
    Link {
        status: 201,
        operation_id: "getPayment",
        parameters: &[("paymentId", "$response.body#/paymentId")],
        body: None,
    },
    Link {
        status: 201,
        operation_id: "retryPayment",
        parameters: &[("paymentId", "$response.body#/paymentId")],
        body: None,
    },
    Link {
        status: 201,
        operation_id: "refund",
        parameters: &[],
        body: Some(r#"{"paymentId": "$response.body#/paymentId"}"#),
    },
    Link {
        status: 201,
        operation_id: "getSplits",
        parameters: &[("paymentId", "$response.body#/paymentId")],
        body: None,
    },
    Link {
        status: 201,
        operation_id: "refundPart",
        parameters: &[("paymentId", "$response.body#/paymentId")],
        body: None,
    },
];

/// A new recipient can be read, with its balances.
const RECIPIENT_LINKS: &[Link] = &[
    Link {
        status: 201,
        operation_id: "getRecipient",
        parameters: &[("recipientId", "$response.body#/recipientId")],
        body: None,
    },
    Link {
        status: 201,
        operation_id: "getBalances",
        parameters: &[("recipientId", "$response.body#/recipientId")],
        body: None,
    },
];

/// A new rule can be read.
const RULE_LINKS: &[Link] = &[Link {
    status: 201,
    operation_id: "getSplitRule",
    parameters: &[("splitRuleId", "$response.body#/splitRuleId")],
    body: None,
}];

// What each marketplace operation answers of its route's error (which serves several routes).
const KEY_REUSED: &[(u16, ProblemCode)] = &[(422, ProblemCode::IdempotencyKeyReused)];
const RECIPIENT_NOT_FOUND: &[(u16, ProblemCode)] = &[(404, ProblemCode::RecipientNotFound)];
const RULE_NOT_FOUND: &[(u16, ProblemCode)] = &[(404, ProblemCode::SplitRuleNotFound)];
const NEW_RULE: &[(u16, ProblemCode)] = &[
    (409, ProblemCode::SplitRuleOverlap),
    (422, ProblemCode::SplitSharesInvalid),
    (422, ProblemCode::RecipientNotFound),
    (422, ProblemCode::EffectiveFromInPast),
    (422, ProblemCode::IdempotencyKeyReused),
];

/// A new transfer can be read and canceled.
const TRANSFER_LINKS: &[Link] = &[
    Link {
        status: 202,
        operation_id: "getTransfer",
        parameters: &[("transferId", "$response.body#/transferId")],
        body: None,
    },
    Link {
        status: 202,
        operation_id: "cancelTransfer",
        parameters: &[("transferId", "$response.body#/transferId")],
        body: None,
    },
];
const NEW_TRANSFER: &[(u16, ProblemCode)] = &[
    (409, ProblemCode::InsufficientFunds),
    (422, ProblemCode::SameRecipient),
    (422, ProblemCode::RecipientNotFound),
    (422, ProblemCode::IdempotencyKeyReused),
];
const CANCEL_TRANSFER: &[(u16, ProblemCode)] = &[
    (404, ProblemCode::TransferNotFound),
    (409, ProblemCode::TransferNotCancelable),
    (422, ProblemCode::IdempotencyKeyReused),
];
const TRANSFER_NOT_FOUND: &[(u16, ProblemCode)] = &[(404, ProblemCode::TransferNotFound)];

/// A new payout can be read.
const PAYOUT_LINKS: &[Link] = &[Link {
    status: 202,
    operation_id: "getPayout",
    parameters: &[("payoutId", "$response.body#/payoutId")],
    body: None,
}];
const NEW_PAYOUT: &[(u16, ProblemCode)] = &[
    (409, ProblemCode::InsufficientFunds),
    (422, ProblemCode::RecipientNotFound),
    (422, ProblemCode::IdempotencyKeyReused),
];
const PAYOUT_NOT_FOUND: &[(u16, ProblemCode)] = &[(404, ProblemCode::PayoutNotFound)];

/// Every operation of the service and the layers it sits behind (fault injection answers 503
/// `service_unavailable`, which every operation documents).
pub const OPERATIONS: &[Operation] = &[
    Operation::new("post", "/charge", Access::Service)
        .idempotent()
        .body()
        .answers(PaymentError::ANSWERS)
        .links(PAYMENT_LINKS),
    Operation::new("post", "/refund", Access::Service)
        .idempotent()
        .body()
        .answers(PaymentError::ANSWERS),
    Operation::new("post", "/payments/{paymentId}/retry", Access::Service)
        .idempotent()
        .params()
        .answers(PaymentError::ANSWERS),
    Operation::new("get", "/payments/{paymentId}", Access::Service)
        .params()
        .answers(PaymentError::ANSWERS),
    Operation::new("get", "/payments", Access::Service)
        .params()
        .answers(PaymentError::ANSWERS),
    Operation::new("post", "/payments/{paymentId}/refunds", Access::Service)
        .idempotent()
        .body()
        .params()
        .answers(RefundError::ANSWERS),
    Operation::new("get", "/payments/{paymentId}/splits", Access::Service)
        .params()
        .answers(LedgerError::ANSWERS),
    Operation::new("get", "/ledger/entries", Access::ServiceOrAdmin).params(),
    Operation::new("get", "/ledger/trial-balance", Access::Admin),
    Operation::new("post", "/recipients", Access::Admin)
        .idempotent()
        .body()
        .answers(KEY_REUSED)
        .links(RECIPIENT_LINKS),
    Operation::new("get", "/recipients/{recipientId}", Access::ServiceOrAdmin)
        .params()
        .answers(RECIPIENT_NOT_FOUND),
    Operation::new(
        "get",
        "/recipients/{recipientId}/balances",
        Access::ServiceOrAdmin,
    )
    .params()
    .answers(RECIPIENT_NOT_FOUND),
    Operation::new("post", "/split-rules", Access::Admin)
        .idempotent()
        .body()
        .answers(NEW_RULE)
        .links(RULE_LINKS),
    Operation::new("get", "/split-rules/{splitRuleId}", Access::ServiceOrAdmin)
        .params()
        .answers(RULE_NOT_FOUND),
    Operation::new("get", "/split-rules", Access::ServiceOrAdmin).params(),
    Operation::new("post", "/transfers", Access::ServiceOrAdmin)
        .idempotent()
        .body()
        .answers(NEW_TRANSFER)
        .links(TRANSFER_LINKS),
    Operation::new(
        "post",
        "/transfers/{transferId}/cancel",
        Access::ServiceOrAdmin,
    )
    .idempotent()
    .params()
    .answers(CANCEL_TRANSFER),
    Operation::new("get", "/transfers/{transferId}", Access::ServiceOrAdmin)
        .params()
        .answers(TRANSFER_NOT_FOUND),
    Operation::new("get", "/transfers", Access::ServiceOrAdmin).params(),
    Operation::new("post", "/payouts", Access::ServiceOrAdmin)
        .idempotent()
        .body()
        .answers(NEW_PAYOUT)
        .links(PAYOUT_LINKS),
    Operation::new("get", "/payouts/{payoutId}", Access::ServiceOrAdmin)
        .params()
        .answers(PAYOUT_NOT_FOUND),
    Operation::new("get", "/payouts", Access::ServiceOrAdmin).params(),
];

/// The complete document, published under `prefix`.
pub fn document(prefix: &str) -> Result<serde_json::Value, String> {
    shared::openapi::document(ApiDoc::openapi(), prefix, OPERATIONS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_operation_once() {
        let doc = super::document("/payment").unwrap();
        assert_eq!(doc["servers"][0]["url"], "/payment");
    }
}
