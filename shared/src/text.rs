//! Enums that are text on the wire and in the database: statuses, failure codes, problem codes.
//!
//! [`text_enum!`] declares such an enum once, with the text of each variant, and gives it the one
//! mapping every layer uses: `serde` (JSON bodies, query strings), `sqlx` (TEXT columns), `utoipa`
//! (a string schema listing the values), `Display` and `FromStr`. Reading a value that is not one
//! of the enum's — from a request, an answer or a row — is an error, never a default.

use std::fmt;

/// An enum whose variants are written as fixed texts.
pub trait TextEnum: Copy + Eq + 'static {
    /// Every variant, in declaration order.
    const ALL: &'static [Self];
    /// The text of every variant, in declaration order.
    const TEXTS: &'static [&'static str];
    /// The enum's name, for errors.
    const NAME: &'static str;

    fn as_str(self) -> &'static str;

    /// The variant written `text`.
    fn parse(text: &str) -> Result<Self, UnknownText> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == text)
            .ok_or_else(|| UnknownText {
                kind: Self::NAME,
                value: text.chars().take(64).collect(),
                expected: Self::TEXTS,
            })
    }
}

/// A text that names no variant of the enum it was read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownText {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}`, expected one of {}",
            self.kind,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownText {}

/// Declares a [`TextEnum`]: `text_enum! { pub enum Status { Open = "open", Closed = "closed" } }`.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::text::TextEnum for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            const TEXTS: &'static [&'static str] = &[$($text),+];
            const NAME: &'static str = stringify!($name);
            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl $name {
            /// The text of this value, as written on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                <Self as $crate::text::TextEnum>::as_str(self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::text::UnknownText;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                <Self as $crate::text::TextEnum>::parse(text)
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                $crate::text::deserialize(deserializer)
            }
        }

        impl $crate::__private::sqlx::Type<$crate::__private::sqlx::Postgres> for $name {
            fn type_info() -> $crate::__private::sqlx::postgres::PgTypeInfo {
                <&str as $crate::__private::sqlx::Type<$crate::__private::sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &$crate::__private::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as $crate::__private::sqlx::Type<$crate::__private::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl $crate::__private::sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> $crate::__private::sqlx::postgres::PgTypeInfo {
                <&str as $crate::__private::sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> $crate::__private::sqlx::Encode<'q, $crate::__private::sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut $crate::__private::sqlx::postgres::PgArgumentBuffer,
            ) -> Result<$crate::__private::sqlx::encode::IsNull, $crate::__private::sqlx::error::BoxDynError> {
                <&str as $crate::__private::sqlx::Encode<$crate::__private::sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> $crate::__private::sqlx::Decode<'r, $crate::__private::sqlx::Postgres> for $name {
            fn decode(
                value: $crate::__private::sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, $crate::__private::sqlx::error::BoxDynError> {
                let text = <&str as $crate::__private::sqlx::Decode<$crate::__private::sqlx::Postgres>>::decode(value)?;
                Ok(<Self as $crate::text::TextEnum>::parse(text)?)
            }
        }

        impl $crate::__private::utoipa::PartialSchema for $name {
            fn schema() -> $crate::__private::utoipa::openapi::RefOr<$crate::__private::utoipa::openapi::schema::Schema> {
                $crate::text::schema::<Self>()
            }
        }

        impl $crate::__private::utoipa::ToSchema for $name {}
    };
}

/// Deserializes a [`TextEnum`] from a string, naming the expected values when it is none of them.
pub fn deserialize<'de, T: TextEnum, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<T: TextEnum> serde::de::Visitor<'_> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "one of {}", T::TEXTS.join(", "))
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            T::parse(text).map_err(|_| E::unknown_variant(text, T::TEXTS))
        }
    }
    deserializer.deserialize_str(Visitor(std::marker::PhantomData))
}

/// The schema of a [`TextEnum`]: a string that is one of its texts.
pub fn schema<T: TextEnum>() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(T::TEXTS.iter().copied()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::TextEnum;

    crate::text_enum! {
        /// A test enum.
        pub enum Light {
            Red = "red",
            /// Go.
            Green = "green",
        }
    }

    #[test]
    fn every_layer_uses_the_same_text() {
        for light in Light::ALL {
            let text = light.as_str();
            assert_eq!(light.to_string(), text);
            assert_eq!(text.parse::<Light>().unwrap(), *light);
            assert_eq!(serde_json::to_value(light).unwrap(), text);
            assert_eq!(
                serde_json::from_value::<Light>(serde_json::json!(text)).unwrap(),
                *light
            );
        }
    }

    #[test]
    fn an_unknown_text_is_an_error_naming_the_expected_ones() {
        let e = "amber".parse::<Light>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown Light `amber`, expected one of red, green"
        );
        let e = serde_json::from_value::<Light>(serde_json::json!("amber")).unwrap_err();
        assert!(e.to_string().contains("unknown variant `amber`"), "{e}");
        assert!(serde_json::from_value::<Light>(serde_json::json!(1)).is_err());
    }

    #[test]
    fn the_schema_lists_the_texts() {
        let schema = serde_json::to_value(<Light as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["enum"], serde_json::json!(["red", "green"]));
    }
}
