//! Transfers between recipients (service or admin token): accepted with a hold (202), posted by
//! the worker, canceled while pending.

use crate::application::transfers;
use crate::state::AppState;
use crate::storage::ledger::Refused;
use crate::storage::recipients::Created;
use crate::storage::transfers::{self as store, Canceled};
use crate::storage::StorageError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use shared::contract::transfers::{
    NewTransfer, Transfer, TransferList, TransferStatus, TransfersQuery,
};
use shared::contract::values::{Currency, Limit, Offset};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::{Json, Query};
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("a transfer moves money between two recipients, not from {0} to itself")]
    SameRecipient(Uuid),
    #[error("recipient {0} does not exist")]
    UnknownRecipient(Uuid),
    #[error("recipient {recipient} has {spendable} {currency} to transfer (available − held), not {requested}")]
    InsufficientFunds {
        recipient: Uuid,
        currency: Currency,
        requested: i64,
        spendable: i64,
    },
    #[error("transfer {0} does not exist")]
    NotFound(Uuid),
    #[error("transfer {0} was posted already")]
    NotCancelable(Uuid),
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for TransferError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            TransferError::SameRecipient(id) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::SameRecipient,
                detail,
            )
            .recipient_id(*id),
            TransferError::UnknownRecipient(id) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::RecipientNotFound,
                detail,
            )
            .recipient_id(*id),
            TransferError::InsufficientFunds {
                recipient,
                requested,
                spendable,
                ..
            } => Problem::new(StatusCode::CONFLICT, ProblemCode::InsufficientFunds, detail)
                .recipient_id(*recipient)
                .shortfall(*requested, *spendable),
            TransferError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, ProblemCode::TransferNotFound, detail)
                    .transfer_id(*id)
            }
            TransferError::NotCancelable(id) => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::TransferNotCancelable,
                detail,
            )
            .transfer_id(*id)
            .transfer_status(TransferStatus::Posted),
            TransferError::KeyReused => key_reused(),
            TransferError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for TransferError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::TransferNotFound),
        (409, ProblemCode::InsufficientFunds),
        (409, ProblemCode::TransferNotCancelable),
        (422, ProblemCode::SameRecipient),
        (422, ProblemCode::RecipientNotFound),
        (422, ProblemCode::IdempotencyKeyReused),
    ];
}

impl_response_error!(TransferError);

/// Accepts a transfer: its amount is held on the source until the worker posts it (service or
/// admin token).
#[utoipa::path(post, path = "/transfers", operation_id = "createTransfer", request_body = NewTransfer, tag = "marketplace",
    responses((status = 202, body = Transfer, description = "the pending transfer, with its Location")))]
pub async fn create(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<NewTransfer>,
) -> Result<HttpResponse, TransferError> {
    let new = body.0;
    let accepted =
        transfers::accept(&state.payments, &new, &idem.scoped, &idem.fingerprint).await?;
    let transfer = match accepted {
        Ok(Created::New(t) | Created::Existing(t)) => t,
        Ok(Created::KeyReused) => return Err(TransferError::KeyReused),
        Err(Refused::SameRecipient(id)) => return Err(TransferError::SameRecipient(id)),
        Err(Refused::UnknownRecipient(id)) => return Err(TransferError::UnknownRecipient(id)),
        Err(Refused::InsufficientFunds { spendable }) => {
            return Err(TransferError::InsufficientFunds {
                recipient: new.from_recipient_id,
                currency: new.currency,
                requested: new.amount.get(),
                spendable,
            })
        }
    };
    let location = format!(
        "{}/transfers/{}",
        state.settings.public_prefix, transfer.transfer_id
    );
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(transfer))
}

/// Cancels a pending transfer and releases its hold; a canceled one answers as it is (service or
/// admin token).
#[utoipa::path(post, path = "/transfers/{transferId}/cancel", operation_id = "cancelTransfer", params(("transferId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = Transfer, description = "the canceled transfer")))]
pub async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, TransferError> {
    let id = id.into_inner();
    match transfers::cancel(&state.payments, id).await? {
        Canceled::Now(t) | Canceled::Before(t) => Ok(HttpResponse::Ok().json(t)),
        Canceled::Posted(_) => Err(TransferError::NotCancelable(id)),
        Canceled::NotFound => Err(TransferError::NotFound(id)),
    }
}

/// A transfer (service or admin token).
#[utoipa::path(get, path = "/transfers/{transferId}", operation_id = "getTransfer", params(("transferId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = Transfer, description = "the transfer")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, TransferError> {
    let id = id.into_inner();
    match store::get(state.payments.pool(), id).await? {
        Some(t) => Ok(HttpResponse::Ok().json(t)),
        None => Err(TransferError::NotFound(id)),
    }
}

/// Transfers, newest first (service or admin token).
#[utoipa::path(get, path = "/transfers", operation_id = "listTransfers", params(TransfersQuery), tag = "marketplace",
    responses((status = 200, body = TransferList, description = "a page of transfers")))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<TransfersQuery>,
) -> Result<HttpResponse, TransferError> {
    let query = query.0;
    let limit = query.limit.unwrap_or(Limit::DEFAULT);
    let offset = query.offset.unwrap_or(Offset::ZERO);
    let (transfers, total) = store::list(
        state.payments.pool(),
        query.recipient_id,
        query.status,
        limit,
        offset,
    )
    .await?;
    Ok(HttpResponse::Ok().json(TransferList {
        transfers,
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
        for e in [
            TransferError::SameRecipient(Uuid::nil()),
            TransferError::UnknownRecipient(Uuid::nil()),
            TransferError::InsufficientFunds {
                recipient: Uuid::nil(),
                currency: Currency::parse("USD").unwrap(),
                requested: 2,
                spendable: 1,
            },
            TransferError::NotFound(Uuid::nil()),
            TransferError::NotCancelable(Uuid::nil()),
            TransferError::KeyReused,
        ] {
            assert_listed::<TransferError>(&e.to_problem());
        }
    }
}
