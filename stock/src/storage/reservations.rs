//! Reservations: one per order and attempt (tombstones included), the units they hold, and the statements
//! that make, complete and end them. A reserve and a completion are each one statement for a
//! whole batch of requests (a request decided alone is a batch of one).

use super::StorageError;
use crate::domain::Plan;
use chrono::{DateTime, Utc};
use shared::contract::stock::{Reservation, ReservationLine, ReservationStatus};
use shared::contract::values::Currency;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A reservation row with its lines.
struct FullRow {
    id: Uuid,
    order_id: String,
    attempt: i32,
    status: ReservationStatus,
    total_amount: Option<i64>,
    currency: Option<Currency>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    lines: Json<Vec<ReservationLine>>,
}

impl FullRow {
    fn into_reservation(self) -> Result<Reservation, StorageError> {
        // `reservations_are_priced` keeps these set on every row that is not a tombstone.
        let (Some(total_amount), Some(currency), Some(expires_at)) =
            (self.total_amount, self.currency, self.expires_at)
        else {
            return Err(StorageError::other(format!(
                "reservation {} is not priced",
                self.id
            )));
        };
        Ok(Reservation {
            reservation_id: self.id,
            order_id: self.order_id,
            attempt: self.attempt,
            status: self.status,
            items: self.lines.0,
            total_amount,
            currency,
            expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A reservation by id; tombstones are not reservations and are not found.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Reservation>, StorageError> {
    let row = sqlx::query_as!(
        FullRow,
        r#"SELECT r.id, r.order_id, r.attempt, r.status AS "status: ReservationStatus",
                  r.total_amount,
                  r.currency AS "currency: Currency", r.expires_at, r.created_at, r.updated_at,
                  coalesce((SELECT json_agg(json_build_object(
                                'itemId', l.item_id, 'quantity', l.quantity,
                                'unitPrice', l.unit_price, 'amount', l.amount) ORDER BY l.item_id)
                            FROM reservation_lines l WHERE l.reservation_id = r.id), '[]')
                      AS "lines!: Json<Vec<ReservationLine>>"
           FROM reservations r WHERE r.id = $1 AND NOT r.tombstone"#,
        id,
    )
    .fetch_optional(conn)
    .await?;
    row.map(FullRow::into_reservation).transpose()
}

/// A reserve ready to be written: the request, priced.
pub struct ReserveJob {
    pub id: Uuid,
    pub order_id: String,
    pub attempt: i32,
    pub key: String,
    pub fingerprint: String,
    pub plan: Plan,
}

impl ReserveJob {
    /// The reservation this job makes, as written at `at` expiring at `expires_at`.
    fn reservation(&self, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> Reservation {
        Reservation {
            reservation_id: self.id,
            order_id: self.order_id.clone(),
            attempt: self.attempt,
            status: ReservationStatus::Reserved,
            items: self
                .plan
                .lines
                .iter()
                .map(|l| ReservationLine {
                    item_id: l.item_id,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    amount: l.amount,
                })
                .collect(),
            total_amount: self.plan.total_amount,
            currency: self.plan.currency,
            expires_at,
            created_at: at,
            updated_at: at,
        }
    }
}

/// Writes a batch of reserves in one statement: every reservation row that does not conflict (on
/// its order and attempt, or its key), its lines, and one change per item for the whole batch, items locked in
/// id order. If an item cannot cover the batch, `stock_never_oversold` fails the statement and
/// nothing is written. Returns, per job, the reservation it made, or `None` for a job that
/// conflicted.
pub async fn reserve(
    pool: &PgPool,
    jobs: &[ReserveJob],
    ttl_secs: f64,
) -> Result<Vec<Option<Reservation>>, StorageError> {
    let mut ids = Vec::with_capacity(jobs.len());
    let (mut orders, mut attempts, mut keys, mut hashes, mut totals, mut currencies) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut line_of, mut items, mut quantities, mut prices, mut amounts) =
        (vec![], vec![], vec![], vec![], vec![]);
    for job in jobs {
        ids.push(job.id);
        orders.push(job.order_id.as_str());
        attempts.push(job.attempt);
        keys.push(job.key.as_str());
        hashes.push(job.fingerprint.as_str());
        totals.push(job.plan.total_amount);
        currencies.push(job.plan.currency.as_str());
        for line in &job.plan.lines {
            line_of.push(job.id);
            items.push(line.item_id.get());
            quantities.push(line.quantity);
            prices.push(line.unit_price);
            amounts.push(line.amount);
        }
    }
    let written = sqlx::query!(
        r#"WITH request AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[],
                                    $6::text[], $13::int4[])
                   AS r(id, order_id, idempotency_key, request_hash, total_amount, currency,
                        attempt)
           ), reservation AS (
               INSERT INTO reservations (id, order_id, attempt, status, idempotency_key,
                                         request_hash, total_amount, currency, expires_at)
               SELECT id, order_id, attempt, 'reserved', idempotency_key, request_hash,
                      total_amount, currency, now() + make_interval(secs => $7)
               FROM request
               ON CONFLICT DO NOTHING
               RETURNING id, expires_at, created_at
           ), line AS (
               SELECT l.* FROM unnest($8::uuid[], $9::int8[], $10::int8[], $11::int8[],
                                      $12::int8[])
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
           SELECT id AS "id!", expires_at AS "expires_at!", created_at AS "created_at!"
           FROM reservation"#,
        &ids,
        &orders as _,
        &keys as _,
        &hashes as _,
        &totals,
        &currencies as _,
        ttl_secs,
        &line_of,
        &items,
        &quantities,
        &prices,
        &amounts,
        &attempts,
    )
    .fetch_all(pool)
    .await?;
    Ok(jobs
        .iter()
        .map(|job| {
            written
                .iter()
                .find(|w| w.id == job.id)
                .map(|w| job.reservation(w.expires_at, w.created_at))
        })
        .collect())
}

/// Completes a batch of `reserved`, unexpired reservations (named by id or by order and attempt)
/// in one statement: their status, and one change per item for the whole batch (`stock -= q`,
/// `reserved -= q`), items locked in id order. The others are left alone and not returned.
pub async fn complete(
    pool: &PgPool,
    by_id: &[Uuid],
    by_order: &[(&str, i32)],
) -> Result<Vec<Reservation>, StorageError> {
    let (orders, attempts): (Vec<&str>, Vec<i32>) = by_order.iter().copied().unzip();
    let rows = sqlx::query_as!(
        FullRow,
        r#"WITH done AS (
               UPDATE reservations SET status = 'completed', updated_at = now()
               WHERE (id = ANY($1)
                      OR (order_id, attempt) IN (SELECT * FROM unnest($2::text[], $3::int4[])))
                 AND status = 'reserved' AND NOT tombstone AND expires_at > now()
               RETURNING id, order_id, attempt, status, total_amount, currency, expires_at,
                         created_at, updated_at
           ), line AS (
               SELECT l.* FROM reservation_lines l JOIN done ON l.reservation_id = done.id
           ), wanted AS (
               SELECT item_id, sum(quantity) AS quantity FROM line GROUP BY item_id
           ), locked AS MATERIALIZED (
               SELECT id FROM items WHERE id IN (SELECT item_id FROM wanted)
               ORDER BY id FOR NO KEY UPDATE
           ), shipped AS (
               UPDATE items SET stock = stock - wanted.quantity,
                                reserved = reserved - wanted.quantity, updated_at = now()
               FROM locked, wanted
               WHERE items.id = locked.id AND wanted.item_id = locked.id
           )
           SELECT done.id AS "id!", done.order_id AS "order_id!", done.attempt AS "attempt!",
                  done.status AS "status!: ReservationStatus", done.total_amount,
                  done.currency AS "currency: Currency", done.expires_at,
                  done.created_at AS "created_at!", done.updated_at AS "updated_at!",
                  coalesce((SELECT json_agg(json_build_object(
                                'itemId', item_id, 'quantity', quantity,
                                'unitPrice', unit_price, 'amount', amount) ORDER BY item_id)
                            FROM line WHERE line.reservation_id = done.id), '[]')
                      AS "lines!: Json<Vec<ReservationLine>>"
           FROM done"#,
        by_id,
        &orders as _,
        &attempts,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(FullRow::into_reservation).collect()
}

/// Ends the given `reserved` reservations and returns their units to the items, in one
/// statement: `expired` if past their expiry, else `canceled`. Reservations that are no longer
/// `reserved`, or locked by another transaction, are left alone. Returns those it ended.
pub async fn end(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Reservation>, StorageError> {
    let rows = sqlx::query_as!(
        FullRow,
        r#"WITH ending AS (
               SELECT id, CASE WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END
                          AS status
               FROM reservations
               WHERE id = ANY($1) AND status = 'reserved' AND NOT tombstone
               ORDER BY id
               FOR UPDATE SKIP LOCKED
           ), ended AS (
               UPDATE reservations r SET status = ending.status, updated_at = now()
               FROM ending WHERE r.id = ending.id
               RETURNING r.id, r.order_id, r.attempt, r.status, r.total_amount, r.currency,
                         r.expires_at, r.created_at, r.updated_at
           ), line AS (
               SELECT l.* FROM reservation_lines l JOIN ended ON l.reservation_id = ended.id
           ), wanted AS (
               SELECT item_id, sum(quantity) AS quantity FROM line GROUP BY item_id
           ), locked AS MATERIALIZED (
               SELECT id FROM items WHERE id IN (SELECT item_id FROM wanted)
               ORDER BY id FOR NO KEY UPDATE
           ), returned AS (
               UPDATE items SET reserved = reserved - wanted.quantity, updated_at = now()
               FROM locked, wanted
               WHERE items.id = locked.id AND wanted.item_id = locked.id
           )
           SELECT ended.id AS "id!", ended.order_id AS "order_id!",
                  ended.attempt AS "attempt!", ended.status AS "status!: ReservationStatus", ended.total_amount,
                  ended.currency AS "currency: Currency", ended.expires_at,
                  ended.created_at AS "created_at!", ended.updated_at AS "updated_at!",
                  coalesce((SELECT json_agg(json_build_object(
                                'itemId', item_id, 'quantity', quantity,
                                'unitPrice', unit_price, 'amount', amount) ORDER BY item_id)
                            FROM line WHERE line.reservation_id = ended.id), '[]')
                      AS "lines!: Json<Vec<ReservationLine>>"
           FROM ended"#,
        ids,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(FullRow::into_reservation).collect()
}

/// Claims up to `limit` reservations past their expiry, skipping those another transaction holds
/// (several instances may sweep at once); the caller ends them in the same transaction.
pub async fn claim_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<Uuid>, StorageError> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM reservations WHERE status = 'reserved' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    .fetch_all(conn)
    .await?)
}

/// A reservation row as a release or a completion decides on it.
pub struct Held {
    pub id: Uuid,
    pub order_id: String,
    pub attempt: i32,
    pub status: ReservationStatus,
    pub tombstone: bool,
    /// Whether its expiry has passed, by the database's clock.
    pub due: bool,
}

/// The reservation of `id` or of an order's attempt (one of them), locked until the transaction
/// ends.
pub async fn lock(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    order: Option<(&str, i32)>,
) -> Result<Option<Held>, StorageError> {
    let (order_id, attempt) = order.unzip();
    Ok(sqlx::query_as!(
        Held,
        r#"SELECT id, order_id, attempt, status AS "status: ReservationStatus", tombstone,
                  coalesce(expires_at <= now(), false) AS "due!"
           FROM reservations WHERE id = $1 OR (order_id = $2 AND attempt = $3)
           FOR UPDATE"#,
        id,
        order_id,
        attempt,
    )
    .fetch_optional(conn)
    .await?)
}

/// Leaves a tombstone for an order's attempt that has no reservation, so that a late reserve for
/// it is refused. `false` if it has a row after all (a reserve committed meanwhile).
pub async fn bury(
    conn: &mut PgConnection,
    order_id: &str,
    attempt: i32,
) -> Result<bool, StorageError> {
    let buried = sqlx::query_scalar!(
        "INSERT INTO reservations (id, order_id, attempt, status, tombstone)
         VALUES ($1, $2, $3, 'canceled', true)
         ON CONFLICT (order_id, attempt) DO NOTHING RETURNING id",
        Uuid::new_v4(),
        order_id,
        attempt,
    )
    .fetch_optional(conn)
    .await?;
    Ok(buried.is_some())
}

/// What made a reserve conflict: the row under its key (id and request fingerprint) or the row of
/// its order and attempt (id and status).
pub enum Taken {
    ByKey {
        id: Uuid,
        fingerprint: Option<String>,
    },
    ByOrder {
        id: Uuid,
        status: ReservationStatus,
    },
}

pub async fn taken(
    conn: &mut PgConnection,
    key: &str,
    order_id: &str,
    attempt: i32,
) -> Result<Option<Taken>, StorageError> {
    let by_key = sqlx::query!(
        "SELECT id, request_hash FROM reservations WHERE idempotency_key = $1",
        key,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = by_key {
        return Ok(Some(Taken::ByKey {
            id: row.id,
            fingerprint: row.request_hash,
        }));
    }
    let by_order = sqlx::query!(
        r#"SELECT id, status AS "status: ReservationStatus" FROM reservations
           WHERE order_id = $1 AND attempt = $2"#,
        order_id,
        attempt,
    )
    .fetch_optional(conn)
    .await?;
    Ok(by_order.map(|row| Taken::ByOrder {
        id: row.id,
        status: row.status,
    }))
}
