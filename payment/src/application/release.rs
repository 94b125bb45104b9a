//! The release worker: every `SPLIT_RELEASE_INTERVAL_MS` it folds the queue of pending credits
//! into the balance rows, releases the allocations whose hold ended (their unreversed rest from
//! `pending` to `available`, one `release` entry per payment, exactly once), and asks the
//! processor again for refunds it never confirmed. Claims use `FOR UPDATE SKIP LOCKED` on the
//! payments' rows — the rows refunds lock too — so several instances can run it side by side, and
//! a refund and a release of one payment never interleave.

use super::flows::Payments;
use super::overflow;
use crate::domain::ledger as split;
use crate::storage::ledger::{self, NewEntry};
use crate::storage::StorageError;
use shared::contract::ledger::{EntryKind, Leg};
use shared::contract::values::Currency;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The most payments released in one transaction.
const BATCH: i64 = 200;
/// The most forgotten refunds settled in one round.
const REFUNDS: i64 = 100;

/// Runs until `stop` turns true, between rounds.
pub async fn run(payments: Payments, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = ledger::fold_pending_credits(payments.pool()).await {
            tracing::warn!(error = %e, "could not fold pending credits; will retry");
        }
        loop {
            match release_due(&payments).await {
                Ok(released) if released as i64 == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not release allocations; will retry");
                    break;
                }
            }
        }
        if let Err(e) = payments.settle_forgotten_refunds(REFUNDS).await {
            tracing::warn!(error = %e, "could not settle unconfirmed refunds; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            tracing::info!("release worker stopped");
            return;
        }
    }
}

/// Releases the due allocations of up to [`BATCH`] payments in one transaction; returns how many
/// payments it claimed.
pub async fn release_due(payments: &Payments) -> Result<usize, StorageError> {
    let mut tx = payments.pool().begin().await?;
    let claimed = ledger::claim_due(&mut tx, BATCH).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = claimed.iter().map(|(id, _)| *id).collect();
    let held = ledger::unreleased(&mut tx, &ids).await?;
    let mut released: Vec<(Uuid, Currency, Vec<Leg>)> = Vec::new();
    for (id, currency) in &claimed {
        let of_payment: Vec<_> = held
            .iter()
            .filter(|(p, _)| p == id)
            .map(|(_, h)| *h)
            .collect();
        let legs = split::release(&of_payment);
        if !legs.is_empty() {
            released.push((*id, *currency, legs));
        }
    }
    let entries: Vec<NewEntry> = released
        .iter()
        .map(|(id, currency, legs)| NewEntry {
            kind: EntryKind::Release,
            currency: *currency,
            payment_id: Some(*id),
            refund_id: None,
            transfer_id: None,
            payout_id: None,
            legs,
        })
        .collect();
    ledger::record_entries(&mut tx, &entries).await?;
    let mut currencies: Vec<Currency> = released.iter().map(|(_, c, _)| *c).collect();
    currencies.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    currencies.dedup();
    for currency in currencies {
        let legs: Vec<Leg> = released
            .iter()
            .filter(|(_, c, _)| *c == currency)
            .flat_map(|(_, _, legs)| legs.iter().cloned())
            .collect();
        ledger::change_balances(
            &mut tx,
            currency,
            &split::balance_changes(&legs).map_err(overflow)?,
        )
        .await?;
    }
    ledger::mark_released(&mut tx, &ids).await?;
    tx.commit().await?;
    payments
        .metrics
        .ledger_entries
        .with_label_values(&[EntryKind::Release.as_str()])
        .inc_by(entries.len() as u64);
    Ok(claimed.len())
}
