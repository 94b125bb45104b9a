use crate::config::Settings;
use crate::domain::item::{NewItemBody, RestockBody};
use crate::domain::{Item, ItemId, ItemList, NewItem, RestockQuantity};
use crate::storage::items::{self as store, Created, Restocked};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::json::Json;
use shared::validate::Page;
use shared::{impl_response_error, Problem, ToProblem};
use sqlx::PgPool;
use utoipa::IntoParams;

#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("item {0} does not exist")]
    NotFound(i64),
    #[error("idempotency key reused")]
    KeyReused,
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ToProblem for ItemError {
    fn to_problem(&self) -> Problem {
        match self {
            ItemError::Invalid(p) => p.clone(),
            ItemError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                "item_not_found",
                format!("item {id} does not exist"),
            )
            .with("itemId", *id),
            ItemError::KeyReused => key_reused(),
            ItemError::Storage(e) => Problem::storage(e),
        }
    }
}
impl_response_error!(ItemError);

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// The catalogue, by id.
#[utoipa::path(get, path = "/items", params(ListQuery), responses((status = 200, body = ItemList)))]
pub async fn list(
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ItemError> {
    let page = Page::parse(query.limit, query.offset).map_err(ItemError::Invalid)?;
    let (items, total) = store::list(&pool, page.limit, page.offset).await?;
    Ok(HttpResponse::Ok().json(ItemList {
        items,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

#[utoipa::path(get, path = "/items/{id}", responses((status = 200, body = Item), (status = 404, description = "item_not_found")))]
pub async fn get(pool: web::Data<PgPool>, id: web::Path<i64>) -> Result<HttpResponse, ItemError> {
    let id = id.into_inner();
    match store::get(&pool, ItemId(id)).await? {
        Some(item) => Ok(HttpResponse::Ok().json(item)),
        None => Err(ItemError::NotFound(id)),
    }
}

/// Adds an item to the catalogue (admin token).
#[utoipa::path(post, path = "/items", request_body = NewItemBody,
    params(("Idempotency-Key" = String, Header)),
    responses((status = 201, body = Item), (status = 400, description = "validation_error")),
    security(("admin_token" = [])))]
pub async fn create(
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
    idem: IdempotencyContext,
    body: Json<NewItemBody>,
) -> Result<HttpResponse, ItemError> {
    let item = NewItem::try_from(body.0).map_err(ItemError::Invalid)?;
    let item = match store::create(&pool, &item, &idem).await? {
        Created::New(item) | Created::Existing(item) => item,
        Created::KeyReused => return Err(ItemError::KeyReused),
    };
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("{}/items/{}", settings.public_prefix, item.id),
        ))
        .json(item))
}

/// Adds `quantity` units to an item's stock (admin token).
#[utoipa::path(post, path = "/items/{id}/restock", request_body = RestockBody,
    params(("Idempotency-Key" = String, Header)),
    responses((status = 200, body = Item), (status = 404, description = "item_not_found")),
    security(("admin_token" = [])))]
pub async fn restock(
    pool: web::Data<PgPool>,
    id: web::Path<i64>,
    idem: IdempotencyContext,
    body: Json<RestockBody>,
) -> Result<HttpResponse, ItemError> {
    let quantity = RestockQuantity::try_from(body.0).map_err(ItemError::Invalid)?;
    let id = id.into_inner();
    match store::restock(&pool, ItemId(id), quantity, &idem).await? {
        Restocked::Done(item) => Ok(HttpResponse::Ok().json(item)),
        Restocked::NotFound => Err(ItemError::NotFound(id)),
        Restocked::KeyReused => Err(ItemError::KeyReused),
    }
}
