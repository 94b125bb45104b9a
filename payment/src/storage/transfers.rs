//! Transfers between recipients: accepted with a hold on the source's balance row, posted by the
//! worker or canceled, each at most once (migration `0005`).

use super::ledger::{self, Refused};
use super::recipients::{self, Created};
use super::StorageError;
use shared::contract::transfers::{NewTransfer, Transfer, TransferStatus};
use shared::contract::values::{Currency, Limit, Offset};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Accepts a transfer in one transaction: written under its key, and its amount held on the
/// source's balance row only if `available − held` covers it — the conditional update locks the
/// row, so concurrent acceptances take turns and each sees what the others held. Refused, it
/// writes nothing. A key written before is answered first, before any refusal: the transfer as
/// first answered for the same request, `KeyReused` for another.
pub async fn accept(
    pool: &PgPool,
    new: &NewTransfer,
    key: &str,
    fingerprint: &str,
) -> Result<Result<Created<Transfer>, Refused>, StorageError> {
    let mut tx = pool.begin().await?;
    let ids = [new.from_recipient_id, new.to_recipient_id];
    let refused = if new.from_recipient_id == new.to_recipient_id {
        Some(Refused::SameRecipient(new.from_recipient_id))
    } else {
        let unknown = recipients::unknown(&mut tx, &ids).await?;
        unknown.first().map(|id| Refused::UnknownRecipient(*id))
    };
    if let Some(refused) = refused {
        return Ok(match by_key(&mut tx, key, fingerprint).await? {
            Some(before) => Ok(before),
            None => Err(refused),
        });
    }
    let inserted = sqlx::query_as!(
        Transfer,
        r#"INSERT INTO transfers (id, from_recipient_id, to_recipient_id, amount, currency,
                                  reference, idempotency_key, request_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id AS transfer_id, from_recipient_id, to_recipient_id, amount,
                     currency AS "currency: Currency", reference,
                     status AS "status: TransferStatus", created_at, updated_at"#,
        Uuid::now_v7(),
        new.from_recipient_id,
        new.to_recipient_id,
        new.amount.get(),
        new.currency as _,
        new.reference.as_ref().map(|r| r.as_str()),
        key,
        fingerprint,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(transfer) = inserted else {
        return match by_key(&mut tx, key, fingerprint).await? {
            Some(before) => Ok(Ok(before)),
            None => Err(StorageError::LostRace("the transfer's key")),
        };
    };
    let held = ledger::hold(
        &mut tx,
        new.from_recipient_id,
        new.currency,
        new.amount.get(),
    )
    .await?;
    if let Err(refused) = held {
        // Dropping the transaction rolls the transfer back.
        return Ok(Err(refused));
    }
    tx.commit().await?;
    Ok(Ok(Created::New(transfer)))
}

/// The transfer written before under `key`, if any: as it was first answered (`pending`, as
/// accepted: a 202 is replayed as first answered, whatever the worker did since) if the request is
/// the same, `KeyReused` if not.
async fn by_key(
    conn: &mut PgConnection,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Created<Transfer>>, StorageError> {
    let before = sqlx::query!(
        r#"SELECT id, request_hash AS "request_hash!" FROM transfers WHERE idempotency_key = $1"#,
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
        Some(t) => Ok(Some(Created::Existing(as_accepted(t)))),
        None => Err(StorageError::LostRace("the transfer's key")),
    }
}

/// A transfer as its acceptance answered it: pending, changed last when it was made.
fn as_accepted(transfer: Transfer) -> Transfer {
    Transfer {
        status: TransferStatus::Pending,
        updated_at: transfer.created_at,
        ..transfer
    }
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Transfer>, StorageError> {
    let mut conn = pool.acquire().await?;
    get_with(&mut conn, id).await
}

async fn get_with(conn: &mut PgConnection, id: Uuid) -> Result<Option<Transfer>, StorageError> {
    Ok(sqlx::query_as!(
        Transfer,
        r#"SELECT id AS transfer_id, from_recipient_id, to_recipient_id, amount,
                  currency AS "currency: Currency", reference,
                  status AS "status: TransferStatus", created_at, updated_at
           FROM transfers WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?)
}

/// Transfers from or to `recipient` (all when `None`), of `status`, newest first; and how many
/// there are in all.
pub async fn list(
    pool: &PgPool,
    recipient: Option<Uuid>,
    status: Option<TransferStatus>,
    limit: Limit,
    offset: Offset,
) -> Result<(Vec<Transfer>, i64), StorageError> {
    let status = status.map(TransferStatus::as_str);
    let transfers = sqlx::query_as!(
        Transfer,
        r#"SELECT id AS transfer_id, from_recipient_id, to_recipient_id, amount,
                  currency AS "currency: Currency", reference,
                  status AS "status: TransferStatus", created_at, updated_at
           FROM transfers
           WHERE ($1::uuid IS NULL OR from_recipient_id = $1 OR to_recipient_id = $1)
             AND ($2::text IS NULL OR status = $2)
           ORDER BY id DESC LIMIT $3 OFFSET $4"#,
        recipient,
        status,
        limit.get(),
        offset.get(),
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM transfers
           WHERE ($1::uuid IS NULL OR from_recipient_id = $1 OR to_recipient_id = $1)
             AND ($2::text IS NULL OR status = $2)"#,
        recipient,
        status,
    )
    .fetch_one(pool)
    .await?;
    Ok((transfers, total))
}

/// What a cancel found.
pub enum Canceled {
    /// Canceled by this call.
    Now(Transfer),
    /// Canceled before.
    Before(Transfer),
    /// Posted already: the money moved.
    Posted(Transfer),
    NotFound,
}

/// Cancels a pending transfer and releases its hold, in one transaction. A transfer the worker is
/// posting is locked by it: the cancel waits, then finds it posted.
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<Canceled, StorageError> {
    let mut tx = pool.begin().await?;
    let canceled = sqlx::query_as!(
        Transfer,
        r#"UPDATE transfers SET status = 'canceled', updated_at = now()
           WHERE id = $1 AND status = 'pending'
           RETURNING id AS transfer_id, from_recipient_id, to_recipient_id, amount,
                     currency AS "currency: Currency", reference,
                     status AS "status: TransferStatus", created_at, updated_at"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(transfer) = canceled else {
        return Ok(match get_with(&mut tx, id).await? {
            Some(t) if t.status == TransferStatus::Posted => Canceled::Posted(t),
            Some(t) => Canceled::Before(t),
            None => Canceled::NotFound,
        });
    };
    sqlx::query!(
        "UPDATE balances SET held = held - $3 WHERE recipient_id = $1 AND currency = $2",
        transfer.from_recipient_id,
        transfer.currency as _,
        transfer.amount,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Canceled::Now(transfer))
}

/// Up to `limit` pending transfers, oldest first, locked until the caller's transaction ends;
/// those another worker (or a cancel) holds are skipped.
pub async fn claim_pending(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Transfer>, StorageError> {
    Ok(sqlx::query_as!(
        Transfer,
        r#"SELECT id AS transfer_id, from_recipient_id, to_recipient_id, amount,
                  currency AS "currency: Currency", reference,
                  status AS "status: TransferStatus", created_at, updated_at
           FROM transfers WHERE status = 'pending'
           ORDER BY created_at LIMIT $1
           FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// Marks claimed transfers posted (their sources' holds are lowered by the caller).
pub async fn mark_posted(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), StorageError> {
    sqlx::query!(
        "UPDATE transfers SET status = 'posted', updated_at = now()
         WHERE id = ANY($1) AND status = 'pending'",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
