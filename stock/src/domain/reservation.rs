use super::item::ItemId;
use serde::Deserialize;
use shared::cart::{self, Line, LineBody};
use shared::validate;
use shared::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

pub const MAX_ORDER_ID: usize = 128;

/// `{"orderId","items":[...]}` or the one-line form `{"orderId","itemId","quantity"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReserveBody {
    pub order_id: String,
    pub items: Option<Vec<LineBody>>,
    pub item_id: Option<i64>,
    pub quantity: Option<i64>,
}

/// A reservation request: lines sorted by item id with repeated items merged (see
/// [`shared::cart::parse_lines`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveRequest {
    pub order_id: String,
    pub lines: Vec<Line>,
}

impl TryFrom<ReserveBody> for ReserveRequest {
    type Error = Problem;
    fn try_from(body: ReserveBody) -> Result<Self, Problem> {
        Ok(ReserveRequest {
            order_id: validate::identifier("orderId", &body.order_id, MAX_ORDER_ID)?,
            lines: cart::parse_lines(body.items, body.item_id, body.quantity)?,
        })
    }
}

/// `{"reservationId"}` or `{"orderId"}`, for release and complete.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetBody {
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Reservation(Uuid),
    Order(String),
}

impl TryFrom<TargetBody> for Target {
    type Error = Problem;
    fn try_from(body: TargetBody) -> Result<Self, Problem> {
        match (body.reservation_id, body.order_id) {
            (Some(id), None) => Uuid::parse_str(&id)
                .map(Target::Reservation)
                .map_err(|_| Problem::validation("reservationId: must be a UUID")),
            (None, Some(order)) => {
                validate::identifier("orderId", &order, MAX_ORDER_ID).map(Target::Order)
            }
            _ => Err(Problem::validation(
                "reservationId: give exactly one of reservationId or orderId",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Completed,
    Canceled,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "reserved" => Self::Reserved,
            "completed" => Self::Completed,
            "canceled" => Self::Canceled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// An item as the planner needs it, read under lock.
#[derive(Debug, Clone)]
pub struct ItemState {
    pub id: ItemId,
    pub price: i64,
    pub currency: String,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedLine {
    pub item_id: ItemId,
    pub quantity: i64,
    pub unit_price: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub lines: Vec<PlannedLine>,
    pub total_amount: i64,
    pub currency: String,
}

/// Why a reservation cannot be made. Unknown items are reported before currencies, currencies
/// before stock, so the answer does not depend on line order.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    ItemNotFound(ItemId),
    MixedCurrency,
    InsufficientStock {
        item_id: ItemId,
        requested: i64,
        available: i64,
    },
}

/// Decides a reservation against the current items: all lines or none.
pub fn plan(lines: &[Line], items: &[ItemState]) -> Result<Plan, Rejection> {
    let mut found = Vec::with_capacity(lines.len());
    for line in lines {
        let item = items
            .iter()
            .find(|i| i.id == ItemId(line.item_id))
            .ok_or(Rejection::ItemNotFound(ItemId(line.item_id)))?;
        found.push((line, item));
    }
    let currency = found
        .first()
        .map(|(_, i)| i.currency.clone())
        .unwrap_or_default();
    if found.iter().any(|(_, i)| i.currency != currency) {
        return Err(Rejection::MixedCurrency);
    }
    let mut planned = Vec::with_capacity(found.len());
    let mut total: i64 = 0;
    for (line, item) in found {
        if item.available < line.quantity {
            return Err(Rejection::InsufficientStock {
                item_id: item.id,
                requested: line.quantity,
                available: item.available.max(0),
            });
        }
        // Bounded by MAX_PRICE * MAX_QUANTITY * MAX_LINES, far below i64::MAX.
        let amount = item.price.saturating_mul(line.quantity);
        total = total.saturating_add(amount);
        planned.push(PlannedLine {
            item_id: item.id,
            quantity: line.quantity,
            unit_price: item.price,
            amount,
        });
    }
    Ok(Plan {
        lines: planned,
        total_amount: total,
        currency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<ReserveRequest, Problem> {
        let b: ReserveBody = serde_json::from_str(json).unwrap();
        ReserveRequest::try_from(b)
    }

    fn item(id: i64, price: i64, currency: &str, available: i64) -> ItemState {
        ItemState {
            id: ItemId(id),
            price,
            currency: currency.into(),
            available,
        }
    }

    fn line(id: i64, quantity: i64) -> Line {
        Line {
            item_id: id,
            quantity,
        }
    }

    #[test]
    fn both_forms_parse_with_an_order_id() {
        let r = body(r#"{"orderId":"o1","itemId":3,"quantity":2}"#).unwrap();
        assert_eq!(
            (r.order_id.as_str(), r.lines.clone()),
            ("o1", vec![line(3, 2)])
        );
        let r = body(
            r#"{"orderId":"o1","items":[{"itemId":5,"quantity":1},{"itemId":2,"quantity":1}]}"#,
        )
        .unwrap();
        assert_eq!(r.lines, vec![line(2, 1), line(5, 1)]);
        assert!(body(r#"{"orderId":"","itemId":1,"quantity":1}"#)
            .unwrap_err()
            .detail
            .starts_with("orderId"));
        assert!(body(r#"{"orderId":"o","itemId":1,"quantity":0}"#)
            .unwrap_err()
            .detail
            .starts_with("quantity"));
    }

    #[test]
    fn targets_need_exactly_one_valid_id() {
        let t = |json: &str| Target::try_from(serde_json::from_str::<TargetBody>(json).unwrap());
        assert_eq!(
            t(r#"{"orderId":"o1"}"#).unwrap(),
            Target::Order("o1".into())
        );
        assert!(matches!(
            t(r#"{"reservationId":"6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e"}"#).unwrap(),
            Target::Reservation(_)
        ));
        assert!(t(r#"{"reservationId":"nope"}"#).is_err());
        assert!(t("{}").is_err());
        assert!(
            t(r#"{"orderId":"o","reservationId":"6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e"}"#).is_err()
        );
    }

    #[test]
    fn plan_prices_every_line_and_totals() {
        let items = [item(1, 1000, "USD", 10), item(2, 250, "USD", 3)];
        let p = plan(&[line(1, 2), line(2, 3)], &items).unwrap();
        assert_eq!(p.total_amount, 2750);
        assert_eq!(p.currency, "USD");
        assert_eq!(p.lines[1].amount, 750);
    }

    #[test]
    fn plan_is_all_or_nothing() {
        let items = [
            item(1, 1000, "USD", 10),
            item(2, 250, "USD", 3),
            item(3, 5, "EUR", 9),
        ];
        assert_eq!(
            plan(&[line(1, 1), line(2, 4)], &items),
            Err(Rejection::InsufficientStock {
                item_id: ItemId(2),
                requested: 4,
                available: 3
            })
        );
        assert_eq!(
            plan(&[line(1, 1), line(9, 1)], &items),
            Err(Rejection::ItemNotFound(ItemId(9)))
        );
        assert_eq!(
            plan(&[line(1, 1), line(3, 1)], &items),
            Err(Rejection::MixedCurrency)
        );
        // Unknown items win over stock, whatever the line order.
        assert_eq!(
            plan(&[line(2, 99), line(9, 1)], &items),
            Err(Rejection::ItemNotFound(ItemId(9)))
        );
    }
}
