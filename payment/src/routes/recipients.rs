//! Recipients and their balances.

use crate::state::AppState;
use crate::storage::recipients::{self as store, Created};
use crate::storage::{ledger, StorageError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use shared::contract::splits::{Balances, NewRecipient, Recipient};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::Json;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum RecipientError {
    #[error("recipient {0} does not exist")]
    NotFound(Uuid),
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for RecipientError {
    fn to_problem(&self) -> Problem {
        match self {
            RecipientError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::RecipientNotFound,
                self.to_string(),
            )
            .recipient_id(*id),
            RecipientError::KeyReused => key_reused(),
            RecipientError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for RecipientError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::RecipientNotFound),
        (422, ProblemCode::IdempotencyKeyReused),
    ];
}

impl_response_error!(RecipientError);

/// Adds a recipient of split money (admin token).
#[utoipa::path(post, path = "/recipients", operation_id = "createRecipient", request_body = NewRecipient, tag = "marketplace",
    responses((status = 201, body = Recipient, description = "the recipient, with its Location")))]
pub async fn create(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<NewRecipient>,
) -> Result<HttpResponse, RecipientError> {
    let pool = state.payments.pool();
    let recipient = match store::create(pool, &body.0, &idem.scoped, &idem.fingerprint).await? {
        Created::New(r) | Created::Existing(r) => r,
        Created::KeyReused => return Err(RecipientError::KeyReused),
    };
    let location = format!(
        "{}/recipients/{}",
        state.settings.public_prefix, recipient.recipient_id
    );
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(recipient))
}

/// A recipient (service or admin token).
#[utoipa::path(get, path = "/recipients/{recipientId}", operation_id = "getRecipient", params(("recipientId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = Recipient, description = "the recipient")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, RecipientError> {
    let id = id.into_inner();
    match store::get(state.payments.pool(), id).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(RecipientError::NotFound(id)),
    }
}

/// A recipient's balances, one per currency (service or admin token).
#[utoipa::path(get, path = "/recipients/{recipientId}/balances", operation_id = "getBalances", params(("recipientId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = Balances, description = "pending, available and held, per currency")))]
pub async fn balances(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, RecipientError> {
    let id = id.into_inner();
    let pool = state.payments.pool();
    if store::get(pool, id).await?.is_none() {
        return Err(RecipientError::NotFound(id));
    }
    let balances = ledger::balances(pool, id).await?;
    Ok(HttpResponse::Ok().json(Balances {
        recipient_id: id,
        balances,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        for e in [
            RecipientError::NotFound(Uuid::nil()),
            RecipientError::KeyReused,
        ] {
            assert_listed::<RecipientError>(&e.to_problem());
        }
    }
}
