//! The ledger: a payment's splits, the journal, the trial balance.

use crate::state::AppState;
use crate::storage::payments as payments_store;
use crate::storage::{ledger as store, StorageError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use shared::contract::ledger::{EntriesQuery, EntryList, TrialBalance};
use shared::contract::payment::PaymentStatus;
use shared::contract::splits::Splits;
use shared::contract::values::{Limit, Offset};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::Query;
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("payment {0} does not exist")]
    PaymentNotFound(Uuid),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ToProblem for LedgerError {
    fn to_problem(&self) -> Problem {
        match self {
            LedgerError::PaymentNotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::PaymentNotFound,
                self.to_string(),
            )
            .payment_id(*id),
            LedgerError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for LedgerError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[(404, ProblemCode::PaymentNotFound)];
}

impl_response_error!(LedgerError);

/// Who got what of a payment: its allocations, summing to its amount once it succeeded (service
/// token).
#[utoipa::path(get, path = "/payments/{paymentId}/splits", operation_id = "getSplits", params(("paymentId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = Splits, description = "the payment's allocations (none unless it succeeded)")))]
pub async fn splits(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, LedgerError> {
    let id = id.into_inner();
    let pool = state.payments.pool();
    let payment = payments_store::get(&mut *pool.acquire().await.map_err(StorageError::from)?, id)
        .await?
        .ok_or(LedgerError::PaymentNotFound(id))?;
    let allocations = match payment.status {
        PaymentStatus::Succeeded | PaymentStatus::Refunded => store::allocations(pool, id).await?,
        _ => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(Splits {
        payment_id: id,
        currency: payment.currency,
        allocations,
    }))
}

/// Journal entries, newest first (service or admin token).
#[utoipa::path(get, path = "/ledger/entries", operation_id = "listEntries", params(EntriesQuery), tag = "marketplace",
    responses((status = 200, body = EntryList, description = "a page of entries with their legs")))]
pub async fn entries(
    state: web::Data<AppState>,
    query: Query<EntriesQuery>,
) -> Result<HttpResponse, LedgerError> {
    let query = query.0;
    let list = store::entries(
        state.payments.pool(),
        query.recipient_id,
        query.payment_id,
        query.kind,
        query.limit.unwrap_or(Limit::DEFAULT),
        query.offset.unwrap_or(Offset::ZERO),
    )
    .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// The ledger's figures per currency, from the legs, and whether they agree with the stored
/// balances (admin token).
#[utoipa::path(get, path = "/ledger/trial-balance", operation_id = "getTrialBalance", tag = "marketplace",
    responses((status = 200, body = TrialBalance, description = "the trial balance")))]
pub async fn trial_balance(state: web::Data<AppState>) -> Result<HttpResponse, LedgerError> {
    let (currencies, mismatched) = store::trial_balance(state.payments.pool()).await?;
    // Debits equal credits leg by leg (each leg is both), so the sums can only differ if a leg
    // were lost from one side; the identity says every unit received from the processor is in a
    // recipient's account or was paid out; and every stored balance is what its legs give.
    let consistent = mismatched == 0
        && currencies.iter().all(|c| {
            c.debits == c.credits
                && c.processor == c.recipients_pending + c.recipients_available + c.payouts
        });
    if !consistent {
        tracing::error!(mismatched, "the ledger is not consistent");
    }
    Ok(HttpResponse::Ok().json(TrialBalance {
        consistent,
        currencies,
    }))
}
