//! The catalogue: items and their restocks.

use super::StorageError;
use crate::domain::ItemState;
use shared::contract::stock::{Item, NewItem};
use shared::contract::values::{Currency, ItemId, Limit, Offset, RestockQuantity};
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;

pub async fn list(
    pool: &PgPool,
    limit: Limit,
    offset: Offset,
) -> Result<(Vec<Item>, i64), StorageError> {
    let items = sqlx::query_as!(
        Item,
        r#"SELECT id AS "id: ItemId", name, price, currency AS "currency: Currency", stock,
                  reserved, stock - reserved AS "available!"
           FROM items ORDER BY id LIMIT $1 OFFSET $2"#,
        limit.get(),
        offset.get(),
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(r#"SELECT count(*) AS "total!" FROM items"#)
        .fetch_one(pool)
        .await?;
    Ok((items, total))
}

pub async fn get(pool: &PgPool, id: ItemId) -> Result<Option<Item>, StorageError> {
    Ok(sqlx::query_as!(
        Item,
        r#"SELECT id AS "id: ItemId", name, price, currency AS "currency: Currency", stock,
                  reserved, stock - reserved AS "available!"
           FROM items WHERE id = $1"#,
        id.get(),
    )
    .fetch_optional(pool)
    .await?)
}

pub enum Created {
    New(Item),
    /// The same request was executed before (found by its Idempotency-Key).
    Existing(Item),
    KeyReused,
}

/// Adds an item, unique by its Idempotency-Key.
pub async fn create(
    pool: &PgPool,
    item: &NewItem,
    idem: &IdempotencyContext,
) -> Result<Created, StorageError> {
    let created = sqlx::query_as!(
        Item,
        r#"INSERT INTO items (name, price, currency, initial_stock, stock, idempotency_key,
                              request_hash)
           VALUES ($1, $2, $3, $4, $4, $5, $6)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id AS "id: ItemId", name, price, currency AS "currency: Currency", stock,
                     reserved, stock - reserved AS "available!""#,
        item.name.as_str(),
        item.price.get(),
        item.currency.as_str(),
        item.stock.get(),
        idem.scoped,
        idem.fingerprint,
    )
    .fetch_optional(pool)
    .await?;
    if let Some(item) = created {
        return Ok(Created::New(item));
    }
    let existing = sqlx::query!(
        r#"SELECT id AS "id: ItemId", name, price, currency AS "currency: Currency", stock,
                  reserved, stock - reserved AS "available!", request_hash
           FROM items WHERE idempotency_key = $1"#,
        idem.scoped,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(StorageError::LostRace(
        "the item made under this key vanished",
    ))?;
    if existing.request_hash.as_deref() != Some(idem.fingerprint.as_str()) {
        return Ok(Created::KeyReused);
    }
    Ok(Created::Existing(Item {
        id: existing.id,
        name: existing.name,
        price: existing.price,
        currency: existing.currency,
        stock: existing.stock,
        reserved: existing.reserved,
        available: existing.available,
    }))
}

pub enum Restocked {
    Done(Item),
    NotFound,
    KeyReused,
}

/// Adds stock and records the restock under its Idempotency-Key, in one transaction; a repeat of
/// the same request answers the item without adding again.
pub async fn restock(
    pool: &PgPool,
    id: ItemId,
    quantity: RestockQuantity,
    idem: &IdempotencyContext,
) -> Result<Restocked, StorageError> {
    let mut tx = pool.begin().await?;
    let recorded = sqlx::query_scalar!(
        "INSERT INTO restocks (item_id, quantity, idempotency_key, request_hash)
         SELECT id, $2, $3, $4 FROM items WHERE id = $1
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id",
        id.get(),
        quantity.get(),
        idem.scoped,
        idem.fingerprint,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if recorded.is_none() {
        tx.rollback().await?;
        let previous = sqlx::query!(
            "SELECT item_id, request_hash FROM restocks WHERE idempotency_key = $1",
            idem.scoped,
        )
        .fetch_optional(pool)
        .await?;
        return Ok(match previous {
            None => Restocked::NotFound,
            Some(p) if p.item_id == id.get() && p.request_hash == idem.fingerprint => {
                match get(pool, id).await? {
                    Some(item) => Restocked::Done(item),
                    None => Restocked::NotFound,
                }
            }
            Some(_) => Restocked::KeyReused,
        });
    }
    let item = sqlx::query_as!(
        Item,
        r#"UPDATE items SET stock = stock + $2, updated_at = now()
           WHERE id = $1
           RETURNING id AS "id: ItemId", name, price, currency AS "currency: Currency", stock,
                     reserved, stock - reserved AS "available!""#,
        id.get(),
        quantity.get(),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Restocked::Done(item))
}

/// `(id, stock - reserved)` of every item.
pub async fn available(pool: &PgPool) -> Result<Vec<(i64, i64)>, StorageError> {
    let rows =
        sqlx::query!(r#"SELECT id, stock - reserved AS "available!" FROM items ORDER BY id"#)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.available)).collect())
}

/// The given items as the planner needs them — prices and currencies (which never change once an
/// item exists) and what can be reserved now — read without a lock.
pub async fn snapshot(pool: &PgPool, ids: &[i64]) -> Result<Vec<ItemState>, StorageError> {
    Ok(sqlx::query_as!(
        ItemState,
        r#"SELECT id AS "id: ItemId", price, currency AS "currency: Currency",
                  stock - reserved AS "available!"
           FROM items WHERE id = ANY($1)"#,
        ids,
    )
    .fetch_all(pool)
    .await?)
}
