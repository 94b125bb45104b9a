//! The OpenAPI document of the order service: generated from the contract types and the
//! handlers' descriptions, completed from the table of operations below with what the shared
//! layers add.

use crate::routes::checkout::{self, CheckoutError};
use crate::routes::orders::{self, OrderError};
use shared::http::openapi::{Access, Link, Operation};
use shared::http::problem::Answers;
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

/// Every operation of the service and the layers it sits behind.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/checkout",
        access: Access::Public,
        idempotent: true,
        body: true,
        params: false,
        answers: CheckoutError::ANSWERS,
        links: &[
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
        ],
    },
    Operation {
        method: "get",
        path: "/orders/{orderId}",
        access: Access::Public,
        idempotent: false,
        body: false,
        params: true,
        answers: OrderError::ANSWERS,
        links: &[],
    },
    Operation {
        method: "get",
        path: "/orders",
        access: Access::Public,
        idempotent: false,
        body: false,
        params: true,
        answers: &[],
        links: &[],
    },
];

/// The complete document, published under `prefix`.
pub fn document(prefix: &str) -> Result<serde_json::Value, String> {
    shared::http::openapi::document(ApiDoc::openapi(), prefix, OPERATIONS)
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
