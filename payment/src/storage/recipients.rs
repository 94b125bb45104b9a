//! Recipients: who receives money. Created once under an Idempotency-Key (kept with a fingerprint
//! of the request, so that a retry after Redis lost its record still finds its recipient), never
//! changed.

use super::StorageError;
use shared::contract::splits::{NewRecipient, Recipient};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What a create under a key did.
pub enum Created<T> {
    /// Written now.
    New(T),
    /// Written before by the same request under the same key.
    Existing(T),
    /// The key was used for another request.
    KeyReused,
}

pub async fn create(
    pool: &PgPool,
    new: &NewRecipient,
    key: &str,
    fingerprint: &str,
) -> Result<Created<Recipient>, StorageError> {
    let destination = match &new.payout_destination {
        Some(d) => Some(serde_json::to_string(d).map_err(|e| StorageError::Other(e.into()))?),
        None => None,
    };
    let created = sqlx::query_as!(
        Recipient,
        r#"INSERT INTO recipients (id, name, payout_destination, idempotency_key, request_hash)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id AS recipient_id, name, created_at"#,
        Uuid::now_v7(),
        new.name.as_str(),
        destination.as_deref(),
        key,
        fingerprint,
    )
    .fetch_optional(pool)
    .await?;
    if let Some(recipient) = created {
        return Ok(Created::New(recipient));
    }
    let before = sqlx::query!(
        r#"SELECT id, name, created_at, request_hash AS "request_hash!" FROM recipients
           WHERE idempotency_key = $1"#,
        key
    )
    .fetch_optional(pool)
    .await?
    .ok_or(StorageError::LostRace("the recipient's key"))?;
    if before.request_hash != fingerprint {
        return Ok(Created::KeyReused);
    }
    Ok(Created::Existing(Recipient {
        recipient_id: before.id,
        name: before.name,
        created_at: before.created_at,
    }))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Recipient>, StorageError> {
    Ok(sqlx::query_as!(
        Recipient,
        "SELECT id AS recipient_id, name, created_at FROM recipients WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await?)
}

/// Those of `ids` that are no recipient, in the order given.
pub async fn unknown(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Uuid>, StorageError> {
    let known = sqlx::query_scalar!("SELECT id FROM recipients WHERE id = ANY($1)", ids)
        .fetch_all(conn)
        .await?;
    Ok(ids
        .iter()
        .filter(|id| !known.contains(id))
        .copied()
        .collect())
}
