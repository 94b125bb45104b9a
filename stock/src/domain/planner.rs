//! Deciding a reservation against the items as they are: all lines or none.

use shared::contract::values::{Currency, ItemId};

/// An item as the planner needs it.
#[derive(Debug, Clone)]
pub struct ItemState {
    pub id: ItemId,
    pub price: i64,
    pub currency: Currency,
    /// Units that can still be reserved (`i64::MAX` when unknown: the write decides).
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
    pub currency: Currency,
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

/// Decides a reservation of `lines` (item, units) against `items`: all lines or none.
pub fn plan(lines: &[(ItemId, i64)], items: &[ItemState]) -> Result<Plan, Rejection> {
    let mut found = Vec::with_capacity(lines.len());
    for &(item_id, quantity) in lines {
        let item = items
            .iter()
            .find(|i| i.id == item_id)
            .ok_or(Rejection::ItemNotFound(item_id))?;
        found.push((quantity, item));
    }
    let Some(currency) = found.first().map(|(_, i)| i.currency) else {
        // A request always has lines; an empty plan reserves nothing.
        return Err(Rejection::MixedCurrency);
    };
    if found.iter().any(|(_, i)| i.currency != currency) {
        return Err(Rejection::MixedCurrency);
    }
    let mut planned = Vec::with_capacity(found.len());
    let mut total: i64 = 0;
    for (quantity, item) in found {
        if item.available < quantity {
            return Err(Rejection::InsufficientStock {
                item_id: item.id,
                requested: quantity,
                available: item.available.max(0),
            });
        }
        // At most 10^10 × 50,000 per line and 50 lines: far below i64::MAX; saturating all the
        // same, so that no input can make it wrap.
        let amount = item.price.saturating_mul(quantity);
        total = total.saturating_add(amount);
        planned.push(PlannedLine {
            item_id: item.id,
            quantity,
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

    fn id(n: i64) -> ItemId {
        ItemId::new(n).unwrap()
    }

    fn item(n: i64, price: i64, currency: &str, available: i64) -> ItemState {
        ItemState {
            id: id(n),
            price,
            currency: Currency::parse(currency).unwrap(),
            available,
        }
    }

    #[test]
    fn plan_prices_every_line_and_totals() {
        let items = [item(1, 1000, "USD", 10), item(2, 250, "USD", 3)];
        let p = plan(&[(id(1), 2), (id(2), 3)], &items).unwrap();
        assert_eq!(p.total_amount, 2750);
        assert_eq!(p.currency.as_str(), "USD");
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
            plan(&[(id(1), 1), (id(2), 4)], &items),
            Err(Rejection::InsufficientStock {
                item_id: id(2),
                requested: 4,
                available: 3
            })
        );
        assert_eq!(
            plan(&[(id(1), 1), (id(9), 1)], &items),
            Err(Rejection::ItemNotFound(id(9)))
        );
        assert_eq!(
            plan(&[(id(1), 1), (id(3), 1)], &items),
            Err(Rejection::MixedCurrency)
        );
        // Unknown items win over stock, whatever the line order.
        assert_eq!(
            plan(&[(id(2), 99), (id(9), 1)], &items),
            Err(Rejection::ItemNotFound(id(9)))
        );
    }
}
