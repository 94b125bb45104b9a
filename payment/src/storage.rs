//! PostgreSQL access for payments. Each function is one atomic phase; processor calls happen
//! between phases, never inside a transaction. Charges and refunds of the same order are
//! serialised by a transaction-scoped advisory lock on the order id, so a refund that comes first
//! leaves a tombstone a late charge cannot miss.

use crate::domain::{ChargeRequest, Payment, PaymentStatus};
use shared::idempotency::IdempotencyContext;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

const COLUMNS: &str = "id, order_id, customer_id, amount, currency::text AS currency, status, \
     failure_code, retries, reference, created_at, updated_at";

async fn lock_order(tx: &mut Transaction<'_, Postgres>, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('order:' || $1, 0))")
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn list(
    pool: &PgPool,
    status: Option<PaymentStatus>,
    order_id: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Payment>, i64), sqlx::Error> {
    let filter = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR order_id = $2)";
    let status = status.map(PaymentStatus::as_str);
    let payments = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE {filter}
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(status)
    .bind(order_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM payments WHERE {filter}"))
        .bind(status)
        .bind(order_id)
        .fetch_one(pool)
        .await?;
    Ok((payments, total))
}

pub enum Opened {
    /// A new payment, `pending` until the processor's answer is settled.
    New(Payment),
    /// This Idempotency-Key already opened this payment (maybe still pending).
    Existing(Payment),
    OrderCanceled(Option<Uuid>),
    OrderHasPayment(Uuid),
    KeyReused,
}

/// Phase 1 of a charge: the payment row, unique by order and by key, before any money moves.
pub async fn open_charge(
    pool: &PgPool,
    request: &ChargeRequest,
    idem: &IdempotencyContext,
) -> Result<Opened, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(order_id) = &request.order_id {
        lock_order(&mut tx, order_id).await?;
        let canceled: Option<String> =
            sqlx::query_scalar("SELECT order_id FROM canceled_orders WHERE order_id = $1")
                .bind(order_id)
                .fetch_optional(&mut *tx)
                .await?;
        if canceled.is_some() {
            tx.rollback().await?;
            return Ok(Opened::OrderCanceled(None));
        }
    }
    let inserted: Option<Payment> = sqlx::query_as(&format!(
        "INSERT INTO payments (id, order_id, customer_id, amount, currency, reference, status,
                               idempotency_key, request_hash)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(&request.order_id)
    .bind(&request.customer_id)
    .bind(request.amount)
    .bind(request.currency.as_str())
    .bind(&request.reference)
    .bind(&idem.scoped)
    .bind(&idem.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(payment) = inserted {
        tx.commit().await?;
        return Ok(Opened::New(payment));
    }
    let by_key: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, request_hash FROM payments WHERE idempotency_key = $1")
            .bind(&idem.scoped)
            .fetch_optional(&mut *tx)
            .await?;
    let outcome = match by_key {
        Some((id, hash)) if hash == idem.fingerprint => match get_in(&mut tx, id).await? {
            Some(payment) => Opened::Existing(payment),
            None => return Err(sqlx::Error::RowNotFound),
        },
        Some(_) => Opened::KeyReused,
        None => {
            let by_order: Option<(Uuid, String)> =
                sqlx::query_as("SELECT id, status FROM payments WHERE order_id = $1")
                    .bind(&request.order_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match by_order {
                Some((id, status)) if status == PaymentStatus::Refunded.as_str() => {
                    Opened::OrderCanceled(Some(id))
                }
                Some((id, _)) => Opened::OrderHasPayment(id),
                None => return Err(sqlx::Error::RowNotFound),
            }
        }
    };
    tx.rollback().await?;
    Ok(outcome)
}

async fn get_in(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// The attempt a pending payment is waiting on: its open retry, or 0 for the first charge.
pub async fn open_attempt(pool: &PgPool, payment_id: Uuid) -> Result<i32, sqlx::Error> {
    let attempt: Option<i32> = sqlx::query_scalar(
        "SELECT max(attempt) FROM payment_attempts WHERE payment_id = $1 AND outcome IS NULL",
    )
    .bind(payment_id)
    .fetch_one(pool)
    .await?;
    Ok(attempt.unwrap_or(0))
}

/// The last phase of a charge or retry: records the processor's decision on a pending payment
/// (and on its retry attempt), in one statement. A payment already settled by someone else is
/// returned as it is.
pub async fn settle(
    pool: &PgPool,
    payment_id: Uuid,
    attempt: i32,
    approved: bool,
    failure_code: Option<&str>,
    max_retries: i32,
) -> Result<Payment, sqlx::Error> {
    let status = match (approved, attempt >= max_retries && attempt > 0) {
        (true, _) => PaymentStatus::Succeeded,
        (false, true) => PaymentStatus::Exhausted,
        (false, false) => PaymentStatus::Failed,
    };
    let settled: Option<Payment> = sqlx::query_as(&format!(
        "WITH attempt AS (
            UPDATE payment_attempts SET outcome = $5
            WHERE $4 > 0 AND payment_id = $1 AND attempt = $4 AND outcome IS NULL
        )
        UPDATE payments SET status = $2, failure_code = $3, retries = GREATEST(retries, $4),
                            updated_at = now()
        WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
    ))
    .bind(payment_id)
    .bind(status.as_str())
    .bind(if approved { None } else { failure_code })
    .bind(attempt)
    .bind(if approved { "succeeded" } else { "failed" })
    .fetch_optional(pool)
    .await?;
    match settled {
        Some(payment) => Ok(payment),
        None => get(pool, payment_id).await?.ok_or(sqlx::Error::RowNotFound),
    }
}

pub enum RefundStart {
    Payment(Payment),
    /// The order had no payment: a tombstone now refuses a late charge.
    Tombstone(String),
    NotFound(Uuid),
}

/// Finds what a refund is about; for an order without a payment, leaves the tombstone.
pub async fn refund_target(
    pool: &PgPool,
    target: &crate::domain::RefundTarget,
) -> Result<RefundStart, sqlx::Error> {
    use crate::domain::RefundTarget;
    match target {
        RefundTarget::Payment(id) => Ok(match get(pool, *id).await? {
            Some(p) => RefundStart::Payment(p),
            None => RefundStart::NotFound(*id),
        }),
        RefundTarget::Order(order_id) => {
            let mut tx = pool.begin().await?;
            lock_order(&mut tx, order_id).await?;
            let payment: Option<Payment> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM payments WHERE order_id = $1"
            ))
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
            let start = match payment {
                Some(p) => RefundStart::Payment(p),
                None => {
                    sqlx::query(
                        "INSERT INTO canceled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    )
                    .bind(order_id)
                    .execute(&mut *tx)
                    .await?;
                    RefundStart::Tombstone(order_id.clone())
                }
            };
            tx.commit().await?;
            Ok(start)
        }
    }
}

/// Records a refund the processor has made.
pub async fn mark_refunded(pool: &PgPool, payment_id: Uuid) -> Result<Payment, sqlx::Error> {
    let refunded: Option<Payment> = sqlx::query_as(&format!(
        "UPDATE payments SET status = 'refunded', updated_at = now()
         WHERE id = $1 AND status = 'succeeded' RETURNING {COLUMNS}"
    ))
    .bind(payment_id)
    .fetch_optional(pool)
    .await?;
    match refunded {
        Some(p) => Ok(p),
        None => get(pool, payment_id).await?.ok_or(sqlx::Error::RowNotFound),
    }
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

/// Phase 1 of a retry: opens attempt `retries + 1` under the request's key.
pub async fn open_retry(
    pool: &PgPool,
    payment_id: Uuid,
    idem: &IdempotencyContext,
) -> Result<RetryStart, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let payment: Option<Payment> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE id = $1 FOR UPDATE"
    ))
    .bind(payment_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(payment) = payment else {
        tx.rollback().await?;
        return Ok(RetryStart::NotFound);
    };
    let previous: Option<(Uuid, i32, String, Option<String>)> = sqlx::query_as(
        "SELECT payment_id, attempt, request_hash, outcome FROM payment_attempts
         WHERE idempotency_key = $1",
    )
    .bind(&idem.scoped)
    .fetch_optional(&mut *tx)
    .await?;
    let start = match previous {
        Some((id, _, hash, _)) if id != payment_id || hash != idem.fingerprint => {
            RetryStart::KeyReused
        }
        Some((_, attempt, _, None)) => RetryStart::Resume(payment, attempt),
        Some(_) => RetryStart::Done(payment),
        None if payment.status() != PaymentStatus::Failed => RetryStart::NotRetryable(payment),
        None => {
            let attempt = payment.retries + 1;
            sqlx::query(
                "INSERT INTO payment_attempts (payment_id, attempt, idempotency_key, request_hash)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(payment_id)
            .bind(attempt)
            .bind(&idem.scoped)
            .bind(&idem.fingerprint)
            .execute(&mut *tx)
            .await?;
            let payment: Payment = sqlx::query_as(&format!(
                "UPDATE payments SET status = 'pending', updated_at = now() WHERE id = $1
                 RETURNING {COLUMNS}"
            ))
            .bind(payment_id)
            .fetch_one(&mut *tx)
            .await?;
            RetryStart::Attempt(payment, attempt)
        }
    };
    tx.commit().await?;
    Ok(start)
}
