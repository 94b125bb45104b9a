//! HTTP routes of the payment service: thin handlers that parse (the extractors), call the
//! application, and answer. Every endpoint needs a service token; the state-changing ones sit
//! behind the Idempotency-Key layer; all pass through fault injection first. A method a path does
//! not serve answers 405 with `Allow`.

pub mod payments;

use crate::application::faults;
use actix_web::middleware::from_fn;
use actix_web::{web, Route};
use shared::http::auth::require_service;
use shared::http::routing::only;
use shared::idempotency;

fn change(route: Route) -> Route {
    route
        .wrap(from_fn(idempotency::layer))
        .wrap(from_fn(require_service))
        .wrap(from_fn(faults::inject))
}

fn read(route: Route) -> Route {
    route
        .wrap(from_fn(require_service))
        .wrap(from_fn(faults::inject))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        only(web::resource("/charge"), &["POST"]).route(change(web::post().to(payments::charge))),
    )
    .service(
        only(web::resource("/refund"), &["POST"]).route(change(web::post().to(payments::refund))),
    )
    .service(
        only(web::resource("/payments/{id}/retry"), &["POST"])
            .route(change(web::post().to(payments::retry))),
    )
    .service(
        only(web::resource("/payments/{id}"), &["GET"]).route(read(web::get().to(payments::get))),
    )
    .service(only(web::resource("/payments"), &["GET"]).route(read(web::get().to(payments::list))));
}
