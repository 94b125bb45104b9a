//! Charges, refunds, retries and reads of payments (service token).

use crate::application::{Charged, FlowError, Refunded, Retried};
use crate::state::AppState;
use crate::storage::payments as store;
use crate::storage::StorageError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use shared::contract::payment::{
    ChargeRequest, Payment, PaymentList, PaymentStatus, PaymentsQuery, RefundTarget,
    Refunded as RefundAnswer,
};
use shared::contract::values::{Attempt, Limit, Offset};
use shared::contract::CanceledOrder;
use shared::http::problem::{Answers, ProblemCode};
use shared::http::{Json, Query};
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment {0} does not exist")]
    NotFound(Uuid),
    #[error("order {order_id} (attempt {attempt}) was refunded or canceled")]
    OrderCanceled {
        order_id: String,
        attempt: Attempt,
        payment_id: Option<Uuid>,
    },
    #[error("order {order_id} (attempt {attempt}) already has payment {payment_id}")]
    Exists {
        order_id: String,
        attempt: Attempt,
        payment_id: Uuid,
    },
    #[error("payment {id} is {status}{}; only a failed payment whose order was not compensated can be retried", if *compensated { " and its order was compensated (/refund)" } else { "" })]
    NotRetryable {
        id: Uuid,
        status: PaymentStatus,
        compensated: bool,
    },
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl From<StorageError> for PaymentError {
    fn from(e: StorageError) -> Self {
        PaymentError::Flow(FlowError::Storage(e))
    }
}

impl ToProblem for PaymentError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            PaymentError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, ProblemCode::PaymentNotFound, detail)
                    .payment_id(*id)
            }
            PaymentError::OrderCanceled {
                order_id,
                payment_id,
                ..
            } => {
                let p = Problem::new(StatusCode::CONFLICT, ProblemCode::OrderCanceled, detail)
                    .order_id(order_id);
                match payment_id {
                    Some(id) => p.payment_id(*id),
                    None => p,
                }
            }
            PaymentError::Exists {
                order_id,
                payment_id,
                ..
            } => Problem::new(StatusCode::CONFLICT, ProblemCode::PaymentExists, detail)
                .order_id(order_id)
                .payment_id(*payment_id),
            PaymentError::NotRetryable { id, status, .. } => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::PaymentNotRetryable,
                detail,
            )
            .payment_id(*id)
            .payment_status(*status),
            PaymentError::KeyReused => key_reused(),
            PaymentError::Flow(e) => e.to_problem(),
        }
    }
}

/// A processor that did not answer is 503 `processor_unavailable`: what was asked is recorded
/// and the same request retried finishes it.
impl ToProblem for FlowError {
    fn to_problem(&self) -> Problem {
        match self {
            FlowError::Processor(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::ProcessorUnavailable,
                "the payment processor did not answer; retry with the same Idempotency-Key",
            )
            .retry_after(1),
            FlowError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for PaymentError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::PaymentNotFound),
        (409, ProblemCode::OrderCanceled),
        (409, ProblemCode::PaymentExists),
        (409, ProblemCode::PaymentNotRetryable),
        (422, ProblemCode::IdempotencyKeyReused),
        (503, ProblemCode::ProcessorUnavailable),
    ];
}

impl_response_error!(PaymentError);

/// Charges an amount; a decline is a created payment with status `failed` (service token).
#[utoipa::path(post, path = "/charge", operation_id = "charge", request_body = ChargeRequest, tag = "payments",
    responses((status = 201, body = Payment, description = "the payment: succeeded, or failed when declined")))]
pub async fn charge(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<ChargeRequest>,
) -> Result<HttpResponse, PaymentError> {
    let request = body.0;
    let order_id = || {
        request
            .order_id
            .as_ref()
            .map(|o| o.as_str().to_string())
            .unwrap_or_default()
    };
    match state.payments.charge(&request, &idem).await? {
        Charged::Payment(p) => Ok(HttpResponse::Created().json(p)),
        Charged::OrderCanceled(payment_id) => Err(PaymentError::OrderCanceled {
            order_id: order_id(),
            attempt: request.attempt,
            payment_id,
        }),
        Charged::OrderHasPayment(payment_id) => Err(PaymentError::Exists {
            order_id: order_id(),
            attempt: request.attempt,
            payment_id,
        }),
        Charged::KeyReused => Err(PaymentError::KeyReused),
    }
}

/// Gives a payment back; safe to repeat and safe before the charge (service token).
#[utoipa::path(post, path = "/refund", operation_id = "refund", request_body = RefundTarget, tag = "payments",
    responses((status = 200, body = RefundAnswer,
        description = "the payment, or the tombstone left for an order's attempt that had none")))]
pub async fn refund(
    state: web::Data<AppState>,
    body: Json<RefundTarget>,
) -> Result<HttpResponse, PaymentError> {
    match state.payments.refund(&body.0).await? {
        Refunded::Payment(p) => Ok(HttpResponse::Ok().json(RefundAnswer::Payment(p))),
        Refunded::Tombstone(order) => Ok(HttpResponse::Ok().json(RefundAnswer::Tombstone(
            CanceledOrder::new(order.order_id.as_str(), order.attempt),
        ))),
        Refunded::NotFound(id) => Err(PaymentError::NotFound(id)),
    }
}

/// Asks the processor again for a `failed` payment whose order was not compensated (`/refund` not
/// answered for it) (service token).
#[utoipa::path(post, path = "/payments/{paymentId}/retry", operation_id = "retryPayment", params(("paymentId" = Uuid, Path)), tag = "payments",
    responses((status = 200, body = Payment, description = "the payment after the new attempt")))]
pub async fn retry(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    idem: IdempotencyContext,
) -> Result<HttpResponse, PaymentError> {
    let id = id.into_inner();
    match state.payments.retry(id, &idem).await? {
        Retried::Payment(p) => Ok(HttpResponse::Ok().json(p)),
        Retried::NotRetryable(p, compensated) => Err(PaymentError::NotRetryable {
            id,
            status: p.status,
            compensated,
        }),
        Retried::NotFound => Err(PaymentError::NotFound(id)),
        Retried::KeyReused => Err(PaymentError::KeyReused),
    }
}

/// A payment (service token).
#[utoipa::path(get, path = "/payments/{paymentId}", operation_id = "getPayment", params(("paymentId" = Uuid, Path)), tag = "payments",
    responses((status = 200, body = Payment, description = "the payment")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, PaymentError> {
    let id = id.into_inner();
    let mut conn = state
        .payments
        .pool()
        .acquire()
        .await
        .map_err(StorageError::from)?;
    match store::get(&mut conn, id).await? {
        Some(p) => Ok(HttpResponse::Ok().json(p)),
        None => Err(PaymentError::NotFound(id)),
    }
}

/// Payments, newest first (service token).
#[utoipa::path(get, path = "/payments", operation_id = "listPayments", params(PaymentsQuery), tag = "payments",
    responses((status = 200, body = PaymentList, description = "a page of payments")))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<PaymentsQuery>,
) -> Result<HttpResponse, PaymentError> {
    let query = query.0;
    let limit = query.limit.unwrap_or(Limit::DEFAULT);
    let offset = query.offset.unwrap_or(Offset::ZERO);
    let (payments, total) = store::list(
        state.payments.pool(),
        query.status,
        query.order_id.as_ref().map(|o| o.as_str()),
        limit,
        offset,
    )
    .await?;
    Ok(HttpResponse::Ok().json(PaymentList {
        payments,
        total,
        limit: limit.get(),
        offset: offset.get(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::processor::ProcessorError;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        for e in [
            PaymentError::NotFound(Uuid::nil()),
            PaymentError::OrderCanceled {
                order_id: "o".into(),
                attempt: Attempt::FIRST,
                payment_id: None,
            },
            PaymentError::Exists {
                order_id: "o".into(),
                attempt: Attempt::FIRST,
                payment_id: Uuid::nil(),
            },
            PaymentError::NotRetryable {
                id: Uuid::nil(),
                status: PaymentStatus::Succeeded,
                compensated: false,
            },
            PaymentError::KeyReused,
            PaymentError::Flow(FlowError::Processor(ProcessorError::Unavailable(
                "x".into(),
            ))),
        ] {
            assert_listed::<PaymentError>(&e.to_problem());
        }
    }
}
