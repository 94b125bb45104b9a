//! Payouts: accepted with a hold on the recipient's balance row, sent by the worker through the
//! payout provider under a lease, recorded `paid` or `failed` once (migration `0006`); and the
//! simulated provider's own records.

use super::ledger::{self, Refused};
use super::recipients::{self, Created};
use super::StorageError;
use shared::contract::transfers::{NewPayout, Payout, PayoutStatus};
use shared::contract::values::{Currency, Limit, Offset};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// Accepts a payout in one transaction: written under its key, its amount held if `available −
/// held` covers it ([`ledger::hold`]); refused, it writes nothing. A key written before is
/// answered first, before any refusal: the payout as first answered for the same request,
/// `KeyReused` for another.
pub async fn accept(
    pool: &PgPool,
    new: &NewPayout,
    key: &str,
    fingerprint: &str,
) -> Result<Result<Created<Payout>, Refused>, StorageError> {
    let mut tx = pool.begin().await?;
    if let Some(unknown) = recipients::unknown(&mut tx, &[new.recipient_id])
        .await?
        .first()
    {
        return Ok(match by_key(&mut tx, key, fingerprint).await? {
            Some(before) => Ok(before),
            None => Err(Refused::UnknownRecipient(*unknown)),
        });
    }
    let inserted = sqlx::query_as!(
        Payout,
        r#"INSERT INTO payouts (id, recipient_id, amount, currency, idempotency_key, request_hash)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id AS payout_id, recipient_id, amount, currency AS "currency: Currency",
                     status AS "status: PayoutStatus", failure_code, created_at, updated_at"#,
        Uuid::now_v7(),
        new.recipient_id,
        new.amount.get(),
        new.currency as _,
        key,
        fingerprint,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(payout) = inserted else {
        return match by_key(&mut tx, key, fingerprint).await? {
            Some(before) => Ok(Ok(before)),
            None => Err(StorageError::LostRace("the payout's key")),
        };
    };
    let held = ledger::hold(&mut tx, new.recipient_id, new.currency, new.amount.get()).await?;
    if let Err(refused) = held {
        // Dropping the transaction rolls the payout back.
        return Ok(Err(refused));
    }
    tx.commit().await?;
    Ok(Ok(Created::New(payout)))
}

/// The payout written before under `key`, if any: as it was first answered (`pending`, as
/// accepted) if the request is the same, `KeyReused` if not.
async fn by_key(
    conn: &mut PgConnection,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Created<Payout>>, StorageError> {
    let before = sqlx::query!(
        r#"SELECT id, request_hash AS "request_hash!" FROM payouts WHERE idempotency_key = $1"#,
        key
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(before) = before else {
        return Ok(None);
    };
    if before.request_hash != fingerprint {
        return Ok(Some(Created::KeyReused));
    }
    match get_with(conn, before.id).await? {
        Some(p) => Ok(Some(Created::Existing(as_accepted(p)))),
        None => Err(StorageError::LostRace("the payout's key")),
    }
}

/// A payout as its acceptance answered it: pending, no failure, changed last when it was made.
fn as_accepted(payout: Payout) -> Payout {
    Payout {
        status: PayoutStatus::Pending,
        failure_code: None,
        updated_at: payout.created_at,
        ..payout
    }
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Payout>, StorageError> {
    let mut conn = pool.acquire().await?;
    get_with(&mut conn, id).await
}

async fn get_with(conn: &mut PgConnection, id: Uuid) -> Result<Option<Payout>, StorageError> {
    Ok(sqlx::query_as!(
        Payout,
        r#"SELECT id AS payout_id, recipient_id, amount, currency AS "currency: Currency",
                  status AS "status: PayoutStatus", failure_code, created_at, updated_at
           FROM payouts WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?)
}

/// A recipient's payouts (all when `None`), of `status`, newest first; and how many in all.
pub async fn list(
    pool: &PgPool,
    recipient: Option<Uuid>,
    status: Option<PayoutStatus>,
    limit: Limit,
    offset: Offset,
) -> Result<(Vec<Payout>, i64), StorageError> {
    let status = status.map(PayoutStatus::as_str);
    let payouts = sqlx::query_as!(
        Payout,
        r#"SELECT id AS payout_id, recipient_id, amount, currency AS "currency: Currency",
                  status AS "status: PayoutStatus", failure_code, created_at, updated_at
           FROM payouts
           WHERE ($1::uuid IS NULL OR recipient_id = $1) AND ($2::text IS NULL OR status = $2)
           ORDER BY id DESC LIMIT $3 OFFSET $4"#,
        recipient,
        status,
        limit.get(),
        offset.get(),
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM payouts
           WHERE ($1::uuid IS NULL OR recipient_id = $1) AND ($2::text IS NULL OR status = $2)"#,
        recipient,
        status,
    )
    .fetch_one(pool)
    .await?;
    Ok((payouts, total))
}

/// Takes up to `limit` pending payouts, oldest first, whose lease is free or ran out, for `lease`:
/// no other worker takes them until then (a payout another worker is taking is skipped).
pub async fn lease_pending(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Payout>, StorageError> {
    Ok(sqlx::query_as!(
        Payout,
        r#"UPDATE payouts SET lease_until = now() + make_interval(secs => $2)
           WHERE id IN (SELECT id FROM payouts
                        WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now())
                        ORDER BY created_at LIMIT $1
                        FOR UPDATE SKIP LOCKED)
           RETURNING id AS payout_id, recipient_id, amount, currency AS "currency: Currency",
                     status AS "status: PayoutStatus", failure_code, created_at, updated_at"#,
        limit,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?)
}

/// Records the provider's answers on payouts still pending, locked until the caller's transaction
/// ends: `paid` (no failure code) or `failed`. Returns the payouts it changed — only those, so a
/// payout recorded already (by another worker whose lease ran out) is never recorded twice.
pub async fn settle(
    conn: &mut PgConnection,
    outcomes: &[(Uuid, Option<String>)],
) -> Result<Vec<Payout>, StorageError> {
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.0).collect();
    let codes: Vec<Option<String>> = outcomes.iter().map(|o| o.1.clone()).collect();
    Ok(sqlx::query_as!(
        Payout,
        r#"UPDATE payouts p
           SET status = CASE WHEN o.failure_code IS NULL THEN 'paid' ELSE 'failed' END,
               failure_code = o.failure_code, lease_until = NULL, updated_at = now()
           FROM unnest($1::uuid[], $2::text[]) AS o(id, failure_code)
           WHERE p.id = o.id AND p.status = 'pending'
           RETURNING p.id AS payout_id, p.recipient_id, p.amount,
                     p.currency AS "currency: Currency", p.status AS "status: PayoutStatus",
                     p.failure_code, p.created_at, p.updated_at"#,
        &ids,
        &codes as _,
    )
    .fetch_all(conn)
    .await?)
}

/// The simulated provider sends a payout, or — asked again for the same id — answers what it did
/// then: whether it paid, or its failure code. In one statement of its own (autocommit): what the
/// provider did does not depend on the caller's transaction.
pub async fn simulated_send(
    pool: &PgPool,
    payout: &Payout,
    failure_code: Option<&str>,
) -> Result<Option<String>, StorageError> {
    let row = sqlx::query!(
        r#"INSERT INTO simulated_payouts (payout_id, amount, currency, paid, failure_code)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (payout_id) DO UPDATE SET asked = simulated_payouts.asked + 1
           RETURNING failure_code"#,
        payout.payout_id,
        payout.amount,
        payout.currency as _,
        failure_code.is_none(),
        failure_code,
    )
    .fetch_one(pool)
    .await?;
    Ok(row.failure_code)
}
