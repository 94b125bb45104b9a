//! Orders, their lines and their events. An order is written before anything else happens; every
//! saga transition is one statement: a conditional update (`WHERE status = <from>`, so two
//! drivers can never both record a step), the lines it prices, and its audit events — for a whole
//! batch of orders (a transition made alone is a batch of one).

use super::events;
use super::StorageError;
use crate::domain::{Line, Order, Transition};
use chrono::{DateTime, Utc};
use shared::client::CallContext;
use shared::contract::order::{FailureCode, OrderEvent, OrderEventRecord, OrderLine, OrderStatus};
use shared::contract::values::{Currency, ItemId, Limit, Offset};
use sqlx::types::Json;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// An order row with its lines and events, as the statements below read it.
struct OrderRow {
    id: Uuid,
    status: OrderStatus,
    attempt: i32,
    failure_code: Option<FailureCode>,
    customer_id: Option<String>,
    total_amount: Option<i64>,
    currency: Option<Currency>,
    reservation_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    refund_needed: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    lines: Json<Vec<OrderLine>>,
    events: Json<Vec<OrderEventRecord>>,
}

impl From<OrderRow> for Order {
    fn from(row: OrderRow) -> Order {
        Order {
            id: row.id,
            status: row.status,
            attempt: row.attempt,
            failure: row.failure_code,
            customer_id: row.customer_id,
            lines: row
                .lines
                .0
                .into_iter()
                .map(|l| Line {
                    item_id: l.item_id,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    amount: l.amount,
                })
                .collect(),
            total_amount: row.total_amount,
            currency: row.currency,
            reservation_id: row.reservation_id,
            payment_id: row.payment_id,
            refund_needed: row.refund_needed,
            created_at: row.created_at,
            updated_at: row.updated_at,
            events: row.events.0,
        }
    }
}

/// An order with its lines and events, in one statement.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Order>, StorageError> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT o.id, o.status AS "status: OrderStatus", o.attempt,
                  o.failure_code AS "failure_code: FailureCode", o.customer_id, o.total_amount,
                  o.currency AS "currency: Currency", o.reservation_id, o.payment_id,
                  o.refund_needed, o.created_at, o.updated_at,
                  coalesce((SELECT json_agg(json_build_object(
                                'itemId', l.item_id, 'quantity', l.quantity,
                                'unitPrice', l.unit_price, 'amount', l.amount) ORDER BY l.item_id)
                            FROM order_lines l WHERE l.order_id = o.id), '[]')
                      AS "lines!: Json<Vec<OrderLine>>",
                  coalesce((SELECT json_agg(jsonb_build_object('type', e.type, 'at', e.at) || e.data
                                            ORDER BY e.id)
                            FROM order_events e WHERE e.order_id = o.id), '[]')
                      AS "events!: Json<Vec<OrderEventRecord>>"
           FROM orders o WHERE o.id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Order::from))
}

/// Orders newest first, with how many match. Status is not indexed (the checkout's own updates
/// then touch no index): the newest-first index is filtered.
pub async fn list(
    pool: &PgPool,
    status: Option<OrderStatus>,
    limit: Limit,
    offset: Offset,
) -> Result<(Vec<Order>, i64), StorageError> {
    let status = status.map(OrderStatus::as_str);
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT o.id, o.status AS "status: OrderStatus", o.attempt,
                  o.failure_code AS "failure_code: FailureCode", o.customer_id, o.total_amount,
                  o.currency AS "currency: Currency", o.reservation_id, o.payment_id,
                  o.refund_needed, o.created_at, o.updated_at,
                  coalesce((SELECT json_agg(json_build_object(
                                'itemId', l.item_id, 'quantity', l.quantity,
                                'unitPrice', l.unit_price, 'amount', l.amount) ORDER BY l.item_id)
                            FROM order_lines l WHERE l.order_id = o.id), '[]')
                      AS "lines!: Json<Vec<OrderLine>>",
                  coalesce((SELECT json_agg(jsonb_build_object('type', e.type, 'at', e.at) || e.data
                                            ORDER BY e.id)
                            FROM order_events e WHERE e.order_id = o.id), '[]')
                      AS "events!: Json<Vec<OrderEventRecord>>"
           FROM orders o WHERE ($1::text IS NULL OR o.status = $1)
           ORDER BY o.created_at DESC, o.id DESC LIMIT $2 OFFSET $3"#,
        status,
        limit.get(),
        offset.get(),
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM orders WHERE ($1::text IS NULL OR status = $1)"#,
        status,
    )
    .fetch_one(pool)
    .await?;
    Ok((rows.into_iter().map(Order::from).collect(), total))
}

/// The status of an order, cheaply.
pub async fn status(pool: &PgPool, id: Uuid) -> Result<Option<OrderStatus>, StorageError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT status AS "status: OrderStatus" FROM orders WHERE id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await?)
}

/// An order to open.
pub struct OpenJob {
    pub id: Uuid,
    pub key: String,
    pub fingerprint: String,
    pub customer_id: Option<String>,
    pub context: CallContext,
    pub lines: Vec<(ItemId, i64)>,
}

impl OpenJob {
    /// The order this job opened, created at `at` with its first event.
    fn order(&self, at: DateTime<Utc>, created: OrderEventRecord) -> Order {
        Order {
            id: self.id,
            status: OrderStatus::Reserving,
            attempt: 1,
            failure: None,
            customer_id: self.customer_id.clone(),
            lines: self
                .lines
                .iter()
                .map(|&(item_id, quantity)| Line {
                    item_id,
                    quantity,
                    unit_price: None,
                    amount: None,
                })
                .collect(),
            total_amount: None,
            currency: None,
            reservation_id: None,
            payment_id: None,
            refund_needed: false,
            created_at: at,
            updated_at: at,
            events: vec![created],
        }
    }
}

/// Opens a batch of orders in one statement — each order's row, lines and `order_created`
/// event — unique by Idempotency-Key, already `reserving` with a lease of `lease` (the first step
/// starts with the write; an order found `pending` was written by an earlier version). Returns,
/// per job, the order it opened, or `None` for a job whose key was taken.
pub async fn open(
    pool: &PgPool,
    jobs: &[OpenJob],
    lease: Duration,
) -> Result<Vec<Option<Order>>, StorageError> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
    let hashes: Vec<&str> = jobs.iter().map(|j| j.fingerprint.as_str()).collect();
    let customers: Vec<Option<&str>> = jobs.iter().map(|j| j.customer_id.as_deref()).collect();
    let request_ids: Vec<&str> = jobs.iter().map(|j| j.context.request_id.as_str()).collect();
    let traceparents: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.context.traceparent.as_deref())
        .collect();
    let (mut line_order, mut line_item, mut line_quantity) = (vec![], vec![], vec![]);
    for job in jobs {
        for &(item, quantity) in &job.lines {
            line_order.push(job.id);
            line_item.push(item.get());
            line_quantity.push(quantity);
        }
    }
    let opened = sqlx::query!(
        r#"WITH opening AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::text[])
                   AS o(id, idempotency_key, request_hash, customer_id, request_id, traceparent)
           ), opened AS (
               INSERT INTO orders (id, idempotency_key, request_hash, customer_id, status,
                                   lease_until, request_id, traceparent)
               SELECT id, idempotency_key, request_hash, customer_id, 'reserving',
                      now() + make_interval(secs => $7), request_id, traceparent
               FROM opening
               ON CONFLICT (idempotency_key) DO NOTHING
               RETURNING id, created_at
           ), lines AS (
               INSERT INTO order_lines (order_id, item_id, quantity)
               SELECT l.order_id, l.item_id, l.quantity
               FROM unnest($8::uuid[], $9::int8[], $10::int8[]) AS l(order_id, item_id, quantity)
               WHERE l.order_id IN (SELECT id FROM opened)
           ), written AS (
               INSERT INTO order_events (order_id, type, data)
               SELECT id, 'order_created', '{}' FROM opened
               RETURNING order_id, type, at, data
           )
           SELECT opened.id AS "id!", opened.created_at AS "created_at!",
                  (SELECT jsonb_build_object('type', w.type, 'at', w.at) || w.data
                   FROM written w WHERE w.order_id = opened.id)
                      AS "created!: Json<OrderEventRecord>"
           FROM opened"#,
        &ids,
        &keys as _,
        &hashes as _,
        &customers as _,
        &request_ids as _,
        &traceparents as _,
        lease.as_secs_f64(),
        &line_order,
        &line_item,
        &line_quantity,
    )
    .fetch_all(pool)
    .await?;
    Ok(jobs
        .iter()
        .map(|job| {
            opened
                .iter()
                .find(|row| row.id == job.id)
                .map(|row| job.order(row.created_at, row.created.0.clone()))
        })
        .collect())
}

/// The order written under `key`: its id and request fingerprint.
pub async fn by_key(pool: &PgPool, key: &str) -> Result<Option<(Uuid, String)>, StorageError> {
    let row = sqlx::query!(
        "SELECT id, request_hash FROM orders WHERE idempotency_key = $1",
        key
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.id, r.request_hash)))
}

/// How long a driver holds an order it writes. An unfinished order always has a lease; a
/// finished one has none (`lease_until` NULL), which takes it out of the recovery index.
///
/// A transition renews the lease only when less than `step` — the longest one saga step can
/// take — is left, so that every step starts with enough lease to finish in. A checkout that ends
/// well within its first lease never changes `lease_until` again until it ends: its intermediate
/// transitions change no indexed column, and PostgreSQL writes them as HOT updates (no index
/// entries).
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub length: Duration,
    pub step: Duration,
}

/// A transition to write: an order, the state it was read in, and where it goes.
pub struct TransitionJob {
    pub id: Uuid,
    pub from: OrderStatus,
    pub transition: Transition,
}

/// An order row a transition wrote, with the events it appended.
pub struct Moved(OrderRow);

impl Moved {
    /// `order` as the transition left it: its new row, its lines priced by the transition, and
    /// its events — those it had and those the statement wrote.
    pub fn onto(self, order: &Order, transition: &Transition) -> Order {
        let priced = transition.changes.priced.as_ref();
        let mut moved = Order::from(self.0);
        moved.lines = order
            .lines
            .iter()
            .map(|line| {
                match priced.and_then(|p| p.lines.iter().find(|(item, _, _)| *item == line.item_id))
                {
                    Some(&(_, unit_price, amount)) => Line {
                        unit_price: Some(unit_price),
                        amount: Some(amount),
                        ..line.clone()
                    },
                    None => line.clone(),
                }
            })
            .collect();
        let written = std::mem::take(&mut moved.events);
        moved.events = order.events.iter().cloned().chain(written).collect();
        moved
    }
}

/// Moves a batch of orders in one statement, each only if it is still in the state it was read
/// in, with its changes, its priced lines and its events, renewing leases that run short (see
/// [`Lease`]). An order may appear once per batch. Returns, per job, the row it wrote, or `None`
/// for an order another driver moved meanwhile (nothing was written for it).
pub async fn transition(
    pool: &PgPool,
    jobs: &[TransitionJob],
    lease: Lease,
) -> Result<Vec<Option<Moved>>, StorageError> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let from: Vec<&str> = jobs.iter().map(|j| j.from.as_str()).collect();
    let to: Vec<&str> = jobs.iter().map(|j| j.transition.to.as_str()).collect();
    let changes = || jobs.iter().map(|j| &j.transition.changes);
    let reservation: Vec<Option<Uuid>> = changes()
        .map(|c| c.priced.as_ref().map(|p| p.reservation_id))
        .collect();
    let payment: Vec<Option<Uuid>> = changes().map(|c| c.payment_id).collect();
    let total: Vec<Option<i64>> = changes()
        .map(|c| c.priced.as_ref().map(|p| p.total_amount))
        .collect();
    let currency: Vec<Option<&str>> = changes()
        .map(|c| c.priced.as_ref().map(|p| p.currency.as_str()))
        .collect();
    let failure: Vec<Option<&str>> = changes()
        .map(|c| c.failure.map(FailureCode::as_str))
        .collect();
    let refund: Vec<Option<bool>> = changes().map(|c| c.refund_needed).collect();
    let attempt: Vec<Option<i32>> = changes().map(|c| c.attempt).collect();
    let (mut price_order, mut price_item, mut unit_price, mut amount) =
        (vec![], vec![], vec![], vec![]);
    let (mut event_order, mut kinds, mut data) = (vec![], vec![], vec![]);
    for job in jobs {
        if let Some(priced) = &job.transition.changes.priced {
            for &(item, price, line_amount) in &priced.lines {
                price_order.push(job.id);
                price_item.push(item.get());
                unit_price.push(price);
                amount.push(line_amount);
            }
        }
        for event in &job.transition.events {
            let (kind, fields) = events::encode(event)?;
            event_order.push(job.id);
            kinds.push(kind);
            data.push(fields);
        }
    }
    let rows = sqlx::query_as!(
        OrderRow,
        r#"WITH moving AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[],
                                    $6::int8[], $7::text[], $8::text[], $9::bool[], $10::int4[])
                   AS m(id, from_status, to_status, reservation_id, payment_id, total_amount,
                        currency, failure_code, refund_needed, attempt)
           ), moved AS (
               UPDATE orders SET status = m.to_status,
                   attempt = COALESCE(m.attempt, orders.attempt),
                   reservation_id = CASE WHEN m.attempt IS NOT NULL THEN NULL
                                         ELSE COALESCE(m.reservation_id, orders.reservation_id) END,
                   payment_id = CASE WHEN m.attempt IS NOT NULL THEN NULL
                                     ELSE COALESCE(m.payment_id, orders.payment_id) END,
                   total_amount = COALESCE(m.total_amount, orders.total_amount),
                   currency = COALESCE(m.currency, orders.currency),
                   failure_code = CASE WHEN m.attempt IS NOT NULL THEN NULL
                                       ELSE COALESCE(m.failure_code, orders.failure_code) END,
                   refund_needed = CASE WHEN m.attempt IS NOT NULL THEN false
                                        ELSE COALESCE(m.refund_needed, orders.refund_needed) END,
                   lease_until = CASE
                       WHEN m.to_status IN ('completed', 'failed') THEN NULL
                       WHEN coalesce(orders.lease_until, '-infinity')
                            < now() + make_interval(secs => $11)
                           THEN now() + make_interval(secs => $12)
                       ELSE orders.lease_until END,
                   updated_at = now()
               FROM moving m
               WHERE orders.id = m.id AND orders.status = m.from_status
               RETURNING orders.*
           ), priced AS (
               UPDATE order_lines SET unit_price = p.unit_price, amount = p.amount
               FROM unnest($13::uuid[], $14::int8[], $15::int8[], $16::int8[])
                    AS p(order_id, item_id, unit_price, amount)
               WHERE p.order_id IN (SELECT id FROM moved)
                 AND order_lines.order_id = p.order_id AND order_lines.item_id = p.item_id
           ), written AS (
               INSERT INTO order_events (order_id, type, data)
               SELECT e.order_id, e.type, e.data
               FROM unnest($17::uuid[], $18::text[], $19::jsonb[]) WITH ORDINALITY
                    AS e(order_id, type, data, n)
               WHERE e.order_id IN (SELECT id FROM moved)
               ORDER BY e.n
               RETURNING id, order_id, type, at, data
           )
           SELECT moved.id AS "id!", moved.status AS "status!: OrderStatus",
                  moved.attempt AS "attempt!", moved.failure_code AS "failure_code: FailureCode",
                  moved.customer_id, moved.total_amount, moved.currency AS "currency: Currency",
                  moved.reservation_id, moved.payment_id, moved.refund_needed AS "refund_needed!",
                  moved.created_at AS "created_at!", moved.updated_at AS "updated_at!",
                  '[]'::json AS "lines!: Json<Vec<OrderLine>>",
                  coalesce((SELECT json_agg(jsonb_build_object('type', w.type, 'at', w.at) || w.data
                                            ORDER BY w.id)
                            FROM written w WHERE w.order_id = moved.id), '[]')
                      AS "events!: Json<Vec<OrderEventRecord>>"
           FROM moved"#,
        &ids,
        &from as _,
        &to as _,
        &reservation as _,
        &payment as _,
        &total as _,
        &currency as _,
        &failure as _,
        &refund as _,
        &attempt as _,
        lease.step.as_secs_f64(),
        lease.length.as_secs_f64(),
        &price_order,
        &price_item,
        &unit_price,
        &amount,
        &event_order,
        &kinds as _,
        &data,
    )
    .fetch_all(pool)
    .await?;
    let mut rows: Vec<Option<OrderRow>> = rows.into_iter().map(Some).collect();
    Ok(jobs
        .iter()
        .map(|job| {
            rows.iter_mut()
                .find(|r| r.as_ref().is_some_and(|r| r.id == job.id))
                .and_then(Option::take)
                .map(Moved)
        })
        .collect())
}

/// Appends events outside a transition (`order_recovered`).
pub async fn record(pool: &PgPool, id: Uuid, recorded: &[OrderEvent]) -> Result<(), StorageError> {
    let mut kinds = Vec::with_capacity(recorded.len());
    let mut data = Vec::with_capacity(recorded.len());
    for event in recorded {
        let (kind, fields) = events::encode(event)?;
        kinds.push(kind);
        data.push(fields);
    }
    sqlx::query!(
        "INSERT INTO order_events (order_id, type, data)
         SELECT $1, e.type, e.data
         FROM unnest($2::text[], $3::jsonb[]) WITH ORDINALITY AS e(type, data, n)
         ORDER BY e.n",
        id,
        &kinds as _,
        &data,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn renew_lease(pool: &PgPool, id: Uuid, lease: Duration) -> Result<(), StorageError> {
    sqlx::query!(
        "UPDATE orders SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND lease_until IS NOT NULL",
        id,
        lease.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims up to `limit` unfinished orders whose lease ran out (their driver crashed or gave up).
/// `SKIP LOCKED` lets several order instances run this side by side.
pub async fn claim_stale(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Uuid>, StorageError> {
    Ok(sqlx::query_scalar!(
        "UPDATE orders SET lease_until = now() + make_interval(secs => $2)
         WHERE id IN (
             SELECT id FROM orders
             WHERE lease_until < now()
             ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
        limit,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?)
}

/// Claims one unfinished order if its lease ran out.
pub async fn claim(pool: &PgPool, id: Uuid, lease: Duration) -> Result<bool, StorageError> {
    let claimed = sqlx::query!(
        "UPDATE orders SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND lease_until < now()",
        id,
        lease.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// What an order's calls carry: the request id and trace of the checkout that made it.
pub async fn call_context(pool: &PgPool, id: Uuid) -> Result<CallContext, StorageError> {
    let row = sqlx::query!(
        "SELECT request_id, traceparent FROM orders WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await?
    .ok_or(StorageError::NotFound("order"))?;
    Ok(CallContext {
        request_id: row
            .request_id
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| Uuid::new_v4().to_string()),
        traceparent: row.traceparent,
    })
}
