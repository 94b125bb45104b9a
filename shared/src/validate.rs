//! Small parse-don't-validate building blocks shared by the services' domain types.

use crate::problem::Problem;

/// A 3-letter upper-case ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(field: &str, raw: &str) -> Result<Self, Problem> {
        let bytes = raw.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(Problem::validation(format!(
                "{field}: must be a 3-letter upper-case ISO 4217 code, got {raw:?}"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        // The bytes are ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identifier chosen by a caller (`orderId`, `customerId`, `reference`): 1..=max printable
/// ASCII characters, no surrounding whitespace.
pub fn identifier(field: &str, raw: &str, max: usize) -> Result<String, Problem> {
    if raw.is_empty() {
        return Err(Problem::validation(format!("{field}: must not be empty")));
    }
    if raw.chars().count() > max {
        return Err(Problem::validation(format!(
            "{field}: must be at most {max} characters"
        )));
    }
    if !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Problem::validation(format!(
            "{field}: must be printable ASCII without spaces"
        )));
    }
    Ok(raw.to_string())
}

/// Free text such as an item name: 1..=max characters after trimming, no control characters.
pub fn text(field: &str, raw: &str, max: usize) -> Result<String, Problem> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(Problem::validation(format!("{field}: must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(Problem::validation(format!(
            "{field}: must be at most {max} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Problem::validation(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// An integer within `min..=max`, with a message naming the field.
pub fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, Problem> {
    if value < min || value > max {
        Err(Problem::validation(format!(
            "{field}: must be between {min} and {max}, got {value}"
        )))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_only_three_upper_case_letters() {
        assert_eq!(Currency::parse("currency", "USD").unwrap().as_str(), "USD");
        for bad in ["usd", "US", "USDX", "", "U5D", "ÜSD"] {
            assert!(Currency::parse("currency", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_bounded_printable_ascii() {
        assert!(identifier("orderId", "ord-1", 10).is_ok());
        assert!(identifier("orderId", "", 10).is_err());
        assert!(identifier("orderId", "a b", 10).is_err());
        assert!(identifier("orderId", "ñ", 10).is_err());
        assert!(identifier("orderId", &"a".repeat(11), 10).is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("name", "  Mug ", 10).unwrap(), "Mug");
        assert!(text("name", "   ", 10).is_err());
        assert!(text("name", "a\u{0}b", 10).is_err());
        assert!(text("name", &"é".repeat(11), 10).is_err());
    }

    #[test]
    fn ranges_name_the_field() {
        assert_eq!(in_range("quantity", 5, 1, 1000).unwrap(), 5);
        let e = in_range("items[0].quantity", 0, 1, 1000).unwrap_err();
        assert!(e
            .detail
            .starts_with("items[0].quantity: must be between 1 and 1000"));
        assert!(in_range("q", 1001, 1, 1000).is_err());
    }
}

/// `limit` (1..=1000, default 100) and `offset` (>= 0, default 0) of a list endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const MAX_LIMIT: i64 = 1000;
    pub const DEFAULT_LIMIT: i64 = 100;

    pub fn parse(limit: Option<i64>, offset: Option<i64>) -> Result<Self, Problem> {
        Ok(Page {
            limit: in_range(
                "limit",
                limit.unwrap_or(Self::DEFAULT_LIMIT),
                1,
                Self::MAX_LIMIT,
            )?,
            offset: in_range("offset", offset.unwrap_or(0), 0, i64::MAX)?,
        })
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    #[test]
    fn page_defaults_and_bounds() {
        assert_eq!(
            Page::parse(None, None).unwrap(),
            Page {
                limit: 100,
                offset: 0
            }
        );
        assert!(Page::parse(Some(0), None).is_err());
        assert!(Page::parse(Some(1001), None).is_err());
        assert!(Page::parse(None, Some(-1)).is_err());
        assert_eq!(
            Page::parse(Some(1000), Some(5)).unwrap(),
            Page {
                limit: 1000,
                offset: 5
            }
        );
    }
}
