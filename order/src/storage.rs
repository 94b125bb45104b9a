//! PostgreSQL access for orders. Every saga transition is one transaction: a conditional update
//! (`WHERE status = <from>`, so two drivers can never both record a step) plus its audit events.

use crate::domain::{CheckoutRequest, FailureCode, Order, OrderEvent, OrderLine, OrderStatus};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::batch::{first_of_each, Batched, Batcher};
use shared::http_client::CallContext;
use shared::idempotency::IdempotencyContext;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    status: String,
    failure_code: Option<String>,
    customer_id: Option<String>,
    total_amount: Option<i64>,
    currency: Option<String>,
    reservation_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str = "id, status, failure_code, customer_id, total_amount, \
     currency::text AS currency, reservation_id, payment_id, created_at, updated_at";

impl OrderRow {
    /// The order this row is, with `items` and no events.
    fn into_order(self, items: Vec<OrderLine>) -> Order {
        Order {
            order_id: self.id,
            status: self.status,
            failure_code: self.failure_code,
            customer_id: self.customer_id,
            items,
            total_amount: self.total_amount,
            currency: self.currency,
            reservation_id: self.reservation_id,
            payment_id: self.payment_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            events: Vec::new(),
        }
    }
}

/// An order row with its lines and events aggregated as JSON.
#[derive(sqlx::FromRow)]
struct FullRow {
    #[sqlx(flatten)]
    order: OrderRow,
    lines: sqlx::types::Json<Vec<OrderLine>>,
    events: sqlx::types::Json<Vec<JsonEvent>>,
}

/// A row an open or a transition wrote, with the events that write appended.
#[derive(sqlx::FromRow)]
struct WrittenRow {
    #[sqlx(flatten)]
    order: OrderRow,
    events: sqlx::types::Json<Vec<JsonEvent>>,
}

impl WrittenRow {
    fn new_events(&self) -> impl Iterator<Item = OrderEvent> + '_ {
        self.events.0.iter().map(JsonEvent::to_event)
    }
}

/// The `events` column of a statement whose `written` CTE returned the events it inserted.
const WRITTEN_EVENTS: &str = "coalesce((SELECT json_agg(json_build_object(
        'kind', w.type, 'at', w.at, 'data', w.data) ORDER BY w.id)
    FROM written w WHERE w.order_id = {row}.id), '[]') AS events";

fn written_events(row: &str) -> String {
    WRITTEN_EVENTS.replace("{row}", row)
}

#[derive(serde::Deserialize)]
struct JsonEvent {
    kind: String,
    at: DateTime<Utc>,
    data: serde_json::Map<String, Value>,
}

impl JsonEvent {
    fn to_event(&self) -> OrderEvent {
        OrderEvent {
            kind: self.kind.clone(),
            at: self.at,
            data: self.data.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    order_id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    at: DateTime<Utc>,
    data: sqlx::types::Json<serde_json::Map<String, Value>>,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    order_id: Uuid,
    #[sqlx(flatten)]
    line: OrderLine,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// How long a driver holds an order it writes. An unfinished order always has a lease; a
/// finished one has none (`lease_until` NULL), which takes it out of the recovery index.
///
/// A transition renews the lease only when less than `step` — the longest one saga step can take —
/// is left, so that every step starts with enough lease to finish in. A checkout that ends well
/// within its first lease never changes `lease_until` again until it ends: its intermediate
/// transitions change no indexed column, and PostgreSQL writes them as HOT updates (no index
/// entries).
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub length: Duration,
    pub step: Duration,
}

/// The `lease_until` a transition to `{to}` sets (`$length` and `$step` are the lease's, in
/// seconds).
const NEXT_LEASE: &str = "CASE WHEN {to} IN ('completed', 'failed') THEN NULL
             WHEN orders.lease_until < now() + make_interval(secs => {step})
                 THEN now() + make_interval(secs => {length})
             ELSE orders.lease_until END";

fn next_lease(to: &str, length: &str, step: &str) -> String {
    NEXT_LEASE
        .replace("{to}", to)
        .replace("{length}", length)
        .replace("{step}", step)
}

/// Orders with their lines and events, in the order of `rows`.
async fn assemble(conn: &mut PgConnection, rows: Vec<OrderRow>) -> Result<Vec<Order>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT order_id, item_id, quantity, unit_price, amount FROM order_lines
         WHERE order_id = ANY($1) ORDER BY order_id, item_id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT order_id, type, at, data FROM order_events WHERE order_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Order {
            order_id: r.id,
            status: r.status,
            failure_code: r.failure_code,
            customer_id: r.customer_id,
            items: lines
                .iter()
                .filter(|l| l.order_id == r.id)
                .map(|l| l.line.clone())
                .collect(),
            total_amount: r.total_amount,
            currency: r.currency,
            reservation_id: r.reservation_id,
            payment_id: r.payment_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            events: events
                .iter()
                .filter(|e| e.order_id == r.id)
                .map(|e| OrderEvent {
                    kind: e.kind.clone(),
                    at: e.at,
                    data: e.data.0.clone(),
                })
                .collect(),
        })
        .collect())
}

/// An order with its lines and events, in one statement.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<FullRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS},
            coalesce((SELECT json_agg(json_build_object(
                          'itemId', item_id, 'quantity', quantity,
                          'unitPrice', unit_price, 'amount', amount) ORDER BY item_id)
                      FROM order_lines WHERE order_id = orders.id), '[]') AS lines,
            coalesce((SELECT json_agg(json_build_object('kind', type, 'at', at, 'data', data)
                                      ORDER BY id)
                      FROM order_events WHERE order_id = orders.id), '[]') AS events
         FROM orders WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        let mut order = r.order.into_order(r.lines.0);
        order.events = r
            .events
            .0
            .into_iter()
            .map(|e| OrderEvent {
                kind: e.kind,
                at: e.at,
                data: e.data,
            })
            .collect();
        order
    }))
}

/// The status of an order, cheaply.
pub async fn status(pool: &PgPool, id: Uuid) -> Result<Option<OrderStatus>, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(status.as_deref().and_then(OrderStatus::parse))
}

pub async fn list(
    pool: &PgPool,
    status: Option<OrderStatus>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Order>, i64), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let status = status.map(OrderStatus::as_str);
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1::text IS NULL OR status = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE ($1::text IS NULL OR status = $1)")
            .bind(status)
            .fetch_one(&mut *conn)
            .await?;
    Ok((assemble(&mut conn, rows).await?, total))
}

pub enum Opened {
    /// A new order; the caller holds its lease.
    New(Order),
    /// The order this Idempotency-Key made before.
    Existing(Order),
    KeyReused,
}

/// Writes the order — its row, lines and `order_created` event, in one statement — before
/// anything else happens, unique by its Idempotency-Key. It is written `reserving`: the first step
/// starts with the write (an order found `pending` was written by an earlier version).
pub async fn open(
    pool: &PgPool,
    request: &CheckoutRequest,
    idem: &IdempotencyContext,
    lease: Lease,
    context: &CallContext,
) -> Result<Opened, sqlx::Error> {
    let items: Vec<i64> = request.lines.iter().map(|l| l.item_id).collect();
    let quantities: Vec<i64> = request.lines.iter().map(|l| l.quantity).collect();
    let inserted: Option<WrittenRow> = sqlx::query_as(&format!(
        "WITH opened AS (
            INSERT INTO orders (id, idempotency_key, request_hash, customer_id, status,
                                lease_until, request_id, traceparent)
            VALUES ($1, $2, $3, $4, 'reserving', now() + make_interval(secs => $5), $6, $7)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING {ORDER_COLUMNS}
        ), lines AS (
            INSERT INTO order_lines (order_id, item_id, quantity)
            SELECT opened.id, l.item_id, l.quantity
            FROM opened, unnest($8::bigint[], $9::bigint[]) AS l(item_id, quantity)
        ), written AS (
            INSERT INTO order_events (order_id, type, data)
            SELECT opened.id, 'order_created', '{{}}' FROM opened
            RETURNING id, order_id, type, at, data
        )
        SELECT opened.*, {events} FROM opened",
        events = written_events("opened")
    ))
    .bind(Uuid::new_v4())
    .bind(&idem.scoped)
    .bind(&idem.fingerprint)
    .bind(&request.customer_id)
    .bind(secs(lease.length))
    .bind(&context.request_id)
    .bind(&context.traceparent)
    .bind(&items)
    .bind(&quantities)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = inserted {
        return Ok(Opened::New(opened_order(request, row)));
    }
    let (existing, hash): (Uuid, String) =
        sqlx::query_as("SELECT id, request_hash FROM orders WHERE idempotency_key = $1")
            .bind(&idem.scoped)
            .fetch_one(pool)
            .await?;
    if hash != idem.fingerprint {
        return Ok(Opened::KeyReused);
    }
    match get(pool, existing).await? {
        Some(order) => Ok(Opened::Existing(order)),
        None => Err(sqlx::Error::RowNotFound),
    }
}

/// An audit event: its type and its own fields.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub data: serde_json::Map<String, Value>,
}

impl Event {
    pub fn new(kind: &'static str) -> Self {
        Event {
            kind,
            data: serde_json::Map::new(),
        }
    }
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.data.insert(name.to_string(), value.into());
        self
    }
}

async fn insert_events(
    conn: &mut PgConnection,
    id: Uuid,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let data: Vec<Value> = events
        .iter()
        .map(|e| Value::Object(e.data.clone()))
        .collect();
    sqlx::query(
        "INSERT INTO order_events (order_id, type, data)
         SELECT $1, e.type, e.data FROM unnest($2::text[], $3::jsonb[]) WITH ORDINALITY AS e(type, data, n)
         ORDER BY e.n",
    )
    .bind(id)
    .bind(&kinds)
    .bind(&data)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends events outside a transition (`order_recovered`, `step_retried`).
pub async fn record(pool: &PgPool, id: Uuid, events: &[Event]) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert_events(&mut conn, id, events).await
}

/// What a transition sets besides the status.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub reservation_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub total_amount: Option<i64>,
    pub currency: Option<String>,
    /// `(item_id, unit_price, amount)` as stock priced them.
    pub prices: Vec<(i64, i64, i64)>,
    pub failure_code: Option<FailureCode>,
    pub refund_needed: Option<bool>,
}

/// Moves an order from `from` to `to` with its changes and events, and renews its lease when it
/// runs short (see [`Lease`]), in one statement. Returns the order as it now is — its lines
/// priced, the events it had plus those just written — or `None`, changing nothing, when the order
/// is no longer in `from` (another driver moved it).
pub async fn transition(
    pool: &PgPool,
    order: &Order,
    to: OrderStatus,
    changes: Changes,
    events: &[Event],
    lease: Lease,
) -> Result<Option<Order>, sqlx::Error> {
    let items: Vec<i64> = changes.prices.iter().map(|p| p.0).collect();
    let prices: Vec<i64> = changes.prices.iter().map(|p| p.1).collect();
    let amounts: Vec<i64> = changes.prices.iter().map(|p| p.2).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let data: Vec<Value> = events
        .iter()
        .map(|e| Value::Object(e.data.clone()))
        .collect();
    let moved: Option<WrittenRow> = sqlx::query_as(&format!(
        "WITH moved AS (
            UPDATE orders SET status = $3,
                reservation_id = COALESCE($4, reservation_id),
                payment_id = COALESCE($5, payment_id),
                total_amount = COALESCE($6, total_amount),
                currency = COALESCE($7, currency),
                failure_code = COALESCE($8, failure_code),
                refund_needed = COALESCE($9, refund_needed),
                lease_until = {lease},
                updated_at = now()
            WHERE id = $1 AND status = $2
            RETURNING {ORDER_COLUMNS}
        ), priced AS (
            UPDATE order_lines SET unit_price = p.unit_price, amount = p.amount
            FROM moved, unnest($11::bigint[], $12::bigint[], $13::bigint[])
                 AS p(item_id, unit_price, amount)
            WHERE order_lines.order_id = moved.id AND order_lines.item_id = p.item_id
        ), written AS (
            INSERT INTO order_events (order_id, type, data)
            SELECT moved.id, e.type, e.data
            FROM moved, unnest($14::text[], $15::jsonb[]) WITH ORDINALITY AS e(type, data, n)
            ORDER BY e.n
            RETURNING id, order_id, type, at, data
        )
        SELECT moved.*, {events} FROM moved",
        lease = next_lease("$3", "$10", "$16"),
        events = written_events("moved")
    ))
    .bind(order.order_id)
    .bind(order.status().as_str())
    .bind(to.as_str())
    .bind(changes.reservation_id)
    .bind(changes.payment_id)
    .bind(changes.total_amount)
    .bind(&changes.currency)
    .bind(changes.failure_code.map(FailureCode::as_str))
    .bind(changes.refund_needed)
    .bind(secs(lease.length))
    .bind(&items)
    .bind(&prices)
    .bind(&amounts)
    .bind(&kinds)
    .bind(&data)
    .bind(secs(lease.step))
    .fetch_optional(pool)
    .await?;
    Ok(moved.map(|row| moved_order(order, &changes, row)))
}

/// The lines of a new order: not priced yet.
fn new_lines(request: &CheckoutRequest) -> Vec<OrderLine> {
    request
        .lines
        .iter()
        .map(|l| OrderLine {
            item_id: l.item_id,
            quantity: l.quantity,
            unit_price: None,
            amount: None,
        })
        .collect()
}

/// The order an open wrote: its row, its lines (not priced yet) and its first event.
fn opened_order(request: &CheckoutRequest, row: WrittenRow) -> Order {
    let events = row.new_events().collect();
    let mut order = row.order.into_order(new_lines(request));
    order.events = events;
    order
}

/// The order as a transition left it: its new row, its lines priced by the transition's changes,
/// and its events — those the driver knew and those the transition wrote.
fn moved_order(order: &Order, changes: &Changes, row: WrittenRow) -> Order {
    let lines = order
        .items
        .iter()
        .map(
            |line| match changes.prices.iter().find(|p| p.0 == line.item_id) {
                Some(&(_, unit_price, amount)) => OrderLine {
                    unit_price: Some(unit_price),
                    amount: Some(amount),
                    ..line.clone()
                },
                None => line.clone(),
            },
        )
        .collect();
    let events = order
        .events
        .iter()
        .cloned()
        .chain(row.new_events())
        .collect();
    let mut moved = row.order.into_order(lines);
    moved.events = events;
    moved
}

/// Whether a compensation must refund.
pub async fn refund_needed(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT refund_needed FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

pub async fn renew_lease(pool: &PgPool, id: Uuid, lease: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND lease_until IS NOT NULL",
    )
    .bind(id)
    .bind(secs(lease))
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
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE orders SET lease_until = now() + make_interval(secs => $2)
         WHERE id IN (
             SELECT id FROM orders
             WHERE lease_until < now()
             ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(limit)
    .bind(secs(lease))
    .fetch_all(pool)
    .await
}

/// Claims one unfinished order if its lease ran out.
pub async fn claim(pool: &PgPool, id: Uuid, lease: Duration) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "UPDATE orders SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND lease_until < now()",
    )
    .bind(id)
    .bind(secs(lease))
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// What an order's calls carry: the request id and trace of the checkout that made it.
pub async fn call_context(pool: &PgPool, id: Uuid) -> Result<CallContext, sqlx::Error> {
    let (request_id, traceparent): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT request_id, traceparent FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(CallContext {
        request_id: request_id
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| Uuid::new_v4().to_string()),
        traceparent,
    })
}

struct OpenJob {
    id: Uuid,
    key: String,
    fingerprint: String,
    customer_id: Option<String>,
    context: CallContext,
    lines: Vec<(i64, i64)>,
}

struct TransitionJob {
    id: Uuid,
    from: OrderStatus,
    to: OrderStatus,
    changes: Changes,
    events: Vec<Event>,
}

/// The order's writes on the checkout path — opening an order and moving it — group-committed
/// (see [`shared::batch`]): orders opened or moved at the same time share one statement and one
/// commit. Each means the same as [`open`] and [`transition`], which a request the batch cannot
/// take goes through alone.
#[derive(Clone)]
pub struct Writes {
    pool: PgPool,
    lease: Lease,
    opens: Batcher<OpenJob, Batched<WrittenRow>>,
    transitions: Batcher<TransitionJob, Batched<Option<WrittenRow>>>,
}

impl Writes {
    /// Starts the batch tasks (on the current runtime); `batch` is the largest batch.
    pub fn start(pool: PgPool, lease: Lease, batch: usize) -> Self {
        let opens = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs| {
                let pool = pool.clone();
                async move { open_batch(&pool, lease, jobs).await }
            })
        };
        let transitions = {
            let pool = pool.clone();
            Batcher::start(batch, move |jobs| {
                let pool = pool.clone();
                async move { transition_batch(&pool, lease, jobs).await }
            })
        };
        Writes {
            pool,
            lease,
            opens,
            transitions,
        }
    }

    /// [`open`], in the next batch.
    pub async fn open(
        &self,
        request: &CheckoutRequest,
        idem: &IdempotencyContext,
        context: &CallContext,
    ) -> Result<Opened, sqlx::Error> {
        let job = OpenJob {
            id: Uuid::new_v4(),
            key: idem.scoped.clone(),
            fingerprint: idem.fingerprint.clone(),
            customer_id: request.customer_id.clone(),
            context: context.clone(),
            lines: request
                .lines
                .iter()
                .map(|l| (l.item_id, l.quantity))
                .collect(),
        };
        if let Some(Batched::Done(row)) = self.opens.run(job).await {
            return Ok(Opened::New(opened_order(request, row)));
        }
        // Written already under this key, or the batch could not take it.
        open(&self.pool, request, idem, self.lease, context).await
    }

    /// [`transition`], in the next batch.
    pub async fn transition(
        &self,
        order: &Order,
        to: OrderStatus,
        changes: Changes,
        events: &[Event],
    ) -> Result<Option<Order>, sqlx::Error> {
        let job = TransitionJob {
            id: order.order_id,
            from: order.status(),
            to,
            changes: changes.clone(),
            events: events.to_vec(),
        };
        match self.transitions.run(job).await {
            Some(Batched::Done(moved)) => Ok(moved.map(|row| moved_order(order, &changes, row))),
            _ => transition(&self.pool, order, to, changes, events, self.lease).await,
        }
    }
}

/// Opens a batch of orders in one statement; an order whose key is taken is not written.
async fn open_batch(pool: &PgPool, lease: Lease, jobs: Vec<OpenJob>) -> Vec<Batched<WrittenRow>> {
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
    for job in &jobs {
        for &(item, quantity) in &job.lines {
            line_order.push(job.id);
            line_item.push(item);
            line_quantity.push(quantity);
        }
    }
    let opened: Result<Vec<WrittenRow>, sqlx::Error> = sqlx::query_as(&format!(
        "WITH opening AS (
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
            RETURNING {ORDER_COLUMNS}
        ), lines AS (
            INSERT INTO order_lines (order_id, item_id, quantity)
            SELECT l.order_id, l.item_id, l.quantity
            FROM unnest($8::uuid[], $9::bigint[], $10::bigint[]) AS l(order_id, item_id, quantity)
            WHERE l.order_id IN (SELECT id FROM opened)
        ), written AS (
            INSERT INTO order_events (order_id, type, data)
            SELECT id, 'order_created', '{{}}' FROM opened
            RETURNING id, order_id, type, at, data
        )
        SELECT opened.*, {events} FROM opened",
        events = written_events("opened")
    ))
    .bind(&ids)
    .bind(&keys)
    .bind(&hashes)
    .bind(&customers)
    .bind(&request_ids)
    .bind(&traceparents)
    .bind(secs(lease.length))
    .bind(&line_order)
    .bind(&line_item)
    .bind(&line_quantity)
    .fetch_all(pool)
    .await;
    let rows = opened.unwrap_or_else(|e| {
        tracing::warn!(error = %e, size = jobs.len(), "an order batch failed; its requests go alone");
        Vec::new()
    });
    Batched::matched(&jobs, rows, |j| j.id, |r| r.order.id)
}

/// Moves a batch of orders in one statement, each only if it is still in its `from` state. An
/// order that appears twice (two drivers racing) is moved alone after the batch.
async fn transition_batch(
    pool: &PgPool,
    lease: Lease,
    jobs: Vec<TransitionJob>,
) -> Vec<Batched<Option<WrittenRow>>> {
    let first = first_of_each(&jobs, |j| j.id);
    let batch: Vec<&TransitionJob> = jobs
        .iter()
        .zip(&first)
        .filter(|(_, first)| **first)
        .map(|(job, _)| job)
        .collect();
    let ids: Vec<Uuid> = batch.iter().map(|j| j.id).collect();
    let from: Vec<&str> = batch.iter().map(|j| j.from.as_str()).collect();
    let to: Vec<&str> = batch.iter().map(|j| j.to.as_str()).collect();
    let reservation: Vec<Option<Uuid>> = batch.iter().map(|j| j.changes.reservation_id).collect();
    let payment: Vec<Option<Uuid>> = batch.iter().map(|j| j.changes.payment_id).collect();
    let total: Vec<Option<i64>> = batch.iter().map(|j| j.changes.total_amount).collect();
    let currency: Vec<Option<&str>> = batch
        .iter()
        .map(|j| j.changes.currency.as_deref())
        .collect();
    let failure: Vec<Option<&str>> = batch
        .iter()
        .map(|j| j.changes.failure_code.map(FailureCode::as_str))
        .collect();
    let refund: Vec<Option<bool>> = batch.iter().map(|j| j.changes.refund_needed).collect();
    let (mut price_order, mut price_item, mut unit_price, mut amount) =
        (vec![], vec![], vec![], vec![]);
    let (mut event_order, mut kinds, mut data) = (vec![], vec![], vec![]);
    for job in &batch {
        for &(item, price, line_amount) in &job.changes.prices {
            price_order.push(job.id);
            price_item.push(item);
            unit_price.push(price);
            amount.push(line_amount);
        }
        for event in &job.events {
            event_order.push(job.id);
            kinds.push(event.kind);
            data.push(Value::Object(event.data.clone()));
        }
    }
    let moved: Result<Vec<WrittenRow>, sqlx::Error> = sqlx::query_as(&format!(
        "WITH moving AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[],
                                 $6::bigint[], $7::text[], $8::text[], $9::bool[])
                AS m(id, from_status, to_status, reservation_id, payment_id, total_amount,
                     currency, failure_code, refund_needed)
        ), moved AS (
            UPDATE orders SET status = m.to_status,
                reservation_id = COALESCE(m.reservation_id, orders.reservation_id),
                payment_id = COALESCE(m.payment_id, orders.payment_id),
                total_amount = COALESCE(m.total_amount, orders.total_amount),
                currency = COALESCE(m.currency, orders.currency),
                failure_code = COALESCE(m.failure_code, orders.failure_code),
                refund_needed = COALESCE(m.refund_needed, orders.refund_needed),
                lease_until = {lease},
                updated_at = now()
            FROM moving m
            WHERE orders.id = m.id AND orders.status = m.from_status
            RETURNING orders.id, orders.status, orders.failure_code, orders.customer_id,
                      orders.total_amount, orders.currency::text AS currency,
                      orders.reservation_id, orders.payment_id, orders.created_at,
                      orders.updated_at
        ), priced AS (
            UPDATE order_lines SET unit_price = p.unit_price, amount = p.amount
            FROM unnest($11::uuid[], $12::bigint[], $13::bigint[], $14::bigint[])
                 AS p(order_id, item_id, unit_price, amount)
            WHERE p.order_id IN (SELECT id FROM moved)
              AND order_lines.order_id = p.order_id AND order_lines.item_id = p.item_id
        ), written AS (
            INSERT INTO order_events (order_id, type, data)
            SELECT e.order_id, e.type, e.data
            FROM unnest($15::uuid[], $16::text[], $17::jsonb[]) WITH ORDINALITY
                 AS e(order_id, type, data, n)
            WHERE e.order_id IN (SELECT id FROM moved)
            ORDER BY e.n
            RETURNING id, order_id, type, at, data
        )
        SELECT moved.*, {events} FROM moved",
        lease = next_lease("m.to_status", "$10", "$18"),
        events = written_events("moved")
    ))
    .bind(&ids)
    .bind(&from)
    .bind(&to)
    .bind(&reservation)
    .bind(&payment)
    .bind(&total)
    .bind(&currency)
    .bind(&failure)
    .bind(&refund)
    .bind(secs(lease.length))
    .bind(&price_order)
    .bind(&price_item)
    .bind(&unit_price)
    .bind(&amount)
    .bind(&event_order)
    .bind(&kinds)
    .bind(&data)
    .bind(secs(lease.step))
    .fetch_all(pool)
    .await;
    let mut rows: HashMap<Uuid, WrittenRow> = match moved {
        Ok(rows) => rows.into_iter().map(|r| (r.order.id, r)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, size = jobs.len(), "a transition batch failed; its orders move alone");
            return jobs.iter().map(|_| Batched::Alone).collect();
        }
    };
    jobs.iter()
        .zip(first)
        .map(|(job, first)| {
            if first {
                Batched::Done(rows.remove(&job.id))
            } else {
                Batched::Alone
            }
        })
        .collect()
}
