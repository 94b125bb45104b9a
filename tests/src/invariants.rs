//! The checkout's invariants, checked against the three databases once the system is quiet. Each
//! violation is described in a line; an empty list means every invariant holds. Shared by the saga
//! tests and the chaos harness.
//!
//! An order may have run several attempts (a retry of its key after `dependency_unavailable`);
//! stock and payment know each attempt by the order's id and the attempt (`order_id`, `attempt`),
//! so what they hold is gathered per order, by `order_id`, across its attempts.
//!
//! The marketplace's money is checked too: the allocations of every captured payment (recomputed
//! from the split rules in force when it was made), its refunds and their reversals, the journal's
//! entries and legs, and the stored balances against the legs — all read in one snapshot of the
//! payment database, so that the release worker folding and releasing meanwhile cannot make a
//! check see half of one of its transactions. A violation found by one of these checks starts with
//! the invariant's name.

use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

pub struct Databases<'a> {
    pub order: &'a PgPool,
    pub stock: &'a PgPool,
    pub payment: &'a PgPool,
}

/// Who called stock's and payment's service endpoints (`/reserve`, `/charge`, `/refund`, a
/// payment's `/retry`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Callers {
    /// order alone, as in production and in the chaos run: every invariant holds.
    #[default]
    OrderOnly,
    /// Others too — the black-box suite and schemathesis, which hold a service token and charge,
    /// refund, retry and reserve for orders of their own making, or for order's: the invariants
    /// of [`ORDER_ONLY`] do not hold then, and are not checked.
    Others,
}

/// The invariants that hold only while order is the only caller of stock's and payment's
/// service endpoints: they tie what stock and payment hold to order's orders.
pub const ORDER_ONLY: &[&str] = &[
    "completed_order_one_charge_of_its_total",
    "completed_order_one_completed_reservation",
    "failed_order_no_standing_charge",
    "failed_order_no_units_held",
    "no_charge_for_an_unknown_order",
    "charges_sum_to_completed_totals",
    "completed_orders_split_once",
];

/// The platform's recipient id: whatever has no rule is the platform's.
pub const PLATFORM: &str = "00000000-0000-0000-0000-000000000001";

/// At most this many violations are described per invariant (then how many more there are).
const DESCRIBED: usize = 20;

/// An unsettled refund older than this is a violation: the release worker asks the processor again
/// for refunds older than 5 s, every `SPLIT_RELEASE_INTERVAL_MS`.
const SETTLED_WITHIN_SECS: i64 = 30;

/// What a check found: the names of the invariants it checked, in order, and every violation.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub checked: Vec<&'static str>,
    pub violations: Vec<String>,
    /// Who called the participants; with [`Callers::Others`] the invariants of [`ORDER_ONLY`] are
    /// not checked (nor listed in `checked`).
    pub callers: Callers,
}

impl Findings {
    fn new(callers: Callers) -> Findings {
        Findings {
            callers,
            ..Findings::default()
        }
    }

    /// Whether the invariant `name` is checked for these callers.
    fn applies(&self, name: &str) -> bool {
        self.callers == Callers::OrderOnly || !ORDER_ONLY.contains(&name)
    }

    fn checked(&mut self, name: &'static str) {
        if self.applies(name) && !self.checked.contains(&name) {
            self.checked.push(name);
        }
    }

    /// Records that `name` was checked, with the violations found (at most [`DESCRIBED`] of them
    /// described).
    fn report(&mut self, name: &'static str, found: Vec<String>) {
        if !self.applies(name) {
            return;
        }
        self.checked(name);
        let more = found.len().saturating_sub(DESCRIBED);
        self.violations.extend(
            found
                .into_iter()
                .take(DESCRIBED)
                .map(|v| format!("{name}: {v}")),
        );
        if more > 0 {
            self.violations
                .push(format!("{name}: ... and {more} more violations"));
        }
    }
}

/// Orders not yet terminal.
pub async fn unfinished(order: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status NOT IN ('completed', 'failed')")
        .fetch_one(order)
        .await
}

/// Refunds the processor has not confirmed yet (the release worker asks again for those older than
/// 5 s).
pub async fn unsettled_refunds(payment: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM refunds WHERE settled_at IS NULL")
        .fetch_one(payment)
        .await
}

/// How long [`settle_then_check`] waited for each kind of work to finish, in seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Settling {
    pub quiet_after_s: f64,
    pub refunds_settled_after_s: f64,
    pub moves_settled_after_s: f64,
}

/// Transfers and payouts still pending.
pub async fn unmoved(payment: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM transfers WHERE status = 'pending')
                + (SELECT count(*) FROM payouts WHERE status = 'pending')",
    )
    .fetch_one(payment)
    .await
}

/// Polls `count` every `every` until it answers 0 or `timeout` passes; the last count (a query
/// that fails counts as work left) and the time it took.
async fn until_none<F, Fut>(timeout: Duration, every: Duration, count: F) -> (i64, f64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<i64, sqlx::Error>>,
{
    let started = Instant::now();
    loop {
        let left = count().await.unwrap_or(1);
        if left == 0 || started.elapsed() >= timeout {
            return (left, started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits for a system whose clients have stopped to finish what it owes — every order terminal
/// (up to `quiet`), then every refund settled (the release worker asks the processor again for
/// refunds older than 5 s), then every transfer and payout settled (a payout whose worker died is
/// asked for again once its 10 s lease runs out), up to 45 s each — and checks every invariant,
/// with `refunds_settled_once_quiet` and `transfers_and_payouts_settled_once_quiet` among them.
/// The chaos harness runs it after its faults; the `invariants` binary on any stack's databases.
pub async fn settle_then_check(
    db: &Databases<'_>,
    callers: Callers,
    quiet: Duration,
) -> Result<(Findings, Settling), sqlx::Error> {
    let (_, quiet_after_s) =
        until_none(quiet, Duration::from_millis(100), || unfinished(db.order)).await;
    let (unsettled, refunds_settled_after_s) =
        until_none(Duration::from_secs(45), Duration::from_millis(250), || {
            unsettled_refunds(db.payment)
        })
        .await;
    let (unmoved, moves_settled_after_s) =
        until_none(Duration::from_secs(45), Duration::from_millis(250), || {
            unmoved(db.payment)
        })
        .await;
    let mut findings = check_all_for(db, callers).await?;
    findings.report(
        "refunds_settled_once_quiet",
        if unsettled == 0 {
            Vec::new()
        } else {
            vec![format!(
                "{unsettled} refunds are still unsettled {refunds_settled_after_s:.0} s after every order was terminal"
            )]
        },
    );
    findings.report(
        "transfers_and_payouts_settled_once_quiet",
        if unmoved == 0 {
            Vec::new()
        } else {
            vec![format!(
                "{unmoved} transfers and payouts are still pending {moves_settled_after_s:.0} s after the refunds settled"
            )]
        },
    );
    Ok((
        findings,
        Settling {
            quiet_after_s,
            refunds_settled_after_s,
            moves_settled_after_s,
        },
    ))
}

/// Every invariant; the violations.
pub async fn check(db: &Databases<'_>) -> Result<Vec<String>, sqlx::Error> {
    Ok(check_all(db).await?.violations)
}

/// Every invariant: the checkout's, then the marketplace's money; what was checked and what is
/// violated.
pub async fn check_all(db: &Databases<'_>) -> Result<Findings, sqlx::Error> {
    check_all_for(db, Callers::OrderOnly).await
}

/// Every invariant that holds for these callers.
pub async fn check_all_for(db: &Databases<'_>, callers: Callers) -> Result<Findings, sqlx::Error> {
    let mut findings = Findings::new(callers);
    checkout(db, &mut findings).await?;
    money(db, &mut findings).await?;
    Ok(findings)
}

/// The checkout's guarantees (docs/guarantees.md).
async fn checkout(db: &Databases<'_>, findings: &mut Findings) -> Result<(), sqlx::Error> {
    // The violations of each invariant, by name (see the list at the end).
    let mut violations: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut found = |name: &'static str, v: String| violations.entry(name).or_default().push(v);

    let orders: Vec<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT id::text, status, total_amount FROM orders")
            .fetch_all(db.order)
            .await?;
    // A charge refunded after the sale — by partial refunds only, never by the saga's full refund
    // (its compensation) — is still the order's charge: its money was taken for the sale.
    let payments: Vec<(String, String, i64, bool)> = sqlx::query_as(
        "SELECT p.order_id, p.status, p.amount,
                p.status = 'refunded'
                AND NOT EXISTS (SELECT FROM refunds r WHERE r.payment_id = p.id AND r.kind = 'full')
         FROM payments p WHERE p.order_id IS NOT NULL",
    )
    .fetch_all(db.payment)
    .await?;
    let reservations: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, status FROM reservations WHERE NOT tombstone")
            .fetch_all(db.stock)
            .await?;
    let mut payments_of: HashMap<&str, Vec<(&str, i64, bool)>> = HashMap::new();
    for (order, status, amount, after_sale) in &payments {
        payments_of
            .entry(order.as_str())
            .or_default()
            .push((status, *amount, *after_sale));
    }
    let mut reservations_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (order, status) in &reservations {
        reservations_of
            .entry(order.as_str())
            .or_default()
            .push(status);
    }

    let mut completed_total: i64 = 0;
    for (id, status, total) in &orders {
        let pays = payments_of.get(id.as_str()).cloned().unwrap_or_default();
        let standing: Vec<(&str, i64)> = pays
            .iter()
            .filter(|(s, _, _)| *s == "succeeded" || *s == "pending")
            .map(|(s, a, _)| (*s, *a))
            .collect();
        let held: Vec<&str> = reservations_of
            .get(id.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|s| *s == "reserved" || *s == "completed")
            .collect();
        match status.as_str() {
            "completed" => {
                completed_total += total.unwrap_or(0);
                let charged: Vec<(&str, i64)> = pays
                    .iter()
                    .filter(|(s, _, after_sale)| {
                        *s == "succeeded" || *s == "pending" || *after_sale
                    })
                    .map(|(s, a, _)| (*s, *a))
                    .collect();
                let captured = |s: &str| s == "succeeded" || s == "refunded";
                if charged.len() != 1 || !captured(charged[0].0) || Some(charged[0].1) != *total {
                    found("completed_order_one_charge_of_its_total", format!(
                        "order {id} is completed with total {total:?} but its standing charges are {charged:?}"
                    ));
                }
                if held != ["completed"] {
                    found(
                        "completed_order_one_completed_reservation",
                        format!("order {id} is completed but its reservations hold {held:?}"),
                    );
                }
            }
            "failed" => {
                if !standing.is_empty() {
                    found(
                        "failed_order_no_standing_charge",
                        format!("order {id} failed but charges stand: {standing:?}"),
                    );
                }
                if !held.is_empty() {
                    found(
                        "failed_order_no_units_held",
                        format!("order {id} failed but its reservations hold {held:?}"),
                    );
                }
            }
            other => found(
                "orders_terminal",
                format!("order {id} is not terminal: {other}"),
            ),
        }
    }
    let order_ids: HashSet<&str> = orders.iter().map(|o| o.0.as_str()).collect();
    for (order, status, amount, _) in &payments {
        if status == "succeeded" && !order_ids.contains(order.as_str()) {
            found(
                "no_charge_for_an_unknown_order",
                format!("a charge of {amount} stands for unknown order {order}"),
            );
        }
    }
    let completed: HashSet<&str> = orders
        .iter()
        .filter(|o| o.1 == "completed")
        .map(|o| o.0.as_str())
        .collect();
    let standing_total: i64 = payments
        .iter()
        .filter(|(o, s, _, after_sale)| {
            order_ids.contains(o.as_str())
                && (s == "succeeded" || (*after_sale && completed.contains(o.as_str())))
        })
        .map(|p| p.2)
        .sum();
    if standing_total != completed_total {
        found(
            "charges_sum_to_completed_totals",
            format!(
            "standing charges sum to {standing_total} but completed orders to {completed_total}"
        ),
        );
    }

    // Stock: never oversold, and every unit accounted for.
    let items: Vec<(i64, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT i.id, i.stock, i.reserved, i.initial_stock,
                COALESCE((SELECT sum(quantity) FROM restocks r WHERE r.item_id = i.id), 0)::bigint,
                COALESCE((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations v ON v.id = l.reservation_id
                          WHERE l.item_id = i.id AND v.status = 'completed'), 0)::bigint,
                COALESCE((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations v ON v.id = l.reservation_id
                          WHERE l.item_id = i.id AND v.status = 'reserved'), 0)::bigint
         FROM items i",
    )
    .fetch_all(db.stock)
    .await?;
    for (id, stock, reserved, initial, restocked, sold, held) in items {
        if reserved < 0 || reserved > stock {
            found(
                "stock_never_oversold",
                format!("item {id} is oversold: stock {stock}, reserved {reserved}"),
            );
        }
        if stock + sold != initial + restocked {
            found("stock_units_accounted_for", format!(
                "item {id}: stock {stock} + sold {sold} != initial {initial} + restocked {restocked}"
            ));
        }
        if reserved != held {
            found(
                "reserved_matches_reservations",
                format!("item {id}: reserved {reserved} but reservations hold {held}"),
            );
        }
    }

    let keys: (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT idempotency_key) FROM orders")
            .fetch_one(db.order)
            .await?;
    if keys.0 != keys.1 {
        found(
            "one_order_per_key",
            format!("{} orders for {} keys", keys.0, keys.1),
        );
    }
    for name in [
        "orders_terminal",
        "completed_order_one_charge_of_its_total",
        "completed_order_one_completed_reservation",
        "failed_order_no_standing_charge",
        "failed_order_no_units_held",
        "no_charge_for_an_unknown_order",
        "charges_sum_to_completed_totals",
        "stock_never_oversold",
        "stock_units_accounted_for",
        "reserved_matches_reservations",
        "one_order_per_key",
    ] {
        let found = violations.remove(name).unwrap_or_default();
        findings.report(name, found);
    }
    Ok(())
}

/// Invariants of the payment database that one query finds the violations of, each violation a
/// line of text.
const MONEY_QUERIES: &[(&str, &str)] = &[
    (
        // The capture's rows carry no foreign keys (see the payment migration `0004`): every
        // reference they hold must still name a row that exists.
        "ledger_references_resolve",
        "SELECT format('leg %s of entry %s: no such entry', l.position, l.entry_id)
         FROM ledger_legs l WHERE NOT EXISTS (SELECT FROM ledger_entries e WHERE e.id = l.entry_id)
         UNION ALL
         SELECT format('%s entry %s names payment %s, which does not exist', e.kind, e.id,
                       e.payment_id)
         FROM ledger_entries e
         WHERE e.payment_id IS NOT NULL
           AND NOT EXISTS (SELECT FROM payments p WHERE p.id = e.payment_id)
         UNION ALL
         SELECT format('allocation %s of payment %s: no such payment', a.position, a.payment_id)
         FROM allocations a WHERE NOT EXISTS (SELECT FROM payments p WHERE p.id = a.payment_id)
         UNION ALL
         SELECT format('allocation %s of payment %s names recipient %s, which does not exist',
                       a.position, a.payment_id, a.recipient_id)
         FROM allocations a WHERE NOT EXISTS (SELECT FROM recipients r WHERE r.id = a.recipient_id)
         UNION ALL
         SELECT format('allocation %s of payment %s names rule %s, which does not exist',
                       a.position, a.payment_id, a.split_rule_id)
         FROM allocations a
         WHERE a.split_rule_id IS NOT NULL
           AND NOT EXISTS (SELECT FROM split_rules r WHERE r.id = a.split_rule_id)
         UNION ALL
         SELECT format('leg %s of entry %s names recipient %s, which does not exist', l.position,
                       l.entry_id, coalesce(l.debit_recipient, l.credit_recipient))
         FROM ledger_legs l
         WHERE (l.debit_recipient IS NOT NULL
                AND NOT EXISTS (SELECT FROM recipients r WHERE r.id = l.debit_recipient))
            OR (l.credit_recipient IS NOT NULL
                AND NOT EXISTS (SELECT FROM recipients r WHERE r.id = l.credit_recipient))",
    ),
    (
        "ledger_entries_have_legs",
        "SELECT format('%s entry %s has no leg', e.kind, e.id) FROM ledger_entries e
         WHERE NOT EXISTS (SELECT FROM ledger_legs l WHERE l.entry_id = e.id)",
    ),
    (
        "ledger_legs_move_positive_amounts",
        "SELECT format('leg %s of entry %s moves %s', position, entry_id, amount)
         FROM ledger_legs WHERE amount <= 0",
    ),
    (
        // capture: processor -> a recipient's pending; refund: a recipient's pending or available
        // -> processor; release: a recipient's pending -> the same recipient's available.
        "ledger_legs_fit_their_entry_kind",
        "SELECT format('%s entry %s, leg %s: %s %s -> %s %s', e.kind, e.id, l.position,
                       l.debit_account, l.debit_recipient, l.credit_account, l.credit_recipient)
         FROM ledger_entries e JOIN ledger_legs l ON l.entry_id = e.id
         WHERE (e.kind = 'capture'
                AND NOT (l.debit_account = 'processor' AND l.credit_account = 'pending'))
            OR (e.kind = 'refund'
                AND NOT (l.debit_account IN ('pending', 'available') AND l.credit_account = 'processor'))
            OR (e.kind = 'release'
                AND NOT (l.debit_account = 'pending' AND l.credit_account = 'available'
                         AND l.debit_recipient = l.credit_recipient))
            OR (e.kind = 'transfer'
                AND NOT (l.debit_account = 'available' AND l.credit_account = 'available'))
            OR (e.kind = 'payout'
                AND NOT (l.debit_account = 'available' AND l.credit_account = 'payouts'))",
    ),
    (
        // A posted transfer has exactly one entry, of one leg moving its amount from its source's
        // available to its destination's; a pending or canceled one has none.
        "transfers_posted_once_as_they_say",
        "SELECT format('transfer %s (%s): %s entries, legs %s', t.id, t.status, count(DISTINCT e.id),
                       string_agg(format('%s %s -> %s %s: %s', l.debit_account, l.debit_recipient,
                                         l.credit_account, l.credit_recipient, l.amount), '; '))
         FROM transfers t
         LEFT JOIN ledger_entries e ON e.transfer_id = t.id
         LEFT JOIN ledger_legs l ON l.entry_id = e.id
         GROUP BY t.id, t.status, t.amount, t.currency, t.from_recipient_id, t.to_recipient_id
         HAVING (t.status = 'posted') <> (count(DISTINCT e.id) = 1)
             OR count(DISTINCT e.id) > 1
             OR (t.status = 'posted'
                 AND (count(l.*) <> 1
                      OR bool_or(l.amount <> t.amount OR l.debit_recipient <> t.from_recipient_id
                                 OR l.credit_recipient <> t.to_recipient_id)
                      OR bool_or(e.currency <> t.currency)))",
    ),
    (
        // A paid payout has exactly one entry, of one leg moving its amount from its recipient's
        // available out to `payouts`; a pending or failed one has none. What the provider says
        // it did agrees: it paid exactly the payouts recorded paid (those it was asked for and
        // that are still pending wait for their worker).
        "payouts_paid_once_as_the_provider_says",
        "SELECT format('payout %s (%s): %s entries, legs %s, provider paid %s', p.id, p.status,
                       count(DISTINCT e.id),
                       string_agg(format('%s %s -> %s: %s', l.debit_account, l.debit_recipient,
                                         l.credit_account, l.amount), '; '),
                       s.paid)
         FROM payouts p
         LEFT JOIN simulated_payouts s ON s.payout_id = p.id
         LEFT JOIN ledger_entries e ON e.payout_id = p.id
         LEFT JOIN ledger_legs l ON l.entry_id = e.id
         GROUP BY p.id, p.status, p.amount, p.currency, p.recipient_id, s.paid
         HAVING (p.status = 'paid') <> (count(DISTINCT e.id) = 1)
             OR count(DISTINCT e.id) > 1
             OR (p.status = 'paid'
                 AND (count(l.*) <> 1
                      OR bool_or(l.amount <> p.amount OR l.debit_recipient <> p.recipient_id)
                      OR bool_or(e.currency <> p.currency)))
             OR (p.status <> 'pending' AND s.paid IS DISTINCT FROM (p.status = 'paid'))",
    ),
    (
        // A recipient's held money in a currency is what its pending transfers and payouts hold.
        "held_is_what_pending_transfers_and_payouts_hold",
        "WITH holds AS (
             SELECT recipient_id, currency, sum(amount)::bigint AS amount
             FROM (SELECT from_recipient_id AS recipient_id, currency, amount
                   FROM transfers WHERE status = 'pending'
                   UNION ALL
                   SELECT recipient_id, currency, amount FROM payouts WHERE status = 'pending') h
             GROUP BY 1, 2
         )
         SELECT format('recipient %s, %s: held %s, pending transfers and payouts hold %s',
                       coalesce(b.recipient_id, h.recipient_id), coalesce(b.currency, h.currency),
                       coalesce(b.held, 0), coalesce(h.amount, 0))
         FROM balances b
         FULL JOIN holds h ON h.recipient_id = b.recipient_id AND h.currency = b.currency
         WHERE coalesce(b.held, 0) <> coalesce(h.amount, 0)",
    ),
    (
        // Every leg debits and credits the same amount; per currency, the balances of all the
        // accounts (each recipient's pending and available, the processor, payouts), computed
        // account by account, sum to zero.
        "debits_equal_credits_per_currency",
        "WITH moved AS (
             SELECT e.currency, l.debit_account AS account, l.debit_recipient AS recipient,
                    -l.amount AS amount, l.amount AS debit, 0::bigint AS credit
             FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
             UNION ALL
             SELECT e.currency, l.credit_account, l.credit_recipient, l.amount, 0, l.amount
             FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
         ), accounts AS (
             SELECT currency, account, recipient, sum(amount) AS net, sum(debit) AS debits,
                    sum(credit) AS credits
             FROM moved GROUP BY currency, account, recipient
         )
         SELECT format('%s: debits %s, credits %s, the accounts'' balances sum to %s',
                       currency, sum(debits), sum(credits), sum(net))
         FROM accounts GROUP BY currency
         HAVING sum(net) <> 0 OR sum(debits) <> sum(credits)",
    ),
    (
        "ledger_entries_in_their_payments_currency",
        "SELECT format('%s entry %s is in %s but payment %s is in %s', e.kind, e.id, e.currency,
                       p.id, p.currency)
         FROM ledger_entries e JOIN payments p ON p.id = e.payment_id
         WHERE e.currency <> p.currency",
    ),
    (
        "refund_entries_name_their_refunds_payment",
        "SELECT format('refund entry %s names payment %s but refund %s is of payment %s', e.id,
                       e.payment_id, r.id, r.payment_id)
         FROM ledger_entries e JOIN refunds r ON r.id = e.refund_id
         WHERE e.payment_id IS DISTINCT FROM r.payment_id",
    ),
    (
        // balances.pending + the credits still queued = credits - debits of the recipient's
        // pending legs; balances.available = credits - debits of its available legs.
        "stored_balances_match_legs",
        "WITH moved AS (
             SELECT l.credit_recipient AS recipient_id, e.currency, l.credit_account AS account,
                    l.amount
             FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
             WHERE l.credit_recipient IS NOT NULL
             UNION ALL
             SELECT l.debit_recipient, e.currency, l.debit_account, -l.amount
             FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
             WHERE l.debit_recipient IS NOT NULL
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
                    coalesce(b.pending, 0) AS pending, coalesce(q.amount, 0) AS queued,
                    coalesce(b.available, 0) AS available
             FROM balances b FULL JOIN queued q
                  ON q.recipient_id = b.recipient_id AND q.currency = b.currency
         )
         SELECT format('recipient %s %s: stored pending %s + queued %s, available %s; the legs give pending %s, available %s',
                       coalesce(s.recipient_id, f.recipient_id), coalesce(s.currency, f.currency),
                       coalesce(s.pending, 0), coalesce(s.queued, 0), coalesce(s.available, 0),
                       coalesce(f.pending, 0), coalesce(f.available, 0))
         FROM stored s FULL JOIN from_legs f
              ON f.recipient_id = s.recipient_id AND f.currency = s.currency
         WHERE coalesce(s.pending, 0) + coalesce(s.queued, 0) <> coalesce(f.pending, 0)
            OR coalesce(s.available, 0) <> coalesce(f.available, 0)",
    ),
    (
        "held_never_negative",
        "SELECT format('recipient %s holds %s %s', recipient_id, held, currency)
         FROM balances WHERE held < 0",
    ),
    (
        // Per currency: what the processor account received and kept = what the captured
        // payments kept after refunds = what the recipients hold (pending, queued, available)
        // plus what was paid out.
        "ledger_money_matches_payments",
        "WITH kept AS (
             SELECT currency, sum(amount - refunded_amount) AS kept FROM payments
             WHERE status IN ('succeeded', 'refunded') GROUP BY currency
         ), accounts AS (
             SELECT e.currency,
                    coalesce(sum(l.amount) FILTER (WHERE l.debit_account = 'processor'), 0)
                    - coalesce(sum(l.amount) FILTER (WHERE l.credit_account = 'processor'), 0)
                        AS processor,
                    coalesce(sum(l.amount) FILTER (WHERE l.credit_account = 'payouts'), 0)
                    - coalesce(sum(l.amount) FILTER (WHERE l.debit_account = 'payouts'), 0)
                        AS payouts
             FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id GROUP BY e.currency
         ), held AS (
             SELECT currency, sum(amount) AS held FROM (
                 SELECT currency, pending + available AS amount FROM balances
                 UNION ALL SELECT currency, amount FROM pending_credits) b
             GROUP BY currency
         )
         SELECT format('%s: payments kept %s; the processor account holds %s; recipients hold %s and %s was paid out',
                       currency, coalesce(k.kept, 0), coalesce(a.processor, 0),
                       coalesce(h.held, 0), coalesce(a.payouts, 0))
         FROM kept k FULL JOIN accounts a USING (currency) FULL JOIN held h USING (currency)
         WHERE coalesce(k.kept, 0) <> coalesce(a.processor, 0)
            OR coalesce(k.kept, 0) <> coalesce(h.held, 0) + coalesce(a.payouts, 0)",
    ),
    (
        "captured_payments_split_once",
        "WITH captures AS (
             SELECT payment_id, count(*) AS n FROM ledger_entries WHERE kind = 'capture'
             GROUP BY payment_id
         ), allocated AS (
             SELECT payment_id, count(*) AS n, sum(amount) AS total FROM allocations
             GROUP BY payment_id
         )
         SELECT format('payment %s (%s, amount %s) has %s capture entries and %s allocations summing to %s',
                       p.id, p.status, p.amount, coalesce(c.n, 0), coalesce(a.n, 0),
                       coalesce(a.total, 0))
         FROM payments p LEFT JOIN captures c ON c.payment_id = p.id
              LEFT JOIN allocated a ON a.payment_id = p.id
         WHERE p.status IN ('succeeded', 'refunded')
           AND (coalesce(c.n, 0) <> 1 OR coalesce(a.n, 0) = 0 OR coalesce(a.total, 0) <> p.amount)",
    ),
    (
        // pending, failed, exhausted: no entry, allocation or refund, nothing refunded.
        "uncaptured_payments_move_no_money",
        "WITH entries AS (
             SELECT payment_id, count(*) AS n FROM ledger_entries WHERE payment_id IS NOT NULL
             GROUP BY payment_id
         ), allocated AS (
             SELECT payment_id, count(*) AS n FROM allocations GROUP BY payment_id
         ), refunded AS (
             SELECT payment_id, count(*) AS n FROM refunds GROUP BY payment_id
         )
         SELECT format('payment %s is %s but has %s entries, %s allocations, %s refunds, refunded %s',
                       p.id, p.status, coalesce(e.n, 0), coalesce(a.n, 0), coalesce(r.n, 0),
                       p.refunded_amount)
         FROM payments p LEFT JOIN entries e ON e.payment_id = p.id
              LEFT JOIN allocated a ON a.payment_id = p.id
              LEFT JOIN refunded r ON r.payment_id = p.id
         WHERE p.status NOT IN ('succeeded', 'refunded')
           AND (e.n IS NOT NULL OR a.n IS NOT NULL OR r.n IS NOT NULL OR p.refunded_amount <> 0)",
    ),
    (
        // The capture credits each recipient's pending with what its allocations give it.
        "capture_legs_match_allocations",
        "WITH legs AS (
             SELECT e.payment_id, l.credit_recipient AS recipient_id, sum(l.amount) AS amount
             FROM ledger_entries e JOIN ledger_legs l ON l.entry_id = e.id
             WHERE e.kind = 'capture' GROUP BY e.payment_id, l.credit_recipient
         ), allocated AS (
             SELECT payment_id, recipient_id, sum(amount) AS amount FROM allocations
             GROUP BY payment_id, recipient_id
         )
         SELECT format('payment %s: the capture credits recipient %s with %s, its allocations give it %s',
                       coalesce(l.payment_id, a.payment_id), coalesce(l.recipient_id, a.recipient_id),
                       coalesce(l.amount, 0), coalesce(a.amount, 0))
         FROM legs l FULL JOIN allocated a
              ON a.payment_id = l.payment_id AND a.recipient_id = l.recipient_id
         WHERE coalesce(l.amount, 0) <> coalesce(a.amount, 0)",
    ),
    (
        "allocations_within_bounds",
        "SELECT format('payment %s, allocation %s: amount %s, reversed %s', payment_id, position,
                       amount, reversed)
         FROM allocations WHERE amount <= 0 OR reversed < 0 OR reversed > amount",
    ),
    (
        "refunded_within_amount",
        "SELECT format('payment %s of %s refunded %s', id, amount, refunded_amount)
         FROM payments WHERE refunded_amount < 0 OR refunded_amount > amount",
    ),
    (
        "refunded_status_iff_fully_refunded",
        "SELECT format('payment %s is %s with %s of %s refunded', id, status, refunded_amount, amount)
         FROM payments
         WHERE status IN ('succeeded', 'refunded')
           AND (status = 'refunded') <> (refunded_amount = amount)",
    ),
    (
        "reversals_sum_to_refunded",
        "WITH reversed AS (
             SELECT payment_id, sum(reversed) AS reversed FROM allocations GROUP BY payment_id
         )
         SELECT format('payment %s refunded %s but its allocations reversed %s', p.id,
                       p.refunded_amount, coalesce(r.reversed, 0))
         FROM payments p LEFT JOIN reversed r ON r.payment_id = p.id
         WHERE p.status IN ('succeeded', 'refunded')
           AND p.refunded_amount <> coalesce(r.reversed, 0)",
    ),
    (
        "refunds_sum_to_refunded",
        "WITH refunded AS (
             SELECT payment_id, count(*) AS n, sum(amount) AS amount FROM refunds
             GROUP BY payment_id
         )
         SELECT format('payment %s refunded %s but its %s refunds sum to %s', p.id,
                       p.refunded_amount, coalesce(r.n, 0), coalesce(r.amount, 0))
         FROM payments p LEFT JOIN refunded r ON r.payment_id = p.id
         WHERE p.refunded_amount <> coalesce(r.amount, 0)",
    ),
    (
        "one_refund_entry_per_refund_of_its_amount",
        "WITH entries AS (
             SELECT e.refund_id, count(DISTINCT e.id) AS n, sum(l.amount) AS amount
             FROM ledger_entries e JOIN ledger_legs l ON l.entry_id = e.id
             WHERE e.refund_id IS NOT NULL GROUP BY e.refund_id
         )
         SELECT format('refund %s of %s (payment %s) has %s refund entries whose legs move %s',
                       coalesce(r.id, e.refund_id), r.amount, r.payment_id, coalesce(e.n, 0),
                       coalesce(e.amount, 0))
         FROM refunds r FULL JOIN entries e ON e.refund_id = r.id
         WHERE coalesce(e.n, 0) <> 1 OR r.amount IS DISTINCT FROM e.amount",
    ),
    (
        // After refunds bringing a payment of P to R refunded, each allocation a has reversed
        // floor(a R / P) or one unit more (all of it once R = P).
        "reversals_proportional_within_one_unit",
        "SELECT format('payment %s (%s, %s of %s refunded), allocation %s of %s: reversed %s, not %s or one more',
                       p.id, p.status, p.refunded_amount, p.amount, a.position, a.amount,
                       a.reversed, q.floor)
         FROM allocations a JOIN payments p ON p.id = a.payment_id
              CROSS JOIN LATERAL (SELECT div(a.amount::numeric * p.refunded_amount, p.amount) AS floor) q
         WHERE p.status IN ('succeeded', 'refunded')
           AND (a.reversed < q.floor OR a.reversed > q.floor + 1
                OR (p.refunded_amount = p.amount AND a.reversed <> a.amount))",
    ),
    (
        // Per payment and recipient, from that payment's entries: pending holds the unreversed
        // rest of its unreleased allocations, available that of its released ones.
        "payment_ledger_matches_allocations",
        "WITH moved AS (
             SELECT e.payment_id, l.credit_recipient AS recipient_id, l.credit_account AS account,
                    l.amount
             FROM ledger_entries e JOIN ledger_legs l ON l.entry_id = e.id
             WHERE e.payment_id IS NOT NULL AND l.credit_recipient IS NOT NULL
             UNION ALL
             SELECT e.payment_id, l.debit_recipient, l.debit_account, -l.amount
             FROM ledger_entries e JOIN ledger_legs l ON l.entry_id = e.id
             WHERE e.payment_id IS NOT NULL AND l.debit_recipient IS NOT NULL
         ), from_legs AS (
             SELECT payment_id, recipient_id,
                    coalesce(sum(amount) FILTER (WHERE account = 'pending'), 0) AS pending,
                    coalesce(sum(amount) FILTER (WHERE account = 'available'), 0) AS available
             FROM moved GROUP BY payment_id, recipient_id
         ), from_allocations AS (
             SELECT payment_id, recipient_id,
                    coalesce(sum(amount - reversed) FILTER (WHERE released_at IS NULL), 0) AS pending,
                    coalesce(sum(amount - reversed) FILTER (WHERE released_at IS NOT NULL), 0) AS available
             FROM allocations GROUP BY payment_id, recipient_id
         )
         SELECT format('payment %s, recipient %s: its entries leave pending %s, available %s; its allocations say %s, %s',
                       coalesce(f.payment_id, a.payment_id), coalesce(f.recipient_id, a.recipient_id),
                       coalesce(f.pending, 0), coalesce(f.available, 0), coalesce(a.pending, 0),
                       coalesce(a.available, 0))
         FROM from_legs f FULL JOIN from_allocations a
              ON a.payment_id = f.payment_id AND a.recipient_id = f.recipient_id
         WHERE coalesce(f.pending, 0) <> coalesce(a.pending, 0)
            OR coalesce(f.available, 0) <> coalesce(a.available, 0)",
    ),
    (
        // A payment's allocations are released together, once due, and a release entry (at most
        // one) means they were.
        "allocations_released_together_when_due",
        "WITH allocated AS (
             SELECT payment_id, count(*) AS n, count(released_at) AS released,
                    coalesce(bool_or(released_at < release_at), false) AS early
             FROM allocations GROUP BY payment_id
         ), releases AS (
             SELECT payment_id, count(*) AS n FROM ledger_entries WHERE kind = 'release'
             GROUP BY payment_id
         )
         SELECT format('payment %s: %s of %s allocations released%s; %s release entries',
                       coalesce(a.payment_id, r.payment_id), coalesce(a.released, 0),
                       coalesce(a.n, 0), CASE WHEN a.early THEN ' (before due)' ELSE '' END,
                       coalesce(r.n, 0))
         FROM allocated a FULL JOIN releases r ON r.payment_id = a.payment_id
         WHERE coalesce(a.released, 0) NOT IN (0, coalesce(a.n, 0))
            OR coalesce(a.early, false)
            OR coalesce(r.n, 0) > 1
            OR (coalesce(r.n, 0) = 1 AND (a.n IS NULL OR a.released < a.n))",
    ),
];

/// The marketplace's money, in one snapshot of the payment database.
async fn money(db: &Databases<'_>, findings: &mut Findings) -> Result<(), sqlx::Error> {
    let completed: Vec<(String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT id::text, payment_id::text, total_amount FROM orders WHERE status = 'completed'",
    )
    .fetch_all(db.order)
    .await?;
    let mut tx = db.payment.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    for (name, query) in MONEY_QUERIES {
        let found: Vec<String> = sqlx::query_scalar(query).fetch_all(&mut *tx).await?;
        findings.report(name, found);
    }
    let found = splits_follow_rules(&mut tx).await?;
    findings.report("allocations_split_as_their_rules_say", found);
    let found = completed_orders_split_once(&mut tx, &completed).await?;
    findings.report("completed_orders_split_once", found);
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT format('refund %s of %s (payment %s), made %s, is not settled', id, amount,
                       payment_id, created_at)
         FROM refunds
         WHERE settled_at IS NULL AND created_at < now() - make_interval(secs => $1)",
    )
    .bind(SETTLED_WITHIN_SECS as f64)
    .fetch_all(&mut *tx)
    .await?;
    findings.report("refunds_settled", found);
    tx.commit().await?;
    Ok(())
}

/// A completed order's payment (the one the order names) was captured once, for the order's total,
/// and belongs to the order; any other payment of the order (an earlier attempt's) was either
/// never captured or wholly refunded.
/// A payment of an order: id, order id, status, refunded, capture entries, allocated.
type OrderPayment = (String, String, String, i64, i64, i64);

async fn completed_orders_split_once(
    conn: &mut PgConnection,
    completed: &[(String, Option<String>, Option<i64>)],
) -> Result<Vec<String>, sqlx::Error> {
    let payments: Vec<OrderPayment> = sqlx::query_as(
        "WITH captures AS (
             SELECT payment_id, count(*) AS n FROM ledger_entries WHERE kind = 'capture'
             GROUP BY payment_id
         ), allocated AS (
             SELECT payment_id, sum(amount) AS total FROM allocations GROUP BY payment_id
         )
         SELECT p.id::text, p.order_id, p.status, p.refunded_amount, coalesce(c.n, 0),
                coalesce(a.total, 0)::bigint
         FROM payments p LEFT JOIN captures c ON c.payment_id = p.id
              LEFT JOIN allocated a ON a.payment_id = p.id
         WHERE p.order_id IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    let by_id: HashMap<&str, &OrderPayment> = payments.iter().map(|p| (p.0.as_str(), p)).collect();
    let mut of_order: HashMap<&str, Vec<&OrderPayment>> = HashMap::new();
    for p in &payments {
        of_order.entry(p.1.as_str()).or_default().push(p);
    }
    let mut found = Vec::new();
    for (order, payment_id, total) in completed {
        let Some(payment_id) = payment_id else {
            found.push(format!("order {order} is completed without a payment"));
            continue;
        };
        let Some((_, payment_order, status, _, captures, allocated)) =
            by_id.get(payment_id.as_str()).copied()
        else {
            found.push(format!(
                "order {order} is completed with payment {payment_id}, which payment does not know"
            ));
            continue;
        };
        if payment_order != order {
            found.push(format!(
                "order {order} names payment {payment_id}, which is of order {payment_order}"
            ));
        }
        if *captures != 1 || Some(*allocated) != *total {
            found.push(format!(
                "order {order} (total {total:?}): its payment {payment_id} ({status}) has {captures} capture entries and allocations summing to {allocated}"
            ));
        }
        for (other, _, status, refunded, captures, _) in of_order
            .get(order.as_str())
            .into_iter()
            .flatten()
            .filter(|p| p.0 != *payment_id)
        {
            if *captures > 0 && status != "refunded" {
                found.push(format!(
                    "order {order}: payment {other} of an earlier attempt was captured and is {status} with {refunded} refunded"
                ));
            }
        }
    }
    Ok(found)
}

/// A share of a rule, as the split arithmetic takes it.
#[derive(Debug, Clone)]
enum ShareKind {
    Percentage(i64),
    Fixed(i64),
    Remainder,
}

/// A line split by its rule's shares, as payment documents it: fixed shares first, each
/// `amount × quantity` capped by what is left; of the rest `B` each percentage share gets
/// `⌊B × bp / 10000⌋`; the remainder share what is left of `B`, or without one the units left
/// over go one each to the percentage shares with the largest fractional parts, ties to the
/// earlier share. `None` when the shares cannot place the whole line.
fn split_line(amount: i64, quantity: i64, shares: &[ShareKind]) -> Option<Vec<i64>> {
    let mut amounts = vec![0i128; shares.len()];
    let mut left = i128::from(amount);
    for (i, share) in shares.iter().enumerate() {
        if let ShareKind::Fixed(per_unit) = share {
            let given = (i128::from(*per_unit) * i128::from(quantity)).clamp(0, left);
            amounts[i] = given;
            left -= given;
        }
    }
    let base = left;
    let mut fractions = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        if let ShareKind::Percentage(bp) = share {
            let exact = base * i128::from(*bp);
            amounts[i] = exact / 10_000;
            left -= amounts[i];
            fractions.push((i, exact % 10_000));
        }
    }
    match shares
        .iter()
        .position(|s| matches!(s, ShareKind::Remainder))
    {
        Some(remainder) => amounts[remainder] = left,
        None => {
            fractions.sort_by_key(|f| std::cmp::Reverse(f.1));
            for (i, _) in fractions {
                if left == 0 {
                    break;
                }
                amounts[i] += 1;
                left -= 1;
            }
            if left != 0 {
                return None;
            }
        }
    }
    Some(amounts.into_iter().map(|a| a as i64).collect())
}

/// A share of a stored rule: rule, recipient, kind, basis points, amount.
type ShareRow = (String, String, String, Option<i32>, Option<i64>);
/// A captured payment's line: payment, its amount, product, quantity, line amount, the product's
/// rule in force when the payment was made.
type LineRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
/// An allocation: payment, product, recipient, rule, amount.
type AllocationRow = (String, Option<i64>, String, Option<String>, i64);
/// What an allocation is keyed by within its payment: product, recipient, rule.
type Key = (Option<i64>, String, Option<String>);

/// What each captured payment's allocations should be — each line split by its product's rule in
/// force when the payment was made (recomputed here from the stored rules), a line without a rule
/// and a payment without lines the platform's — against what they are. Compared per (payment,
/// product, recipient, rule).
async fn splits_follow_rules(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let shares: Vec<ShareRow> = sqlx::query_as(
        "SELECT rule_id::text, recipient_id::text, kind, basis_points, amount
         FROM split_rule_shares ORDER BY rule_id, position",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut rules: HashMap<String, Vec<(String, ShareKind)>> = HashMap::new();
    for (rule, recipient, kind, basis_points, amount) in shares {
        let kind = match (kind.as_str(), basis_points, amount) {
            ("percentage", Some(bp), _) => ShareKind::Percentage(i64::from(bp)),
            ("fixed", _, Some(amount)) => ShareKind::Fixed(amount),
            _ => ShareKind::Remainder,
        };
        rules.entry(rule).or_default().push((recipient, kind));
    }
    // Each captured payment's lines, with the rule of the line's product in force when the
    // payment was made; one row with no line for a payment without lines.
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT p.id::text, p.amount, (l.line->>'productId')::bigint,
                (l.line->>'quantity')::bigint, (l.line->>'amount')::bigint, r.id::text
         FROM payments p
              LEFT JOIN LATERAL jsonb_array_elements(
                  CASE WHEN jsonb_typeof(p.lines) = 'array' THEN p.lines END)
                  WITH ORDINALITY AS l(line, n) ON true
              LEFT JOIN split_rules r
                     ON r.product_id = (l.line->>'productId')::bigint
                    AND tstzrange(r.effective_from, r.effective_to) @> p.created_at
         WHERE p.status IN ('succeeded', 'refunded')
         ORDER BY p.id, l.n",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut expected: BTreeMap<String, BTreeMap<Key, i64>> = BTreeMap::new();
    let mut payment_lines: BTreeMap<&str, (i64, Vec<&LineRow>)> = BTreeMap::new();
    for line in &lines {
        payment_lines
            .entry(line.0.as_str())
            .or_insert((line.1, Vec::new()))
            .1
            .push(line);
    }
    let mut found = Vec::new();
    for (payment, (amount, lines)) in &payment_lines {
        let mut want: BTreeMap<Key, i64> = BTreeMap::new();
        let lines: Vec<&&LineRow> = lines.iter().filter(|l| l.2.is_some()).collect();
        let summed: i64 = lines.iter().map(|l| l.4.unwrap_or(0)).sum();
        if lines.is_empty() || summed != *amount {
            // No lines (or lines that do not sum to the payment, which /charge refuses): the
            // whole payment is the platform's.
            want.insert((None, PLATFORM.to_string(), None), *amount);
        } else {
            for (_, _, product, quantity, line_amount, rule) in lines.iter().copied() {
                let (quantity, line_amount) = (quantity.unwrap_or(0), line_amount.unwrap_or(0));
                let split = rule.as_ref().and_then(|rule| {
                    let shares = rules.get(rule)?;
                    let kinds: Vec<ShareKind> = shares.iter().map(|s| s.1.clone()).collect();
                    let amounts = split_line(line_amount, quantity, &kinds)?;
                    Some((rule, shares, amounts))
                });
                match split {
                    Some((rule, shares, amounts)) => {
                        for ((recipient, _), share) in shares.iter().zip(amounts) {
                            if share > 0 {
                                *want
                                    .entry((*product, recipient.clone(), Some(rule.clone())))
                                    .or_default() += share;
                            }
                        }
                    }
                    None => {
                        if rule.is_some() {
                            found.push(format!(
                                "payment {payment}: the rule {rule:?} of product {product:?} cannot place its line"
                            ));
                        }
                        *want
                            .entry((*product, PLATFORM.to_string(), None))
                            .or_default() += line_amount;
                    }
                }
            }
        }
        expected.insert(payment.to_string(), want);
    }
    let allocations: Vec<AllocationRow> = sqlx::query_as(
        "SELECT a.payment_id::text, a.product_id, a.recipient_id::text, a.split_rule_id::text,
                a.amount
         FROM allocations a JOIN payments p ON p.id = a.payment_id
         WHERE p.status IN ('succeeded', 'refunded')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut actual: BTreeMap<String, BTreeMap<Key, i64>> = BTreeMap::new();
    for (payment, product, recipient, rule, amount) in allocations {
        *actual
            .entry(payment)
            .or_default()
            .entry((product, recipient, rule))
            .or_default() += amount;
    }
    let empty = BTreeMap::new();
    for (payment, want) in &expected {
        let got = actual.get(payment).unwrap_or(&empty);
        if got != want {
            let show = |m: &BTreeMap<Key, i64>| {
                m.iter()
                    .map(|((product, recipient, rule), amount)| {
                        let rule = rule.as_deref().map_or("none".to_string(), |r| {
                            r.chars().take(8).collect::<String>()
                        });
                        format!(
                            "{}:{}:{rule}={amount}",
                            product.map_or("-".to_string(), |p| p.to_string()),
                            &recipient[recipient.len().saturating_sub(4)..]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            found.push(format!(
                "payment {payment}: expected {} (product:recipient:rule=amount), got {}",
                show(want),
                show(got)
            ));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_payment_documents() {
        use ShareKind::{Fixed, Percentage as pct, Remainder};
        assert_eq!(
            split_line(1000, 1, &[pct(3333), pct(3333), pct(3334)]),
            Some(vec![333, 333, 334])
        );
        assert_eq!(
            split_line(100, 1, &[pct(3334), pct(3333), pct(3333)]),
            Some(vec![34, 33, 33])
        );
        assert_eq!(
            split_line(1000, 2, &[Fixed(30), pct(1000), Remainder]),
            Some(vec![60, 94, 846])
        );
        assert_eq!(
            split_line(50, 1, &[Fixed(30), Fixed(30), Remainder]),
            Some(vec![30, 20, 0])
        );
        assert_eq!(split_line(100, 1, &[pct(5000)]), None);
    }
}
