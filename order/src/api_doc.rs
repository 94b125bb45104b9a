//! The OpenAPI document of the order service: generated from the contract types and the
//! handlers' descriptions, completed from the table of operations below with what the shared
//! layers add.

use crate::routes::checkout::{self, CheckoutError};
use crate::routes::orders::{self, OrderError};
use shared::http::problem::Answers;
use shared::openapi::{Access, Link, Operation};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order",
        description = "Checkout orchestrator: reserve stock, charge, complete, with compensation. Money is in minor units; errors are application/problem+json."
    ),
    paths(checkout::checkout, orders::get, orders::list)
)]
struct ApiDoc;

/// The order a checkout answers can be read.
const ORDER_LINKS: &[Link] = &[
    Link {
        status: 201,
        operation_id: "getOrder",
        parameters: &[("orderId", "$response.body#/orderId")],
        body: None,
    },
    Link {
        status: 202,
        operation_id: "getOrder",
        parameters: &[("orderId", "$response.body#/orderId")],
        body: None,
    },
];

/// Every operation of the service and the layers it sits behind.
pub const OPERATIONS: &[Operation] = &[
    Operation::new("post", "/checkout", Access::Public)
        .idempotent()
        .body()
        .answers(CheckoutError::ANSWERS)
        .links(ORDER_LINKS),
    Operation::new("get", "/orders/{orderId}", Access::Public)
        .params()
        .answers(OrderError::ANSWERS),
    Operation::new("get", "/orders", Access::Public).params(),
];

/// The complete document, published under `prefix`.
pub fn document(prefix: &str) -> Result<serde_json::Value, String> {
    shared::openapi::document(ApiDoc::openapi(), prefix, OPERATIONS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_operation_once() {
        let doc = super::document("/order").unwrap();
        assert_eq!(doc["servers"][0]["url"], "/order");
        assert!(doc["paths"]["/checkout"]["post"]["responses"]["402"].is_object());
    }
}
