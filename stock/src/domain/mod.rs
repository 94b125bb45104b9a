//! The stock domain: what a reservation request is once parsed, and the pure rules that decide it
//! (the planner). No I/O here.

pub mod planner;

pub use planner::{plan, ItemState, Plan, PlannedLine, Rejection};

use shared::contract::stock as contract;
use shared::contract::values::{Attempt, ItemId, OrderRef};

/// A reservation request: the order and its attempt, and the units wanted of each item, sorted by
/// item id with repeated items added together, so that rows are always locked in the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveRequest {
    pub order_id: OrderRef,
    pub attempt: Attempt,
    pub lines: Vec<(ItemId, i64)>,
}

impl From<contract::ReserveRequest> for ReserveRequest {
    fn from(body: contract::ReserveRequest) -> Self {
        ReserveRequest {
            lines: body.items.merged(),
            order_id: body.order_id,
            attempt: body.attempt,
        }
    }
}
