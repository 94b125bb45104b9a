//! Reserving, completing and releasing: the decisions around the storage statements. Reserves and
//! completions are group-committed (see [`shared::batch`]) so that a popular item's row changes
//! once per commit, not once per request; a request the batch cannot take is decided alone — by
//! the same statement, for a batch of one — where the database's constraints decide it.

use crate::domain::{plan, ItemState, Plan, Rejection, ReserveRequest};
use crate::storage::items;
use crate::storage::reservations::{self as store, ReserveJob, Taken};
use crate::storage::StorageError;
use shared::batch::{Batched, Batcher};
use shared::contract::stock::{Reservation, ReservationStatus, ReservationTarget};
use shared::contract::values::{Attempt, Currency, ItemId};
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// How many times a request decided alone tries again after losing a race to concurrent writers.
const ATTEMPTS: usize = 3;

pub enum Reserved {
    New(Reservation),
    /// This Idempotency-Key already made this reservation: answered from the database.
    Existing(Reservation),
    Rejected(Rejection),
    /// The order was released (or its reservation expired) before this reserve.
    OrderCanceled,
    /// The order already has a reservation made under another key.
    OrderHasReservation(Uuid),
    KeyReused,
}

pub enum Released {
    /// Released now, or already released or expired (no change).
    Reservation(Reservation),
    /// The order's attempt had no reservation: a tombstone now stops its late reserve.
    Tombstone(String, Attempt),
    AlreadyCompleted(Uuid),
    NotFound,
}

pub enum Completed {
    /// Completed now, or already completed (no change).
    Reservation(Reservation),
    Canceled(Uuid),
    Expired(Uuid),
    NotFound,
}

/// What the checkout path knows of items without asking the database: their prices and
/// currencies, which never change once an item exists (there is no way to change them). An item
/// is read once, when a cart first names it; an unknown id is read again each time (it may be
/// created meanwhile).
#[derive(Default)]
struct Catalogue {
    prices: RwLock<HashMap<ItemId, (i64, Currency)>>,
}

impl Catalogue {
    /// The items of a cart, priced; their availability is not known here (`i64::MAX`): the write
    /// decides, under `stock_never_oversold`.
    async fn items(
        &self,
        pool: &PgPool,
        request: &ReserveRequest,
    ) -> Result<Vec<ItemState>, StorageError> {
        let priced = |id: ItemId, price: i64, currency: Currency| ItemState {
            id,
            price,
            currency,
            available: i64::MAX,
        };
        let mut found = Vec::with_capacity(request.lines.len());
        let mut missing = Vec::new();
        {
            let prices = self.prices.read().unwrap_or_else(|e| e.into_inner());
            for (id, _) in &request.lines {
                match prices.get(id) {
                    Some(&(price, currency)) => found.push(priced(*id, price, currency)),
                    None => missing.push(id.get()),
                }
            }
        }
        if !missing.is_empty() {
            let read = items::snapshot(pool, &missing).await?;
            let mut prices = self.prices.write().unwrap_or_else(|e| e.into_inner());
            for item in read {
                prices.insert(item.id, (item.price, item.currency));
                found.push(priced(item.id, item.price, item.currency));
            }
        }
        Ok(found)
    }
}

/// Reservations and completions, written in batches.
#[derive(Clone)]
pub struct Reservations {
    pool: PgPool,
    ttl_secs: f64,
    catalogue: Arc<Catalogue>,
    reserves: Batcher<ReserveJob, Batched<Reservation>>,
    completions: Batcher<ReservationTarget, Option<Reservation>>,
}

impl Reservations {
    /// Starts the batch tasks (on the current runtime); `batch` is the largest batch.
    pub fn start(pool: PgPool, ttl_secs: u64, batch: usize) -> Self {
        let ttl_secs = ttl_secs as f64;
        let reserves = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs| {
                let pool = pool.clone();
                async move { reserve_batch(&pool, jobs, ttl_secs).await }
            })
        };
        let completions = {
            let pool = pool.clone();
            Batcher::start(batch, move |targets| {
                let pool = pool.clone();
                async move { complete_batch(&pool, targets).await }
            })
        };
        Reservations {
            pool,
            ttl_secs,
            catalogue: Arc::default(),
            reserves,
            completions,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Reserves every line or none: priced from the catalogue, then written in the next batch —
    /// or alone, when the batch cannot take it (a cart that does not fit fails its batch on
    /// `stock_never_oversold`: then each of its requests is decided alone, from a snapshot).
    pub async fn reserve(
        &self,
        request: &ReserveRequest,
        idem: &IdempotencyContext,
    ) -> Result<Reserved, StorageError> {
        let items = self.catalogue.items(&self.pool, request).await?;
        let plan = match self.plan_or_answer(request, idem, &items).await? {
            Ok(plan) => plan,
            Err(answer) => return Ok(answer),
        };
        let job = job(request, idem, plan);
        if let Some(Batched::Done(reservation)) = self.reserves.run(job).await {
            return Ok(Reserved::New(reservation));
        }
        self.reserve_alone(request, idem).await
    }

    /// Reserves alone: the batch statement for this request only, planned from a snapshot of the
    /// items (which turns away carts that cannot fit, naming the item). A conflicting row can
    /// vanish only if its transaction rolled back, and stock that was short can come back: then it
    /// tries again.
    async fn reserve_alone(
        &self,
        request: &ReserveRequest,
        idem: &IdempotencyContext,
    ) -> Result<Reserved, StorageError> {
        let ids: Vec<i64> = request.lines.iter().map(|(id, _)| id.get()).collect();
        for _ in 0..ATTEMPTS {
            let items = items::snapshot(&self.pool, &ids).await?;
            let plan = match self.plan_or_answer(request, idem, &items).await? {
                Ok(plan) => plan,
                Err(answer) => return Ok(answer),
            };
            let job = job(request, idem, plan);
            match store::reserve(&self.pool, std::slice::from_ref(&job), self.ttl_secs).await {
                Ok(mut made) => {
                    if let Some(Some(reservation)) = made.pop() {
                        return Ok(Reserved::New(reservation));
                    }
                    if let Some(outcome) = self.existing(request, idem).await? {
                        return Ok(outcome);
                    }
                }
                // Taken meanwhile: the next snapshot says by whom, or finds it back.
                Err(e) if e.violates("stock_never_oversold") => {}
                Err(e) => return Err(e),
            }
        }
        Err(StorageError::LostRace(
            "the reservation kept racing with other reservations",
        ))
    }

    /// The plan of a request against `items`, or — when they cannot take it — the answer: the
    /// reservation this key made before (a retry is answered with it, whatever stock is now), or
    /// the rejection.
    async fn plan_or_answer(
        &self,
        request: &ReserveRequest,
        idem: &IdempotencyContext,
        items: &[ItemState],
    ) -> Result<Result<Plan, Reserved>, StorageError> {
        Ok(match plan(&request.lines, items) {
            Ok(plan) => Ok(plan),
            Err(rejection) => Err(self
                .existing(request, idem)
                .await?
                .unwrap_or(Reserved::Rejected(rejection))),
        })
    }

    /// Explains a conflict: the same key (a retry, or a reuse), or the same order.
    async fn existing(
        &self,
        request: &ReserveRequest,
        idem: &IdempotencyContext,
    ) -> Result<Option<Reserved>, StorageError> {
        let mut conn = self.pool.acquire().await?;
        Ok(
            match store::taken(
                &mut conn,
                &idem.scoped,
                request.order_id.as_str(),
                request.attempt.as_i32(),
            )
            .await?
            {
                None => None,
                Some(Taken::ByKey { id, fingerprint }) => {
                    if fingerprint.as_deref() != Some(idem.fingerprint.as_str()) {
                        Some(Reserved::KeyReused)
                    } else {
                        store::get(&mut conn, id).await?.map(Reserved::Existing)
                    }
                }
                Some(Taken::ByOrder {
                    status: ReservationStatus::Canceled | ReservationStatus::Expired,
                    ..
                }) => Some(Reserved::OrderCanceled),
                Some(Taken::ByOrder { id, .. }) => Some(Reserved::OrderHasReservation(id)),
            },
        )
    }

    /// Completes a reservation in the next batch, or alone when it is not simply `reserved`
    /// (completed already, released, expired, past its expiry, unknown).
    pub async fn complete(&self, target: &ReservationTarget) -> Result<Completed, StorageError> {
        if let Some(Some(reservation)) = self.completions.run(target.clone()).await {
            return Ok(Completed::Reservation(reservation));
        }
        for _ in 0..ATTEMPTS {
            let (by_id, by_order) = split(target);
            if let Some(done) = store::complete(&self.pool, &by_id, &by_order)
                .await?
                .into_iter()
                .next()
            {
                return Ok(Completed::Reservation(done));
            }
            // Completed already, canceled, expired, past its expiry or unknown: decided under the
            // row's lock.
            let mut tx = self.pool.begin().await?;
            let (id, order) = parts(target);
            let Some(held) = store::lock(&mut tx, id, order).await? else {
                return Ok(Completed::NotFound);
            };
            let outcome = match held.status {
                _ if held.tombstone => Completed::Canceled(held.id),
                ReservationStatus::Canceled => Completed::Canceled(held.id),
                ReservationStatus::Expired => Completed::Expired(held.id),
                ReservationStatus::Completed => match store::get(&mut tx, held.id).await? {
                    Some(r) => Completed::Reservation(r),
                    None => Completed::NotFound,
                },
                // Past its expiry: expired here (its units returned) rather than completed.
                ReservationStatus::Reserved if held.due => {
                    store::end(&mut tx, &[held.id]).await?;
                    Completed::Expired(held.id)
                }
                // Made after the statement's snapshot was taken: complete it now.
                ReservationStatus::Reserved => continue,
            };
            tx.commit().await?;
            return Ok(outcome);
        }
        Err(StorageError::LostRace(
            "the completion kept racing with a reserve",
        ))
    }

    /// Returns a reservation's units. Safe to repeat, and safe before the reserve ever arrived: an
    /// order without a reservation gets a tombstone.
    pub async fn release(&self, target: &ReservationTarget) -> Result<Released, StorageError> {
        for _ in 0..ATTEMPTS {
            let mut tx = self.pool.begin().await?;
            let (id, order) = parts(target);
            let Some(held) = store::lock(&mut tx, id, order).await? else {
                let ReservationTarget::Order(order) = target else {
                    return Ok(Released::NotFound);
                };
                let (order_id, attempt) = (order.order_id.as_str(), order.attempt);
                if store::bury(&mut tx, order_id, attempt.as_i32()).await? {
                    tx.commit().await?;
                    return Ok(Released::Tombstone(order_id.to_string(), attempt));
                }
                // A reserve for this order committed meanwhile: release it instead.
                continue;
            };
            if held.tombstone {
                let attempt = Attempt::new(held.attempt.into())
                    .map_err(|e| StorageError::other(format!("reservation {}: {e}", held.id)))?;
                return Ok(Released::Tombstone(held.order_id, attempt));
            }
            let released = match held.status {
                ReservationStatus::Completed => return Ok(Released::AlreadyCompleted(held.id)),
                ReservationStatus::Canceled | ReservationStatus::Expired => {
                    store::get(&mut tx, held.id).await?
                }
                ReservationStatus::Reserved => store::end(&mut tx, &[held.id]).await?.pop(),
            };
            let Some(reservation) = released else {
                continue;
            };
            tx.commit().await?;
            return Ok(Released::Reservation(reservation));
        }
        Err(StorageError::LostRace(
            "the release kept racing with a reserve",
        ))
    }
}

fn job(
    request: &ReserveRequest,
    idem: &IdempotencyContext,
    plan: crate::domain::Plan,
) -> ReserveJob {
    ReserveJob {
        id: Uuid::new_v4(),
        order_id: request.order_id.as_str().to_string(),
        attempt: request.attempt.as_i32(),
        key: idem.scoped.clone(),
        fingerprint: idem.fingerprint.clone(),
        plan,
    }
}

fn parts(target: &ReservationTarget) -> (Option<Uuid>, Option<(&str, i32)>) {
    match target {
        ReservationTarget::Reservation(id) => (Some(*id), None),
        ReservationTarget::Order(order) => (
            None,
            Some((order.order_id.as_str(), order.attempt.as_i32())),
        ),
    }
}

fn split(target: &ReservationTarget) -> (Vec<Uuid>, Vec<(&str, i32)>) {
    let (id, order) = parts(target);
    (id.into_iter().collect(), order.into_iter().collect())
}

/// The reserve batch: each job gets its reservation, or goes alone (it conflicted, or the batch
/// failed — on `stock_never_oversold` when an item cannot cover the whole batch).
async fn reserve_batch(
    pool: &PgPool,
    jobs: Vec<ReserveJob>,
    ttl_secs: f64,
) -> Vec<Batched<Reservation>> {
    match store::reserve(pool, &jobs, ttl_secs).await {
        Ok(made) => made
            .into_iter()
            .map(|r| r.map_or(Batched::Alone, Batched::Done))
            .collect(),
        Err(e) => {
            if !e.violates("stock_never_oversold") {
                tracing::warn!(error = %e, size = jobs.len(), "a reserve batch failed; its requests go alone");
            }
            jobs.iter().map(|_| Batched::Alone).collect()
        }
    }
}

/// The completion batch: each target gets its completed reservation, or `None` (it goes alone).
async fn complete_batch(
    pool: &PgPool,
    targets: Vec<ReservationTarget>,
) -> Vec<Option<Reservation>> {
    let mut by_id = Vec::new();
    let mut by_order = Vec::new();
    for target in &targets {
        match target {
            ReservationTarget::Reservation(id) => by_id.push(*id),
            ReservationTarget::Order(order) => {
                by_order.push((order.order_id.as_str(), order.attempt.as_i32()))
            }
        }
    }
    let done = match store::complete(pool, &by_id, &by_order).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, size = targets.len(), "a completion batch failed; its requests go alone");
            return targets.iter().map(|_| None).collect();
        }
    };
    let mut done: Vec<Option<Reservation>> = done.into_iter().map(Some).collect();
    targets
        .iter()
        .map(|target| {
            done.iter_mut()
                .find(|r| {
                    r.as_ref().is_some_and(|r| match target {
                        ReservationTarget::Reservation(id) => r.reservation_id == *id,
                        ReservationTarget::Order(order) => {
                            r.order_id == order.order_id.as_str()
                                && r.attempt == order.attempt.as_i32()
                        }
                    })
                })
                .and_then(Option::take)
        })
        .collect()
}
