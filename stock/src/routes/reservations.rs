use crate::domain::reservation::{ReserveBody, TargetBody};
use crate::domain::{CanceledOrder, Rejection, Reservation, ReserveRequest, Target};
use crate::metrics::StockMetrics;
use crate::storage::reservations::{self as store, Completed, Released, Reservations, Reserved};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::json::Json;
use shared::{impl_response_error, Problem, ToProblem};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("item {0} does not exist")]
    ItemNotFound(i64),
    #[error("item {item_id}: {requested} requested, {available} available")]
    InsufficientStock {
        item_id: i64,
        requested: i64,
        available: i64,
    },
    #[error("the items are priced in different currencies")]
    MixedCurrency,
    #[error("order {0} was released before this reserve")]
    Canceled(String),
    #[error("order {order_id} already has reservation {reservation_id}")]
    Exists {
        order_id: String,
        reservation_id: Uuid,
    },
    #[error("idempotency key reused")]
    KeyReused,
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ToProblem for ReserveError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ReserveError::Invalid(p) => p.clone(),
            ReserveError::ItemNotFound(id) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "item_not_found", detail)
                    .with("itemId", *id)
            }
            ReserveError::InsufficientStock {
                item_id,
                requested,
                available,
            } => Problem::new(StatusCode::CONFLICT, "insufficient_stock", detail)
                .with("itemId", *item_id)
                .with("requested", *requested)
                .with("available", *available),
            ReserveError::MixedCurrency => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "mixed_currency", detail)
            }
            ReserveError::Canceled(order_id) => {
                Problem::new(StatusCode::CONFLICT, "reservation_canceled", detail)
                    .with("orderId", order_id.as_str())
            }
            ReserveError::Exists {
                order_id,
                reservation_id,
            } => Problem::new(StatusCode::CONFLICT, "reservation_exists", detail)
                .with("orderId", order_id.as_str())
                .with("reservationId", reservation_id.to_string()),
            ReserveError::KeyReused => key_reused(),
            ReserveError::Storage(e) => Problem::storage(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("no such reservation")]
    NotFound,
    #[error("reservation {0} is completed and cannot be released")]
    Completed(Uuid),
    #[error("reservation {0} was canceled")]
    Canceled(Uuid),
    #[error("reservation {0} expired")]
    Expired(Uuid),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ToProblem for ChangeError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ChangeError::Invalid(p) => p.clone(),
            ChangeError::NotFound => {
                Problem::new(StatusCode::NOT_FOUND, "reservation_not_found", detail)
            }
            ChangeError::Completed(id) => {
                Problem::new(StatusCode::CONFLICT, "reservation_completed", detail)
                    .with("reservationId", id.to_string())
            }
            ChangeError::Canceled(id) => {
                Problem::new(StatusCode::CONFLICT, "reservation_canceled", detail)
                    .with("reservationId", id.to_string())
            }
            ChangeError::Expired(id) => {
                Problem::new(StatusCode::CONFLICT, "reservation_expired", detail)
                    .with("reservationId", id.to_string())
            }
            ChangeError::Storage(e) => Problem::storage(e),
        }
    }
}

impl_response_error!(ReserveError, ChangeError);

/// Reserves every line of an order, or none (service token).
#[utoipa::path(post, path = "/reserve", request_body = ReserveBody,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 201, body = Reservation),
        (status = 409, description = "insufficient_stock, reservation_exists, reservation_canceled"),
        (status = 422, description = "item_not_found, mixed_currency")),
    security(("service_token" = [])))]
pub async fn reserve(
    reservations: web::Data<Reservations>,
    metrics: web::Data<StockMetrics>,
    idem: IdempotencyContext,
    body: Json<ReserveBody>,
) -> Result<HttpResponse, ReserveError> {
    let result = reserve_inner(&reservations, &idem, body.0).await;
    metrics.count(outcome(&result, "reserved"));
    result
}

/// The metric label of an answer: `ok` for success, else the problem code.
fn outcome<E: ToProblem>(result: &Result<HttpResponse, E>, ok: &'static str) -> &'static str {
    match result {
        Ok(_) => ok,
        Err(e) => e.to_problem().code,
    }
}

async fn reserve_inner(
    reservations: &Reservations,
    idem: &IdempotencyContext,
    body: ReserveBody,
) -> Result<HttpResponse, ReserveError> {
    let request = ReserveRequest::try_from(body).map_err(ReserveError::Invalid)?;
    match reservations.reserve(&request, idem).await? {
        Reserved::New(r) | Reserved::Existing(r) => Ok(HttpResponse::Created().json(r)),
        Reserved::Rejected(Rejection::ItemNotFound(id)) => Err(ReserveError::ItemNotFound(id.0)),
        Reserved::Rejected(Rejection::MixedCurrency) => Err(ReserveError::MixedCurrency),
        Reserved::Rejected(Rejection::InsufficientStock {
            item_id,
            requested,
            available,
        }) => Err(ReserveError::InsufficientStock {
            item_id: item_id.0,
            requested,
            available,
        }),
        Reserved::OrderCanceled => Err(ReserveError::Canceled(request.order_id)),
        Reserved::OrderHasReservation(reservation_id) => Err(ReserveError::Exists {
            order_id: request.order_id,
            reservation_id,
        }),
        Reserved::KeyReused => Err(ReserveError::KeyReused),
    }
}

/// Returns a reservation's stock; safe to repeat and safe before the reserve (service token).
#[utoipa::path(post, path = "/release", request_body = TargetBody,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, body = Reservation, description = "the reservation, or {orderId, status: canceled} for an order that had none"),
        (status = 404, description = "reservation_not_found"),
        (status = 409, description = "reservation_completed")),
    security(("service_token" = [])))]
pub async fn release(
    pool: web::Data<PgPool>,
    metrics: web::Data<StockMetrics>,
    body: Json<TargetBody>,
) -> Result<HttpResponse, ChangeError> {
    let result = async {
        let target = Target::try_from(body.0).map_err(ChangeError::Invalid)?;
        match store::release(&pool, &target).await? {
            Released::Reservation(r) => Ok(HttpResponse::Ok().json(r)),
            Released::Tombstone(order_id) => {
                Ok(HttpResponse::Ok().json(CanceledOrder::new(order_id)))
            }
            Released::AlreadyCompleted(id) => Err(ChangeError::Completed(id)),
            Released::NotFound => Err(ChangeError::NotFound),
        }
    }
    .await;
    metrics.count(outcome(&result, "released"));
    result
}

/// Ships a reservation: its units leave the stock (service token).
#[utoipa::path(post, path = "/complete", request_body = TargetBody,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, body = Reservation),
        (status = 404, description = "reservation_not_found"),
        (status = 409, description = "reservation_canceled, reservation_expired")),
    security(("service_token" = [])))]
pub async fn complete(
    reservations: web::Data<Reservations>,
    metrics: web::Data<StockMetrics>,
    body: Json<TargetBody>,
) -> Result<HttpResponse, ChangeError> {
    let result = async {
        let target = Target::try_from(body.0).map_err(ChangeError::Invalid)?;
        match reservations.complete(&target).await? {
            Completed::Reservation(r) => Ok(HttpResponse::Ok().json(r)),
            Completed::Canceled(id) => Err(ChangeError::Canceled(id)),
            Completed::Expired(id) => Err(ChangeError::Expired(id)),
            Completed::NotFound => Err(ChangeError::NotFound),
        }
    }
    .await;
    metrics.count(outcome(&result, "completed"));
    result
}

#[utoipa::path(get, path = "/reservations/{id}",
    responses((status = 200, body = Reservation), (status = 404, description = "reservation_not_found")),
    security(("service_token" = [])))]
pub async fn get(
    pool: web::Data<PgPool>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ChangeError> {
    match store::get(&pool, id.into_inner()).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(ChangeError::NotFound),
    }
}
