//! HTTP routes of the order service: public, no token; `/checkout` behind the Idempotency-Key layer.

pub mod checkout;
pub mod orders;

use actix_web::middleware::from_fn;
use actix_web::web;
use shared::idempotency;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/checkout").route(
            web::post()
                .to(checkout::checkout)
                .wrap(from_fn(idempotency::layer)),
        ),
    )
    .service(web::resource("/orders/{id}").route(web::get().to(orders::get)))
    .service(web::resource("/orders").route(web::get().to(orders::list)));
}
