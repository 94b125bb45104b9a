//! The resources as the API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: i64,
    pub name: String,
    /// Minor units of `currency`.
    pub price: i64,
    pub currency: String,
    pub stock: i64,
    pub reserved: i64,
    /// `stock - reserved`.
    pub available: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ReservationLine {
    pub item_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub order_id: String,
    /// `reserved | completed | canceled | expired`
    pub status: String,
    pub items: Vec<ReservationLine>,
    pub total_amount: i64,
    pub currency: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `/release` answers for an order that had no reservation: the tombstone it left.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanceledOrder {
    pub order_id: String,
    pub status: &'static str,
}

impl CanceledOrder {
    pub fn new(order_id: String) -> Self {
        CanceledOrder {
            order_id,
            status: "canceled",
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemList {
    pub items: Vec<Item>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}
