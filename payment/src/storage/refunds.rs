//! Refunds of payments. A refund is written with its reversal, in the transaction that holds the
//! payment's row; `settled_at` is set once the processor has given the money back (until then a
//! retry of the request, or the worker, asks the processor again — idempotent by refund id).

use super::StorageError;
use chrono::{DateTime, Utc};
use shared::contract::splits::Refund;
use shared::contract::values::Currency;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

shared::text_enum! {
    /// A refund of what was left of a payment (`/refund`), or of a part (`/payments/{id}/refunds`).
    pub enum RefundKind {
        Full = "full",
        Partial = "partial",
    }
}

/// A stored refund.
#[derive(Debug, Clone)]
pub struct Stored {
    pub refund: Refund,
    pub currency: Currency,
    /// The fingerprint of the request that made it (partial refunds).
    pub fingerprint: Option<String>,
    pub settled: bool,
}

/// The refund made under `key`.
pub async fn by_key(conn: &mut PgConnection, key: &str) -> Result<Option<Stored>, StorageError> {
    let row = sqlx::query!(
        r#"SELECT r.id, r.payment_id, r.amount, r.created_at, r.request_hash,
                  r.settled_at IS NOT NULL AS "settled!", p.currency AS "currency: Currency"
           FROM refunds r JOIN payments p ON p.id = r.payment_id
           WHERE r.idempotency_key = $1"#,
        key
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Stored {
        refund: Refund {
            refund_id: r.id,
            payment_id: r.payment_id,
            amount: r.amount,
            created_at: r.created_at,
        },
        currency: r.currency,
        fingerprint: r.request_hash,
        settled: r.settled,
    }))
}

/// A new refund of a locked payment; `key` and `fingerprint` for a partial refund.
pub struct NewRefund<'a> {
    pub payment_id: Uuid,
    pub amount: i64,
    pub kind: RefundKind,
    pub key: Option<&'a str>,
    pub fingerprint: Option<&'a str>,
}

pub async fn insert(conn: &mut PgConnection, new: &NewRefund<'_>) -> Result<Refund, StorageError> {
    Ok(sqlx::query_as!(
        Refund,
        r#"INSERT INTO refunds (id, payment_id, amount, kind, idempotency_key, request_hash)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id AS refund_id, payment_id, amount, created_at"#,
        Uuid::now_v7(),
        new.payment_id,
        new.amount,
        new.kind.as_str(),
        new.key,
        new.fingerprint,
    )
    .fetch_one(conn)
    .await?)
}

/// Refunds not settled yet: those of one payment, or (without one) any made more than `age` ago,
/// oldest first, at most `limit`.
pub async fn unsettled(
    pool: &PgPool,
    payment_id: Option<Uuid>,
    age: Duration,
    limit: i64,
) -> Result<Vec<(Refund, Currency)>, StorageError> {
    let rows = sqlx::query!(
        r#"SELECT r.id, r.payment_id, r.amount, r.created_at, p.currency AS "currency: Currency"
           FROM refunds r JOIN payments p ON p.id = r.payment_id
           WHERE r.settled_at IS NULL
             AND ($1::uuid IS NULL OR r.payment_id = $1)
             AND ($1::uuid IS NOT NULL OR r.created_at < now() - make_interval(secs => $2))
           ORDER BY r.created_at LIMIT $3"#,
        payment_id,
        age.as_secs_f64(),
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                Refund {
                    refund_id: r.id,
                    payment_id: r.payment_id,
                    amount: r.amount,
                    created_at: r.created_at,
                },
                r.currency,
            )
        })
        .collect())
}

/// Records that the processor gave a refund's money back.
pub async fn mark_settled(pool: &PgPool, id: Uuid) -> Result<Option<DateTime<Utc>>, StorageError> {
    Ok(sqlx::query_scalar!(
        "UPDATE refunds SET settled_at = coalesce(settled_at, now()) WHERE id = $1 RETURNING settled_at",
        id
    )
    .fetch_optional(pool)
    .await?
    .flatten())
}
