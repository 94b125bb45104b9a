//! PostgreSQL access for orders: the statements ([`orders`]), how events are stored
//! ([`events`]), and [`Writes`] — the checkout path's writes, group-committed.
//!
//! Every statement is checked at compile time against the migrated schema (`sqlx::query!`, with
//! the descriptions in `.sqlx/`).

pub mod events;
pub mod orders;

pub use orders::Lease;
pub use shared::StorageError;

use crate::domain::{Order, Transition};
use orders::{OpenJob, TransitionJob};
use shared::batch::{first_of_each, Batched, Batcher};
use shared::client::CallContext;
use shared::contract::values::ItemId;
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;
use uuid::Uuid;

/// The order database's schema, as its migrations make it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How many times a write made alone tries again after losing a race.
const ATTEMPTS: usize = 3;

pub enum Opened {
    /// A new order; the caller holds its lease.
    New(Order),
    /// The order this Idempotency-Key made before.
    Existing(Order),
    KeyReused,
}

/// The order's writes on the checkout path — opening an order and moving it — group-committed
/// (see [`shared::batch`]): orders opened or moved at the same time share one statement and one
/// commit. A request the batch cannot take (its key taken, its order moved by another driver, the
/// same order twice in a batch, a batch that failed) goes alone: the same statement, for a batch
/// of one.
#[derive(Clone)]
pub struct Writes {
    pool: PgPool,
    lease: Lease,
    opens: Batcher<OpenJob, Batched<Order>>,
    transitions: Batcher<TransitionJob, Batched<Option<orders::Moved>>>,
}

impl Writes {
    /// Starts the batch tasks (on the current runtime); `batch` is the largest batch.
    pub fn start(pool: PgPool, lease: Lease, batch: usize) -> Self {
        let opens = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs: Vec<OpenJob>| {
                let pool = pool.clone();
                async move {
                    match orders::open(&pool, &jobs, lease.length).await {
                        Ok(opened) => opened
                            .into_iter()
                            .map(|o| o.map_or(Batched::Alone, Batched::Done))
                            .collect(),
                        Err(e) => {
                            tracing::warn!(error = %e, size = jobs.len(), "an order batch failed; its requests go alone");
                            jobs.iter().map(|_| Batched::Alone).collect()
                        }
                    }
                }
            })
        };
        let transitions = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs: Vec<TransitionJob>| {
                let pool = pool.clone();
                async move { transition_batch(&pool, lease, jobs).await }
            })
        };
        Writes {
            pool,
            lease,
            opens,
            transitions,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// Writes the order before anything else happens, unique by its Idempotency-Key — in the
    /// next batch, or alone — or finds the order its key made before.
    pub async fn open(
        &self,
        lines: Vec<(ItemId, i64)>,
        customer_id: Option<String>,
        idem: &IdempotencyContext,
        context: &CallContext,
    ) -> Result<Opened, StorageError> {
        let job = || OpenJob {
            id: Uuid::new_v4(),
            key: idem.scoped.clone(),
            fingerprint: idem.fingerprint.clone(),
            customer_id: customer_id.clone(),
            context: context.clone(),
            lines: lines.clone(),
        };
        if let Some(Batched::Done(order)) = self.opens.run(job()).await {
            return Ok(Opened::New(order));
        }
        for attempt in 0..ATTEMPTS {
            if let Some((id, fingerprint)) = orders::by_key(&self.pool, &idem.scoped).await? {
                if fingerprint != idem.fingerprint {
                    return Ok(Opened::KeyReused);
                }
                return match orders::get(&self.pool, id).await? {
                    Some(order) => Ok(Opened::Existing(order)),
                    None => Err(StorageError::NotFound("order")),
                };
            }
            // Not written under this key yet: the batch failed, or this is a retry of it.
            if attempt + 1 < ATTEMPTS {
                if let Some(Some(order)) = orders::open(&self.pool, &[job()], self.lease.length)
                    .await?
                    .pop()
                {
                    return Ok(Opened::New(order));
                }
            }
        }
        Err(StorageError::LostRace("the order's key kept racing"))
    }

    /// Moves `order` as `transition` says — in the next batch, or alone — and returns it as it
    /// now is, or `None` when another driver moved it first (nothing was written).
    pub async fn transition(
        &self,
        order: &Order,
        transition: &Transition,
    ) -> Result<Option<Order>, StorageError> {
        let job = || TransitionJob {
            id: order.id,
            from: order.status,
            transition: transition.clone(),
        };
        let moved = match self.transitions.run(job()).await {
            Some(Batched::Done(moved)) => moved,
            Some(Batched::Alone) | None => orders::transition(&self.pool, &[job()], self.lease)
                .await?
                .pop()
                .flatten(),
        };
        Ok(moved.map(|row| row.onto(order, transition)))
    }
}

/// Moves a batch of orders in one statement. A statement changes a row once, so an order that
/// appears twice (two drivers racing) goes alone after the batch, as does every order of a batch
/// that failed.
async fn transition_batch(
    pool: &PgPool,
    lease: Lease,
    jobs: Vec<TransitionJob>,
) -> Vec<Batched<Option<orders::Moved>>> {
    let first = first_of_each(&jobs, |j| j.id);
    let size = jobs.len();
    let batch: Vec<TransitionJob> = jobs
        .into_iter()
        .zip(&first)
        .filter_map(|(job, first)| first.then_some(job))
        .collect();
    let mut moved = match orders::transition(pool, &batch, lease).await {
        Ok(moved) => moved.into_iter(),
        Err(e) => {
            tracing::warn!(error = %e, size, "a transition batch failed; its orders move alone");
            return first.iter().map(|_| Batched::Alone).collect();
        }
    };
    first
        .into_iter()
        .map(|first| match first {
            true => moved.next().map_or(Batched::Alone, Batched::Done),
            false => Batched::Alone,
        })
        .collect()
}
