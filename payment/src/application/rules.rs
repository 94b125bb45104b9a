//! New versions of split rules: checked (pure, [`rules::check`]), then written in one transaction
//! holding the rules' lock — the latest version ended at the new one's start, the new one
//! numbered after it — so that concurrent writers line up and at most one version of a product is
//! ever in force (the exclusion constraint holds it too). The lock is taken before the clock is
//! read for the start, and the rules' counter moves before the commit, so that no capture splits a
//! payment made after that start by the rule it ends (migration `0008`).

use crate::domain::rules::{self, Misplaced, SharesInvalid};
use crate::storage::recipients;
use crate::storage::split_rules::{self as store, NewVersion};
use crate::storage::StorageError;
use chrono::TimeDelta;
use shared::contract::splits::{NewSplitRule, SplitRule};
use shared::idempotency::IdempotencyContext;
use sqlx::PgPool;
use uuid::Uuid;

/// How far in the past a rule may start: the clock differences between machines.
pub const CLOCK_SLACK: TimeDelta = TimeDelta::seconds(5);

pub enum RuleCreated {
    New(SplitRule),
    /// Made before by the same request under the same key.
    Existing(SplitRule),
    KeyReused,
    Invalid(SharesInvalid),
    UnknownRecipient(Uuid),
    Misplaced(Misplaced),
}

pub async fn create(
    pool: &PgPool,
    new: &NewSplitRule,
    idem: &IdempotencyContext,
) -> Result<RuleCreated, StorageError> {
    let shares = new.shares.get();
    if let Err(why) = rules::check(shares) {
        return Ok(RuleCreated::Invalid(why));
    }
    let mut tx = pool.begin().await?;
    store::lock_rules(&mut tx).await?;
    if let Some((id, fingerprint)) = store::by_key(&mut tx, &idem.scoped).await? {
        if fingerprint != idem.fingerprint {
            return Ok(RuleCreated::KeyReused);
        }
        let rule = store::get(&mut tx, id)
            .await?
            .ok_or(StorageError::NotFound("split rule"))?;
        return Ok(RuleCreated::Existing(rule));
    }
    let named: Vec<Uuid> = shares.iter().map(|s| s.recipient_id()).collect();
    if let Some(unknown) = recipients::unknown(&mut tx, &named).await?.first() {
        return Ok(RuleCreated::UnknownRecipient(*unknown));
    }
    let now = store::now(&mut tx).await?;
    let latest = store::latest(&mut tx, new.product_id).await?;
    let from = match rules::place(
        now,
        new.effective_from.map(|f| f.get()),
        latest.map(|(_, _, from)| from),
        CLOCK_SLACK,
    ) {
        Ok(from) => from,
        Err(misplaced) => return Ok(RuleCreated::Misplaced(misplaced)),
    };
    if let Some((latest_id, _, _)) = latest {
        store::end(&mut tx, latest_id, from).await?;
    }
    store::bump_epoch(&mut tx).await?;
    let id = store::insert(
        &mut tx,
        &NewVersion {
            product: new.product_id,
            version: latest.map_or(1, |(_, version, _)| version + 1),
            effective_from: from,
            shares,
            key: &idem.scoped,
            fingerprint: &idem.fingerprint,
        },
    )
    .await?;
    let rule = store::get(&mut tx, id)
        .await?
        .ok_or(StorageError::NotFound("split rule"))?;
    tx.commit().await?;
    Ok(RuleCreated::New(rule))
}
