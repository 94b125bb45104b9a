use serde::Deserialize;
use shared::validate::{self, Currency};
use shared::Problem;
use utoipa::ToSchema;

pub const MAX_PRICE: i64 = 10_000_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_RESTOCK: i64 = 1_000_000;
pub const MAX_NAME: usize = 200;

/// A positive item id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId(pub i64);

impl ItemId {
    pub fn parse(field: &str, raw: i64) -> Result<Self, Problem> {
        validate::in_range(field, raw, 1, i64::MAX).map(ItemId)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewItemBody {
    pub name: String,
    /// Minor units.
    pub price: i64,
    pub currency: String,
    pub stock: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub name: String,
    pub price: i64,
    pub currency: Currency,
    pub stock: i64,
}

impl TryFrom<NewItemBody> for NewItem {
    type Error = Problem;
    fn try_from(body: NewItemBody) -> Result<Self, Problem> {
        Ok(NewItem {
            name: validate::text("name", &body.name, MAX_NAME)?,
            price: validate::in_range("price", body.price, 1, MAX_PRICE)?,
            currency: Currency::parse("currency", &body.currency)?,
            stock: validate::in_range("stock", body.stock, 0, MAX_STOCK)?,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockBody {
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestockQuantity(pub i64);

impl TryFrom<RestockBody> for RestockQuantity {
    type Error = Problem;
    fn try_from(body: RestockBody) -> Result<Self, Problem> {
        validate::in_range("quantity", body.quantity, 1, MAX_RESTOCK).map(RestockQuantity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str, price: i64, currency: &str, stock: i64) -> NewItemBody {
        NewItemBody {
            name: name.into(),
            price,
            currency: currency.into(),
            stock,
        }
    }

    #[test]
    fn a_valid_item_parses() {
        let item = NewItem::try_from(body(" Mug ", 1000, "USD", 0)).unwrap();
        assert_eq!(item.name, "Mug");
        assert_eq!(item.currency.as_str(), "USD");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (body("", 1, "USD", 1), "name"),
            (body("x", 0, "USD", 1), "price"),
            (body("x", MAX_PRICE + 1, "USD", 1), "price"),
            (body("x", 1, "usd", 1), "currency"),
            (body("x", 1, "USD", -1), "stock"),
        ];
        for (b, field) in cases {
            let e = NewItem::try_from(b).unwrap_err();
            assert!(e.detail.starts_with(field), "{} / {field}", e.detail);
        }
    }

    #[test]
    fn restock_quantity_is_positive_and_bounded() {
        assert!(RestockQuantity::try_from(RestockBody { quantity: 5 }).is_ok());
        assert!(RestockQuantity::try_from(RestockBody { quantity: 0 }).is_err());
        assert!(RestockQuantity::try_from(RestockBody {
            quantity: MAX_RESTOCK + 1
        })
        .is_err());
    }
}
