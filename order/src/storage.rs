//! PostgreSQL access for orders. Every saga transition is one transaction: a conditional update
//! (`WHERE status = <from>`, so two drivers can never both record a step) plus its audit events.

use crate::domain::{CheckoutRequest, FailureCode, Order, OrderEvent, OrderLine, OrderStatus};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::http_client::CallContext;
use shared::idempotency::IdempotencyContext;
use sqlx::{PgConnection, PgPool};
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

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let row: Option<OrderRow> =
        sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    match row {
        Some(row) => Ok(assemble(&mut conn, vec![row]).await?.pop()),
        None => Ok(None),
    }
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

/// Writes the order before anything else happens, unique by its Idempotency-Key.
pub async fn open(
    pool: &PgPool,
    request: &CheckoutRequest,
    idem: &IdempotencyContext,
    lease: Duration,
    context: &CallContext,
) -> Result<Opened, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = Uuid::new_v4();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO orders (id, idempotency_key, request_hash, customer_id, status, lease_until,
                             request_id, traceparent)
         VALUES ($1, $2, $3, $4, 'pending', now() + make_interval(secs => $5), $6, $7)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&idem.scoped)
    .bind(&idem.fingerprint)
    .bind(&request.customer_id)
    .bind(secs(lease))
    .bind(&context.request_id)
    .bind(&context.traceparent)
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        tx.rollback().await?;
        let (existing, hash): (Uuid, String) =
            sqlx::query_as("SELECT id, request_hash FROM orders WHERE idempotency_key = $1")
                .bind(&idem.scoped)
                .fetch_one(pool)
                .await?;
        if hash != idem.fingerprint {
            return Ok(Opened::KeyReused);
        }
        return Ok(match get(pool, existing).await? {
            Some(order) => Opened::Existing(order),
            None => return Err(sqlx::Error::RowNotFound),
        });
    }
    let items: Vec<i64> = request.lines.iter().map(|l| l.item_id).collect();
    let quantities: Vec<i64> = request.lines.iter().map(|l| l.quantity).collect();
    sqlx::query(
        "INSERT INTO order_lines (order_id, item_id, quantity)
         SELECT $1, l.item_id, l.quantity FROM unnest($2::bigint[], $3::bigint[]) AS l(item_id, quantity)",
    )
    .bind(id)
    .bind(&items)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    insert_events(&mut tx, id, &[Event::new("order_created")]).await?;
    let row: OrderRow =
        sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let order = assemble(&mut tx, vec![row])
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    Ok(Opened::New(order))
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

/// Moves an order from `from` to `to` with its changes and events, and renews its lease. Returns
/// false, changing nothing, when the order is no longer in `from` (another driver moved it).
pub async fn transition(
    pool: &PgPool,
    id: Uuid,
    from: OrderStatus,
    to: OrderStatus,
    changes: Changes,
    events: &[Event],
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE orders SET status = $3,
                reservation_id = COALESCE($4, reservation_id),
                payment_id = COALESCE($5, payment_id),
                total_amount = COALESCE($6, total_amount),
                currency = COALESCE($7, currency),
                failure_code = COALESCE($8, failure_code),
                refund_needed = COALESCE($9, refund_needed),
                lease_until = now() + make_interval(secs => $10),
                updated_at = now()
         WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(changes.reservation_id)
    .bind(changes.payment_id)
    .bind(changes.total_amount)
    .bind(&changes.currency)
    .bind(changes.failure_code.map(FailureCode::as_str))
    .bind(changes.refund_needed)
    .bind(secs(lease))
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if !changes.prices.is_empty() {
        let items: Vec<i64> = changes.prices.iter().map(|p| p.0).collect();
        let prices: Vec<i64> = changes.prices.iter().map(|p| p.1).collect();
        let amounts: Vec<i64> = changes.prices.iter().map(|p| p.2).collect();
        sqlx::query(
            "UPDATE order_lines SET unit_price = p.unit_price, amount = p.amount
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS p(item_id, unit_price, amount)
             WHERE order_lines.order_id = $1 AND order_lines.item_id = p.item_id",
        )
        .bind(id)
        .bind(&items)
        .bind(&prices)
        .bind(&amounts)
        .execute(&mut *tx)
        .await?;
    }
    insert_events(&mut tx, id, events).await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether a compensation must refund.
pub async fn refund_needed(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT refund_needed FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

pub async fn renew_lease(pool: &PgPool, id: Uuid, lease: Duration) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET lease_until = now() + make_interval(secs => $2) WHERE id = $1")
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
             WHERE status NOT IN ('completed', 'failed') AND lease_until < now()
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
         WHERE id = $1 AND status NOT IN ('completed', 'failed') AND lease_until < now()",
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
