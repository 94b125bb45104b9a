//! Transfers between recipients, in two phases: accepted with a hold on the source's available
//! money, then posted by the worker (every `TRANSFER_INTERVAL_MS`) — the money moves from the
//! source's `available` to the destination's with one `transfer` entry — or canceled while still
//! pending. The worker claims with `FOR UPDATE SKIP LOCKED`, so several instances can run it side
//! by side, and a cancel racing it waits for its claim and then finds the transfer posted.

use super::flows::Payments;
use super::overflow;
use crate::domain::ledger as split;
use crate::storage::ledger::Refused;
use crate::storage::ledger::{self, NewEntry};
use crate::storage::recipients::Created;
use crate::storage::transfers::{self as store, Canceled};
use crate::storage::StorageError;
use shared::contract::ledger::{EntryKind, Leg};
use shared::contract::transfers::{NewTransfer, Transfer, TransferStatus};
use shared::contract::values::Currency;
use std::time::Duration;
use tokio::sync::watch;

/// The most transfers posted in one transaction.
const BATCH: i64 = 200;

/// Accepts a transfer (see [`store::accept`]), counted once when written.
pub async fn accept(
    payments: &Payments,
    new: &NewTransfer,
    key: &str,
    fingerprint: &str,
) -> Result<Result<Created<Transfer>, Refused>, StorageError> {
    let accepted = store::accept(&payments.pool, new, key, fingerprint).await?;
    if let Ok(Created::New(_)) = &accepted {
        count(payments, TransferStatus::Pending, 1);
    }
    Ok(accepted)
}

/// Cancels a pending transfer (see [`store::cancel`]).
pub async fn cancel(payments: &Payments, id: uuid::Uuid) -> Result<Canceled, StorageError> {
    let canceled = store::cancel(&payments.pool, id).await?;
    if let Canceled::Now(_) = &canceled {
        count(payments, TransferStatus::Canceled, 1);
    }
    Ok(canceled)
}

fn count(payments: &Payments, status: TransferStatus, n: u64) {
    payments
        .metrics
        .transfers
        .with_label_values(&[status.as_str()])
        .inc_by(n);
}

/// Runs until `stop` turns true, between rounds.
pub async fn run(payments: Payments, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        loop {
            match post_pending(&payments).await {
                Ok(posted) if posted as i64 == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not post transfers; will retry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            tracing::info!("transfer worker stopped");
            return;
        }
    }
}

/// Posts up to [`BATCH`] pending transfers in one transaction: one `transfer` entry each, the
/// balances changed (rows locked in the one order every writer uses: by currency, then by
/// recipient), the holds lowered and the transfers marked posted. Returns how many it posted.
pub async fn post_pending(payments: &Payments) -> Result<usize, StorageError> {
    let mut tx = payments.pool.begin().await?;
    let claimed = store::claim_pending(&mut tx, BATCH).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let legs: Vec<Vec<Leg>> = claimed
        .iter()
        .map(|t| split::transfer(t.from_recipient_id, t.to_recipient_id, t.amount))
        .collect();
    let entries: Vec<NewEntry> = claimed
        .iter()
        .zip(&legs)
        .map(|(t, legs)| NewEntry {
            kind: EntryKind::Transfer,
            currency: t.currency,
            payment_id: None,
            refund_id: None,
            transfer_id: Some(t.transfer_id),
            payout_id: None,
            legs,
        })
        .collect();
    ledger::record_entries(&mut tx, &entries).await?;
    let mut currencies: Vec<Currency> = claimed.iter().map(|t| t.currency).collect();
    currencies.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    currencies.dedup();
    for currency in currencies {
        let of_currency: Vec<Leg> = claimed
            .iter()
            .zip(&legs)
            .filter(|(t, _)| t.currency == currency)
            .flat_map(|(_, legs)| legs.iter().cloned())
            .collect();
        // Every source's row is locked here, in order, before its hold is lowered below — one
        // whose changes net to zero too.
        let sources = claimed
            .iter()
            .filter(|t| t.currency == currency)
            .map(|t| t.from_recipient_id);
        let changes = split::locking_also(
            split::balance_changes(&of_currency).map_err(overflow)?,
            sources,
        );
        ledger::change_balances(&mut tx, currency, &changes).await?;
    }
    let holds: Vec<_> = claimed
        .iter()
        .map(|t| (t.from_recipient_id, t.currency, t.amount))
        .collect();
    ledger::release_holds(&mut tx, &holds).await?;
    let ids: Vec<_> = claimed.iter().map(|t| t.transfer_id).collect();
    store::mark_posted(&mut tx, &ids).await?;
    tx.commit().await?;
    count(payments, TransferStatus::Posted, claimed.len() as u64);
    payments
        .metrics
        .ledger_entries
        .with_label_values(&[EntryKind::Transfer.as_str()])
        .inc_by(claimed.len() as u64);
    Ok(claimed.len())
}
