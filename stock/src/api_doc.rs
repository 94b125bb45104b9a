//! The OpenAPI document of the stock service: generated from the contract types and the handlers'
//! descriptions, completed from the table of operations below with what the shared layers add.

use crate::routes::items::{self, ItemError};
use crate::routes::reservations::{
    self, CompleteError, ReleaseError, ReservationError, ReserveError,
};
use shared::http::openapi::{Access, Link, Operation};
use shared::http::problem::Answers;
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
    Operation {
        method: "get",
        path: "/items",
        access: Access::Public,
        idempotent: false,
        body: false,
        params: true,
        answers: &[],
        links: &[],
    },
    Operation {
        method: "get",
        path: "/items/{itemId}",
        access: Access::Public,
        idempotent: false,
        body: false,
        params: true,
        answers: ItemError::ANSWERS,
        links: &[],
    },
    Operation {
        method: "post",
        path: "/items",
        access: Access::Admin,
        idempotent: true,
        body: true,
        params: false,
        answers: ItemError::ANSWERS,
        links: ITEM_LINKS,
    },
    Operation {
        method: "post",
        path: "/items/{itemId}/restock",
        access: Access::Admin,
        idempotent: true,
        body: true,
        params: true,
        answers: ItemError::ANSWERS,
        links: &[],
    },
    Operation {
        method: "post",
        path: "/reserve",
        access: Access::Service,
        idempotent: true,
        body: true,
        params: false,
        answers: ReserveError::ANSWERS,
        links: RESERVATION_LINKS,
    },
    Operation {
        method: "post",
        path: "/release",
        access: Access::Service,
        idempotent: true,
        body: true,
        params: false,
        answers: ReleaseError::ANSWERS,
        links: &[],
    },
    Operation {
        method: "post",
        path: "/complete",
        access: Access::Service,
        idempotent: true,
        body: true,
        params: false,
        answers: CompleteError::ANSWERS,
        links: &[],
    },
    Operation {
        method: "get",
        path: "/reservations/{reservationId}",
        access: Access::Service,
        idempotent: false,
        body: false,
        params: true,
        answers: ReservationError::ANSWERS,
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
        let doc = super::document("/stock").unwrap();
        assert_eq!(doc["servers"][0]["url"], "/stock");
        assert_eq!(
            doc["paths"]["/reserve"]["post"]["security"][0]["service_token"],
            serde_json::json!([])
        );
    }
}
