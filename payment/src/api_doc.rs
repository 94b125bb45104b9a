//! The OpenAPI document of the payment service: generated from the contract types and the
//! handlers' descriptions, completed from the table of operations below with what the shared
//! layers add.

use crate::routes::payments::{self, PaymentError};
use shared::http::problem::Answers;
use shared::openapi::{Access, Link, Operation};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment",
        description = "Charges, refunds and payment retries. Money is in minor units; errors are application/problem+json."
    ),
    paths(
        payments::charge,
        payments::refund,
        payments::retry,
        payments::get,
        payments::list
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
];

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
