//! Cart lines, as both stock's `/reserve` and order's `/checkout` take them: `"items":[{"itemId",
//! "quantity"}]` (1 to 50 lines), or the one-line form `"itemId","quantity"` that existing clients
//! send.

use super::values::{Invalid, ItemId, Quantity};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

pub const MAX_LINES: usize = 50;

/// One line of a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CartLine {
    pub item_id: ItemId,
    pub quantity: Quantity,
}

/// The lines of a cart: 1 to 50.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CartLines(Vec<CartLine>);

impl CartLines {
    pub fn new(lines: Vec<CartLine>) -> Result<Self, Invalid> {
        if lines.is_empty() {
            Err(Invalid("must contain at least one line".into()))
        } else if lines.len() > MAX_LINES {
            Err(Invalid(format!("must contain at most {MAX_LINES} lines")))
        } else {
            Ok(CartLines(lines))
        }
    }

    pub fn lines(&self) -> &[CartLine] {
        &self.0
    }

    /// The units wanted of each item, sorted by item id, lines of the same item added together
    /// (so that rows are always locked in the same order downstream). A merged line may exceed
    /// one line's 1,000 units: it is bounded by 50 lines of 1,000.
    pub fn merged(&self) -> Vec<(ItemId, i64)> {
        let mut merged: Vec<(ItemId, i64)> = Vec::with_capacity(self.0.len());
        for line in &self.0 {
            match merged.iter_mut().find(|(item, _)| *item == line.item_id) {
                Some((_, units)) => *units += line.quantity.get(),
                None => merged.push((line.item_id, line.quantity.get())),
            }
        }
        merged.sort_by_key(|(item, _)| *item);
        merged
    }
}

impl<'de> Deserialize<'de> for CartLines {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CartLines::new(Vec::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl PartialSchema for CartLines {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(CartLine::schema())
            .min_items(Some(1))
            .max_items(Some(MAX_LINES))
            .into()
    }
}

impl ToSchema for CartLines {}

/// Makes the lines of a body from either of its forms: `items`, or `itemId` and `quantity`.
pub fn either_form(
    items: Option<CartLines>,
    item_id: Option<ItemId>,
    quantity: Option<Quantity>,
) -> Result<CartLines, Invalid> {
    match (items, item_id, quantity) {
        (Some(items), None, None) => Ok(items),
        (None, Some(item_id), Some(quantity)) => {
            Ok(CartLines(vec![CartLine { item_id, quantity }]))
        }
        (Some(_), _, _) => Err(Invalid(
            "items: give either items or itemId and quantity, not both".into(),
        )),
        (None, None, _) => Err(Invalid("items: missing field `items`".into())),
        (None, Some(_), None) => Err(Invalid("quantity: missing field `quantity`".into())),
    }
}

/// `schema`, or `null`.
pub(crate) fn nullable(schema: RefOr<Schema>) -> RefOr<Schema> {
    use utoipa::openapi::schema::{OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(schema)
        .into()
}

/// The schema of a body that carries a cart in either form beside `members` (name, schema,
/// required): `oneOf` the list form and the one-line form, each closed to other members.
pub fn either_form_schema(members: &[(&str, RefOr<Schema>, bool)]) -> RefOr<Schema> {
    let form = |lines: &[(&str, RefOr<Schema>)]| {
        let mut object =
            ObjectBuilder::new().additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, schema, required) in members {
            if *required {
                object = object.property(*name, schema.clone()).required(*name);
            } else {
                // An optional member may also be given as `null`, which means the same as leaving
                // it out.
                object = object.property(*name, nullable(schema.clone()));
            }
        }
        for (name, schema) in lines {
            object = object.property(*name, schema.clone()).required(*name);
        }
        object.build()
    };
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(form(&[("items", CartLines::schema())]))
        .item(form(&[
            ("itemId", ItemId::schema()),
            ("quantity", Quantity::schema()),
        ]))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(item: i64, quantity: i64) -> CartLine {
        CartLine {
            item_id: ItemId::new(item).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
        }
    }

    #[test]
    fn both_forms_make_lines_and_repeated_items_merge_sorted() {
        let one = either_form(
            None,
            Some(ItemId::new(3).unwrap()),
            Some(Quantity::new(2).unwrap()),
        )
        .unwrap();
        assert_eq!(one.lines(), [line(3, 2)]);
        let lines = CartLines::new(vec![line(5, 1), line(2, 1), line(5, 1000)]).unwrap();
        let merged: Vec<(i64, i64)> = lines.merged().iter().map(|(i, u)| (i.get(), *u)).collect();
        assert_eq!(merged, [(2, 1), (5, 1001)]);
    }

    #[test]
    fn bad_carts_name_the_field() {
        let parse = |json: &str| serde_json::from_str::<CartLines>(json).map_err(|e| e.to_string());
        assert!(parse("[]").unwrap_err().contains("at least one line"));
        let many = format!("[{}]", vec![r#"{"itemId":1,"quantity":1}"#; 51].join(","));
        assert!(parse(&many).unwrap_err().contains("at most 50 lines"));
        assert!(parse(r#"[{"itemId":1,"quantity":0}]"#).is_err());
        assert!(parse(r#"[{"itemId":0,"quantity":1}]"#).is_err());
        assert!(parse(r#"[{"itemId":1,"quantity":1,"x":1}]"#).is_err());
        let id = || Some(ItemId::new(1).unwrap());
        let q = || Some(Quantity::new(1).unwrap());
        let lines = || Some(CartLines::new(vec![line(1, 1)]).unwrap());
        for (result, prefix) in [
            (either_form(lines(), id(), q()), "items: give either"),
            (either_form(lines(), id(), None), "items: give either"),
            (either_form(None, None, None), "items: missing"),
            (either_form(None, None, q()), "items: missing"),
            (either_form(None, id(), None), "quantity: missing"),
        ] {
            assert!(result.unwrap_err().0.starts_with(prefix), "{prefix}");
        }
    }
}
