//! HTTP routes of the payment service: every endpoint needs a service token; the state-changing
//! ones sit behind the Idempotency-Key layer; all pass through fault injection first.

pub mod payments;

use crate::faults;
use actix_web::middleware::from_fn;
use actix_web::{web, Route};
use shared::auth::require_service;
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
    cfg.service(web::resource("/charge").route(change(web::post().to(payments::charge))))
        .service(web::resource("/refund").route(change(web::post().to(payments::refund))))
        .service(
            web::resource("/payments/{id}/retry").route(change(web::post().to(payments::retry))),
        )
        .service(web::resource("/payments/{id}").route(read(web::get().to(payments::get))))
        .service(web::resource("/payments").route(read(web::get().to(payments::list))));
}
