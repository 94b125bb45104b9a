//! The background sweeper: expires reservations past `RESERVATION_TTL_SECS` and returns their
//! stock (several instances may run it at once: claims skip what another holds), then publishes
//! what is available per item (`stock_available`).

use crate::metrics::StockMetrics;
use crate::storage::items::available;
use crate::storage::reservations::{claim_due, end};
use crate::storage::StorageError;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;

const BATCH: i64 = 100;

/// Expires up to `BATCH` reservations past their expiry, in one transaction; returns how many.
async fn sweep(pool: &PgPool) -> Result<u64, StorageError> {
    let mut tx = pool.begin().await?;
    let due = claim_due(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ended = end(&mut tx, &due).await?;
    tx.commit().await?;
    Ok(ended.len() as u64)
}

/// Runs until `stop` turns true; stops between batches, never inside one.
pub async fn run(
    pool: PgPool,
    metrics: StockMetrics,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match sweep(&pool).await {
                Ok(n) if n > 0 => {
                    tracing::info!(expired = n, "expired reservations swept");
                    metrics
                        .reservations
                        .with_label_values(&["expired"])
                        .inc_by(n);
                    if n < BATCH as u64 || *stop.borrow() {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reservation sweep failed; will retry");
                    break;
                }
            }
        }
        match available(&pool).await {
            Ok(items) => {
                for (id, units) in items {
                    metrics
                        .available
                        .with_label_values(&[&id.to_string()])
                        .set(units);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read availability"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            tracing::info!("reservation sweeper stopped");
            return;
        }
    }
}
