//! Reading orders: one with its audit trail, or a page of them.

use crate::state::AppState;
use crate::storage::{orders, StorageError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use shared::contract::order::{Order as OrderBody, OrderList, OrdersQuery};
use shared::contract::values::{Limit, Offset};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::Query;
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} does not exist")]
    NotFound(Uuid),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for OrderError {
    fn to_problem(&self) -> Problem {
        match self {
            OrderError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::OrderNotFound,
                self.to_string(),
            )
            .order_id(id),
            OrderError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for OrderError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[(404, ProblemCode::OrderNotFound)];
}

impl_response_error!(OrderError);

/// An order with its audit trail.
#[utoipa::path(get, path = "/orders/{orderId}", operation_id = "getOrder", params(("orderId" = Uuid, Path)), tag = "orders",
    responses((status = 200, body = OrderBody, description = "the order")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, OrderError> {
    let id = id.into_inner();
    match orders::get(state.saga.pool(), id).await? {
        Some(order) => Ok(HttpResponse::Ok().json(order.body())),
        None => Err(OrderError::NotFound(id)),
    }
}

/// Orders, newest first.
#[utoipa::path(get, path = "/orders", operation_id = "listOrders", params(OrdersQuery), tag = "orders",
    responses((status = 200, body = OrderList, description = "a page of orders")))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<OrdersQuery>,
) -> Result<HttpResponse, OrderError> {
    let limit = query.0.limit.unwrap_or(Limit::DEFAULT);
    let offset = query.0.offset.unwrap_or(Offset::ZERO);
    let (found, total) = orders::list(state.saga.pool(), query.0.status, limit, offset).await?;
    Ok(HttpResponse::Ok().json(OrderList {
        orders: found.iter().map(|o| o.body()).collect(),
        total,
        limit: limit.get(),
        offset: offset.get(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        assert_listed::<OrderError>(&OrderError::NotFound(Uuid::nil()).to_problem());
    }
}
