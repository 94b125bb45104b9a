//! Split rules: versions per product, each in force from its `effective_from` until the next
//! one's (the exclusion constraint `one_split_rule_in_force` keeps them from overlapping), with
//! their shares. A rule is written once and changes only to end; the functions that write take
//! the caller's transaction, which holds the rules' lock ([`lock_rules`]).

use super::StorageError;
use chrono::{DateTime, Utc};
use shared::contract::splits::{Share, SplitRule};
use shared::contract::values::{Amount, BasisPoints, ItemId};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Takes the rules' lock exclusively until the transaction ends: writers of rules take turns, and
/// captures wait for a writer holding it (see migration `0008`). Taken before the clock is read for
/// the new rule's start.
pub async fn lock_rules(conn: &mut PgConnection) -> Result<(), StorageError> {
    sqlx::query!("SELECT pg_advisory_xact_lock(split_rules_epoch_lock())")
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Tells captures that read the rules before this transaction commits to read them again.
pub async fn bump_epoch(conn: &mut PgConnection) -> Result<(), StorageError> {
    sqlx::query!("UPDATE split_rules_epoch SET epoch = epoch + 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// The rule written under `key`, with its request's fingerprint.
pub async fn by_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<(Uuid, String)>, StorageError> {
    Ok(sqlx::query!(
        "SELECT id, request_hash FROM split_rules WHERE idempotency_key = $1",
        key
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.id, r.request_hash)))
}

/// The database's clock: rules and payments are placed in time by the same clock.
pub async fn now(conn: &mut PgConnection) -> Result<DateTime<Utc>, StorageError> {
    Ok(sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
        .fetch_one(conn)
        .await?)
}

/// The product's latest version: its id, version and start.
pub async fn latest(
    conn: &mut PgConnection,
    product: ItemId,
) -> Result<Option<(Uuid, i32, DateTime<Utc>)>, StorageError> {
    Ok(sqlx::query!(
        "SELECT id, version, effective_from FROM split_rules WHERE product_id = $1
         ORDER BY version DESC LIMIT 1",
        product.get()
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.id, r.version, r.effective_from)))
}

/// Ends a rule at `at` (the next version's start).
pub async fn end(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> Result<(), StorageError> {
    sqlx::query!(
        "UPDATE split_rules SET effective_to = $2 WHERE id = $1 AND effective_to IS NULL",
        id,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A new version with its shares.
pub struct NewVersion<'a> {
    pub product: ItemId,
    pub version: i32,
    pub effective_from: DateTime<Utc>,
    pub shares: &'a [Share],
    pub key: &'a str,
    pub fingerprint: &'a str,
}

pub async fn insert(conn: &mut PgConnection, new: &NewVersion<'_>) -> Result<Uuid, StorageError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO split_rules (id, product_id, version, effective_from, idempotency_key,
                                  request_hash)
         VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        new.product.get(),
        new.version,
        new.effective_from,
        new.key,
        new.fingerprint,
    )
    .execute(&mut *conn)
    .await?;
    let rows = ShareRows::of(new.shares);
    sqlx::query!(
        "INSERT INTO split_rule_shares (rule_id, position, recipient_id, kind, basis_points, amount)
         SELECT $1, s.position, s.recipient_id, s.kind, s.basis_points, s.amount
         FROM unnest($2::int[], $3::uuid[], $4::text[], $5::int[], $6::bigint[])
              AS s(position, recipient_id, kind, basis_points, amount)",
        id,
        &rows.positions,
        &rows.recipients,
        &rows.kinds as _,
        &rows.basis_points as _,
        &rows.amounts as _,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Shares as columns.
struct ShareRows {
    positions: Vec<i32>,
    recipients: Vec<Uuid>,
    kinds: Vec<&'static str>,
    basis_points: Vec<Option<i32>>,
    amounts: Vec<Option<i64>>,
}

impl ShareRows {
    fn of(shares: &[Share]) -> Self {
        let mut rows = ShareRows {
            positions: Vec::new(),
            recipients: Vec::new(),
            kinds: Vec::new(),
            basis_points: Vec::new(),
            amounts: Vec::new(),
        };
        for (position, share) in (0i32..).zip(shares) {
            rows.positions.push(position);
            rows.recipients.push(share.recipient_id());
            let (kind, basis_points, amount) = match share {
                // 1..=10000 by construction.
                Share::Percentage { basis_points, .. } => (
                    "percentage",
                    Some(i32::try_from(basis_points.get()).unwrap_or(i32::MAX)),
                    None,
                ),
                Share::Fixed { amount, .. } => ("fixed", None, Some(amount.get())),
                Share::Remainder { .. } => ("remainder", None, None),
            };
            rows.kinds.push(kind);
            rows.basis_points.push(basis_points);
            rows.amounts.push(amount);
        }
        rows
    }
}

/// A stored share as the contract has it; a row that is not one is a broken database.
pub(super) fn share(
    recipient_id: Uuid,
    kind: &str,
    basis_points: Option<i32>,
    amount: Option<i64>,
) -> Result<Share, StorageError> {
    let broken = || StorageError::other(format!("a stored {kind} share is not valid"));
    Ok(match kind {
        "percentage" => Share::Percentage {
            recipient_id,
            basis_points: BasisPoints::new(basis_points.ok_or_else(broken)?.into())
                .map_err(|_| broken())?,
        },
        "fixed" => Share::Fixed {
            recipient_id,
            amount: Amount::new(amount.ok_or_else(broken)?).map_err(|_| broken())?,
        },
        "remainder" => Share::Remainder { recipient_id },
        _ => return Err(broken()),
    })
}

/// The shares of `rules`, in each rule's order.
async fn shares_of(
    conn: &mut PgConnection,
    rules: &[Uuid],
) -> Result<Vec<(Uuid, Share)>, StorageError> {
    let rows = sqlx::query!(
        "SELECT rule_id, recipient_id, kind, basis_points, amount FROM split_rule_shares
         WHERE rule_id = ANY($1) ORDER BY rule_id, position",
        rules
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.rule_id,
                share(r.recipient_id, &r.kind, r.basis_points, r.amount)?,
            ))
        })
        .collect()
}

/// Rules with their shares, in the order of `ids`.
async fn complete(
    conn: &mut PgConnection,
    rows: Vec<RuleRow>,
) -> Result<Vec<SplitRule>, StorageError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let shares = shares_of(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| SplitRule {
            shares: shares
                .iter()
                .filter(|(rule, _)| *rule == r.id)
                .map(|(_, s)| *s)
                .collect(),
            split_rule_id: r.id,
            product_id: r.product_id,
            version: r.version,
            effective_from: r.effective_from,
            effective_to: r.effective_to,
            created_at: r.created_at,
        })
        .collect())
}

struct RuleRow {
    id: Uuid,
    product_id: i64,
    version: i32,
    effective_from: DateTime<Utc>,
    effective_to: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<SplitRule>, StorageError> {
    let rows = sqlx::query_as!(
        RuleRow,
        "SELECT id, product_id, version, effective_from, effective_to, created_at
         FROM split_rules WHERE id = $1",
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(complete(conn, rows).await?.pop())
}

/// A product's rules, newest version first; with `at`, only the one in force then.
pub async fn list(
    pool: &PgPool,
    product: ItemId,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<SplitRule>, StorageError> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query_as!(
        RuleRow,
        "SELECT id, product_id, version, effective_from, effective_to, created_at
         FROM split_rules
         WHERE product_id = $1
           AND ($2::timestamptz IS NULL OR tstzrange(effective_from, effective_to) @> $2)
         ORDER BY version DESC",
        product.get(),
        at,
    )
    .fetch_all(&mut *conn)
    .await?;
    complete(&mut conn, rows).await
}
