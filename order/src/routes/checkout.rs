use crate::config::Settings;
use crate::domain::{Accepted, CheckoutBody, CheckoutRequest, FailureCode, Order, OrderStatus};
use crate::saga::Saga;
use crate::storage::{self, Opened, Writes};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use shared::http_client::CallContext;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::json::Json;
use shared::{impl_response_error, Problem, ToProblem};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("idempotency key reused")]
    KeyReused,
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ToProblem for CheckoutError {
    fn to_problem(&self) -> Problem {
        match self {
            CheckoutError::Invalid(p) => p.clone(),
            CheckoutError::KeyReused => key_reused(),
            CheckoutError::Storage(e) => Problem::storage(e),
        }
    }
}
impl_response_error!(CheckoutError);

/// The status and detail a failed checkout answers with.
fn failure_answer(code: FailureCode) -> (StatusCode, &'static str) {
    match code {
        FailureCode::InsufficientStock => (
            StatusCode::CONFLICT,
            "an item is out of stock; nothing was charged",
        ),
        FailureCode::ItemNotFound => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "an item does not exist; nothing was charged",
        ),
        FailureCode::MixedCurrency => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the items are priced in different currencies; nothing was charged",
        ),
        FailureCode::PaymentDeclined => (
            StatusCode::PAYMENT_REQUIRED,
            "the payment was declined; the stock was released",
        ),
        FailureCode::ReservationExpired => (
            StatusCode::CONFLICT,
            "the reservation expired before completion; the payment was refunded",
        ),
        FailureCode::DependencyUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "stock or payment did not answer; everything was undone, nothing is charged",
        ),
        FailureCode::Rejected => (
            StatusCode::BAD_GATEWAY,
            "a service refused the checkout unexpectedly; everything was undone",
        ),
    }
}

/// The answer for an order in its current state.
pub fn answer(order: &Order, prefix: &str) -> HttpResponse {
    let location = format!("{prefix}/orders/{}", order.order_id);
    match (order.status(), order.failure()) {
        (OrderStatus::Completed, _) => HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .json(order),
        (OrderStatus::Failed, code) => {
            let code = code.unwrap_or(FailureCode::Rejected);
            let (status, detail) = failure_answer(code);
            let mut problem = Problem::new(status, code.as_str(), detail)
                .with("orderId", order.order_id.to_string())
                .with("orderStatus", order.status.as_str());
            if code == FailureCode::DependencyUnavailable {
                problem = problem.retry_after(1);
            }
            problem.to_response()
        }
        _ => HttpResponse::Accepted()
            .insert_header((header::LOCATION, location))
            .json(Accepted {
                order_id: order.order_id,
                status: order.status.clone(),
            }),
    }
}

async fn wait_for_terminal(
    pool: &PgPool,
    id: uuid::Uuid,
    deadline: Instant,
) -> Result<(), sqlx::Error> {
    while Instant::now() < deadline {
        if storage::status(pool, id)
            .await?
            .is_some_and(OrderStatus::is_terminal)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// Checks out a cart: reserve stock, charge, complete. Answers the outcome when it is reached
/// within `CHECKOUT_DEADLINE_MS`, else 202 while the saga goes on in the background.
#[utoipa::path(post, path = "/checkout", request_body = CheckoutBody,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 201, body = Order, description = "completed"),
        (status = 202, body = Accepted, description = "still running; GET the Location"),
        (status = 402, description = "payment_declined"),
        (status = 409, description = "insufficient_stock, reservation_expired, request_in_progress"),
        (status = 422, description = "item_not_found, mixed_currency, idempotency_key_reused"),
        (status = 503, description = "dependency_unavailable")))]
pub async fn checkout(
    pool: web::Data<PgPool>,
    saga: web::Data<Arc<Saga>>,
    writes: web::Data<Writes>,
    settings: web::Data<Settings>,
    idem: IdempotencyContext,
    req: HttpRequest,
    body: Json<CheckoutBody>,
) -> Result<HttpResponse, CheckoutError> {
    let deadline = Instant::now() + settings.checkout_deadline;
    let request = CheckoutRequest::try_from(body.0).map_err(CheckoutError::Invalid)?;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let context = CallContext {
        request_id: header(shared::request_id::HEADER.as_str()).unwrap_or_default(),
        // This request's own span: the saga continues its trace, whoever drives it.
        traceparent: shared::telemetry::current_traceparent(),
    };
    let (id, driving) = match writes.open(&request, &idem, &context).await? {
        Opened::New(order) => {
            let id = order.order_id;
            (id, Some(saga.spawn_new(order, context)))
        }
        Opened::Existing(order) if order.status().is_terminal() => {
            return Ok(answer(&order, &settings.public_prefix));
        }
        Opened::Existing(order) => {
            // A retry: drive it here if its driver is gone (its lease ran out).
            let id = order.order_id;
            let orphaned = storage::claim(&pool, id, settings.lease).await?;
            (id, orphaned.then(|| saga.spawn(id)))
        }
        Opened::KeyReused => return Err(CheckoutError::KeyReused),
    };
    match driving {
        Some(handle) => {
            if let Ok(Ok(Ok(order))) = tokio::time::timeout_at(deadline, handle).await {
                return Ok(answer(&order, &settings.public_prefix));
            }
        }
        None => wait_for_terminal(&pool, id, deadline).await?,
    }
    let order = storage::get(&pool, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(answer(&order, &settings.public_prefix))
}
