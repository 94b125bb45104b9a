//! PostgreSQL access for payments. Each function is one atomic phase; processor calls happen
//! between phases, never inside a transaction. Charges and refunds of the same order are
//! serialised by a transaction-scoped advisory lock on the order id, so a refund that comes first
//! leaves a tombstone a late charge cannot miss.

use crate::domain::{ChargeRequest, Payment, PaymentStatus};
use shared::batch::{first_of_each, Batched, Batcher};
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

/// The status a processor decision settles a payment in: a decline of the last allowed retry
/// exhausts it.
fn settled_status(approved: bool, attempt: i32, max_retries: i32) -> PaymentStatus {
    match (approved, attempt >= max_retries && attempt > 0) {
        (true, _) => PaymentStatus::Succeeded,
        (false, true) => PaymentStatus::Exhausted,
        (false, false) => PaymentStatus::Failed,
    }
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
    let status = settled_status(approved, attempt, max_retries);
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

struct ChargeJob {
    id: Uuid,
    request: ChargeRequest,
    key: String,
    fingerprint: String,
}

struct SettleJob {
    payment_id: Uuid,
    attempt: i32,
    status: PaymentStatus,
    failure_code: Option<String>,
}

/// The writes on the checkout path — opening a charge and settling it — group-committed (see
/// [`shared::batch`]): charges opened or settled at the same time share one transaction. Each
/// means the same as [`open_charge`] and [`settle`], which a request the batch cannot take (a key
/// or order already charged, a canceled order, a payment settled already) goes through alone.
#[derive(Clone)]
pub struct Writes {
    pool: PgPool,
    charges: Batcher<ChargeJob, Batched<Payment>>,
    settles: Batcher<SettleJob, Batched<Payment>>,
}

impl Writes {
    /// Starts the batch tasks (on the current runtime); `batch` is the largest batch.
    pub fn start(pool: PgPool, batch: usize) -> Self {
        let charges = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs| {
                let pool = pool.clone();
                async move { charge_batch(&pool, jobs).await }
            })
        };
        let settles = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs| {
                let pool = pool.clone();
                async move { settle_batch(&pool, jobs).await }
            })
        };
        Writes {
            pool,
            charges,
            settles,
        }
    }

    /// [`open_charge`], in the next batch.
    pub async fn open_charge(
        &self,
        request: &ChargeRequest,
        idem: &IdempotencyContext,
    ) -> Result<Opened, sqlx::Error> {
        let job = ChargeJob {
            id: Uuid::new_v4(),
            request: request.clone(),
            key: idem.scoped.clone(),
            fingerprint: idem.fingerprint.clone(),
        };
        if let Some(Batched::Done(payment)) = self.charges.run(job).await {
            return Ok(Opened::New(payment));
        }
        open_charge(&self.pool, request, idem).await
    }

    /// [`settle`], in the next batch.
    pub async fn settle(
        &self,
        payment_id: Uuid,
        attempt: i32,
        approved: bool,
        failure_code: Option<&str>,
        max_retries: i32,
    ) -> Result<Payment, sqlx::Error> {
        let job = SettleJob {
            payment_id,
            attempt,
            status: settled_status(approved, attempt, max_retries),
            failure_code: if approved {
                None
            } else {
                failure_code.map(str::to_string)
            },
        };
        if let Some(Batched::Done(payment)) = self.settles.run(job).await {
            return Ok(payment);
        }
        settle(
            &self.pool,
            payment_id,
            attempt,
            approved,
            failure_code,
            max_retries,
        )
        .await
    }
}

/// Opens a batch of charges in one statement (`open_charges`, see migration 0003): the orders'
/// advisory locks (sorted), then every payment whose order is not canceled and whose key and order
/// are free, `pending`.
async fn charge_batch(pool: &PgPool, jobs: Vec<ChargeJob>) -> Vec<Batched<Payment>> {
    let mut orders: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.request.order_id.as_deref())
        .collect();
    orders.sort_unstable();
    orders.dedup();
    let opened: Result<Vec<Payment>, sqlx::Error> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM open_charges($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&orders)
    .bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.request.order_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.request.customer_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.request.amount).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.request.currency.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.request.reference.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.fingerprint.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await;
    let rows = opened.unwrap_or_else(|e| {
        tracing::warn!(error = %e, size = jobs.len(), "a charge batch failed; its requests go alone");
        Vec::new()
    });
    Batched::matched(&jobs, rows, |j| j.id, |p| p.payment_id)
}

/// Settles a batch of pending payments (and their retry attempts) in one statement.
async fn settle_batch(pool: &PgPool, jobs: Vec<SettleJob>) -> Vec<Batched<Payment>> {
    let first = first_of_each(&jobs, |j| j.payment_id);
    let batch: Vec<&SettleJob> = jobs
        .iter()
        .zip(&first)
        .filter(|(_, first)| **first)
        .map(|(job, _)| job)
        .collect();
    let settled: Result<Vec<Payment>, sqlx::Error> = sqlx::query_as(
        "WITH s AS (
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[])
                AS s(id, attempt, status, failure_code)
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
        RETURNING p.id, p.order_id, p.customer_id, p.amount, p.currency::text AS currency,
                  p.status, p.failure_code, p.retries, p.reference, p.created_at, p.updated_at",
    )
    .bind(batch.iter().map(|j| j.payment_id).collect::<Vec<_>>())
    .bind(batch.iter().map(|j| j.attempt).collect::<Vec<_>>())
    .bind(batch.iter().map(|j| j.status.as_str()).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|j| j.failure_code.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await;
    let rows = settled.unwrap_or_else(|e| {
        tracing::warn!(error = %e, size = jobs.len(), "a settle batch failed; its payments settle alone");
        Vec::new()
    });
    // A repeated payment gets no row: its first job takes it.
    Batched::matched(&jobs, rows, |j| j.payment_id, |p| p.payment_id)
}
