use crate::domain::{Item, ItemId, NewItem, RestockQuantity};
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;

const ITEM_COLUMNS: &str =
    "id, name, price, currency, stock, reserved, stock - reserved AS available";

pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<(Vec<Item>, i64), sqlx::Error> {
    let items = sqlx::query_as::<_, Item>(&format!(
        "SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(pool)
        .await?;
    Ok((items, total))
}

pub async fn get(pool: &PgPool, id: ItemId) -> Result<Option<Item>, sqlx::Error> {
    sqlx::query_as::<_, Item>(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await
}

pub enum Created {
    New(Item),
    /// The same request was executed before (found by its Idempotency-Key).
    Existing(Item),
    KeyReused,
}

pub async fn create(
    pool: &PgPool,
    item: &NewItem,
    idem: &IdempotencyContext,
) -> Result<Created, sqlx::Error> {
    let created = sqlx::query_as::<_, Item>(&format!(
        "INSERT INTO items (name, price, currency, initial_stock, stock, idempotency_key, request_hash)
         VALUES ($1, $2, $3, $4, $4, $5, $6)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {ITEM_COLUMNS}"
    ))
    .bind(&item.name)
    .bind(item.price)
    .bind(item.currency.as_str())
    .bind(item.stock)
    .bind(&idem.scoped)
    .bind(&idem.fingerprint)
    .fetch_optional(pool)
    .await?;
    if let Some(item) = created {
        return Ok(Created::New(item));
    }
    let (existing, hash): (Item, Option<String>) = {
        let row: (i64, Option<String>) =
            sqlx::query_as("SELECT id, request_hash FROM items WHERE idempotency_key = $1")
                .bind(&idem.scoped)
                .fetch_one(pool)
                .await?;
        let item = get(pool, ItemId(row.0))
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        (item, row.1)
    };
    Ok(if hash.as_deref() == Some(idem.fingerprint.as_str()) {
        Created::Existing(existing)
    } else {
        Created::KeyReused
    })
}

pub enum Restocked {
    Done(Item),
    NotFound,
    KeyReused,
}

/// Adds stock and records the restock under its Idempotency-Key; a repeat of the same request
/// answers the item without adding again.
pub async fn restock(
    pool: &PgPool,
    id: ItemId,
    quantity: RestockQuantity,
    idem: &IdempotencyContext,
) -> Result<Restocked, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let recorded: Option<i64> = sqlx::query_scalar(
        "INSERT INTO restocks (item_id, quantity, idempotency_key, request_hash)
         SELECT id, $2, $3, $4 FROM items WHERE id = $1
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id",
    )
    .bind(id.0)
    .bind(quantity.0)
    .bind(&idem.scoped)
    .bind(&idem.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    if recorded.is_none() {
        tx.rollback().await?;
        let previous: Option<(i64, String)> =
            sqlx::query_as("SELECT item_id, request_hash FROM restocks WHERE idempotency_key = $1")
                .bind(&idem.scoped)
                .fetch_optional(pool)
                .await?;
        return Ok(match previous {
            None => Restocked::NotFound,
            Some((item_id, hash)) if item_id == id.0 && hash == idem.fingerprint => {
                match get(pool, id).await? {
                    Some(item) => Restocked::Done(item),
                    None => Restocked::NotFound,
                }
            }
            Some(_) => Restocked::KeyReused,
        });
    }
    let item = sqlx::query_as::<_, Item>(&format!(
        "UPDATE items SET stock = stock + $2, updated_at = now()
         WHERE id = $1 RETURNING {ITEM_COLUMNS}"
    ))
    .bind(id.0)
    .bind(quantity.0)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Restocked::Done(item))
}

/// `(id, stock - reserved)` of every item.
pub async fn available(pool: &PgPool) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, stock - reserved FROM items ORDER BY id")
        .fetch_all(pool)
        .await
}
