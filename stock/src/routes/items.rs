//! The catalogue: list, read, add (admin), restock (admin).

use crate::state::AppState;
use crate::storage::items::{self as store, Created, Restocked};
use crate::storage::StorageError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use shared::contract::stock::{Item, ItemList, ItemsQuery, NewItem, Restock};
use shared::contract::values::{ItemId, Limit, Offset};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::{Json, Query};
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};

#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("item {0} does not exist")]
    NotFound(ItemId),
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for ItemError {
    fn to_problem(&self) -> Problem {
        match self {
            ItemError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::ItemNotFound,
                self.to_string(),
            )
            .item_id(id.get()),
            ItemError::KeyReused => key_reused(),
            ItemError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for ItemError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::ItemNotFound),
        (422, ProblemCode::IdempotencyKeyReused),
    ];
}

impl_response_error!(ItemError);

/// The catalogue, by id.
#[utoipa::path(get, path = "/items", operation_id = "listItems", params(ItemsQuery), tag = "catalogue",
    responses((status = 200, body = ItemList, description = "a page of items")))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<ItemsQuery>,
) -> Result<HttpResponse, ItemError> {
    let limit = query.0.limit.unwrap_or(Limit::DEFAULT);
    let offset = query.0.offset.unwrap_or(Offset::ZERO);
    let (items, total) = store::list(&state.pool, limit, offset).await?;
    Ok(HttpResponse::Ok().json(ItemList {
        items,
        total,
        limit: limit.get(),
        offset: offset.get(),
    }))
}

/// An item.
#[utoipa::path(get, path = "/items/{itemId}", operation_id = "getItem", params(("itemId" = ItemId, Path)), tag = "catalogue",
    responses((status = 200, body = Item, description = "the item")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<ItemId>,
) -> Result<HttpResponse, ItemError> {
    let id = id.into_inner();
    match store::get(&state.pool, id).await? {
        Some(item) => Ok(HttpResponse::Ok().json(item)),
        None => Err(ItemError::NotFound(id)),
    }
}

/// Adds an item to the catalogue (admin token).
#[utoipa::path(post, path = "/items", operation_id = "createItem", request_body = NewItem, tag = "catalogue",
    responses((status = 201, body = Item, description = "the item",
        headers(("Location" = String, description = "the item's URL")))))]
pub async fn create(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<NewItem>,
) -> Result<HttpResponse, ItemError> {
    let item = match store::create(&state.pool, &body.0, &idem).await? {
        Created::New(item) | Created::Existing(item) => item,
        Created::KeyReused => return Err(ItemError::KeyReused),
    };
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("{}/items/{}", state.settings.public_prefix, item.id),
        ))
        .json(item))
}

/// Adds units to an item's stock (admin token).
#[utoipa::path(post, path = "/items/{itemId}/restock", operation_id = "restockItem", params(("itemId" = ItemId, Path)),
    request_body = Restock, tag = "catalogue",
    responses((status = 200, body = Item, description = "the item, restocked")))]
pub async fn restock(
    state: web::Data<AppState>,
    id: web::Path<ItemId>,
    idem: IdempotencyContext,
    body: Json<Restock>,
) -> Result<HttpResponse, ItemError> {
    let id = id.into_inner();
    match store::restock(&state.pool, id, body.0.quantity, &idem).await? {
        Restocked::Done(item) => Ok(HttpResponse::Ok().json(item)),
        Restocked::NotFound => Err(ItemError::NotFound(id)),
        Restocked::KeyReused => Err(ItemError::KeyReused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        for e in [
            ItemError::NotFound(ItemId::new(1).unwrap()),
            ItemError::KeyReused,
        ] {
            assert_listed::<ItemError>(&e.to_problem());
        }
    }
}
