//! HTTP routes of the stock service. State-changing routes sit behind bearer auth and the
//! Idempotency-Key layer; catalogue reads are public.

pub mod items;
pub mod reservations;

use actix_web::middleware::from_fn;
use actix_web::{web, Route};
use shared::auth::{require_admin, require_service};
use shared::idempotency;

/// An idempotent state change callable with a service token.
fn service_change(route: Route) -> Route {
    route
        .wrap(from_fn(idempotency::layer))
        .wrap(from_fn(require_service))
}

/// An idempotent state change callable with an admin token.
fn admin_change(route: Route) -> Route {
    route
        .wrap(from_fn(idempotency::layer))
        .wrap(from_fn(require_admin))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/items")
            .route(web::get().to(items::list))
            .route(admin_change(web::post().to(items::create))),
    )
    .service(web::resource("/items/{id}").route(web::get().to(items::get)))
    .service(
        web::resource("/items/{id}/restock").route(admin_change(web::post().to(items::restock))),
    )
    .service(web::resource("/reserve").route(service_change(web::post().to(reservations::reserve))))
    .service(web::resource("/release").route(service_change(web::post().to(reservations::release))))
    .service(
        web::resource("/complete").route(service_change(web::post().to(reservations::complete))),
    )
    .service(
        web::resource("/reservations/{id}").route(
            web::get()
                .to(reservations::get)
                .wrap(from_fn(require_service)),
        ),
    );
}
