use crate::domain::{Order, OrderList, OrderStatus};
use crate::storage;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::validate::Page;
use shared::{impl_response_error, Problem, ToProblem};
use sqlx::PgPool;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("order {0} does not exist")]
    NotFound(Uuid),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ToProblem for OrderError {
    fn to_problem(&self) -> Problem {
        match self {
            OrderError::Invalid(p) => p.clone(),
            OrderError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "order_not_found", self.to_string())
                    .with("orderId", id.to_string())
            }
            OrderError::Storage(e) => Problem::storage(e),
        }
    }
}
impl_response_error!(OrderError);

/// An order with its audit trail.
#[utoipa::path(get, path = "/orders/{id}",
    responses((status = 200, body = Order), (status = 404, description = "order_not_found")))]
pub async fn get(pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, OrderError> {
    let id = id.into_inner();
    match storage::get(&pool, id).await? {
        Some(order) => Ok(HttpResponse::Ok().json(order)),
        None => Err(OrderError::NotFound(id)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    pub status: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Orders, newest first.
#[utoipa::path(get, path = "/orders", params(ListQuery), responses((status = 200, body = OrderList)))]
pub async fn list(
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, OrderError> {
    let page = Page::parse(query.limit, query.offset).map_err(OrderError::Invalid)?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s).ok_or_else(|| {
                Problem::validation(
                    "status: must be one of pending, reserving, charging, completing, compensating, completed, failed",
                )
            })
        })
        .transpose()
        .map_err(OrderError::Invalid)?;
    let (orders, total) = storage::list(&pool, status, page.limit, page.offset).await?;
    Ok(HttpResponse::Ok().json(OrderList {
        orders,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}
