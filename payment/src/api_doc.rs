//! The OpenAPI document of the payment service: generated from the contract types and the
//! handlers' descriptions, completed from the table of operations below with what the shared
//! layers add.

use crate::routes::payments::{self, PaymentError};
use shared::http::openapi::{Access, Operation};
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
) -> Operation {
    Operation {
        method,
        path,
        access: Access::Service,
        idempotent,
        body,
        params,
        answers: PaymentError::ANSWERS,
    }
}

/// Every operation of the service and the layers it sits behind (fault injection answers 503
/// `service_unavailable`, which every operation documents).
pub const OPERATIONS: &[Operation] = &[
    service("post", "/charge", true, true, false),
    service("post", "/refund", true, true, false),
    service("post", "/payments/{id}/retry", true, false, true),
    service("get", "/payments/{id}", false, false, true),
    service("get", "/payments", false, false, true),
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
