//! The checkout's invariants, checked against the three databases once the system is quiet. Each
//! violation is described in a line; an empty list means every invariant holds. Shared by the saga
//! tests and the chaos harness.
//!
//! An order may have run several attempts (a retry of its key after `dependency_unavailable`);
//! stock and payment know each attempt by its own id — the order's id, then `{id}.{attempt}` —
//! so what they hold is gathered per order across its attempts.

use sqlx::PgPool;
use std::collections::HashMap;

pub struct Databases<'a> {
    pub order: &'a PgPool,
    pub stock: &'a PgPool,
    pub payment: &'a PgPool,
}

/// Orders not yet terminal.
pub async fn unfinished(order: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status NOT IN ('completed', 'failed')")
        .fetch_one(order)
        .await
}

/// The order an id at stock or payment belongs to: `{order}` or `{order}.{attempt}`.
pub fn order_of(participant_id: &str) -> &str {
    match participant_id.rsplit_once('.') {
        Some((order, attempt)) if attempt.parse::<u32>().is_ok() => order,
        _ => participant_id,
    }
}

pub async fn check(db: &Databases<'_>) -> Result<Vec<String>, sqlx::Error> {
    let mut violations = Vec::new();

    let orders: Vec<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT id::text, status, total_amount FROM orders")
            .fetch_all(db.order)
            .await?;
    let payments: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT order_id, status, amount FROM payments WHERE order_id IS NOT NULL")
            .fetch_all(db.payment)
            .await?;
    let reservations: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, status FROM reservations WHERE NOT tombstone")
            .fetch_all(db.stock)
            .await?;
    let mut payments_of: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (order, status, amount) in &payments {
        payments_of
            .entry(order_of(order))
            .or_default()
            .push((status, *amount));
    }
    let mut reservations_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (order, status) in &reservations {
        reservations_of
            .entry(order_of(order))
            .or_default()
            .push(status);
    }

    let mut completed_total: i64 = 0;
    for (id, status, total) in &orders {
        let pays = payments_of.get(id.as_str()).cloned().unwrap_or_default();
        let standing: Vec<_> = pays
            .iter()
            .filter(|(s, _)| *s == "succeeded" || *s == "pending")
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
                if standing.len() != 1
                    || standing[0].0 != "succeeded"
                    || Some(standing[0].1) != *total
                {
                    violations.push(format!(
                        "order {id} is completed with total {total:?} but its standing charges are {standing:?}"
                    ));
                }
                if held != ["completed"] {
                    violations.push(format!(
                        "order {id} is completed but its reservations hold {held:?}"
                    ));
                }
            }
            "failed" => {
                if !standing.is_empty() {
                    violations.push(format!("order {id} failed but charges stand: {standing:?}"));
                }
                if !held.is_empty() {
                    violations.push(format!(
                        "order {id} failed but its reservations hold {held:?}"
                    ));
                }
            }
            other => violations.push(format!("order {id} is not terminal: {other}")),
        }
    }
    let order_ids: std::collections::HashSet<&str> = orders.iter().map(|o| o.0.as_str()).collect();
    for (order, status, amount) in &payments {
        if status == "succeeded" && !order_ids.contains(order_of(order)) {
            violations.push(format!(
                "a charge of {amount} stands for unknown order {order}"
            ));
        }
    }
    let standing_total: i64 = payments
        .iter()
        .filter(|(o, s, _)| s == "succeeded" && order_ids.contains(order_of(o)))
        .map(|p| p.2)
        .sum();
    if standing_total != completed_total {
        violations.push(format!(
            "standing charges sum to {standing_total} but completed orders to {completed_total}"
        ));
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
            violations.push(format!(
                "item {id} is oversold: stock {stock}, reserved {reserved}"
            ));
        }
        if stock + sold != initial + restocked {
            violations.push(format!(
                "item {id}: stock {stock} + sold {sold} != initial {initial} + restocked {restocked}"
            ));
        }
        if reserved != held {
            violations.push(format!(
                "item {id}: reserved {reserved} but reservations hold {held}"
            ));
        }
    }

    let keys: (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT idempotency_key) FROM orders")
            .fetch_one(db.order)
            .await?;
    if keys.0 != keys.1 {
        violations.push(format!("{} orders for {} keys", keys.0, keys.1));
    }
    Ok(violations)
}
