//! The recovery worker: at start and then periodically, resumes every unfinished order whose
//! lease ran out (its driver crashed, or gave up on a database error). Claims use `FOR UPDATE SKIP
//! LOCKED`, so several order instances can run it side by side.

use super::participants::Participants;
use super::saga::Saga;
use crate::storage::orders;
use shared::contract::order::OrderEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const BATCH: i64 = 64;

/// Runs until `stop` turns true — between batches, never inside one — then lets the sagas in
/// flight finish for up to `drain`.
pub async fn run<P: Participants>(
    saga: Arc<Saga<P>>,
    every: Duration,
    drain: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match orders::claim_stale(saga.pool(), BATCH, saga.lease).await {
            Ok(ids) => {
                for id in ids {
                    saga.metrics.recoveries.inc();
                    tracing::info!(order_id = %id, "resuming an unfinished order");
                    if let Err(e) =
                        orders::record(saga.pool(), id, &[OrderEvent::OrderRecovered]).await
                    {
                        tracing::warn!(order_id = %id, error = %e, "could not record the recovery");
                    }
                    saga.spawn(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "recovery could not claim orders; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            tracing::info!("recovery worker stopped");
            saga.drain(drain).await;
            return;
        }
    }
}
