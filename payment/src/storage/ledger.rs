//! The ledger and what it is made of: allocations, journal entries and their legs, balances and
//! the queue of pending credits. The functions that write take the caller's transaction: a capture
//! is written with the payment's settlement, a reversal with its refund, a release with the claim
//! on its payments — each state change in one transaction.

use super::StorageError;
use crate::domain::ledger::{Capture, Held};
use shared::contract::ledger::{
    Account, AccountRef, CurrencyTotals, Entry, EntryKind, EntryList, Leg,
};
use shared::contract::splits::{Allocation, Balance};
use shared::contract::values::{Currency, Limit, Offset};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// An entry to write.
pub struct NewEntry<'a> {
    pub kind: EntryKind,
    pub currency: Currency,
    pub payment_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub transfer_id: Option<Uuid>,
    pub payout_id: Option<Uuid>,
    pub legs: &'a [Leg],
}

/// The captures of payments settled together, as the columns of the statement that writes them
/// with the settlement ([`super::payments::settle`]): for each payment, its allocations, one
/// `capture` entry with a leg per recipient, and the recipients' pending credits.
#[derive(Default)]
pub struct CaptureRows {
    pub a_payments: Vec<Uuid>,
    pub a_positions: Vec<i32>,
    pub a_products: Vec<Option<i64>>,
    pub a_recipients: Vec<Uuid>,
    pub a_rules: Vec<Option<Uuid>>,
    pub a_amounts: Vec<i64>,
    pub e_ids: Vec<Uuid>,
    pub e_currencies: Vec<Currency>,
    pub e_payments: Vec<Uuid>,
    pub l_entries: Vec<Uuid>,
    pub l_positions: Vec<i32>,
    pub l_recipients: Vec<Option<Uuid>>,
    pub l_amounts: Vec<i64>,
}

impl CaptureRows {
    pub fn of(captures: &[(Uuid, Currency, &Capture)]) -> Self {
        let mut rows = CaptureRows::default();
        for (payment_id, currency, capture) in captures {
            for (position, a) in (0i32..).zip(&capture.allocations) {
                rows.a_payments.push(*payment_id);
                rows.a_positions.push(position);
                rows.a_products.push(a.product_id);
                rows.a_recipients.push(a.recipient_id);
                rows.a_rules.push(a.split_rule_id);
                rows.a_amounts.push(a.amount);
            }
            let entry = Uuid::now_v7();
            rows.e_ids.push(entry);
            rows.e_currencies.push(*currency);
            rows.e_payments.push(*payment_id);
            for (position, leg) in (0i32..).zip(capture.legs()) {
                rows.l_entries.push(entry);
                rows.l_positions.push(position);
                rows.l_recipients.push(leg.credit.recipient_id);
                rows.l_amounts.push(leg.amount);
            }
        }
        rows
    }
}

/// Writes entries with their legs (refunds, releases, transfers, payouts), in one statement.
pub async fn record_entries(
    conn: &mut PgConnection,
    entries: &[NewEntry<'_>],
) -> Result<(), StorageError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    let mut currencies = Vec::new();
    let mut payments = Vec::new();
    let mut refunds = Vec::new();
    let mut transfers = Vec::new();
    let mut payouts = Vec::new();
    let mut l_entries = Vec::new();
    let mut l_positions = Vec::new();
    let mut debit_accounts = Vec::new();
    let mut debit_recipients = Vec::new();
    let mut credit_accounts = Vec::new();
    let mut credit_recipients = Vec::new();
    let mut amounts = Vec::new();
    for entry in entries {
        let id = Uuid::now_v7();
        ids.push(id);
        kinds.push(entry.kind.as_str());
        currencies.push(entry.currency);
        payments.push(entry.payment_id);
        refunds.push(entry.refund_id);
        transfers.push(entry.transfer_id);
        payouts.push(entry.payout_id);
        for (position, leg) in (0i32..).zip(entry.legs) {
            l_entries.push(id);
            l_positions.push(position);
            debit_accounts.push(leg.debit.account.as_str());
            debit_recipients.push(leg.debit.recipient_id);
            credit_accounts.push(leg.credit.account.as_str());
            credit_recipients.push(leg.credit.recipient_id);
            amounts.push(leg.amount);
        }
    }
    sqlx::query!(
        r#"WITH entries AS (
               INSERT INTO ledger_entries (id, kind, currency, payment_id, refund_id, transfer_id,
                                           payout_id)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[],
                                    $13::uuid[], $14::uuid[])
           )
           INSERT INTO ledger_legs (entry_id, position, debit_account, debit_recipient,
                                    credit_account, credit_recipient, amount)
           SELECT * FROM unnest($6::uuid[], $7::int[], $8::text[], $9::uuid[], $10::text[],
                                $11::uuid[], $12::bigint[])"#,
        &ids,
        &kinds as _,
        &currencies as _,
        &payments as _,
        &refunds as _,
        &l_entries,
        &l_positions,
        &debit_accounts as _,
        &debit_recipients as _,
        &credit_accounts as _,
        &credit_recipients as _,
        &amounts,
        &transfers as _,
        &payouts as _,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies balance changes `(recipient, pending change, available change)` in `currency`, in the
/// order given. Every writer of balance rows locks them in one order — by currency, then by
/// recipient — so that writers never deadlock: callers give the changes sorted by recipient, and
/// change several currencies in their order.
pub async fn change_balances(
    conn: &mut PgConnection,
    currency: Currency,
    changes: &[(Uuid, i64, i64)],
) -> Result<(), StorageError> {
    if changes.is_empty() {
        return Ok(());
    }
    let recipients: Vec<Uuid> = changes.iter().map(|c| c.0).collect();
    let pending: Vec<i64> = changes.iter().map(|c| c.1).collect();
    let available: Vec<i64> = changes.iter().map(|c| c.2).collect();
    sqlx::query!(
        r#"INSERT INTO balances (recipient_id, currency, pending, available)
           SELECT c.recipient_id, $1, c.pending, c.available
           FROM unnest($2::uuid[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
                AS c(recipient_id, pending, available, n)
           ORDER BY c.n
           ON CONFLICT (recipient_id, currency) DO UPDATE
           SET pending = balances.pending + EXCLUDED.pending,
               available = balances.available + EXCLUDED.available"#,
        currency as _,
        &recipients,
        &pending,
        &available,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Why a transfer or a payout was not accepted.
pub enum Refused {
    /// A transfer from a recipient to itself.
    SameRecipient(Uuid),
    /// The recipient does not exist.
    UnknownRecipient(Uuid),
    /// The source's `available − held` in the currency, when it did not cover the amount.
    InsufficientFunds { spendable: i64 },
}

/// Holds `amount` of a recipient's available money in `currency` if `available − held` covers it:
/// one conditional update, which locks the balance row, so that concurrent holds take turns and
/// each sees what the others held. Refused (no row, or not enough), with what it could hold.
pub async fn hold(
    conn: &mut PgConnection,
    recipient: Uuid,
    currency: Currency,
    amount: i64,
) -> Result<Result<(), Refused>, StorageError> {
    let held = sqlx::query_scalar!(
        r#"UPDATE balances SET held = held + $3
           WHERE recipient_id = $1 AND currency = $2 AND available - held >= $3
           RETURNING held"#,
        recipient,
        currency as _,
        amount,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if held.is_some() {
        return Ok(Ok(()));
    }
    let spendable = sqlx::query_scalar!(
        r#"SELECT available - held AS "spendable!" FROM balances
           WHERE recipient_id = $1 AND currency = $2"#,
        recipient,
        currency as _,
    )
    .fetch_optional(conn)
    .await?
    .unwrap_or(0);
    Ok(Err(Refused::InsufficientFunds { spendable }))
}

/// Lowers holds: `(recipient, currency, amount)` each, summed per row. The caller has the rows
/// locked already (it changed their balances first, in order), or holds no other balance row.
pub async fn release_holds(
    conn: &mut PgConnection,
    holds: &[(Uuid, Currency, i64)],
) -> Result<(), StorageError> {
    if holds.is_empty() {
        return Ok(());
    }
    let recipients: Vec<Uuid> = holds.iter().map(|h| h.0).collect();
    let currencies: Vec<Currency> = holds.iter().map(|h| h.1).collect();
    let amounts: Vec<i64> = holds.iter().map(|h| h.2).collect();
    sqlx::query!(
        r#"WITH released AS (
               SELECT recipient_id, currency, sum(amount)::bigint AS amount
               FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS h(recipient_id, currency, amount)
               GROUP BY recipient_id, currency
           )
           UPDATE balances b SET held = b.held - r.amount
           FROM released r
           WHERE b.recipient_id = r.recipient_id AND b.currency = r.currency"#,
        &recipients,
        &currencies as _,
        &amounts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Folds the queue of pending credits into the balance rows (in the order of
/// [`change_balances`]), in one statement; returns how many credits it folded. Credits appended meanwhile wait for the next fold.
pub async fn fold_pending_credits(pool: &PgPool) -> Result<i64, StorageError> {
    let folded = sqlx::query_scalar!(
        r#"WITH taken AS (
               DELETE FROM pending_credits RETURNING recipient_id, currency, amount
           ), summed AS (
               SELECT recipient_id, currency, sum(amount)::bigint AS amount, count(*) AS credits
               FROM taken GROUP BY recipient_id, currency
           ), folded AS (
               INSERT INTO balances (recipient_id, currency, pending)
               SELECT recipient_id, currency, amount FROM summed ORDER BY currency, recipient_id
               ON CONFLICT (recipient_id, currency) DO UPDATE
               SET pending = balances.pending + EXCLUDED.pending
           )
           SELECT coalesce(sum(credits), 0)::bigint AS "folded!" FROM summed"#
    )
    .fetch_one(pool)
    .await?;
    Ok(folded)
}

/// A payment's allocations in order, locked for a refund or a release (the caller holds the
/// payment's row).
pub async fn held(conn: &mut PgConnection, payment_id: Uuid) -> Result<Vec<Held>, StorageError> {
    let rows = sqlx::query!(
        r#"SELECT recipient_id, amount, reversed, released_at IS NOT NULL AS "released!"
           FROM allocations WHERE payment_id = $1 ORDER BY position FOR UPDATE"#,
        payment_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Held {
            recipient_id: r.recipient_id,
            amount: r.amount,
            reversed: r.reversed,
            released: r.released,
        })
        .collect())
}

/// Adds a refund's reversals to a payment's allocations (one per allocation, in order).
pub async fn add_reversals(
    conn: &mut PgConnection,
    payment_id: Uuid,
    reversed: &[i64],
) -> Result<(), StorageError> {
    let positions: Vec<i32> = (0..).take(reversed.len()).collect();
    sqlx::query!(
        r#"UPDATE allocations a SET reversed = a.reversed + r.amount
           FROM unnest($2::int[], $3::bigint[]) AS r(position, amount)
           WHERE a.payment_id = $1 AND a.position = r.position AND r.amount > 0"#,
        payment_id,
        &positions,
        reversed,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Payments with allocations due for release, claimed (their rows locked, skipping those a refund
/// or another worker holds): at most `limit`, with their currency. The limit applies after the
/// skipping, so that a second instance's worker claims the next payments due instead of finding
/// the first `limit` all locked by the first instance's.
pub async fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<(Uuid, Currency)>, StorageError> {
    let rows = sqlx::query!(
        r#"SELECT p.id, p.currency AS "currency: Currency" FROM payments p
           WHERE p.id IN (SELECT payment_id FROM allocations
                          WHERE released_at IS NULL AND release_at <= now())
           ORDER BY p.id
           LIMIT $1
           FOR UPDATE OF p SKIP LOCKED"#,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.currency)).collect())
}

/// The unreleased allocations of claimed payments, by payment, in order.
pub async fn unreleased(
    conn: &mut PgConnection,
    payments: &[Uuid],
) -> Result<Vec<(Uuid, Held)>, StorageError> {
    let rows = sqlx::query!(
        r#"SELECT payment_id, recipient_id, amount, reversed FROM allocations
           WHERE payment_id = ANY($1) AND released_at IS NULL
           ORDER BY payment_id, position"#,
        payments
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.payment_id,
                Held {
                    recipient_id: r.recipient_id,
                    amount: r.amount,
                    reversed: r.reversed,
                    released: false,
                },
            )
        })
        .collect())
}

/// Marks the allocations of claimed payments released.
pub async fn mark_released(conn: &mut PgConnection, payments: &[Uuid]) -> Result<(), StorageError> {
    sqlx::query!(
        "UPDATE allocations SET released_at = now()
         WHERE payment_id = ANY($1) AND released_at IS NULL",
        payments
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A payment's allocations, as `GET /payments/{id}/splits` shows them.
pub async fn allocations(pool: &PgPool, payment_id: Uuid) -> Result<Vec<Allocation>, StorageError> {
    Ok(sqlx::query_as!(
        Allocation,
        r#"SELECT product_id, recipient_id, split_rule_id, amount, reversed
           FROM allocations WHERE payment_id = $1 ORDER BY position"#,
        payment_id
    )
    .fetch_all(pool)
    .await?)
}

/// A recipient's balances, one per currency: the stored row plus the credits not folded yet.
pub async fn balances(pool: &PgPool, recipient_id: Uuid) -> Result<Vec<Balance>, StorageError> {
    Ok(sqlx::query_as!(
        Balance,
        r#"WITH queued AS (
               SELECT currency, sum(amount)::bigint AS amount FROM pending_credits
               WHERE recipient_id = $1 GROUP BY currency
           ), stored AS (
               SELECT currency, pending, available, held FROM balances WHERE recipient_id = $1
           )
           SELECT coalesce(s.currency, q.currency) AS "currency!: Currency",
                  (coalesce(s.pending, 0) + coalesce(q.amount, 0))::bigint AS "pending!",
                  coalesce(s.available, 0) AS "available!",
                  coalesce(s.held, 0) AS "held!"
           FROM stored s FULL JOIN queued q ON q.currency = s.currency
           ORDER BY 1"#,
        recipient_id
    )
    .fetch_all(pool)
    .await?)
}

/// A page of entries, newest first (entry ids are time-ordered), with their legs, and how many
/// match.
pub async fn entries(
    pool: &PgPool,
    recipient_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    kind: Option<EntryKind>,
    limit: Limit,
    offset: Offset,
) -> Result<EntryList, StorageError> {
    let kind = kind.map(EntryKind::as_str);
    let rows = sqlx::query!(
        r#"SELECT e.id, e.kind AS "kind: EntryKind", e.currency AS "currency: Currency", e.at,
                  e.payment_id, e.refund_id, e.transfer_id, e.payout_id,
                  count(*) OVER () AS "total!"
           FROM ledger_entries e
           WHERE ($1::uuid IS NULL
                  OR e.id IN (SELECT entry_id FROM ledger_legs WHERE credit_recipient = $1
                              UNION SELECT entry_id FROM ledger_legs WHERE debit_recipient = $1))
             AND ($2::uuid IS NULL OR e.payment_id = $2)
             AND ($3::text IS NULL OR e.kind = $3)
           ORDER BY e.id DESC LIMIT $4 OFFSET $5"#,
        recipient_id,
        payment_id,
        kind,
        limit.get(),
        offset.get(),
    )
    .fetch_all(pool)
    .await?;
    let total = match rows.first() {
        Some(row) => row.total,
        // An offset past the end sees no row, so no window total: count alone.
        None => sqlx::query_scalar!(
            r#"SELECT count(*) AS "total!" FROM ledger_entries e
               WHERE ($1::uuid IS NULL
                      OR e.id IN (SELECT entry_id FROM ledger_legs WHERE credit_recipient = $1
                                  UNION SELECT entry_id FROM ledger_legs WHERE debit_recipient = $1))
                 AND ($2::uuid IS NULL OR e.payment_id = $2)
                 AND ($3::text IS NULL OR e.kind = $3)"#,
            recipient_id,
            payment_id,
            kind,
        )
        .fetch_one(pool)
        .await?,
    };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let legs = sqlx::query!(
        r#"SELECT entry_id, debit_account AS "debit_account: Account", debit_recipient,
                  credit_account AS "credit_account: Account", credit_recipient, amount
           FROM ledger_legs WHERE entry_id = ANY($1) ORDER BY entry_id, position"#,
        &ids
    )
    .fetch_all(pool)
    .await?;
    let entries = rows
        .into_iter()
        .map(|r| Entry {
            legs: legs
                .iter()
                .filter(|l| l.entry_id == r.id)
                .map(|l| Leg {
                    debit: AccountRef {
                        account: l.debit_account,
                        recipient_id: l.debit_recipient,
                    },
                    credit: AccountRef {
                        account: l.credit_account,
                        recipient_id: l.credit_recipient,
                    },
                    amount: l.amount,
                })
                .collect(),
            entry_id: r.id,
            kind: r.kind,
            currency: r.currency,
            at: r.at,
            payment_id: r.payment_id,
            refund_id: r.refund_id,
            transfer_id: r.transfer_id,
            payout_id: r.payout_id,
        })
        .collect();
    Ok(EntryList {
        entries,
        total,
        limit: limit.get(),
        offset: offset.get(),
    })
}

/// The trial balance: each currency's figures from the legs, and how many stored balances differ
/// from what their legs give — read in one snapshot.
pub async fn trial_balance(pool: &PgPool) -> Result<(Vec<CurrencyTotals>, i64), StorageError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let totals = sqlx::query_as!(
        CurrencyTotals,
        r#"SELECT e.currency AS "currency!: Currency",
                  sum(l.amount)::bigint AS "debits!",
                  sum(l.amount)::bigint AS "credits!",
                  (coalesce(sum(l.amount) FILTER (WHERE l.debit_account = 'processor'), 0)
                   - coalesce(sum(l.amount) FILTER (WHERE l.credit_account = 'processor'), 0))::bigint
                      AS "processor!",
                  (coalesce(sum(l.amount) FILTER (WHERE l.credit_account = 'payouts'), 0)
                   - coalesce(sum(l.amount) FILTER (WHERE l.debit_account = 'payouts'), 0))::bigint
                      AS "payouts!",
                  (coalesce(sum(l.amount) FILTER (WHERE l.credit_account = 'pending'), 0)
                   - coalesce(sum(l.amount) FILTER (WHERE l.debit_account = 'pending'), 0))::bigint
                      AS "recipients_pending!",
                  (coalesce(sum(l.amount) FILTER (WHERE l.credit_account = 'available'), 0)
                   - coalesce(sum(l.amount) FILTER (WHERE l.debit_account = 'available'), 0))::bigint
                      AS "recipients_available!"
           FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
           GROUP BY e.currency ORDER BY e.currency"#
    )
    .fetch_all(&mut *tx)
    .await?;
    let mismatched = sqlx::query_scalar!(
        r#"WITH moved AS (
               SELECT credit_recipient AS recipient_id, e.currency, credit_account AS account,
                      l.amount
               FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
               WHERE credit_recipient IS NOT NULL
               UNION ALL
               SELECT debit_recipient, e.currency, debit_account, -l.amount
               FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
               WHERE debit_recipient IS NOT NULL
           ), from_legs AS (
               SELECT recipient_id, currency,
                      coalesce(sum(amount) FILTER (WHERE account = 'pending'), 0) AS pending,
                      coalesce(sum(amount) FILTER (WHERE account = 'available'), 0) AS available
               FROM moved GROUP BY recipient_id, currency
           ), queued AS (
               SELECT recipient_id, currency, sum(amount) AS amount FROM pending_credits
               GROUP BY recipient_id, currency
           ), stored AS (
               SELECT coalesce(b.recipient_id, q.recipient_id) AS recipient_id,
                      coalesce(b.currency, q.currency) AS currency,
                      coalesce(b.pending, 0) + coalesce(q.amount, 0) AS pending,
                      coalesce(b.available, 0) AS available
               FROM balances b FULL JOIN queued q
                    ON q.recipient_id = b.recipient_id AND q.currency = b.currency
           )
           SELECT count(*) AS "mismatched!"
           FROM stored s FULL JOIN from_legs f
                ON f.recipient_id = s.recipient_id AND f.currency = s.currency
           WHERE coalesce(s.pending, 0) <> coalesce(f.pending, 0)
              OR coalesce(s.available, 0) <> coalesce(f.available, 0)"#
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((totals, mismatched))
}
