//! Reservations: reserve every line of an order or none, release, complete, read (service token).

use crate::application::{Completed, Released, Reserved};
use crate::domain::{Rejection, ReserveRequest as Request};
use crate::state::AppState;
use crate::storage::reservations as store;
use crate::storage::StorageError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use shared::contract::stock::{
    Released as ReleaseAnswer, Reservation, ReservationTarget, ReserveRequest,
};
use shared::contract::values::{Attempt, ItemId, OrderRef};
use shared::contract::CanceledOrder;
use shared::http::problem::{Answers, ProblemCode};
use shared::http::Json;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("item {0} does not exist")]
    ItemNotFound(ItemId),
    #[error("item {item_id}: {requested} requested, {available} available")]
    InsufficientStock {
        item_id: ItemId,
        requested: i64,
        available: i64,
    },
    #[error("the items are priced in different currencies")]
    MixedCurrency,
    #[error("order {0} (attempt {1}) was released before this reserve")]
    Canceled(OrderRef, Attempt),
    #[error("order {order_id} (attempt {attempt}) already has reservation {reservation_id}")]
    Exists {
        order_id: OrderRef,
        attempt: Attempt,
        reservation_id: Uuid,
    },
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for ReserveError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ReserveError::ItemNotFound(id) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::ItemNotFound,
                detail,
            )
            .item_id(id.get()),
            ReserveError::InsufficientStock {
                item_id,
                requested,
                available,
            } => Problem::new(StatusCode::CONFLICT, ProblemCode::InsufficientStock, detail)
                .item_id(item_id.get())
                .shortfall(*requested, *available),
            ReserveError::MixedCurrency => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::MixedCurrency,
                detail,
            ),
            ReserveError::Canceled(order_id, _) => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::ReservationCanceled,
                detail,
            )
            .order_id(order_id),
            ReserveError::Exists {
                order_id,
                reservation_id,
                ..
            } => Problem::new(StatusCode::CONFLICT, ProblemCode::ReservationExists, detail)
                .order_id(order_id)
                .reservation_id(*reservation_id),
            ReserveError::KeyReused => key_reused(),
            ReserveError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for ReserveError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (409, ProblemCode::InsufficientStock),
        (409, ProblemCode::ReservationCanceled),
        (409, ProblemCode::ReservationExists),
        (422, ProblemCode::ItemNotFound),
        (422, ProblemCode::MixedCurrency),
        (422, ProblemCode::IdempotencyKeyReused),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no such reservation")]
    NotFound,
    #[error("reservation {0} is completed and cannot be released")]
    Completed(Uuid),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for ReleaseError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ReleaseError::NotFound => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::ReservationNotFound,
                detail,
            ),
            ReleaseError::Completed(id) => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::ReservationCompleted,
                detail,
            )
            .reservation_id(*id),
            ReleaseError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for ReleaseError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::ReservationNotFound),
        (409, ProblemCode::ReservationCompleted),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("no such reservation")]
    NotFound,
    #[error("reservation {0} was canceled")]
    Canceled(Uuid),
    #[error("reservation {0} expired")]
    Expired(Uuid),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for CompleteError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            CompleteError::NotFound => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::ReservationNotFound,
                detail,
            ),
            CompleteError::Canceled(id) => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::ReservationCanceled,
                detail,
            )
            .reservation_id(*id),
            CompleteError::Expired(id) => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::ReservationExpired,
                detail,
            )
            .reservation_id(*id),
            CompleteError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for CompleteError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::ReservationNotFound),
        (409, ProblemCode::ReservationCanceled),
        (409, ProblemCode::ReservationExpired),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error("no such reservation")]
    NotFound,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for ReservationError {
    fn to_problem(&self) -> Problem {
        match self {
            ReservationError::NotFound => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::ReservationNotFound,
                self.to_string(),
            ),
            ReservationError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for ReservationError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[(404, ProblemCode::ReservationNotFound)];
}

impl_response_error!(ReserveError, ReleaseError, CompleteError, ReservationError);

/// The metric label of an answer: `ok` for a success, else the problem code.
fn outcome<T, E: ToProblem>(result: &Result<T, E>, ok: &'static str) -> &'static str {
    match result {
        Ok(_) => ok,
        Err(e) => e.to_problem().code.as_str(),
    }
}

/// Reserves every line of an order, or none (service token).
#[utoipa::path(post, path = "/reserve", operation_id = "reserve", request_body = ReserveRequest, tag = "reservations",
    responses((status = 201, body = Reservation, description = "the reservation")))]
pub async fn reserve(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<ReserveRequest>,
) -> Result<HttpResponse, ReserveError> {
    let result = reserve_in(&state, &idem, Request::from(body.0)).await;
    state.metrics.count(outcome(&result, "reserved"));
    result.map(|r| HttpResponse::Created().json(r))
}

async fn reserve_in(
    state: &AppState,
    idem: &IdempotencyContext,
    request: Request,
) -> Result<Reservation, ReserveError> {
    match state.reservations.reserve(&request, idem).await? {
        Reserved::New(r) | Reserved::Existing(r) => Ok(r),
        Reserved::Rejected(Rejection::ItemNotFound(id)) => Err(ReserveError::ItemNotFound(id)),
        Reserved::Rejected(Rejection::MixedCurrency) => Err(ReserveError::MixedCurrency),
        Reserved::Rejected(Rejection::InsufficientStock {
            item_id,
            requested,
            available,
        }) => Err(ReserveError::InsufficientStock {
            item_id,
            requested,
            available,
        }),
        Reserved::OrderCanceled => Err(ReserveError::Canceled(request.order_id, request.attempt)),
        Reserved::OrderHasReservation(reservation_id) => Err(ReserveError::Exists {
            order_id: request.order_id,
            attempt: request.attempt,
            reservation_id,
        }),
        Reserved::KeyReused => Err(ReserveError::KeyReused),
    }
}

/// Returns a reservation's units; safe to repeat and safe before the reserve (service token).
#[utoipa::path(post, path = "/release", operation_id = "release", request_body = ReservationTarget, tag = "reservations",
    responses((status = 200, body = ReleaseAnswer,
        description = "the reservation, or the tombstone left for an order's attempt that had none")))]
pub async fn release(
    state: web::Data<AppState>,
    body: Json<ReservationTarget>,
) -> Result<HttpResponse, ReleaseError> {
    let result = match state.reservations.release(&body.0).await {
        Ok(Released::Reservation(r)) => Ok(ReleaseAnswer::Reservation(r)),
        Ok(Released::Tombstone(order_id, attempt)) => Ok(ReleaseAnswer::Tombstone(
            CanceledOrder::new(order_id, attempt),
        )),
        Ok(Released::AlreadyCompleted(id)) => Err(ReleaseError::Completed(id)),
        Ok(Released::NotFound) => Err(ReleaseError::NotFound),
        Err(e) => Err(ReleaseError::Storage(e)),
    };
    state.metrics.count(outcome(&result, "released"));
    result.map(|r| HttpResponse::Ok().json(r))
}

/// Ships a reservation: its units leave the stock (service token).
#[utoipa::path(post, path = "/complete", operation_id = "complete", request_body = ReservationTarget, tag = "reservations",
    responses((status = 200, body = Reservation, description = "the completed reservation")))]
pub async fn complete(
    state: web::Data<AppState>,
    body: Json<ReservationTarget>,
) -> Result<HttpResponse, CompleteError> {
    let result = match state.reservations.complete(&body.0).await {
        Ok(Completed::Reservation(r)) => Ok(r),
        Ok(Completed::Canceled(id)) => Err(CompleteError::Canceled(id)),
        Ok(Completed::Expired(id)) => Err(CompleteError::Expired(id)),
        Ok(Completed::NotFound) => Err(CompleteError::NotFound),
        Err(e) => Err(CompleteError::Storage(e)),
    };
    state.metrics.count(outcome(&result, "completed"));
    result.map(|r| HttpResponse::Ok().json(r))
}

/// A reservation (service token); tombstones are not reservations.
#[utoipa::path(get, path = "/reservations/{reservationId}", operation_id = "getReservation", params(("reservationId" = Uuid, Path)), tag = "reservations",
    responses((status = 200, body = Reservation, description = "the reservation")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ReservationError> {
    let mut conn = state.pool.acquire().await.map_err(StorageError::from)?;
    match store::get(&mut conn, id.into_inner()).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(ReservationError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        let id = ItemId::new(1).unwrap();
        let order = OrderRef::parse("o").unwrap();
        for e in [
            ReserveError::ItemNotFound(id),
            ReserveError::InsufficientStock {
                item_id: id,
                requested: 2,
                available: 1,
            },
            ReserveError::MixedCurrency,
            ReserveError::Canceled(order.clone(), Attempt::FIRST),
            ReserveError::Exists {
                order_id: order,
                attempt: Attempt::FIRST,
                reservation_id: Uuid::nil(),
            },
            ReserveError::KeyReused,
        ] {
            assert_listed::<ReserveError>(&e.to_problem());
        }
        for e in [ReleaseError::NotFound, ReleaseError::Completed(Uuid::nil())] {
            assert_listed::<ReleaseError>(&e.to_problem());
        }
        for e in [
            CompleteError::NotFound,
            CompleteError::Canceled(Uuid::nil()),
            CompleteError::Expired(Uuid::nil()),
        ] {
            assert_listed::<CompleteError>(&e.to_problem());
        }
        assert_listed::<ReservationError>(&ReservationError::NotFound.to_problem());
    }
}
