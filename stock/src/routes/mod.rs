//! HTTP routes of the stock service: thin handlers that parse (the extractors), call the
//! application, and answer. State-changing routes sit behind bearer auth and the Idempotency-Key
//! layer; catalogue reads are public. A method a path does not serve answers 405 with `Allow`.

pub mod items;
pub mod reservations;

use actix_web::middleware::from_fn;
use actix_web::{web, Route};
use shared::http::auth::{require_admin, require_service};
use shared::http::routing::only;
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
        only(web::resource("/items"), &["GET", "POST"])
            .route(web::get().to(items::list))
            .route(admin_change(web::post().to(items::create))),
    )
    .service(only(web::resource("/items/{id}"), &["GET"]).route(web::get().to(items::get)))
    .service(
        only(web::resource("/items/{id}/restock"), &["POST"])
            .route(admin_change(web::post().to(items::restock))),
    )
    .service(
        only(web::resource("/reserve"), &["POST"])
            .route(service_change(web::post().to(reservations::reserve))),
    )
    .service(
        only(web::resource("/release"), &["POST"])
            .route(service_change(web::post().to(reservations::release))),
    )
    .service(
        only(web::resource("/complete"), &["POST"])
            .route(service_change(web::post().to(reservations::complete))),
    )
    .service(
        only(web::resource("/reservations/{id}"), &["GET"]).route(
            web::get()
                .to(reservations::get)
                .wrap(from_fn(require_service)),
        ),
    );
}
