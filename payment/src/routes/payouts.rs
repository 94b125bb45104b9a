//! Payouts out of the platform (service or admin token): accepted with a hold (202), sent by the
//! worker through the payout provider.

use crate::application::payouts;
use crate::state::AppState;
use crate::storage::ledger::Refused;
use crate::storage::payouts as store;
use crate::storage::recipients::Created;
use crate::storage::StorageError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use shared::contract::transfers::{NewPayout, Payout, PayoutList, PayoutsQuery};
use shared::contract::values::{Currency, Limit, Offset};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::{Json, Query};
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("recipient {0} does not exist")]
    UnknownRecipient(Uuid),
    #[error("recipient {recipient} has {spendable} {currency} to pay out (available − held), not {requested}")]
    InsufficientFunds {
        recipient: Uuid,
        currency: Currency,
        requested: i64,
        spendable: i64,
    },
    #[error("payout {0} does not exist")]
    NotFound(Uuid),
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for PayoutError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            PayoutError::UnknownRecipient(id) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::RecipientNotFound,
                detail,
            )
            .recipient_id(*id),
            PayoutError::InsufficientFunds {
                recipient,
                requested,
                spendable,
                ..
            } => Problem::new(StatusCode::CONFLICT, ProblemCode::InsufficientFunds, detail)
                .recipient_id(*recipient)
                .shortfall(*requested, *spendable),
            PayoutError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, ProblemCode::PayoutNotFound, detail)
                    .payout_id(*id)
            }
            PayoutError::KeyReused => key_reused(),
            PayoutError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for PayoutError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::PayoutNotFound),
        (409, ProblemCode::InsufficientFunds),
        (422, ProblemCode::RecipientNotFound),
        (422, ProblemCode::IdempotencyKeyReused),
    ];
}

impl_response_error!(PayoutError);

/// Accepts a payout: its amount is held until the worker has the provider send it (service or
/// admin token).
#[utoipa::path(post, path = "/payouts", operation_id = "createPayout", request_body = NewPayout, tag = "marketplace",
    responses((status = 202, body = Payout, description = "the pending payout, with its Location")))]
pub async fn create(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<NewPayout>,
) -> Result<HttpResponse, PayoutError> {
    let new = body.0;
    let accepted = payouts::accept(&state.payments, &new, &idem.scoped, &idem.fingerprint).await?;
    let payout = match accepted {
        Ok(Created::New(p) | Created::Existing(p)) => p,
        Ok(Created::KeyReused) => return Err(PayoutError::KeyReused),
        Err(Refused::UnknownRecipient(id)) => return Err(PayoutError::UnknownRecipient(id)),
        // A payout has one recipient: storage never refuses it as a transfer to itself.
        Err(Refused::SameRecipient(_)) => {
            return Err(StorageError::other("a payout refused as a transfer to itself").into())
        }
        Err(Refused::InsufficientFunds { spendable }) => {
            return Err(PayoutError::InsufficientFunds {
                recipient: new.recipient_id,
                currency: new.currency,
                requested: new.amount.get(),
                spendable,
            })
        }
    };
    let location = format!(
        "{}/payouts/{}",
        state.settings.public_prefix, payout.payout_id
    );
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(payout))
}

/// A payout (service or admin token).
#[utoipa::path(get, path = "/payouts/{payoutId}", operation_id = "getPayout", params(("payoutId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = Payout, description = "the payout")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, PayoutError> {
    let id = id.into_inner();
    match store::get(state.payments.pool(), id).await? {
        Some(p) => Ok(HttpResponse::Ok().json(p)),
        None => Err(PayoutError::NotFound(id)),
    }
}

/// Payouts, newest first (service or admin token).
#[utoipa::path(get, path = "/payouts", operation_id = "listPayouts", params(PayoutsQuery), tag = "marketplace",
    responses((status = 200, body = PayoutList, description = "a page of payouts")))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<PayoutsQuery>,
) -> Result<HttpResponse, PayoutError> {
    let query = query.0;
    let limit = query.limit.unwrap_or(Limit::DEFAULT);
    let offset = query.offset.unwrap_or(Offset::ZERO);
    let (payouts, total) = store::list(
        state.payments.pool(),
        query.recipient_id,
        query.status,
        limit,
        offset,
    )
    .await?;
    Ok(HttpResponse::Ok().json(PayoutList {
        payouts,
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
            PayoutError::UnknownRecipient(Uuid::nil()),
            PayoutError::InsufficientFunds {
                recipient: Uuid::nil(),
                currency: Currency::parse("USD").unwrap(),
                requested: 2,
                spendable: 1,
            },
            PayoutError::NotFound(Uuid::nil()),
            PayoutError::KeyReused,
        ] {
            assert_listed::<PayoutError>(&e.to_problem());
        }
    }
}
