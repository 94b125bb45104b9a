//! Fault injection for testing the saga against a misbehaving payment service:
//! `PAYMENT_FAULT_RATE` answers that share of requests 503 before doing anything (off by default).
//! Its sibling `PAYMENT_LATENCY_MS` slows the simulated processor (see `processor.rs`).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use shared::http::problem::ProblemCode;
use shared::Problem;

#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub rate: f64,
}

/// Middleware (`from_fn`), outermost on the payment endpoints.
pub async fn inject(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(faults) = req.app_data::<web::Data<Faults>>().map(|f| *f.get_ref()) {
        if faults.rate > 0.0 && rand::random::<f64>() < faults.rate {
            tracing::info!("injected fault: answering 503");
            let problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::ServiceUnavailable,
                "the payment service is unavailable (injected fault); retry later",
            )
            .retry_after(1);
            return Ok(req.into_response(problem.to_response()));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
