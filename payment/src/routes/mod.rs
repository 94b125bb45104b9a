//! HTTP routes of the payment service: thin handlers that parse (the extractors), call the
//! application, and answer. Every endpoint needs a token — a service token for the checkout's
//! calls (a payment's splits and partial refunds included), an admin token for setting up the
//! marketplace (recipients, split rules) and its trial balance, either for the reads of
//! recipients, balances, rules and the journal, and for transfers and payouts; the state-changing ones sit behind the
//! Idempotency-Key layer; all pass through fault injection first. A method a path does not serve
//! answers 405 with `Allow`.

pub mod ledger;
pub mod payments;
pub mod payouts;
pub mod recipients;
pub mod refunds;
pub mod split_rules;
pub mod transfers;

use crate::application::faults;
use actix_web::middleware::from_fn;
use actix_web::{web, Route};
use shared::http::auth::{require_admin, require_service, require_service_or_admin};
use shared::http::routing::only;
use shared::idempotency;

/// Who may call a route.
#[derive(Clone, Copy)]
enum By {
    Service,
    Admin,
    Either,
}

fn guarded(route: Route, by: By) -> Route {
    match by {
        By::Service => route.wrap(from_fn(require_service)),
        By::Admin => route.wrap(from_fn(require_admin)),
        By::Either => route.wrap(from_fn(require_service_or_admin)),
    }
}

fn change(route: Route, by: By) -> Route {
    guarded(route.wrap(from_fn(idempotency::layer)), by).wrap(from_fn(faults::inject))
}

fn read(route: Route, by: By) -> Route {
    guarded(route, by).wrap(from_fn(faults::inject))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let post = web::post;
    let get = web::get;
    cfg.service(
        only(web::resource("/charge"), &["POST"])
            .route(change(post().to(payments::charge), By::Service)),
    )
    .service(
        only(web::resource("/refund"), &["POST"])
            .route(change(post().to(payments::refund), By::Service)),
    )
    .service(
        only(web::resource("/payments/{id}/retry"), &["POST"])
            .route(change(post().to(payments::retry), By::Service)),
    )
    .service(
        only(web::resource("/payments/{id}/refunds"), &["POST"])
            .route(change(post().to(refunds::create), By::Service)),
    )
    .service(
        only(web::resource("/payments/{id}/splits"), &["GET"])
            .route(read(get().to(ledger::splits), By::Service)),
    )
    .service(
        only(web::resource("/payments/{id}"), &["GET"])
            .route(read(get().to(payments::get), By::Service)),
    )
    .service(
        only(web::resource("/payments"), &["GET"])
            .route(read(get().to(payments::list), By::Service)),
    )
    .service(
        only(web::resource("/recipients"), &["POST"])
            .route(change(post().to(recipients::create), By::Admin)),
    )
    .service(
        only(web::resource("/recipients/{id}/balances"), &["GET"])
            .route(read(get().to(recipients::balances), By::Either)),
    )
    .service(
        only(web::resource("/recipients/{id}"), &["GET"])
            .route(read(get().to(recipients::get), By::Either)),
    )
    .service(
        only(web::resource("/split-rules"), &["GET", "POST"])
            .route(change(post().to(split_rules::create), By::Admin))
            .route(read(get().to(split_rules::list), By::Either)),
    )
    .service(
        only(web::resource("/split-rules/{id}"), &["GET"])
            .route(read(get().to(split_rules::get), By::Either)),
    )
    .service(
        only(web::resource("/ledger/entries"), &["GET"])
            .route(read(get().to(ledger::entries), By::Either)),
    )
    .service(
        only(web::resource("/ledger/trial-balance"), &["GET"])
            .route(read(get().to(ledger::trial_balance), By::Admin)),
    )
    .service(
        only(web::resource("/transfers"), &["GET", "POST"])
            .route(change(post().to(transfers::create), By::Either))
            .route(read(get().to(transfers::list), By::Either)),
    )
    .service(
        only(web::resource("/transfers/{id}/cancel"), &["POST"])
            .route(change(post().to(transfers::cancel), By::Either)),
    )
    .service(
        only(web::resource("/transfers/{id}"), &["GET"])
            .route(read(get().to(transfers::get), By::Either)),
    )
    .service(
        only(web::resource("/payouts"), &["GET", "POST"])
            .route(change(post().to(payouts::create), By::Either))
            .route(read(get().to(payouts::list), By::Either)),
    )
    .service(
        only(web::resource("/payouts/{id}"), &["GET"])
            .route(read(get().to(payouts::get), By::Either)),
    );
}
