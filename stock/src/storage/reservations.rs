use crate::domain::{
    plan, ItemId, ItemState, Plan, Rejection, Reservation, ReservationLine, ReservationStatus,
    ReserveRequest, Target,
};
use chrono::{DateTime, Utc};
use shared::idempotency::IdempotencyContext;
use sqlx::{PgPool, Postgres, Transaction};
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
    sqlx::query("SELECT id FROM items WHERE id = ANY($1) ORDER BY id FOR UPDATE")
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

/// Reserves every line or none. The reservation row goes in first, unique by `order_id` and by
/// Idempotency-Key, so duplicates and late reserves after a release are stopped by constraints.
pub async fn reserve(
    pool: &PgPool,
    request: &ReserveRequest,
    idem: &IdempotencyContext,
    ttl_secs: u64,
) -> Result<Reserved, sqlx::Error> {
    // A conflicting row can vanish only if its transaction rolled back; then we try again.
    for _ in 0..3 {
        let mut tx = pool.begin().await?;
        let id = Uuid::new_v4();
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO reservations (id, order_id, status, idempotency_key, request_hash, expires_at)
             VALUES ($1, $2, 'reserved', $3, $4, now() + make_interval(secs => $5))
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(id)
        .bind(&request.order_id)
        .bind(&idem.scoped)
        .bind(&idem.fingerprint)
        .bind(ttl_secs as f64)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            tx.rollback().await?;
            match existing(pool, request, idem).await? {
                Some(outcome) => return Ok(outcome),
                None => continue,
            }
        }

        let ids: Vec<i64> = request.lines.iter().map(|l| l.item_id).collect();
        let items: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "SELECT id, price, currency::text, stock - reserved FROM items
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let items: Vec<ItemState> = items
            .into_iter()
            .map(|(id, price, currency, available)| ItemState {
                id: ItemId(id),
                price,
                currency,
                available,
            })
            .collect();
        let Plan {
            lines,
            total_amount,
            currency,
        } = match plan(&request.lines, &items) {
            Ok(plan) => plan,
            Err(rejection) => {
                tx.rollback().await?;
                return Ok(Reserved::Rejected(rejection));
            }
        };
        let item_ids: Vec<i64> = lines.iter().map(|l| l.item_id.0).collect();
        let quantities: Vec<i64> = lines.iter().map(|l| l.quantity).collect();
        let prices: Vec<i64> = lines.iter().map(|l| l.unit_price).collect();
        let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
        sqlx::query(
            "UPDATE items SET reserved = reserved + l.quantity, updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[]) AS l(item_id, quantity)
             WHERE items.id = l.item_id",
        )
        .bind(&item_ids)
        .bind(&quantities)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO reservation_lines (reservation_id, item_id, quantity, unit_price, amount)
             SELECT $1, l.* FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS l",
        )
        .bind(id)
        .bind(&item_ids)
        .bind(&quantities)
        .bind(&prices)
        .bind(&amounts)
        .execute(&mut *tx)
        .await?;
        let row: ReservationRow = sqlx::query_as(&format!(
            "UPDATE reservations SET total_amount = $2, currency = $3 WHERE id = $1
             RETURNING {ROW_COLUMNS}"
        ))
        .bind(id)
        .bind(total_amount)
        .bind(&currency)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = lines
            .into_iter()
            .map(|l| ReservationLine {
                item_id: l.item_id.0,
                quantity: l.quantity,
                unit_price: l.unit_price,
                amount: l.amount,
            })
            .collect();
        return Ok(Reserved::New(row.into_view(items)));
    }
    Err(sqlx::Error::Protocol(
        "reservation kept conflicting with rolled-back rows".into(),
    ))
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

/// Ships a reservation: its units leave `stock` and `reserved`. A reservation past its expiry is
/// expired here (its stock returned) rather than completed.
pub async fn complete(pool: &PgPool, target: &Target) -> Result<Completed, sqlx::Error> {
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
