//! The OpenAPI document of the payment service: generated from the contract types and the
//! handlers' descriptions, completed from the table of operations below with what the shared
//! layers add.

use crate::routes::payments::{self, PaymentError};
use shared::http::openapi::{Access, Link, Operation};
use shared::http::problem::Answers;
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

const fn service(
    method: &'static str,
    path: &'static str,
    idempotent: bool,
    body: bool,
    params: bool,
    links: &'static [Link],
) -> Operation {
    Operation {
        method,
        path,
        access: Access::Service,
        idempotent,
        body,
        params,
        answers: PaymentError::ANSWERS,
        links,
    }
}

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
    service("post", "/charge", true, true, false, PAYMENT_LINKS),
    service("post", "/refund", true, true, false, &[]),
    service(
        "post",
        "/payments/{paymentId}/retry",
        true,
        false,
        true,
        &[],
    ),
    service("get", "/payments/{paymentId}", false, false, true, &[]),
    service("get", "/payments", false, false, true, &[]),
];

/// The complete document, published under `prefix`.
pub fn document(prefix: &str) -> Result<serde_json::Value, String> {
    shared::http::openapi::document(ApiDoc::openapi(), prefix, OPERATIONS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_operation_once() {
        let doc = super::document("/payment").unwrap();
        assert_eq!(doc["servers"][0]["url"], "/payment");
    }
}
