//! HTTP routes of the order service: public, no token; `/checkout` behind the Idempotency-Key
//! layer — the one route whose 202 is not replayed but answers the order's state then. A method a
//! path does not serve answers 405 with `Allow`.

pub mod checkout;
pub mod orders;

use actix_web::middleware::from_fn;
use actix_web::web;
use shared::http::routing::only;
use shared::idempotency;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        only(web::resource("/checkout"), &["POST"]).route(
            web::post()
                .to(checkout::checkout)
                .wrap(from_fn(idempotency::layer_answering_current_state)),
        ),
    )
    .service(only(web::resource("/orders/{id}"), &["GET"]).route(web::get().to(orders::get)))
    .service(only(web::resource("/orders"), &["GET"]).route(web::get().to(orders::list)));
}
