//! `X-Request-ID`: taken from the request (nginx sets one when the client sent none), generated
//! when absent, echoed on the response, and carried by the request's log span.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware (`from_fn`); wrap it outermost so that every other layer sees the id.
pub async fn propagate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = match req.headers().get(&HEADER) {
        Some(v) if !v.is_empty() && v.len() <= 200 && v.to_str().is_ok() => v.clone(),
        _ => {
            let generated = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
            req.headers_mut().insert(HEADER, generated.clone());
            generated
        }
    };
    let mut response = next.call(req).await?;
    response.headers_mut().insert(HEADER, id);
    Ok(response)
}
