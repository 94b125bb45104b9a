//! Payouts out of the platform, in two phases: accepted with a hold on the recipient's available
//! money, then sent by the payout worker (every `TRANSFER_INTERVAL_MS`) through the payout
//! provider port — recorded `paid` (a `payout` entry, available → the system's `payouts`) or
//! `failed` (the hold released).
//!
//! The worker calls the provider outside any database transaction, under a lease on the payout.
//! The provider is idempotent per payout id, so a worker that dies between the provider's answer
//! and its recording costs nothing but time: once the lease runs out, a worker asks again with
//! the same id, gets the same answer, and records it — the payout is sent once, recorded once.

use super::flows::Payments;
use super::overflow;
use crate::domain::ledger as split;
use crate::storage::ledger::Refused;
use crate::storage::ledger::{self, NewEntry};
use crate::storage::payouts as store;
use crate::storage::recipients::Created;
use crate::storage::StorageError;
use futures_util::future::{join_all, BoxFuture};
use shared::contract::ledger::{EntryKind, Leg};
use shared::contract::transfers::{NewPayout, Payout, PayoutStatus};
use shared::contract::values::Currency;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The most payouts sent in one round.
const BATCH: i64 = 50;
/// How long a worker has a payout to itself while it asks the provider.
const LEASE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The outcome is unknown; the same call may be made again.
    #[error("payout provider unavailable: {0}")]
    Unavailable(String),
}

/// A payout provider (a bank, a wallet...). Its contract: `send` is idempotent per payout id —
/// asked again for the same payout, it answers what it did the first time and sends nothing more.
/// `Ok(None)`: paid; `Ok(Some(code))`: refused, with its reason.
pub trait PayoutProvider: Send + Sync {
    fn send<'a>(
        &'a self,
        payout: &'a Payout,
    ) -> BoxFuture<'a, Result<Option<String>, ProviderError>>;
}

/// Refuses a payout with `failure_rate`, as a pure function of its id; keeps what it did in its
/// own table (`simulated_payouts`), so that asking again answers the same and sends nothing more;
/// every call takes `latency`, after the provider acted and before its answer arrives.
#[derive(Clone)]
pub struct SimulatedPayouts {
    pub pool: PgPool,
    pub failure_rate: f64,
    pub latency: Duration,
}

impl PayoutProvider for SimulatedPayouts {
    fn send<'a>(
        &'a self,
        payout: &'a Payout,
    ) -> BoxFuture<'a, Result<Option<String>, ProviderError>> {
        Box::pin(async move {
            let refused = (super::processor::draw(payout.payout_id, 0) < self.failure_rate)
                .then_some("payout_refused");
            let answer = store::simulated_send(&self.pool, payout, refused)
                .await
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            Ok(answer)
        })
    }
}

/// Accepts a payout (see [`store::accept`]), counted once when written.
pub async fn accept(
    payments: &Payments,
    new: &NewPayout,
    key: &str,
    fingerprint: &str,
) -> Result<Result<Created<Payout>, Refused>, StorageError> {
    let accepted = store::accept(&payments.pool, new, key, fingerprint).await?;
    if let Ok(Created::New(_)) = &accepted {
        count(payments, PayoutStatus::Pending, 1);
    }
    Ok(accepted)
}

fn count(payments: &Payments, status: PayoutStatus, n: u64) {
    payments
        .metrics
        .payouts
        .with_label_values(&[status.as_str()])
        .inc_by(n);
}

/// Runs until `stop` turns true, between rounds.
pub async fn run(
    payments: Payments,
    provider: Arc<dyn PayoutProvider>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match send_pending(&payments, provider.as_ref()).await {
                Ok(sent) if sent as i64 == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not send payouts; will retry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            tracing::info!("payout worker stopped");
            return;
        }
    }
}

/// One round: leases up to [`BATCH`] pending payouts, asks the provider for each (at once), and
/// records the answers in one transaction. A payout the provider did not answer keeps its lease
/// until it runs out, and is asked again then. Returns how many payouts it leased.
pub async fn send_pending(
    payments: &Payments,
    provider: &dyn PayoutProvider,
) -> Result<usize, StorageError> {
    let leased = store::lease_pending(&payments.pool, BATCH, LEASE).await?;
    if leased.is_empty() {
        return Ok(0);
    }
    let answers = join_all(leased.iter().map(|p| provider.send(p))).await;
    let mut outcomes: Vec<(Uuid, Option<String>)> = Vec::new();
    for (payout, answer) in leased.iter().zip(answers) {
        match answer {
            Ok(code) => outcomes.push((payout.payout_id, code)),
            Err(e) => {
                tracing::warn!(payout_id = %payout.payout_id, error = %e, "payout provider did not answer; will ask again")
            }
        }
    }
    record(payments, &outcomes).await?;
    Ok(leased.len())
}

/// Records the provider's answers, once each, in one transaction: the payouts marked, a `payout`
/// entry and the balance change for each paid one (rows locked by currency, then recipient), and
/// every hold lowered.
async fn record(
    payments: &Payments,
    outcomes: &[(Uuid, Option<String>)],
) -> Result<(), StorageError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut tx = payments.pool.begin().await?;
    let settled = store::settle(&mut tx, outcomes).await?;
    let paid: Vec<&Payout> = settled
        .iter()
        .filter(|p| p.status == PayoutStatus::Paid)
        .collect();
    let legs: Vec<Vec<Leg>> = paid
        .iter()
        .map(|p| split::payout(p.recipient_id, p.amount))
        .collect();
    let entries: Vec<NewEntry> = paid
        .iter()
        .zip(&legs)
        .map(|(p, legs)| NewEntry {
            kind: EntryKind::Payout,
            currency: p.currency,
            payment_id: None,
            refund_id: None,
            transfer_id: None,
            payout_id: Some(p.payout_id),
            legs,
        })
        .collect();
    ledger::record_entries(&mut tx, &entries).await?;
    let mut currencies: Vec<Currency> = settled.iter().map(|p| p.currency).collect();
    currencies.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    currencies.dedup();
    for currency in currencies {
        let of_currency: Vec<Leg> = paid
            .iter()
            .zip(&legs)
            .filter(|(p, _)| p.currency == currency)
            .flat_map(|(_, legs)| legs.iter().cloned())
            .collect();
        // Every settled payout's row, paid or failed, is locked here in order, before its hold
        // is lowered below.
        let settled_here = settled
            .iter()
            .filter(|p| p.currency == currency)
            .map(|p| p.recipient_id);
        let changes = split::locking_also(
            split::balance_changes(&of_currency).map_err(overflow)?,
            settled_here,
        );
        ledger::change_balances(&mut tx, currency, &changes).await?;
    }
    let holds: Vec<_> = settled
        .iter()
        .map(|p| (p.recipient_id, p.currency, p.amount))
        .collect();
    ledger::release_holds(&mut tx, &holds).await?;
    tx.commit().await?;
    let failed = settled.len() - paid.len();
    count(payments, PayoutStatus::Paid, paid.len() as u64);
    count(payments, PayoutStatus::Failed, failed as u64);
    payments
        .metrics
        .ledger_entries
        .with_label_values(&[EntryKind::Payout.as_str()])
        .inc_by(paid.len() as u64);
    Ok(())
}
