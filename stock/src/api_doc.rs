//! The OpenAPI document of the stock service: generated from the contract types and the handlers'
//! descriptions, completed from the table of operations below with what the shared layers add.

use crate::routes::items::{self, ItemError};
use crate::routes::reservations::{
    self, CompleteError, ReleaseError, ReservationError, ReserveError,
};
use shared::http::problem::Answers;
use shared::openapi::{Access, Link, Operation};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "stock",
        description = "Catalogue and reservations. Money is in minor units; errors are application/problem+json."
    ),
    paths(
        items::list,
        items::get,
        items::create,
        items::restock,
        reservations::reserve,
        reservations::release,
        reservations::complete,
        reservations::get
    )
)]
struct ApiDoc;

/// A new item can be read and restocked.
const ITEM_LINKS: &[Link] = &[
    Link {
        status: 201,
        operation_id: "getItem",
        parameters: &[("itemId", "$response.body#/id")],
        body: None,
    },
    Link {
        status: 201,
        operation_id: "restockItem",
        parameters: &[("itemId", "$response.body#/id")],
        body: None,
    },
];

/// A new reservation can be read, completed and released.
const RESERVATION_LINKS: &[Link] = &[
    Link {
        status: 201,
        operation_id: "getReservation",
        parameters: &[("reservationId", "$response.body#/reservationId")],
        body: None,
    },
    Link {
        status: 201,
        operation_id: "complete",
        parameters: &[],
        body: Some(r#"{"reservationId": "$response.body#/reservationId"}"#),
    },
    Link {
        status: 201,
        operation_id: "release",
        parameters: &[],
        body: Some(r#"{"reservationId": "$response.body#/reservationId"}"#),
    },
];

/// Every operation of the service and the layers it sits behind.
pub const OPERATIONS: &[Operation] = &[
    Operation::new("get", "/items", Access::Public).params(),
    Operation::new("get", "/items/{itemId}", Access::Public)
        .params()
        .answers(ItemError::ANSWERS),
    Operation::new("post", "/items", Access::Admin)
        .idempotent()
        .body()
        .answers(ItemError::ANSWERS)
        .links(ITEM_LINKS),
    Operation::new("post", "/items/{itemId}/restock", Access::Admin)
        .idempotent()
        .body()
        .params()
        .answers(ItemError::ANSWERS),
    Operation::new("post", "/reserve", Access::Service)
        .idempotent()
        .body()
        .answers(ReserveError::ANSWERS)
        .links(RESERVATION_LINKS),
    Operation::new("post", "/release", Access::Service)
        .idempotent()
        .body()
        .answers(ReleaseError::ANSWERS),
    Operation::new("post", "/complete", Access::Service)
        .idempotent()
        .body()
        .answers(CompleteError::ANSWERS),
    Operation::new("get", "/reservations/{reservationId}", Access::Service)
        .params()
        .answers(ReservationError::ANSWERS),
];

/// The complete document, published under `prefix`.
pub fn document(prefix: &str) -> Result<serde_json::Value, String> {
    shared::openapi::document(ApiDoc::openapi(), prefix, OPERATIONS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_operation_once() {
        let doc = super::document("/stock").unwrap();
        assert_eq!(doc["servers"][0]["url"], "/stock");
        assert_eq!(
            doc["paths"]["/reserve"]["post"]["security"][0]["service_token"],
            serde_json::json!([])
        );
    }
}
