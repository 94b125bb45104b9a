//! `POST /checkout`: the checkout saga, answered by the order's state when it ends or at the
//! deadline.

use crate::application::Checkout;
use crate::domain::{policy, Order};
use crate::state::AppState;
use crate::storage::StorageError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use shared::client::CallContext;
use shared::contract::order::{
    Accepted, CheckoutRequest, FailureCode, Order as OrderBody, OrderStatus,
};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::Json;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for CheckoutError {
    fn to_problem(&self) -> Problem {
        match self {
            CheckoutError::KeyReused => key_reused(),
            CheckoutError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for CheckoutError {
    /// The failures a checkout answers with (see [`policy::failure_answer`]), and a key reused.
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (402, ProblemCode::PaymentDeclined),
        (409, ProblemCode::InsufficientStock),
        (409, ProblemCode::ReservationExpired),
        (422, ProblemCode::ItemNotFound),
        (422, ProblemCode::MixedCurrency),
        (422, ProblemCode::IdempotencyKeyReused),
        (502, ProblemCode::CheckoutRejected),
        (503, ProblemCode::DependencyUnavailable),
    ];
}

impl_response_error!(CheckoutError);

/// The answer for an order in its current state: 201 completed, a problem for a failure (with the
/// order's id and state), 202 while it runs.
pub fn answer(order: &Order, prefix: &str) -> HttpResponse {
    let location = format!("{prefix}/orders/{}", order.id);
    match order.status {
        OrderStatus::Completed => HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .json(order.body()),
        OrderStatus::Failed => failure(order).to_response(),
        _ => HttpResponse::Accepted()
            .insert_header((header::LOCATION, location))
            .json(Accepted {
                order_id: order.id,
                status: order.status,
            }),
    }
}

/// The problem a failed order answers with.
fn failure(order: &Order) -> Problem {
    let code = order.failure.unwrap_or(FailureCode::Rejected);
    let (status, detail) = policy::failure_answer(code);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let problem = Problem::new(status, code.into(), detail)
        .order_id(order.id)
        .order_status(order.status);
    if code == FailureCode::DependencyUnavailable {
        problem.retry_after(1)
    } else {
        problem
    }
}

/// Checks out a cart: reserve stock, charge, complete. Answers the outcome when it is reached
/// within `CHECKOUT_DEADLINE_MS`, else 202 while the saga goes on in the background.
#[utoipa::path(post, path = "/checkout", operation_id = "checkout", request_body = CheckoutRequest, tag = "checkout",
    responses(
        (status = 201, body = OrderBody, description = "the completed order",
            headers(("Location" = String, description = "the order's URL"))),
        (status = 202, body = Accepted, description = "still running; GET the Location for the outcome",
            headers(("Location" = String, description = "the order's URL")))))]
pub async fn checkout(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    req: HttpRequest,
    body: Json<CheckoutRequest>,
) -> Result<HttpResponse, CheckoutError> {
    let deadline = Instant::now() + state.settings.checkout_deadline;
    let context = CallContext {
        request_id: req
            .headers()
            .get(&shared::http::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        // This request's own span: the saga continues its trace, whoever drives it.
        traceparent: shared::telemetry::current_traceparent(),
    };
    match state
        .saga
        .checkout(body.0, &idem, context, deadline)
        .await?
    {
        Checkout::Order(order) => Ok(answer(&order, &state.settings.public_prefix)),
        Checkout::KeyReused => Err(CheckoutError::KeyReused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::http::problem::assert_listed;
    use shared::text::TextEnum;

    #[test]
    fn every_failure_answers_a_listed_problem() {
        assert_listed::<CheckoutError>(&CheckoutError::KeyReused.to_problem());
        for code in FailureCode::ALL {
            let (status, _) = policy::failure_answer(*code);
            let status = StatusCode::from_u16(status).unwrap();
            assert_listed::<CheckoutError>(&Problem::new(status, (*code).into(), ""));
        }
    }
}
