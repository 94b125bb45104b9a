use crate::domain::{
    plan, ItemId, ItemState, Plan, PlannedLine, Rejection, Reservation, ReservationLine,
    ReservationStatus, ReserveRequest, Target,
};
use chrono::{DateTime, Utc};
use shared::batch::Batcher;
use shared::idempotency::IdempotencyContext;
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: Uuid,
    order_id: String,
    status: String,
    tombstone: bool,
    total_amount: Option<i64>,
    currency: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Whether `expires_at` has passed, by the database's clock.
    due: bool,
}

const ROW_COLUMNS: &str = "id, order_id, status, tombstone, total_amount, currency, expires_at, \
     created_at, updated_at, coalesce(expires_at <= now(), false) AS due";

impl ReservationRow {
    fn status(&self) -> ReservationStatus {
        // The column is CHECK-constrained to the four values.
        ReservationStatus::parse(&self.status).unwrap_or(ReservationStatus::Canceled)
    }

    fn into_view(self, items: Vec<ReservationLine>) -> Reservation {
        Reservation {
            reservation_id: self.id,
            order_id: self.order_id,
            status: self.status,
            items,
            total_amount: self.total_amount.unwrap_or(0),
            currency: self.currency.unwrap_or_default(),
            expires_at: self.expires_at.unwrap_or(self.created_at),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

async fn lines(
    conn: &mut sqlx::PgConnection,
    reservation: Uuid,
) -> Result<Vec<ReservationLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT item_id, quantity, unit_price, amount FROM reservation_lines
         WHERE reservation_id = $1 ORDER BY item_id",
    )
    .bind(reservation)
    .fetch_all(conn)
    .await
}

async fn view(
    conn: &mut sqlx::PgConnection,
    row: ReservationRow,
) -> Result<Reservation, sqlx::Error> {
    let items = lines(conn, row.id).await?;
    Ok(row.into_view(items))
}

/// A reservation by id; tombstones are not reservations and are not found.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Reservation>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let row: Option<ReservationRow> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} FROM reservations WHERE id = $1 AND NOT tombstone"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(view(&mut conn, row).await?)),
        None => Ok(None),
    }
}

async fn lock_row(
    tx: &mut Transaction<'_, Postgres>,
    target: &Target,
) -> Result<Option<ReservationRow>, sqlx::Error> {
    match target {
        Target::Reservation(id) => {
            sqlx::query_as(&format!(
                "SELECT {ROW_COLUMNS} FROM reservations WHERE id = $1 FOR UPDATE"
            ))
            .bind(*id)
            .fetch_optional(&mut **tx)
            .await
        }
        Target::Order(order) => {
            sqlx::query_as(&format!(
                "SELECT {ROW_COLUMNS} FROM reservations WHERE order_id = $1 FOR UPDATE"
            ))
            .bind(order)
            .fetch_optional(&mut **tx)
            .await
        }
    }
}

#[derive(Clone, Copy)]
enum StockChange {
    /// The units go back to `available`.
    Return,
    /// The units leave the warehouse: `stock -= q`, `reserved -= q`.
    Ship,
}

/// Applies a change to `reserved` (and `stock`) for `(item_id, quantity)` pairs, locking the items
/// in id order first.
async fn change_stock(
    tx: &mut Transaction<'_, Postgres>,
    mut lines: Vec<(i64, i64)>,
    change: StockChange,
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    lines.sort_unstable();
    let (ids, quantities): (Vec<i64>, Vec<i64>) = lines.into_iter().unzip();
    sqlx::query("SELECT id FROM items WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    let stock_change = match change {
        StockChange::Return => "",
        StockChange::Ship => "stock = stock - l.quantity,",
    };
    sqlx::query(&format!(
        "UPDATE items SET {stock_change} reserved = reserved - l.quantity, updated_at = now()
         FROM unnest($1::bigint[], $2::bigint[]) AS l(item_id, quantity)
         WHERE items.id = l.item_id"
    ))
    .bind(&ids)
    .bind(&quantities)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn line_quantities(
    tx: &mut Transaction<'_, Postgres>,
    reservation: Uuid,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT item_id, quantity FROM reservation_lines WHERE reservation_id = $1")
        .bind(reservation)
        .fetch_all(&mut **tx)
        .await
}

async fn set_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    status: ReservationStatus,
) -> Result<ReservationRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE reservations SET status = $2, updated_at = now() WHERE id = $1 RETURNING {ROW_COLUMNS}"
    ))
    .bind(id)
    .bind(status.as_str())
    .fetch_one(&mut **tx)
    .await
}

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

/// The items of a cart as they are now, unlocked. Prices and currencies never change once an item
/// exists, so they can be read without a lock; availability read this way only turns away carts
/// that cannot fit (the database's `stock_never_oversold` constraint is what guarantees the rest).
async fn snapshot(pool: &PgPool, request: &ReserveRequest) -> Result<Vec<ItemState>, sqlx::Error> {
    let ids: Vec<i64> = request.lines.iter().map(|l| l.item_id).collect();
    let items: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT id, price, currency::text, stock - reserved FROM items WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(items
        .into_iter()
        .map(|(id, price, currency, available)| ItemState {
            id: ItemId(id),
            price,
            currency,
            available,
        })
        .collect())
}

/// What the checkout path knows of items without asking the database: their prices and
/// currencies, which never change once an item exists (there is no way to change them). An item is
/// read once, when a cart first names it; an unknown id is read again each time (it may be
/// created meanwhile).
#[derive(Default)]
struct Catalogue {
    prices: RwLock<HashMap<i64, (i64, String)>>,
}

impl Catalogue {
    /// The items of a cart, priced; their availability is not known here (`i64::MAX`): the write
    /// decides, under `stock_never_oversold`.
    async fn items(
        &self,
        pool: &PgPool,
        request: &ReserveRequest,
    ) -> Result<Vec<ItemState>, sqlx::Error> {
        let cached = |id: i64| -> Option<ItemState> {
            let prices = self.prices.read().unwrap_or_else(|e| e.into_inner());
            prices.get(&id).map(|(price, currency)| ItemState {
                id: ItemId(id),
                price: *price,
                currency: currency.clone(),
                available: i64::MAX,
            })
        };
        let mut items = Vec::with_capacity(request.lines.len());
        let mut missing = Vec::new();
        for line in &request.lines {
            match cached(line.item_id) {
                Some(item) => items.push(item),
                None => missing.push(line.item_id),
            }
        }
        if !missing.is_empty() {
            let read: Vec<(i64, i64, String)> =
                sqlx::query_as("SELECT id, price, currency::text FROM items WHERE id = ANY($1)")
                    .bind(&missing)
                    .fetch_all(pool)
                    .await?;
            let mut prices = self.prices.write().unwrap_or_else(|e| e.into_inner());
            for (id, price, currency) in read {
                prices.insert(id, (price, currency.clone()));
                items.push(ItemState {
                    id: ItemId(id),
                    price,
                    currency,
                    available: i64::MAX,
                });
            }
        }
        Ok(items)
    }
}

/// The reservation, its lines and the hold on the items, in one statement: the item rows are
/// locked (in id order, so carts never deadlock) only for that statement and its commit. If an
/// item cannot cover its line, `stock_never_oversold` fails the statement and nothing is written.
/// A conflict on `order_id` or on the key inserts nothing (and returns no row).
const RESERVE: &str = "
    WITH reservation AS (
        INSERT INTO reservations (id, order_id, status, idempotency_key, request_hash,
                                  total_amount, currency, expires_at)
        VALUES ($1, $2, 'reserved', $3, $4, $5, $6, now() + make_interval(secs => $7))
        ON CONFLICT DO NOTHING
        RETURNING id, order_id, status, tombstone, total_amount, currency, expires_at,
                  created_at, updated_at, coalesce(expires_at <= now(), false) AS due
    ), locked AS MATERIALIZED (
        SELECT id FROM items
        WHERE id = ANY($8) AND EXISTS (SELECT FROM reservation)
        ORDER BY id FOR NO KEY UPDATE
    ), held AS (
        UPDATE items SET reserved = reserved + l.quantity, updated_at = now()
        FROM locked, unnest($8::bigint[], $9::bigint[]) AS l(item_id, quantity)
        WHERE items.id = locked.id AND l.item_id = locked.id
    ), lines AS (
        INSERT INTO reservation_lines (reservation_id, item_id, quantity, unit_price, amount)
        SELECT reservation.id, l.*
        FROM reservation, unnest($8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[]) AS l
    )
    SELECT * FROM reservation";

fn violates(e: &sqlx::Error, constraint: &str) -> bool {
    e.as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c == constraint)
}

/// Reserves every line or none, alone. The reservation row is unique by `order_id` and by
/// Idempotency-Key, so duplicates and late reserves after a release are stopped by constraints,
/// and the hold on stock by `stock_never_oversold`.
async fn reserve_alone(
    pool: &PgPool,
    request: &ReserveRequest,
    idem: &IdempotencyContext,
    ttl_secs: u64,
) -> Result<Reserved, sqlx::Error> {
    // A conflicting row can vanish only if its transaction rolled back, and stock that was short
    // can come back: then we try again.
    for _ in 0..3 {
        let items = snapshot(pool, request).await?;
        let Plan {
            lines,
            total_amount,
            currency,
        } = match plan(&request.lines, &items) {
            Ok(plan) => plan,
            // A retry of a reservation that was made is answered with it, whatever stock is now.
            Err(rejection) => {
                return Ok(existing(pool, request, idem)
                    .await?
                    .unwrap_or(Reserved::Rejected(rejection)))
            }
        };
        let item_ids: Vec<i64> = lines.iter().map(|l| l.item_id.0).collect();
        let quantities: Vec<i64> = lines.iter().map(|l| l.quantity).collect();
        let prices: Vec<i64> = lines.iter().map(|l| l.unit_price).collect();
        let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
        let made: Result<Option<ReservationRow>, sqlx::Error> = sqlx::query_as(RESERVE)
            .bind(Uuid::new_v4())
            .bind(&request.order_id)
            .bind(&idem.scoped)
            .bind(&idem.fingerprint)
            .bind(total_amount)
            .bind(&currency)
            .bind(ttl_secs as f64)
            .bind(&item_ids)
            .bind(&quantities)
            .bind(&prices)
            .bind(&amounts)
            .fetch_optional(pool)
            .await;
        match made {
            Ok(Some(row)) => {
                return Ok(Reserved::New(row.into_view(reserved_lines(lines))));
            }
            Ok(None) => {
                if let Some(outcome) = existing(pool, request, idem).await? {
                    return Ok(outcome);
                }
            }
            // Taken meanwhile: the next snapshot says by whom, or finds it back.
            Err(e) if violates(&e, "stock_never_oversold") => {}
            Err(e) => return Err(e),
        }
    }
    Err(sqlx::Error::Protocol(
        "reservation kept racing with other reservations".into(),
    ))
}

/// The lines of a reservation as they were planned.
fn reserved_lines(planned: Vec<PlannedLine>) -> Vec<ReservationLine> {
    planned
        .into_iter()
        .map(|l| ReservationLine {
            item_id: l.item_id.0,
            quantity: l.quantity,
            unit_price: l.unit_price,
            amount: l.amount,
        })
        .collect()
}

/// Explains a conflict on insert: the same key (a retry, or a reuse), or the same order.
async fn existing(
    pool: &PgPool,
    request: &ReserveRequest,
    idem: &IdempotencyContext,
) -> Result<Option<Reserved>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let by_key: Option<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT id, request_hash FROM reservations WHERE idempotency_key = $1")
            .bind(&idem.scoped)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((id, hash)) = by_key {
        if hash.as_deref() != Some(idem.fingerprint.as_str()) {
            return Ok(Some(Reserved::KeyReused));
        }
        let row: ReservationRow = sqlx::query_as(&format!(
            "SELECT {ROW_COLUMNS} FROM reservations WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        return Ok(Some(Reserved::Existing(view(&mut conn, row).await?)));
    }
    let by_order: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM reservations WHERE order_id = $1")
            .bind(&request.order_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(
        by_order.map(|(id, status)| match ReservationStatus::parse(&status) {
            Some(ReservationStatus::Canceled | ReservationStatus::Expired) => {
                Reserved::OrderCanceled
            }
            _ => Reserved::OrderHasReservation(id),
        }),
    )
}

pub enum Released {
    /// Released now, or already released or expired (no change).
    Reservation(Reservation),
    /// The order had no reservation: a tombstone now stops a late reserve.
    Tombstone(String),
    AlreadyCompleted(Uuid),
    NotFound,
}

/// Returns a reservation's stock. Safe to repeat, and safe before the reserve ever arrived.
pub async fn release(pool: &PgPool, target: &Target) -> Result<Released, sqlx::Error> {
    for _ in 0..3 {
        let mut tx = pool.begin().await?;
        let Some(row) = lock_row(&mut tx, target).await? else {
            let Target::Order(order_id) = target else {
                tx.rollback().await?;
                return Ok(Released::NotFound);
            };
            let tombstone: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO reservations (id, order_id, status, tombstone)
                 VALUES ($1, $2, 'canceled', true)
                 ON CONFLICT (order_id) DO NOTHING RETURNING id",
            )
            .bind(Uuid::new_v4())
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
            if tombstone.is_some() {
                tx.commit().await?;
                return Ok(Released::Tombstone(order_id.clone()));
            }
            // A reserve for this order committed meanwhile: release it instead.
            tx.rollback().await?;
            continue;
        };
        if row.tombstone {
            tx.rollback().await?;
            return Ok(Released::Tombstone(row.order_id));
        }
        let row = match row.status() {
            ReservationStatus::Completed => {
                tx.rollback().await?;
                return Ok(Released::AlreadyCompleted(row.id));
            }
            ReservationStatus::Canceled | ReservationStatus::Expired => row,
            ReservationStatus::Reserved => {
                let quantities = line_quantities(&mut tx, row.id).await?;
                change_stock(&mut tx, quantities, StockChange::Return).await?;
                let status = if row.due {
                    ReservationStatus::Expired
                } else {
                    ReservationStatus::Canceled
                };
                set_status(&mut tx, row.id, status).await?
            }
        };
        let reservation = view(&mut tx, row).await?;
        tx.commit().await?;
        return Ok(Released::Reservation(reservation));
    }
    Err(sqlx::Error::Protocol(
        "release kept racing with a reserve".into(),
    ))
}

pub enum Completed {
    /// Completed now, or already completed (no change).
    Reservation(Reservation),
    Canceled(Uuid),
    Expired(Uuid),
    NotFound,
}

/// Completion of a reservation that is `reserved` and not due, in one statement: the status
/// changes and the units leave `stock` and `reserved`, the item rows locked (in id order) only for
/// that statement and its commit. Any other reservation is left alone (no row is returned).
fn complete_reserved(target: &Target) -> String {
    let which = match target {
        Target::Reservation(_) => "id = $1",
        Target::Order(_) => "order_id = $1",
    };
    format!(
        "WITH done AS (
            UPDATE reservations SET status = 'completed', updated_at = now()
            WHERE {which} AND status = 'reserved' AND NOT tombstone AND expires_at > now()
            RETURNING {ROW_COLUMNS}
        ), locked AS MATERIALIZED (
            SELECT items.id FROM items
            WHERE items.id IN (SELECT l.item_id FROM reservation_lines l, done
                               WHERE l.reservation_id = done.id)
            ORDER BY items.id FOR NO KEY UPDATE
        ), shipped AS (
            UPDATE items SET stock = stock - l.quantity, reserved = reserved - l.quantity,
                             updated_at = now()
            FROM locked, done, reservation_lines l
            WHERE items.id = locked.id AND l.reservation_id = done.id AND l.item_id = locked.id
        )
        SELECT * FROM done"
    )
}

/// Ships a reservation alone: its units leave `stock` and `reserved`. A reservation past its
/// expiry is expired here (its stock returned) rather than completed.
async fn complete_alone(pool: &PgPool, target: &Target) -> Result<Completed, sqlx::Error> {
    let query = complete_reserved(target);
    let query = sqlx::query_as::<_, ReservationRow>(&query);
    let shipped = match target {
        Target::Reservation(id) => query.bind(*id),
        Target::Order(order) => query.bind(order),
    }
    .fetch_optional(pool)
    .await?;
    if let Some(row) = shipped {
        let mut conn = pool.acquire().await?;
        return Ok(Completed::Reservation(view(&mut conn, row).await?));
    }
    // Completed already, canceled, expired, due or unknown: decided under the row's lock.
    let mut tx = pool.begin().await?;
    let Some(row) = lock_row(&mut tx, target).await? else {
        tx.rollback().await?;
        return Ok(Completed::NotFound);
    };
    if row.tombstone {
        tx.rollback().await?;
        return Ok(Completed::Canceled(row.id));
    }
    let outcome = match row.status() {
        ReservationStatus::Canceled => Completed::Canceled(row.id),
        ReservationStatus::Expired => Completed::Expired(row.id),
        ReservationStatus::Completed => Completed::Reservation(view(&mut tx, row).await?),
        ReservationStatus::Reserved if row.due => {
            let quantities = line_quantities(&mut tx, row.id).await?;
            change_stock(&mut tx, quantities, StockChange::Return).await?;
            set_status(&mut tx, row.id, ReservationStatus::Expired).await?;
            Completed::Expired(row.id)
        }
        ReservationStatus::Reserved => {
            let quantities = line_quantities(&mut tx, row.id).await?;
            change_stock(&mut tx, quantities, StockChange::Ship).await?;
            let row = set_status(&mut tx, row.id, ReservationStatus::Completed).await?;
            Completed::Reservation(view(&mut tx, row).await?)
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Expires up to `batch` reservations past their expiry and returns their stock. Rows locked by
/// a concurrent release or complete are skipped and left to it.
pub async fn expire_due(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM reservations WHERE status = 'reserved' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let quantities: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT item_id, sum(quantity)::bigint FROM reservation_lines
         WHERE reservation_id = ANY($1) GROUP BY item_id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    change_stock(&mut tx, quantities, StockChange::Return).await?;
    sqlx::query(
        "UPDATE reservations SET status = 'expired', updated_at = now() WHERE id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// A reserve ready to be written: the request, priced.
struct ReserveJob {
    id: Uuid,
    order_id: String,
    key: String,
    fingerprint: String,
    plan: Plan,
}

/// Reservations and completions, written in batches (see [`shared::batch`]) so that a popular
/// item's row changes once per commit, not once per request; each request the batch cannot take
/// is decided alone.
#[derive(Clone)]
pub struct Reservations {
    pool: PgPool,
    ttl_secs: u64,
    catalogue: Arc<Catalogue>,
    reserves: Batcher<ReserveJob, Option<Reservation>>,
    completions: Batcher<Target, Option<Reservation>>,
}

impl Reservations {
    /// Starts the batch tasks (on the current runtime); `batch` is the largest batch.
    pub fn start(pool: PgPool, ttl_secs: u64, batch: usize) -> Self {
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

    /// Reserves every line or none (SPEC §4): priced from the catalogue, then written in the next
    /// batch — or alone, when the batch cannot take it (a cart that does not fit fails its batch
    /// on `stock_never_oversold`: then each of its requests is decided alone, from a snapshot).
    pub async fn reserve(
        &self,
        request: &ReserveRequest,
        idem: &IdempotencyContext,
    ) -> Result<Reserved, sqlx::Error> {
        let items = self.catalogue.items(&self.pool, request).await?;
        let plan = match plan(&request.lines, &items) {
            Ok(plan) => plan,
            // A retry of a reservation that was made is answered with it, whatever stock is now.
            Err(rejection) => {
                return Ok(existing(&self.pool, request, idem)
                    .await?
                    .unwrap_or(Reserved::Rejected(rejection)))
            }
        };
        let job = ReserveJob {
            id: Uuid::new_v4(),
            order_id: request.order_id.clone(),
            key: idem.scoped.clone(),
            fingerprint: idem.fingerprint.clone(),
            plan,
        };
        if let Some(Some(reservation)) = self.reserves.run(job).await {
            return Ok(Reserved::New(reservation));
        }
        reserve_alone(&self.pool, request, idem, self.ttl_secs).await
    }

    /// Completes a reservation (SPEC §4) in the next batch, or alone when it is not simply
    /// `reserved` (completed already, released, expired, due, unknown).
    pub async fn complete(&self, target: &Target) -> Result<Completed, sqlx::Error> {
        if let Some(Some(reservation)) = self.completions.run(target.clone()).await {
            return Ok(Completed::Reservation(reservation));
        }
        complete_alone(&self.pool, target).await
    }
}

/// Writes a batch of reserves in one statement: every reservation row that does not conflict, its
/// lines, and one change per item for the whole batch, items locked in id order. If an item
/// cannot cover the batch, `stock_never_oversold` fails the statement and nothing is written.
const RESERVE_BATCH: &str = "
    WITH request AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::text[])
            AS r(id, order_id, idempotency_key, request_hash, total_amount, currency)
    ), reservation AS (
        INSERT INTO reservations (id, order_id, status, idempotency_key, request_hash,
                                  total_amount, currency, expires_at)
        SELECT id, order_id, 'reserved', idempotency_key, request_hash, total_amount, currency,
               now() + make_interval(secs => $7)
        FROM request
        ON CONFLICT DO NOTHING
        RETURNING id, order_id, status, tombstone, total_amount, currency, expires_at,
                  created_at, updated_at, coalesce(expires_at <= now(), false) AS due
    ), line AS (
        SELECT l.* FROM unnest($8::uuid[], $9::bigint[], $10::bigint[], $11::bigint[],
                               $12::bigint[])
            AS l(reservation_id, item_id, quantity, unit_price, amount)
        WHERE l.reservation_id IN (SELECT id FROM reservation)
    ), lines AS (
        INSERT INTO reservation_lines (reservation_id, item_id, quantity, unit_price, amount)
        SELECT * FROM line
    ), wanted AS (
        SELECT item_id, sum(quantity) AS quantity FROM line GROUP BY item_id
    ), locked AS MATERIALIZED (
        SELECT id FROM items WHERE id IN (SELECT item_id FROM wanted)
        ORDER BY id FOR NO KEY UPDATE
    ), held AS (
        UPDATE items SET reserved = reserved + wanted.quantity, updated_at = now()
        FROM locked, wanted
        WHERE items.id = locked.id AND wanted.item_id = locked.id
    )
    SELECT * FROM reservation";

async fn reserve_batch(
    pool: &PgPool,
    jobs: Vec<ReserveJob>,
    ttl_secs: u64,
) -> Vec<Option<Reservation>> {
    let mut ids = Vec::with_capacity(jobs.len());
    let (mut orders, mut keys, mut hashes, mut totals, mut currencies) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut line_of, mut items, mut quantities, mut prices, mut amounts) =
        (vec![], vec![], vec![], vec![], vec![]);
    for job in &jobs {
        ids.push(job.id);
        orders.push(job.order_id.as_str());
        keys.push(job.key.as_str());
        hashes.push(job.fingerprint.as_str());
        totals.push(job.plan.total_amount);
        currencies.push(job.plan.currency.as_str());
        for line in &job.plan.lines {
            line_of.push(job.id);
            items.push(line.item_id.0);
            quantities.push(line.quantity);
            prices.push(line.unit_price);
            amounts.push(line.amount);
        }
    }
    let written: Result<Vec<ReservationRow>, sqlx::Error> = sqlx::query_as(RESERVE_BATCH)
        .bind(&ids)
        .bind(&orders)
        .bind(&keys)
        .bind(&hashes)
        .bind(&totals)
        .bind(&currencies)
        .bind(ttl_secs as f64)
        .bind(&line_of)
        .bind(&items)
        .bind(&quantities)
        .bind(&prices)
        .bind(&amounts)
        .fetch_all(pool)
        .await;
    let mut rows: HashMap<Uuid, ReservationRow> = match written {
        Ok(rows) => rows.into_iter().map(|r| (r.id, r)).collect(),
        Err(e) => {
            if !violates(&e, "stock_never_oversold") {
                tracing::warn!(error = %e, size = jobs.len(), "a reserve batch failed; its requests go alone");
            }
            HashMap::new()
        }
    };
    jobs.into_iter()
        .map(|job| {
            let row = rows.remove(&job.id)?;
            Some(row.into_view(reserved_lines(job.plan.lines)))
        })
        .collect()
}

/// Completes a batch of `reserved`, not-due reservations in one statement: their status, and one
/// change per item for the whole batch, items locked in id order. The others are left alone.
const COMPLETE_BATCH: &str = "
    WITH done AS (
        UPDATE reservations SET status = 'completed', updated_at = now()
        WHERE (id = ANY($1) OR order_id = ANY($2))
          AND status = 'reserved' AND NOT tombstone AND expires_at > now()
        RETURNING id, order_id, status, tombstone, total_amount, currency, expires_at,
                  created_at, updated_at, coalesce(expires_at <= now(), false) AS due
    ), line AS (
        SELECT l.* FROM reservation_lines l JOIN done ON l.reservation_id = done.id
    ), wanted AS (
        SELECT item_id, sum(quantity) AS quantity FROM line GROUP BY item_id
    ), locked AS MATERIALIZED (
        SELECT id FROM items WHERE id IN (SELECT item_id FROM wanted)
        ORDER BY id FOR NO KEY UPDATE
    ), shipped AS (
        UPDATE items SET stock = stock - wanted.quantity, reserved = reserved - wanted.quantity,
                         updated_at = now()
        FROM locked, wanted
        WHERE items.id = locked.id AND wanted.item_id = locked.id
    )
    SELECT done.*,
           (SELECT json_agg(json_build_object('itemId', item_id, 'quantity', quantity,
                                              'unitPrice', unit_price, 'amount', amount)
                            ORDER BY item_id)
            FROM line WHERE line.reservation_id = done.id) AS lines
    FROM done";

/// A reservation a completion batch completed, with its lines.
#[derive(sqlx::FromRow)]
struct CompletedRow {
    #[sqlx(flatten)]
    row: ReservationRow,
    lines: sqlx::types::Json<Vec<ReservationLine>>,
}

async fn complete_batch(pool: &PgPool, targets: Vec<Target>) -> Vec<Option<Reservation>> {
    let mut by_id = Vec::new();
    let mut by_order = Vec::new();
    for target in &targets {
        match target {
            Target::Reservation(id) => by_id.push(*id),
            Target::Order(order) => by_order.push(order.as_str()),
        }
    }
    let done: Result<Vec<CompletedRow>, sqlx::Error> = sqlx::query_as(COMPLETE_BATCH)
        .bind(&by_id)
        .bind(&by_order)
        .fetch_all(pool)
        .await;
    let rows = match done {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, size = targets.len(), "a completion batch failed; its requests go alone");
            return targets.iter().map(|_| None).collect();
        }
    };
    let mut rows: Vec<Option<CompletedRow>> = rows.into_iter().map(Some).collect();
    let mut views: Vec<Option<Reservation>> = Vec::with_capacity(targets.len());
    for target in &targets {
        let found = rows.iter_mut().find(|r| {
            r.as_ref().is_some_and(|r| match target {
                Target::Reservation(id) => r.row.id == *id,
                Target::Order(order) => r.row.order_id == *order,
            })
        });
        views.push(
            found
                .and_then(Option::take)
                .map(|done| done.row.into_view(done.lines.0)),
        );
    }
    views
}
