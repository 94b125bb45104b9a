use crate::config::Settings;
use crate::domain::{
    CanceledOrder, ChargeBody, ChargeRequest, Payment, PaymentList, PaymentStatus, RefundBody,
    RefundTarget, MAX_ID,
};
use crate::flows::{Charged, FlowError, Payments, Refunded, Retried};
use crate::metrics::PaymentMetrics;
use crate::processor::PaymentProcessor;
use crate::storage::{self, Writes};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::json::Json;
use shared::validate::{self, Page};
use shared::{impl_response_error, Problem, ToProblem};
use sqlx::PgPool;
use std::sync::Arc;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("payment {0} does not exist")]
    NotFound(Uuid),
    #[error("order {order_id} was refunded or canceled")]
    OrderCanceled {
        order_id: String,
        payment_id: Option<Uuid>,
    },
    #[error("order {order_id} already has payment {payment_id}")]
    Exists { order_id: String, payment_id: Uuid },
    #[error("payment {id} is {status}; only failed payments can be retried")]
    NotRetryable { id: Uuid, status: String },
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl From<sqlx::Error> for PaymentError {
    fn from(e: sqlx::Error) -> Self {
        PaymentError::Flow(FlowError::Storage(e))
    }
}

impl ToProblem for PaymentError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            PaymentError::Invalid(p) => p.clone(),
            PaymentError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "payment_not_found", detail)
                    .with("paymentId", id.to_string())
            }
            PaymentError::OrderCanceled {
                order_id,
                payment_id,
            } => {
                let p = Problem::new(StatusCode::CONFLICT, "order_canceled", detail)
                    .with("orderId", order_id.as_str());
                match payment_id {
                    Some(id) => p.with("paymentId", id.to_string()),
                    None => p,
                }
            }
            PaymentError::Exists {
                order_id,
                payment_id,
            } => Problem::new(StatusCode::CONFLICT, "payment_exists", detail)
                .with("orderId", order_id.as_str())
                .with("paymentId", payment_id.to_string()),
            PaymentError::NotRetryable { id, status } => {
                Problem::new(StatusCode::CONFLICT, "payment_not_retryable", detail)
                    .with("paymentId", id.to_string())
                    .with("paymentStatus", status.as_str())
            }
            PaymentError::KeyReused => key_reused(),
            PaymentError::Flow(FlowError::Processor(_)) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "processor_unavailable",
                "the payment processor did not answer; retry with the same Idempotency-Key",
            )
            .retry_after(1),
            PaymentError::Flow(FlowError::Storage(e)) => Problem::storage(e),
        }
    }
}
impl_response_error!(PaymentError);

fn payments<'a>(
    pool: &'a PgPool,
    writes: &'a Writes,
    processor: &'a Arc<dyn PaymentProcessor>,
    settings: &Settings,
    metrics: &'a PaymentMetrics,
) -> Payments<'a> {
    Payments {
        pool,
        writes,
        processor: processor.as_ref(),
        max_retries: settings.max_retries,
        settled: &metrics.payments,
    }
}

/// Charges an amount; a decline is a created payment with status `failed` (service token).
#[utoipa::path(post, path = "/charge", request_body = ChargeBody,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 201, body = Payment),
        (status = 409, description = "payment_exists, order_canceled"),
        (status = 503, description = "processor_unavailable")),
    security(("service_token" = [])))]
pub async fn charge(
    pool: web::Data<PgPool>,
    writes: web::Data<Writes>,
    processor: web::Data<Arc<dyn PaymentProcessor>>,
    settings: web::Data<Settings>,
    metrics: web::Data<PaymentMetrics>,
    idem: IdempotencyContext,
    body: Json<ChargeBody>,
) -> Result<HttpResponse, PaymentError> {
    let request = ChargeRequest::try_from(body.0).map_err(PaymentError::Invalid)?;
    let order_id = request.order_id.clone().unwrap_or_default();
    match payments(&pool, &writes, &processor, &settings, &metrics)
        .charge(&request, &idem)
        .await?
    {
        Charged::Payment(p) => Ok(HttpResponse::Created().json(p)),
        Charged::OrderCanceled(payment_id) => Err(PaymentError::OrderCanceled {
            order_id,
            payment_id,
        }),
        Charged::OrderHasPayment(payment_id) => Err(PaymentError::Exists {
            order_id,
            payment_id,
        }),
        Charged::KeyReused => Err(PaymentError::KeyReused),
    }
}

/// Gives a payment back; safe to repeat and safe before the charge (service token).
#[utoipa::path(post, path = "/refund", request_body = RefundBody,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, body = Payment, description = "the payment, or {orderId, status: canceled} for an order that had none"),
        (status = 404, description = "payment_not_found")),
    security(("service_token" = [])))]
pub async fn refund(
    pool: web::Data<PgPool>,
    writes: web::Data<Writes>,
    processor: web::Data<Arc<dyn PaymentProcessor>>,
    settings: web::Data<Settings>,
    metrics: web::Data<PaymentMetrics>,
    body: Json<RefundBody>,
) -> Result<HttpResponse, PaymentError> {
    let target = RefundTarget::try_from(body.0).map_err(PaymentError::Invalid)?;
    match payments(&pool, &writes, &processor, &settings, &metrics)
        .refund(&target)
        .await?
    {
        Refunded::Payment(p) => Ok(HttpResponse::Ok().json(p)),
        Refunded::Tombstone(order_id) => Ok(HttpResponse::Ok().json(CanceledOrder {
            order_id,
            status: "canceled",
        })),
        Refunded::NotFound(id) => Err(PaymentError::NotFound(id)),
    }
}

/// Asks the processor again for a `failed` payment (service token).
#[utoipa::path(post, path = "/payments/{id}/retry",
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, body = Payment),
        (status = 404, description = "payment_not_found"),
        (status = 409, description = "payment_not_retryable")),
    security(("service_token" = [])))]
pub async fn retry(
    pool: web::Data<PgPool>,
    writes: web::Data<Writes>,
    processor: web::Data<Arc<dyn PaymentProcessor>>,
    settings: web::Data<Settings>,
    metrics: web::Data<PaymentMetrics>,
    id: web::Path<Uuid>,
    idem: IdempotencyContext,
) -> Result<HttpResponse, PaymentError> {
    let id = id.into_inner();
    match payments(&pool, &writes, &processor, &settings, &metrics)
        .retry(id, &idem)
        .await?
    {
        Retried::Payment(p) => Ok(HttpResponse::Ok().json(p)),
        Retried::NotRetryable(p) => Err(PaymentError::NotRetryable {
            id,
            status: p.status,
        }),
        Retried::NotFound => Err(PaymentError::NotFound(id)),
        Retried::KeyReused => Err(PaymentError::KeyReused),
    }
}

#[utoipa::path(get, path = "/payments/{id}",
    responses((status = 200, body = Payment), (status = 404, description = "payment_not_found")),
    security(("service_token" = [])))]
pub async fn get(
    pool: web::Data<PgPool>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, PaymentError> {
    let id = id.into_inner();
    match storage::get(&pool, id).await? {
        Some(p) => Ok(HttpResponse::Ok().json(p)),
        None => Err(PaymentError::NotFound(id)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub status: Option<String>,
    pub order_id: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Payments, newest first.
#[utoipa::path(get, path = "/payments", params(ListQuery),
    responses((status = 200, body = PaymentList)),
    security(("service_token" = [])))]
pub async fn list(
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PaymentError> {
    let page = Page::parse(query.limit, query.offset).map_err(PaymentError::Invalid)?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            PaymentStatus::parse(s).ok_or_else(|| {
                Problem::validation(
                    "status: must be one of pending, succeeded, failed, exhausted, refunded",
                )
            })
        })
        .transpose()
        .map_err(PaymentError::Invalid)?;
    let order_id = query
        .order_id
        .as_deref()
        .map(|o| validate::identifier("orderId", o, MAX_ID))
        .transpose()
        .map_err(PaymentError::Invalid)?;
    let (payments, total) =
        storage::list(&pool, status, order_id.as_deref(), page.limit, page.offset).await?;
    Ok(HttpResponse::Ok().json(PaymentList {
        payments,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}
