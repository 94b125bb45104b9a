//! Payments, their retry attempts, and the tombstones of orders' attempts refunded before any
//! charge. Each function is one atomic phase; processor calls happen between phases, never inside
//! a transaction. Charges and refunds of the same order (any of its attempts) are serialised by a
//! transaction-scoped advisory lock on the order id, so a refund that comes first leaves a
//! tombstone a late charge of that attempt cannot miss.

use super::ledger::CaptureRows;
use super::{split_rules, StorageError};
use crate::domain::ledger::RuleInForce;
use crate::domain::Settlement;
use shared::contract::payment::{ChargeLine, ChargeLines, ChargeRequest, Payment, PaymentStatus};
use shared::contract::values::{Currency, Limit, Offset};
use shared::contract::OrderAttempt;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
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
        r#"SELECT id AS payment_id, order_id, attempt, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?)
}

/// Payments newest first, with how many match; status is not indexed: the newest-first index is
/// filtered (the checkout's own updates then touch no index). `order_id` finds the payments of
/// every attempt of the order.
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
        r#"SELECT id AS payment_id, order_id, attempt, customer_id, amount,
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

/// Phase 1 of a batch of charges, in one round trip (`open_charges`, migration 0007): the orders'
/// advisory locks (sorted, so batches never deadlock), then every payment whose order and attempt
/// are not canceled and whose key and order and attempt are free, `pending`. Returns, per job, the
/// payment it opened, or `None` for a job whose key or order and attempt were taken, or canceled.
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
    let attempts: Vec<i32> = jobs.iter().map(|j| j.request.attempt.as_i32()).collect();
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
        r#"SELECT id AS "payment_id!", order_id, attempt AS "attempt!", customer_id, amount AS "amount!",
                  currency AS "currency!: Currency", status AS "status!: PaymentStatus",
                  failure_code, retries AS "retries!", refunded_amount AS "refunded_amount!", reference, created_at AS "created_at!",
                  updated_at AS "updated_at!"
           FROM open_charges($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#,
        &orders as _,
        &ids,
        &order_ids as _,
        &attempts,
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
/// payment of its order and attempt (id and status), or their tombstone.
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
    order: Option<(&str, i32)>,
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
    let Some((order_id, attempt)) = order else {
        return Ok(None);
    };
    let by_order = sqlx::query!(
        r#"SELECT id, status AS "status: PaymentStatus" FROM payments
           WHERE order_id = $1 AND attempt = $2"#,
        order_id,
        attempt
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
        "SELECT order_id FROM canceled_orders WHERE order_id = $1 AND attempt = $2",
        order_id,
        attempt
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

/// What a capture of a payment needs to know: the lines it was charged for, and the rules in
/// force for their products when it was made.
pub struct CaptureInputs {
    pub payment_id: Uuid,
    pub lines: Option<Vec<ChargeLine>>,
    pub rules: Vec<RuleInForce>,
}

/// The capture inputs of payments, in one query (the rules found by the exclusion constraint's
/// index, one per line at most), with the rules' counter as that query saw it: what
/// [`settle`] checks that no rule was written since (migration `0008`). `None` when none of the
/// payments was found.
pub async fn capture_inputs(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<(Vec<CaptureInputs>, Option<i64>), StorageError> {
    let rows = sqlx::query!(
        r#"SELECT (SELECT epoch FROM split_rules_epoch) AS "epoch!",
                  p.id, p.lines AS "lines: Json<Vec<ChargeLine>>", r.id AS "rule_id?",
                  r.product_id AS "product_id?", r.effective_from AS "effective_from?",
                  r.effective_to, s.recipient_id AS "recipient_id?", s.kind AS "kind?",
                  s.basis_points, s.amount
           FROM payments p
           LEFT JOIN LATERAL (
               SELECT f.id, f.product_id, f.effective_from, f.effective_to FROM split_rules f
               WHERE f.product_id IN (SELECT (l ->> 'productId')::bigint
                                      FROM jsonb_array_elements(p.lines) AS l)
                 AND tstzrange(f.effective_from, f.effective_to) @> p.created_at
           ) r ON true
           LEFT JOIN split_rule_shares s ON s.rule_id = r.id
           WHERE p.id = ANY($1)
           ORDER BY p.id, r.id, s.position"#,
        ids
    )
    .fetch_all(pool)
    .await?;
    let epoch = rows.first().map(|r| r.epoch);
    let mut inputs: Vec<CaptureInputs> = Vec::new();
    for row in rows {
        if inputs.last().is_none_or(|i| i.payment_id != row.id) {
            inputs.push(CaptureInputs {
                payment_id: row.id,
                lines: row.lines.map(|l| l.0),
                rules: Vec::new(),
            });
        }
        let (Some(input), Some(rule_id), Some(product_id), Some(from), Some(recipient), Some(kind)) = (
            inputs.last_mut(),
            row.rule_id,
            row.product_id,
            row.effective_from,
            row.recipient_id,
            row.kind,
        ) else {
            continue;
        };
        let share = split_rules::share(recipient, &kind, row.basis_points, row.amount)?;
        match input.rules.last_mut() {
            Some(rule) if rule.id == rule_id => rule.shares.push(share),
            _ => input.rules.push(RuleInForce {
                id: rule_id,
                product_id,
                effective_from: from,
                effective_to: row.effective_to,
                shares: vec![share],
            }),
        }
    }
    Ok((inputs, epoch))
}

/// The last phase of a batch of charges and retries, in one statement (atomic without a
/// transaction around it): records each processor decision on its pending payment (and on its
/// retry attempt), and writes the captures of those it settles `succeeded` — only of those, so a
/// payment settled already (by a concurrent request, or another instance) is never captured
/// again. Returns, per settlement, the payment it settled, or `None` for one settled already or
/// repeated in the batch (the statement changes a row once).
///
/// `rules_read_at` is the rules' counter [`capture_inputs`] returned for the captures' inputs: the
/// statement is refused (constraint `split_rules_unchanged_since_read`) if a rule was written
/// since, so that the captures are split again by what is in force now.
pub async fn settle(
    pool: &PgPool,
    settlements: &[Settlement],
    captures: &CaptureRows,
    rules_read_at: Option<i64>,
    hold: Duration,
) -> Result<Vec<Option<Payment>>, StorageError> {
    let ids: Vec<Uuid> = settlements.iter().map(|s| s.payment_id).collect();
    let attempts: Vec<i32> = settlements.iter().map(|s| s.attempt).collect();
    let statuses: Vec<&str> = settlements.iter().map(|s| s.status.as_str()).collect();
    let codes: Vec<Option<&str>> = settlements
        .iter()
        .map(|s| s.failure_code.as_deref())
        .collect();
    let c = captures;
    let settled = sqlx::query_as!(
        Payment,
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
           ), rules AS MATERIALIZED (
               -- Refuses the statement if a rule was written since the captures' rules were read
               -- (migration 0008); NULL when nothing is split by a rule.
               SELECT split_rules_unchanged_since($19::bigint) AS unchanged
           ), settled AS (
               UPDATE payments p SET status = s.status, failure_code = s.failure_code,
                                     retries = GREATEST(p.retries, s.attempt), updated_at = now()
               FROM s
               WHERE p.id = s.id AND p.status = 'pending' AND (SELECT unchanged FROM rules)
               RETURNING p.*
           ), captured AS (
               SELECT id FROM settled WHERE status = 'succeeded'
           ), allocated AS (
               INSERT INTO allocations (payment_id, position, product_id, recipient_id,
                                        split_rule_id, amount, release_at)
               SELECT a.payment_id, a.position, a.product_id, a.recipient_id, a.split_rule_id,
                      a.amount, now() + make_interval(secs => $5)
               FROM unnest($6::uuid[], $7::int[], $8::bigint[], $9::uuid[], $10::uuid[],
                           $11::bigint[])
                    AS a(payment_id, position, product_id, recipient_id, split_rule_id, amount)
               WHERE a.payment_id IN (SELECT id FROM captured)
           ), entries AS (
               SELECT e.id, e.currency, e.payment_id
               FROM unnest($12::uuid[], $13::text[], $14::uuid[]) AS e(id, currency, payment_id)
               WHERE e.payment_id IN (SELECT id FROM captured)
           ), entered AS (
               INSERT INTO ledger_entries (id, kind, currency, payment_id)
               SELECT id, 'capture', currency, payment_id FROM entries
           ), credits AS (
               SELECT l.entry_id, l.position, l.recipient_id, l.amount, e.currency
               FROM unnest($15::uuid[], $16::int[], $17::uuid[], $18::bigint[])
                    AS l(entry_id, position, recipient_id, amount)
               JOIN entries e ON e.id = l.entry_id
           ), legs AS (
               INSERT INTO ledger_legs (entry_id, position, debit_account, credit_account,
                                        credit_recipient, amount)
               SELECT entry_id, position, 'processor', 'pending', recipient_id, amount FROM credits
           ), queued AS (
               -- One pending credit per recipient and currency of the batch: the platform and a
               -- popular seller are credited by most of a batch's captures.
               INSERT INTO pending_credits (recipient_id, currency, amount)
               SELECT recipient_id, currency, sum(amount) FROM credits GROUP BY 1, 2
           )
           SELECT id AS "payment_id!", order_id, attempt AS "attempt!", customer_id, amount AS "amount!",
                  currency AS "currency!: Currency", status AS "status!: PaymentStatus",
                  failure_code, retries AS "retries!", refunded_amount AS "refunded_amount!",
                  reference, created_at AS "created_at!", updated_at AS "updated_at!"
           FROM settled"#,
        &ids,
        &attempts,
        &statuses as _,
        &codes as _,
        hold.as_secs_f64(),
        &c.a_payments,
        &c.a_positions,
        &c.a_products as _,
        &c.a_recipients,
        &c.a_rules as _,
        &c.a_amounts,
        &c.e_ids,
        &c.e_currencies as _,
        &c.e_payments,
        &c.l_entries,
        &c.l_positions,
        &c.l_recipients as _,
        &c.l_amounts,
        rules_read_at,
    )
    .fetch_all(pool)
    .await?;
    let mut settled: Vec<Option<Payment>> = settled.into_iter().map(Some).collect();
    Ok(settlements
        .iter()
        .map(|s| {
            settled
                .iter_mut()
                .find(|p| p.as_ref().is_some_and(|p| p.payment_id == s.payment_id))
                .and_then(Option::take)
        })
        .collect())
}

/// A payment with its row locked until the transaction ends (refunds, releases).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Payment>, StorageError> {
    Ok(sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, attempt, customer_id, amount,
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
           RETURNING id AS payment_id, order_id, attempt, customer_id, amount,
                     currency AS "currency: Currency", status AS "status: PaymentStatus",
                     failure_code, retries, refunded_amount, reference, created_at, updated_at"#,
        id,
        amount,
    )
    .fetch_one(conn)
    .await?)
}

/// Marks a (locked) payment that `/refund` answered: its order was compensated, so it is never
/// charged again (the constraint `a_compensated_payment_is_not_charged_again` holds it too).
pub async fn mark_compensated(conn: &mut PgConnection, id: Uuid) -> Result<(), StorageError> {
    sqlx::query!(
        "UPDATE payments SET compensated = true WHERE id = $1 AND NOT compensated",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub enum RefundStart {
    Payment(Payment),
    /// The order's attempt had no payment: a tombstone now refuses its late charge.
    Tombstone(OrderAttempt),
    NotFound(Uuid),
}

/// Finds the payment of an order's attempt for a refund, under the order's lock; for an attempt
/// without a payment, leaves the tombstone.
pub async fn refund_order(
    pool: &PgPool,
    order: &OrderAttempt,
) -> Result<RefundStart, StorageError> {
    let (order_id, attempt) = (order.order_id.as_str(), order.attempt.as_i32());
    let mut tx = pool.begin().await?;
    lock_order(&mut tx, order_id).await?;
    let payment = sqlx::query_as!(
        Payment,
        r#"SELECT id AS payment_id, order_id, attempt, customer_id, amount,
                  currency AS "currency: Currency", status AS "status: PaymentStatus",
                  failure_code, retries, refunded_amount, reference, created_at, updated_at
           FROM payments WHERE order_id = $1 AND attempt = $2"#,
        order_id,
        attempt,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let start = match payment {
        Some(p) => RefundStart::Payment(p),
        None => {
            sqlx::query!(
                "INSERT INTO canceled_orders (order_id, attempt) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                order_id,
                attempt
            )
            .execute(&mut *tx)
            .await?;
            RefundStart::Tombstone(order.clone())
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
    /// Not failed, or failed and compensated already (`/refund` answered for it).
    NotRetryable(Payment, bool),
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
        r#"SELECT id AS payment_id, order_id, attempt, customer_id, amount,
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
    let compensated =
        sqlx::query_scalar!("SELECT compensated FROM payments WHERE id = $1", payment_id)
            .fetch_one(&mut *tx)
            .await?;
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
        // Only a failed payment is tried again, and not once its order was compensated.
        None if payment.status != PaymentStatus::Failed || compensated => {
            RetryStart::NotRetryable(payment, compensated)
        }
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
                   RETURNING id AS payment_id, order_id, attempt, customer_id, amount,
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
