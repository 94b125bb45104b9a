//! Cart lines, as both stock's `/reserve` and order's `/checkout` take them: `"items":[{"itemId",
//! "quantity"}]` or the one-line form `"itemId","quantity"`.

use crate::problem::Problem;
use crate::validate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 1000;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LineBody {
    pub item_id: i64,
    pub quantity: i64,
}

/// A valid cart line: a positive item id and 1..=1000 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub item_id: i64,
    pub quantity: i64,
}

/// Parses either form into lines sorted by item id with repeated items merged, so that rows are
/// always locked in the same order downstream.
pub fn parse_lines(
    items: Option<Vec<LineBody>>,
    item_id: Option<i64>,
    quantity: Option<i64>,
) -> Result<Vec<Line>, Problem> {
    let raw: Vec<(String, LineBody)> = match (items, item_id, quantity) {
        (Some(items), None, None) => items
            .into_iter()
            .enumerate()
            .map(|(i, l)| (format!("items[{i}]"), l))
            .collect(),
        (None, Some(item_id), Some(quantity)) => {
            vec![(String::new(), LineBody { item_id, quantity })]
        }
        (Some(_), _, _) => {
            return Err(Problem::validation(
                "items: give either items or itemId and quantity, not both",
            ))
        }
        (None, None, _) => return Err(Problem::validation("items: missing field `items`")),
        (None, Some(_), None) => {
            return Err(Problem::validation("quantity: missing field `quantity`"))
        }
    };
    if raw.is_empty() {
        return Err(Problem::validation("items: must contain at least one line"));
    }
    if raw.len() > MAX_LINES {
        return Err(Problem::validation(format!(
            "items: must contain at most {MAX_LINES} lines"
        )));
    }
    let mut lines: Vec<Line> = Vec::with_capacity(raw.len());
    for (prefix, line) in raw {
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        let item_id = validate::in_range(&field("itemId"), line.item_id, 1, i64::MAX)?;
        let quantity = validate::in_range(&field("quantity"), line.quantity, 1, MAX_QUANTITY)?;
        match lines.iter_mut().find(|l| l.item_id == item_id) {
            Some(existing) => {
                existing.quantity = validate::in_range(
                    &field("quantity"),
                    existing.quantity + quantity,
                    1,
                    MAX_QUANTITY,
                )?
            }
            None => lines.push(Line { item_id, quantity }),
        }
    }
    lines.sort_by_key(|l| l.item_id);
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(item_id: i64, quantity: i64) -> Line {
        Line { item_id, quantity }
    }

    fn body(item_id: i64, quantity: i64) -> LineBody {
        LineBody { item_id, quantity }
    }

    #[test]
    fn both_forms_parse_and_lines_are_sorted_and_merged() {
        assert_eq!(
            parse_lines(None, Some(3), Some(2)).unwrap(),
            vec![line(3, 2)]
        );
        let lines =
            parse_lines(Some(vec![body(5, 1), body(2, 1), body(5, 3)]), None, None).unwrap();
        assert_eq!(lines, vec![line(2, 1), line(5, 4)]);
    }

    #[test]
    fn bad_carts_name_the_field() {
        let cases: Vec<(Result<Vec<Line>, Problem>, &str)> = vec![
            (
                parse_lines(Some(vec![]), None, None),
                "items: must contain at least one",
            ),
            (
                parse_lines(Some(vec![body(1, 0)]), None, None),
                "items[0].quantity",
            ),
            (
                parse_lines(Some(vec![body(1, 1001)]), None, None),
                "items[0].quantity",
            ),
            (
                parse_lines(Some(vec![body(-1, 1)]), None, None),
                "items[0].itemId",
            ),
            (parse_lines(None, Some(1), Some(-2)), "quantity"),
            (parse_lines(None, Some(1), None), "quantity: missing"),
            (parse_lines(None, None, None), "items: missing"),
            (
                parse_lines(Some(vec![body(1, 1)]), Some(1), Some(1)),
                "items: give either",
            ),
            (
                parse_lines(Some(vec![body(1, 600), body(1, 600)]), None, None),
                "items[1].quantity",
            ),
            (
                parse_lines(Some((1..=51).map(|i| body(i, 1)).collect()), None, None),
                "items: must contain at most 50",
            ),
        ];
        for (result, prefix) in cases {
            let e = result.unwrap_err();
            assert!(e.detail.starts_with(prefix), "{prefix}: {}", e.detail);
        }
    }
}
