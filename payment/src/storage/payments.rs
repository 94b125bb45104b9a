//! Payments, their retry attempts, and the tombstones of orders refunded before any charge. Each
//! function is one atomic phase; processor calls happen between phases, never inside a
//! transaction. Charges and refunds of the same order are serialised by a transaction-scoped
//! advisory lock on the order id, so a refund that comes first leaves a tombstone a late charge
//! cannot miss.

use super::StorageError;
use crate::domain::Settlement;
use shared::contract::payment::{ChargeLine, ChargeLines, ChargeRequest, Payment, PaymentStatus};
use shared::contract::values::{Currency, Limit, Offset};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

async fn lock_order(conn: &mut PgConnection, order_id: &str) -> Result<(), StorageError> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('order:' || $1, 0))",
        order_id
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Payment>, StorageError> {
    Ok(sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?)
}

/// Payments newest first, with how many match; status is not indexed: the newest-first index is
/// filtered (the checkout's own updates then touch no index).
pub async fn list(
    pool: &PgPool,
    status: Option<PaymentStatus>,
    order_id: Option<&str>,
    limit: Limit,
    offset: Offset,
) -> Result<(Vec<Payment>, i64), StorageError> {
    let status = status.map(PaymentStatus::as_str);
    let payments = sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments
           WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR order_id = $2)
           ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"#,
        status,
        order_id,
        limit.get(),
        offset.get(),
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM payments
           WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR order_id = $2)"#,
        status,
        order_id,
    )
    .fetch_one(pool)
    .await?;
    Ok((payments, total))
}

/// A charge to open.
pub struct ChargeJob {
    pub id: Uuid,
    pub request: ChargeRequest,
    pub key: String,
    pub fingerprint: String,
}

/// Phase 1 of a batch of charges, in one round trip (`open_charges`, migration 0003): the orders'
/// advisory locks (sorted, so batches never deadlock), then every payment whose order is not
/// canceled and whose key and order are free, `pending`. Returns, per job, the payment it opened,
/// or `None` for a job whose key or order was taken, or whose order was canceled.
pub async fn open(pool: &PgPool, jobs: &[ChargeJob]) -> Result<Vec<Option<Payment>>, StorageError> {
    let mut orders: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.request.order_id.as_ref().map(|o| o.as_str()))
        .collect();
    orders.sort_unstable();
    orders.dedup();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let order_ids: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.request.order_id.as_ref().map(|o| o.as_str()))
        .collect();
    let customers: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.request.customer_id.as_ref().map(|c| c.as_str()))
        .collect();
    let amounts: Vec<i64> = jobs.iter().map(|j| j.request.amount.get()).collect();
    let currencies: Vec<&str> = jobs.iter().map(|j| j.request.currency.as_str()).collect();
    let references: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.request.reference.as_ref().map(|r| r.as_str()))
        .collect();
    let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
    let hashes: Vec<&str> = jobs.iter().map(|j| j.fingerprint.as_str()).collect();
    let lines: Vec<Option<Json<&ChargeLines>>> = jobs
        .iter()
        .map(|j| j.request.lines.as_ref().map(Json))
        .collect();
    let opened = sqlx::query_as!(
        Payment,
        r#"SELECT id AS "payment_id!", order_id, customer_id, amount AS "amount!",
                  currency AS "currency!: Currency", status AS "status!: PaymentStatus",
                  failure_code, retries AS "retries!", refunded_amount AS "refunded_amount!", reference, created_at AS "created_at!",
                  updated_at AS "updated_at!"
           FROM open_charges($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        &orders as _,
        &ids,
        &order_ids as _,
        &customers as _,
        &amounts,
        &currencies as _,
        &references as _,
        &keys as _,
        &hashes as _,
        &lines as _,
    )
    .fetch_all(pool)
    .await?;
    Ok(jobs
        .iter()
        .map(|job| opened.iter().find(|p| p.payment_id == job.id).cloned())
        .collect())
}

/// Why a charge was not opened: the payment under its key (id and request fingerprint), the
/// payment of its order (id and status), or the order's tombstone.
pub enum Taken {
    ByKey { id: Uuid, fingerprint: String },
    ByOrder { id: Uuid, status: PaymentStatus },
    OrderCanceled,
}

/// What took a charge's key or order. Payments and tombstones are never removed, so what the
/// charge found when it was refused is still there.
pub async fn taken(
    conn: &mut PgConnection,
    key: &str,
    order_id: Option<&str>,
) -> Result<Option<Taken>, StorageError> {
    let by_key = sqlx::query!(
        "SELECT id, request_hash FROM payments WHERE idempotency_key = $1",
        key
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = by_key {
        return Ok(Some(Taken::ByKey {
            id: row.id,
            fingerprint: row.request_hash,
        }));
    }
    let Some(order_id) = order_id else {
        return Ok(None);
    };
    let by_order = sqlx::query!(
        r#"SELECT id, status AS "status: PaymentStatus" FROM payments WHERE order_id = $1"#,
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = by_order {
        return Ok(Some(Taken::ByOrder {
            id: row.id,
            status: row.status,
        }));
    }
    let canceled = sqlx::query_scalar!(
        "SELECT order_id FROM canceled_orders WHERE order_id = $1",
        order_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(canceled.map(|_| Taken::OrderCanceled))
}

/// The attempt a pending payment is waiting on: its open retry, or 0 for the first charge.
pub async fn open_attempt(conn: &mut PgConnection, payment_id: Uuid) -> Result<i32, StorageError> {
    let attempt = sqlx::query_scalar!(
        "SELECT max(attempt) FROM payment_attempts WHERE payment_id = $1 AND outcome IS NULL",
        payment_id
    )
    .fetch_one(conn)
    .await?;
    Ok(attempt.unwrap_or(0))
}

/// A payment settled by [`settle`], with the lines it was charged for (to split, if it succeeded).
pub struct Settled {
    pub payment: Payment,
    pub lines: Option<Vec<ChargeLine>>,
}

/// The last phase of a batch of charges and retries: records each processor decision on its
/// pending payment (and on its retry attempt), in one statement of the caller's transaction.
/// Returns, per settlement, the payment it settled, or `None` for one settled already (by someone
/// else) or repeated in the batch (the statement changes a row once).
pub async fn settle(
    conn: &mut PgConnection,
    settlements: &[Settlement],
) -> Result<Vec<Option<Settled>>, StorageError> {
    let ids: Vec<Uuid> = settlements.iter().map(|s| s.payment_id).collect();
    let attempts: Vec<i32> = settlements.iter().map(|s| s.attempt).collect();
    let statuses: Vec<&str> = settlements.iter().map(|s| s.status.as_str()).collect();
    let codes: Vec<Option<&str>> = settlements
        .iter()
        .map(|s| s.failure_code.as_deref())
        .collect();
    let rows = sqlx::query!(
        r#"WITH s AS (
               SELECT DISTINCT ON (id) * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[])
                   WITH ORDINALITY AS s(id, attempt, status, failure_code, n)
               ORDER BY id, n
           ), attempt AS (
               UPDATE payment_attempts a
               SET outcome = CASE WHEN s.status = 'succeeded' THEN 'succeeded' ELSE 'failed' END
               FROM s
               WHERE s.attempt > 0 AND a.payment_id = s.id AND a.attempt = s.attempt
                 AND a.outcome IS NULL
           )
           UPDATE payments p SET status = s.status, failure_code = s.failure_code,
                                 retries = GREATEST(p.retries, s.attempt), updated_at = now()
           FROM s
           WHERE p.id = s.id AND p.status = 'pending'
           RETURNING p.id AS payment_id, p.order_id, p.customer_id, p.amount,
                     p.currency AS "currency: Currency", p.status AS "status: PaymentStatus",
                     p.failure_code, p.retries, p.refunded_amount, p.reference, p.created_at,
                     p.updated_at, p.lines AS "lines: Json<Vec<ChargeLine>>""#,
        &ids,
        &attempts,
        &statuses as _,
        &codes as _,
    )
    .fetch_all(conn)
    .await?;
    let mut settled: Vec<Option<Settled>> = rows
        .into_iter()
        .map(|r| {
            Some(Settled {
                payment: Payment {
                    payment_id: r.payment_id,
                    order_id: r.order_id,
                    customer_id: r.customer_id,
                    amount: r.amount,
                    currency: r.currency,
                    status: r.status,
                    failure_code: r.failure_code,
                    retries: r.retries,
                    refunded_amount: r.refunded_amount,
                    reference: r.reference,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                },
                lines: r.lines.map(|l| l.0),
            })
        })
        .collect();
    Ok(settlements
        .iter()
        .map(|s| {
            settled
                .iter_mut()
                .find(|p| {
                    p.as_ref()
                        .is_some_and(|p| p.payment.payment_id == s.payment_id)
                })
                .and_then(Option::take)
        })
        .collect())
}

/// A payment with its row locked until the transaction ends (refunds, releases).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Payment>, StorageError> {
    Ok(sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments WHERE id = $1 FOR UPDATE"#,
        id,
    )
    .fetch_optional(conn)
    .await?)
}

/// Adds a refund to what was refunded of a (locked) payment, which turns `refunded` once all of
/// it was; the constraint `refunds_never_exceed_the_payment` refuses more.
pub async fn add_refunded(
    conn: &mut PgConnection,
    id: Uuid,
    amount: i64,
) -> Result<Payment, StorageError> {
    Ok(sqlx::query_as!(
        Payment,
        r#"UPDATE payments
           SET refunded_amount = refunded_amount + $2,
               status = CASE WHEN refunded_amount + $2 = amount THEN 'refunded' ELSE status END,
               updated_at = now()
           WHERE id = $1
           RETURNING id AS payment_id, order_id, customer_id, amount,
                     currency AS "currency: Currency", status AS "status: PaymentStatus",
                     failure_code, retries, refunded_amount, reference, created_at, updated_at"#,
        id,
        amount,
    )
    .fetch_one(conn)
    .await?)
}

pub enum RefundStart {
    Payment(Payment),
    /// The order had no payment: a tombstone now refuses a late charge.
    Tombstone(String),
    NotFound(Uuid),
}

/// Finds the payment of an order for a refund, under the order's lock; for an order without a
/// payment, leaves the tombstone.
pub async fn refund_order(pool: &PgPool, order_id: &str) -> Result<RefundStart, StorageError> {
    let mut tx = pool.begin().await?;
    lock_order(&mut tx, order_id).await?;
    let payment = sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments WHERE order_id = $1"#,
        order_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let start = match payment {
        Some(p) => RefundStart::Payment(p),
        None => {
            sqlx::query!(
                "INSERT INTO canceled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING",
                order_id
            )
            .execute(&mut *tx)
            .await?;
            RefundStart::Tombstone(order_id.to_string())
        }
    };
    tx.commit().await?;
    Ok(start)
}

pub enum RetryStart {
    /// A new attempt is open; the payment is pending on it.
    Attempt(Payment, i32),
    /// This key already made an attempt that is still unsettled: resume it.
    Resume(Payment, i32),
    /// This key's attempt is settled: answer the payment as it is.
    Done(Payment),
    NotRetryable(Payment),
    NotFound,
    KeyReused,
}

/// Phase 1 of a retry: opens attempt `retries + 1` under the request's key, in one transaction
/// holding the payment's row.
pub async fn open_retry(
    pool: &PgPool,
    payment_id: Uuid,
    key: &str,
    fingerprint: &str,
) -> Result<RetryStart, StorageError> {
    let mut tx = pool.begin().await?;
    let payment = sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments WHERE id = $1 FOR UPDATE"#,
        payment_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(payment) = payment else {
        return Ok(RetryStart::NotFound);
    };
    let previous = sqlx::query!(
        "SELECT payment_id, attempt, request_hash, outcome FROM payment_attempts
         WHERE idempotency_key = $1",
        key,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let start = match previous {
        Some(p) if p.payment_id != payment_id || p.request_hash != fingerprint => {
            RetryStart::KeyReused
        }
        Some(p) if p.outcome.is_none() => RetryStart::Resume(payment, p.attempt),
        Some(_) => RetryStart::Done(payment),
        None if payment.status != PaymentStatus::Failed => RetryStart::NotRetryable(payment),
        None => {
            let attempt = payment.retries + 1;
            sqlx::query!(
                "INSERT INTO payment_attempts (payment_id, attempt, idempotency_key, request_hash)
                 VALUES ($1, $2, $3, $4)",
                payment_id,
                attempt,
                key,
                fingerprint,
            )
            .execute(&mut *tx)
            .await?;
            let pending = sqlx::query_as!(
                Payment,
                r#"UPDATE payments SET status = 'pending', updated_at = now() WHERE id = $1
                   RETURNING id AS payment_id, order_id, customer_id, amount,
                             currency AS "currency: Currency", status AS "status: PaymentStatus",
                             failure_code, retries, refunded_amount, reference, created_at, updated_at"#,
                payment_id,
            )
            .fetch_one(&mut *tx)
            .await?;
            RetryStart::Attempt(pending, attempt)
        }
    };
    tx.commit().await?;
    Ok(start)
}
