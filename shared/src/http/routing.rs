//! Answers for requests no route takes: 404 `not_found` for a path no resource has, 405
//! `method_not_allowed` with `Allow` for a method a resource does not serve — both problem+json.

use super::problem::{Problem, ProblemCode};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, Resource};

/// The default service: 404 `not_found`.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::new(
        StatusCode::NOT_FOUND,
        ProblemCode::NotFound,
        format!("no endpoint {} {}", req.method(), req.path()),
    )
    .to_response()
}

/// `resource`, answering 405 `method_not_allowed` with `Allow: {methods}` to any other method
/// (OPTIONS included: the answer names the methods the path serves).
pub fn only(resource: Resource, methods: &'static [&'static str]) -> Resource {
    let allow = methods.join(", ");
    resource.default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move { method_not_allowed(&req, &allow) }
    }))
}

fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ProblemCode::MethodNotAllowed,
        format!("{} takes only {allow}", req.path()),
    )
    .to_response();
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
