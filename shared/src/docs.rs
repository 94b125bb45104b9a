//! `GET /openapi.json` and `GET /docs` (a Scalar page rendering it) for a service's OpenAPI document.

use actix_web::{web, HttpResponse};
use utoipa::openapi::OpenApi;
use utoipa_scalar::{Scalar, Servable};

pub fn routes(openapi: OpenApi) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let json = openapi.to_json().unwrap_or_else(|_| "{}".to_string());
        cfg.service(Scalar::with_url("/docs", openapi)).route(
            "/openapi.json",
            web::get().to(move || {
                let json = json.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(json)
                }
            }),
        );
    }
}
