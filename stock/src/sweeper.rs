//! The background sweeper that expires reservations past `RESERVATION_TTL_SECS` and returns their
//! stock. Several instances may run it at once (`FOR UPDATE SKIP LOCKED`).

use crate::storage::reservations::expire_due;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;

const BATCH: i64 = 100;

/// Runs until `stop` turns true; stops between batches, never inside one.
pub async fn run(pool: PgPool, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        loop {
            match expire_due(&pool, BATCH).await {
                Ok(n) if n > 0 => {
                    tracing::info!(expired = n, "expired reservations swept");
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
