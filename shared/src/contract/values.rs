//! The values bodies are made of, parsed where they enter (parse, don't validate): a `Quantity` is
//! 1..=1000 from the moment it exists, whether a service reads it from a request or the saga
//! builds it. Each type's OpenAPI schema states exactly the constraints its parser enforces, so a
//! value the schema accepts is never refused and one it refuses is never accepted.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// A value outside what its type allows; the message names the rule, the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

fn integer_schema(min: i64, max: i64, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
        .into()
}

/// Reads a JSON integer. As in JSON Schema, a number with a zero fraction (`2.0`) is an integer;
/// any other number, and anything that is not a number, is not.
struct Integer;

impl serde::de::Visitor<'_> for Integer {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
        // Integral and within i64 (2^63 itself is not: it is one past i64::MAX).
        if v.fract() == 0.0
            && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v)
        {
            Ok(v as i64)
        } else {
            Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
        }
    }
}

/// Declares an integer newtype bounded to `min..=max`.
macro_rules! bounded_int {
    ($(#[$meta:meta])* $name:ident, $min:expr, $max:expr, $description:literal) => {
        $(#[$meta])*
        #[doc = $description]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const MIN: i64 = $min;
            pub const MAX: i64 = $max;

            pub fn new(value: i64) -> Result<Self, Invalid> {
                if (Self::MIN..=Self::MAX).contains(&value) {
                    Ok($name(value))
                } else {
                    Err(Invalid(format!(
                        "must be between {} and {}, got {value}",
                        Self::MIN,
                        Self::MAX
                    )))
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = Invalid;
            fn try_from(value: i64) -> Result<Self, Invalid> {
                Self::new(value)
            }
        }

        impl From<$name> for i64 {
            fn from(value: $name) -> i64 {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Self::new(deserializer.deserialize_i64(Integer)?).map_err(D::Error::custom)
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                integer_schema(Self::MIN, Self::MAX, $description)
            }
        }

        impl ToSchema for $name {}

        /// Stored as BIGINT; a stored value out of bounds is an error.
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <i64 as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <i64 as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <i64 as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(Self::new(<i64 as sqlx::Decode<sqlx::Postgres>>::decode(value)?)?)
            }
        }
    };
}

bounded_int!(ItemId, 1, i64::MAX, "A stock item's id.");
bounded_int!(
    Quantity,
    1,
    1000,
    "Units of one item in one cart line: 1 to 1,000."
);
bounded_int!(
    Price,
    1,
    10_000_000_000,
    "An item's unit price in minor units of its currency (1999 is 19.99)."
);
bounded_int!(
    StockLevel,
    0,
    1_000_000_000,
    "Units of an item in the warehouse."
);
bounded_int!(
    RestockQuantity,
    1,
    1_000_000,
    "Units added to an item's stock: 1 to 1,000,000."
);
bounded_int!(
    Amount,
    1,
    1_000_000_000_000,
    "An amount of money in minor units of its currency (1999 is 19.99)."
);
bounded_int!(
    Units,
    1,
    1_000_000,
    "Units of one product sold in one line of a charge: 1 to 1,000,000."
);
bounded_int!(
    BasisPoints,
    1,
    10_000,
    "A share in hundredths of a percent: 1 (0.01 %) to 10,000 (100 %)."
);
bounded_int!(
    Limit,
    1,
    1000,
    "The most elements of a list page: 1 to 1,000 (default 100)."
);
bounded_int!(Offset, 0, i64::MAX, "How many elements a list page skips.");
bounded_int!(
    Attempt,
    1,
    2_147_483_647,
    "An attempt of an order: 1, then 2, 3... each time its checkout was started again after a 503 `dependency_unavailable`."
);

impl Attempt {
    /// An order's first attempt, what a request without `attempt` means.
    pub const FIRST: Attempt = Attempt(1);

    pub fn is_first(&self) -> bool {
        *self == Self::FIRST
    }

    /// As stock and payment store it (INTEGER, which its bounds fit).
    pub fn as_i32(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Self::FIRST
    }
}

impl Limit {
    pub const DEFAULT: Limit = Limit(100);
}

impl Offset {
    pub const ZERO: Offset = Offset(0);
}

/// The codes a request may name as its currency: ISO 4217's current list of currencies (List One
/// as its maintenance agency published it on 2026-01-01: XCG in place of ANG, ZWG of ZWL, SLE of
/// SLL, VED beside VES; HRK, BGN and CUC withdrawn), sorted for [`slice::binary_search`].
///
/// Left out, though the list carries them, because nothing is sold or paid out in them: the fund
/// codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), the codes for testing and for no currency
/// (XTS, XXX), the precious metals (XAG, XAU, XPD, XPT), and the units of account and of the bond
/// markets (XAD, XBA, XBB, XBC, XBD, XDR, XSU, XUA).
pub const ACTIVE_CURRENCIES: [&str; 155] = [
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// A currency: three upper-case letters. What a client sends is a currency only if it is an
/// active ISO 4217 code ([`Currency::parse`], [`ActiveCurrency`]); what the platform stored and
/// answers is read as it is ([`Currency::read`]), so that a row written before that rule (any three
/// upper-case letters, as the columns' CHECKs allow) still reads.
///
/// Its serde `Deserialize` reads as stored — answers of the services, events kept as JSON — and a
/// request body's field takes `#[serde(deserialize_with = "Currency::deserialize_active")]` with
/// `#[schema(value_type = ActiveCurrency)]` (or is an [`ActiveCurrency`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const PATTERN: &'static str = "^[A-Z]{3}$";

    /// A currency a client names: an active ISO 4217 code ([`ACTIVE_CURRENCIES`]).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match Currency::read(raw) {
            Ok(currency) if currency.is_active() => Ok(currency),
            _ => Err(Invalid(format!(
                "must be an active ISO 4217 currency code in upper case (such as USD or EUR; not \
                 a fund, test or precious-metal code), got {:?}",
                raw.chars().take(16).collect::<String>()
            ))),
        }
    }

    /// A currency as stored or answered: any three upper-case letters.
    pub fn read(raw: &str) -> Result<Self, Invalid> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(Invalid(format!(
                "must be a 3-letter upper-case ISO 4217 code, got {:?}",
                raw.chars().take(16).collect::<String>()
            ))),
        }
    }

    /// Whether it is on [`ACTIVE_CURRENCIES`].
    pub fn is_active(&self) -> bool {
        ACTIVE_CURRENCIES.binary_search(&self.as_str()).is_ok()
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Reads a request body's currency: [`Currency::parse`], for `deserialize_with`.
    pub fn deserialize_active<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Currency, D::Error> {
        ActiveCurrency::deserialize(deserializer).map(Currency::from)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses as a client's currency ([`Currency::parse`]).
impl std::str::FromStr for Currency {
    type Err = Invalid;
    fn from_str(raw: &str) -> Result<Self, Invalid> {
        Currency::parse(raw)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reads as stored ([`Currency::read`]): what a service answers, an event kept as JSON.
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(deserializer)?;
        Currency::read(&raw).map_err(D::Error::custom)
    }
}

impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::PATTERN))
            .description(Some(
                "A 3-letter upper-case ISO 4217 currency code. Requests name only active codes \
                 (ActiveCurrency); a value stored before that rule is answered as it was stored.",
            ))
            .into()
    }
}

impl ToSchema for Currency {}

/// A currency a request names: an active ISO 4217 code, one of [`ACTIVE_CURRENCIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ActiveCurrency(Currency);

impl ActiveCurrency {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Currency::parse(raw).map(ActiveCurrency)
    }

    pub fn get(self) -> Currency {
        self.0
    }
}

impl From<ActiveCurrency> for Currency {
    fn from(currency: ActiveCurrency) -> Currency {
        currency.0
    }
}

impl TryFrom<Currency> for ActiveCurrency {
    type Error = Invalid;
    fn try_from(currency: Currency) -> Result<Self, Invalid> {
        ActiveCurrency::parse(currency.as_str())
    }
}

impl std::str::FromStr for ActiveCurrency {
    type Err = Invalid;
    fn from_str(raw: &str) -> Result<Self, Invalid> {
        ActiveCurrency::parse(raw)
    }
}

impl<'de> Deserialize<'de> for ActiveCurrency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(deserializer)?;
        ActiveCurrency::parse(&raw).map_err(D::Error::custom)
    }
}

impl PartialSchema for ActiveCurrency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ACTIVE_CURRENCIES))
            .description(Some(
                "An active ISO 4217 currency code (List One of 2026-01-01), upper case: not a \
                 fund code (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), a code for testing or \
                 no currency (XTS, XXX), a precious metal (XAG, XAU, XPD, XPT), a unit of account \
                 (XAD, XBA, XBB, XBC, XBD, XDR, XSU, XUA), or a withdrawn code (such as HRK).",
            ))
            .into()
    }
}

impl ToSchema for ActiveCurrency {}

/// Currencies are CHAR(3) columns: read and written as text. A stored value is read as it is
/// ([`Currency::read`]: rows written before only active codes were taken keep reading); one that
/// is not three upper-case letters is an error.
impl sqlx::Type<sqlx::Postgres> for Currency {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl sqlx::postgres::PgHasArrayType for Currency {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
    fn array_compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::postgres::PgHasArrayType>::array_compatible(ty)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Currency {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Currency {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Currency::read(text.trim_end())?)
    }
}

/// Checks an identifier chosen by a caller: 1..=max printable ASCII characters, no spaces.
fn check_identifier(raw: &str, max: usize) -> Result<(), Invalid> {
    if raw.is_empty() {
        return Err(Invalid("must not be empty".into()));
    }
    if raw.chars().count() > max {
        return Err(Invalid(format!("must be at most {max} characters")));
    }
    if !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Invalid("must be printable ASCII without spaces".into()));
    }
    Ok(())
}

/// Checks free text: at most `max` characters, no control characters, and at least one character
/// that is not white space. (What is kept is the text without its surrounding white space.)
fn check_text(raw: &str, max: usize) -> Result<(), Invalid> {
    if raw.chars().count() > max {
        return Err(Invalid(format!("must be at most {max} characters")));
    }
    if raw.chars().any(char::is_control) {
        return Err(Invalid("must not contain control characters".into()));
    }
    if raw.chars().all(char::is_whitespace) {
        return Err(Invalid("must not be empty".into()));
    }
    Ok(())
}

/// Control characters (Unicode Cc), as `char::is_control` knows them.
const CONTROL: &[(u32, u32)] = &[(0x00, 0x1f), (0x7f, 0x9f)];
/// Control characters and white space (Unicode White_Space, as `char::is_whitespace` knows it).
const INVISIBLE: &[(u32, u32)] = &[
    (0x00, 0x20),
    (0x7f, 0xa0),
    (0x1680, 0x1680),
    (0x2000, 0x200a),
    (0x2028, 0x2029),
    (0x202f, 0x202f),
    (0x205f, 0x205f),
    (0x3000, 0x3000),
];

/// A regular-expression class body for `ranges` (`\u0000-\u001F...`).
fn class(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("\\u{a:04X}")
            } else {
                format!("\\u{a:04X}-\\u{b:04X}")
            }
        })
        .collect()
}

/// Free text as a pattern: no control character, and one character that is neither control nor
/// white space.
fn text_pattern() -> String {
    let (control, invisible) = (class(CONTROL), class(INVISIBLE));
    format!("^[^{control}]*[^{invisible}][^{control}]*$")
}

fn identifier_pattern(max: usize) -> String {
    format!("^[!-~]{{1,{max}}}$")
}

/// Declares a string newtype checked by `check` (an identifier or free text).
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $max:expr, identifier, $description:literal) => {
        checked_string!(@define $(#[$meta])* $name, $max, $description,
            |raw: &str| check_identifier(raw, $max).map(|()| raw.to_string()),
            identifier_pattern($max));
    };
    ($(#[$meta:meta])* $name:ident, $max:expr, text, $description:literal) => {
        checked_string!(@define $(#[$meta])* $name, $max, $description,
            |raw: &str| check_text(raw, $max).map(|()| raw.trim().to_string()),
            text_pattern());
    };
    (@define $(#[$meta:meta])* $name:ident, $max:expr, $description:literal, $check:expr, $pattern:expr) => {
        $(#[$meta])*
        #[doc = $description]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                let check = $check;
                check(raw).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = Cow::<str>::deserialize(deserializer)?;
                Self::parse(&raw).map_err(D::Error::custom)
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some($max))
                    .pattern(Some($pattern))
                    .description(Some($description))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

checked_string!(
    OrderRef,
    128,
    identifier,
    "A caller's id of an order: 1 to 128 printable ASCII characters without spaces."
);
checked_string!(
    CustomerId,
    128,
    identifier,
    "A customer's id: 1 to 128 printable ASCII characters without spaces."
);
checked_string!(
    ItemName,
    200,
    text,
    "An item's name: up to 200 characters, no control characters, not only white space (kept without surrounding white space)."
);
checked_string!(
    Reference,
    255,
    text,
    "Free text kept with a payment: up to 255 characters, no control characters, not only white space (kept without surrounding white space)."
);

checked_string!(
    RecipientName,
    200,
    text,
    "A recipient's name: up to 200 characters, no control characters, not only white space (kept without surrounding white space)."
);

/// An instant, written as an RFC 3339 date-time with its offset (`2027-01-01T00:00:00Z`,
/// `2027-01-01T01:00:00.5+01:00`): exactly the `date-time` format of JSON Schema, nothing looser
/// (no space for `T`, no missing offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(chrono::DateTime<chrono::Utc>);

impl Instant {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = || {
            Invalid(format!(
                "must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z, got {:?}",
                raw.chars().take(40).collect::<String>()
            ))
        };
        if !rfc3339_shape(raw.as_bytes()) {
            return Err(invalid());
        }
        chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| Instant(t.with_timezone(&chrono::Utc)))
            .map_err(|_| invalid())
    }

    pub fn get(self) -> chrono::DateTime<chrono::Utc> {
        self.0
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Instant {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Self {
        Instant(t)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T` and `Z` in either case: the grammar of
/// RFC 3339's `date-time` (chrono alone would also take a space for `T`).
fn rfc3339_shape(b: &[u8]) -> bool {
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|d| d.len() == range.len() && d.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(digits(0..4) && at(4, b"-") && digits(5..7) && at(7, b"-") && digits(8..10))
        || !(at(10, b"Tt") && digits(11..13) && at(13, b":") && digits(14..16))
        || !(at(16, b":") && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3) && at(i + 3, b":") && digits(i + 4..i + 6) && i + 6 == b.len()
        }
        _ => false,
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(deserializer)?;
        Instant::parse(&raw).map_err(D::Error::custom)
    }
}

impl PartialSchema for Instant {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "An instant as an RFC 3339 date-time with its offset, such as 2027-01-01T00:00:00Z.",
            ))
            .into()
    }
}

impl ToSchema for Instant {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc_3339_date_times_only() {
        for good in [
            "2027-01-01T00:00:00Z",
            "2027-01-01t00:00:00z",
            "2027-01-01T01:00:00.5+01:00",
            "2027-01-01T00:00:00.123456789-05:30",
        ] {
            assert!(Instant::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            Instant::parse("2027-01-01T01:00:00+01:00").unwrap(),
            Instant::parse("2027-01-01T00:00:00Z").unwrap()
        );
        for bad in [
            "2027-01-01 00:00:00Z",
            "2027-01-01T00:00:00",
            "2027-01-01",
            "2027-13-01T00:00:00Z",
            "2027-01-01T00:00:00.Z",
            "2027-01-01T00:00:00+0100",
            "tomorrow",
            "",
        ] {
            assert!(Instant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currency_accepts_only_three_upper_case_letters() {
        assert_eq!(Currency::parse("USD").unwrap().as_str(), "USD");
        for bad in ["usd", "US", "USDX", "", "U5D", "ÜSD"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
            assert!(Currency::read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clients_currency_is_an_active_iso_4217_code() {
        for good in [
            "USD", "EUR", "JPY", "GBP", "CHF", "XCG", "ZWG", "SLE", "VES", "VED", "XOF",
        ] {
            assert_eq!(Currency::parse(good).unwrap().as_str(), good);
            assert_eq!(good.parse::<Currency>().unwrap().as_str(), good);
            let json = serde_json::json!(good);
            assert_eq!(
                serde_json::from_value::<ActiveCurrency>(json)
                    .unwrap()
                    .get()
                    .as_str(),
                good
            );
        }
        for bad in [
            "QQQ", "usd", "XTS", "XXX", "BOV", "CLF", "USN", "XAU", "XAG", "XDR", "HRK", "ANG",
            "ZWL", "SLL", "BGN",
        ] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
            assert!(
                serde_json::from_value::<ActiveCurrency>(serde_json::json!(bad)).is_err(),
                "{bad}"
            );
        }
        let e = Currency::parse("QQQ").unwrap_err();
        assert!(
            e.0.contains("active ISO 4217") && e.0.contains("\"QQQ\""),
            "{e}"
        );
    }

    /// What was stored before the rule (any three upper-case letters) reads as it is.
    #[test]
    fn a_stored_currency_reads_as_it_is() {
        assert_eq!(Currency::read("QQQ").unwrap().as_str(), "QQQ");
        assert!(!Currency::read("QQQ").unwrap().is_active());
        assert_eq!(
            serde_json::from_value::<Currency>(serde_json::json!("QQQ"))
                .unwrap()
                .as_str(),
            "QQQ"
        );
        #[derive(Deserialize)]
        struct Body {
            #[serde(deserialize_with = "Currency::deserialize_active")]
            currency: Currency,
        }
        let body = serde_json::from_value::<Body>(serde_json::json!({"currency": "EUR"}));
        assert_eq!(body.unwrap().currency.as_str(), "EUR");
        assert!(serde_json::from_value::<Body>(serde_json::json!({"currency": "QQQ"})).is_err());
    }

    #[test]
    fn the_active_list_is_sorted_and_leaves_out_funds_tests_and_metals() {
        assert!(ACTIVE_CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert!(ACTIVE_CURRENCIES
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
        for left_out in [
            "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW", "XTS", "XXX", "XAU",
            "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA", "XAD",
        ] {
            assert!(!ACTIVE_CURRENCIES.contains(&left_out), "{left_out}");
        }
        let schema = serde_json::to_value(ActiveCurrency::schema()).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::to_value(&ACTIVE_CURRENCIES[..]).unwrap()
        );
    }

    #[test]
    fn identifiers_are_bounded_printable_ascii() {
        assert!(OrderRef::parse("ord-1").is_ok());
        for bad in ["", "a b", "ñ", "tab\t"] {
            assert!(OrderRef::parse(bad).is_err(), "{bad:?}");
        }
        assert!(OrderRef::parse(&"a".repeat(128)).is_ok());
        assert!(OrderRef::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(ItemName::parse("  Mug ").unwrap().as_str(), "Mug");
        assert!(ItemName::parse("   ").is_err());
        assert!(ItemName::parse("").is_err());
        assert!(ItemName::parse("a\u{0}b").is_err());
        assert!(
            ItemName::parse("\nMug").is_err(),
            "no control characters anywhere"
        );
        assert!(ItemName::parse(&"é".repeat(200)).is_ok());
        assert!(ItemName::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn ranges_name_the_rule() {
        assert_eq!(Quantity::new(5).unwrap().get(), 5);
        let e = Quantity::new(0).unwrap_err();
        assert_eq!(e.0, "must be between 1 and 1000, got 0");
        assert!(Quantity::new(1001).is_err());
        let e = serde_json::from_str::<Quantity>("1.5").unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        assert!(serde_json::from_str::<Quantity>("\"2\"").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("2.0").unwrap().get(), 2);
        assert_eq!(serde_json::from_str::<Quantity>("1e3").unwrap().get(), 1000);
        assert!(serde_json::from_str::<ItemId>("99999999999999999999").is_err());
        assert!(serde_json::from_str::<ItemId>("9223372036854775808.0").is_err());
    }

    /// The classes in the text pattern are exactly the characters the parser treats as control
    /// characters and as white space.
    #[test]
    fn text_schema_classes_match_the_parser() {
        let within = |ranges: &[(u32, u32)], c: char| {
            ranges.iter().any(|&(a, b)| (a..=b).contains(&(c as u32)))
        };
        for c in (0u32..0x11000).filter_map(char::from_u32) {
            assert_eq!(within(CONTROL, c), c.is_control(), "{:#x}", c as u32);
            assert_eq!(
                within(INVISIBLE, c),
                c.is_control() || c.is_whitespace(),
                "{:#x}",
                c as u32
            );
        }
        assert_eq!(
            text_pattern(),
            "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        );
    }

    #[test]
    fn schemas_state_the_bounds() {
        let q = serde_json::to_value(Quantity::schema()).unwrap();
        assert_eq!(
            (q["minimum"].as_i64(), q["maximum"].as_i64()),
            (Some(1), Some(1000))
        );
        let o = serde_json::to_value(OrderRef::schema()).unwrap();
        assert_eq!(o["pattern"], "^[!-~]{1,128}$");
        assert_eq!(o["maxLength"], 128);
    }
}
