//! A JSON body extractor whose errors are problem+json `validation_error`s naming the field
//! (`items[0].quantity: invalid type: string "2", expected i64`).

use crate::problem::Problem;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// The body limit every service applies (SPEC §2): 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = body.await.map_err(|e| body_error(&e))?;
            parse(&bytes).map(Json)
        })
    }
}

/// Maps a payload read error to a problem: 413 when over the limit, 400 otherwise.
pub fn body_error(error: &actix_web::Error) -> Problem {
    if error.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        Problem::payload_too_large(BODY_LIMIT)
    } else {
        Problem::validation("request body could not be read")
    }
}

/// Parses a JSON document into `T`, rejecting trailing data, with the failing path in `detail`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::validation("request body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::validation(format!("malformed JSON: {inner}"))
        } else if path == "." {
            Problem::validation(inner.to_string())
        } else {
            Problem::validation(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| Problem::validation(format!("malformed JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Line {
        #[allow(dead_code)]
        item_id: i64,
        #[allow(dead_code)]
        quantity: i64,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cart {
        #[allow(dead_code)]
        items: Vec<Line>,
    }

    fn detail(body: &str) -> String {
        parse::<Cart>(body.as_bytes()).unwrap_err().detail
    }

    #[test]
    fn names_the_field_with_the_wrong_type() {
        let d = detail(r#"{"items":[{"itemId":1,"quantity":"2"}]}"#);
        assert!(d.starts_with("items[0].quantity: invalid type"), "{d}");
    }

    #[test]
    fn names_missing_and_unknown_fields() {
        assert!(detail(r#"{"items":[{"itemId":1}]}"#).contains("missing field `quantity`"));
        assert!(detail(r#"{"items":[],"coupon":1}"#).contains("unknown field `coupon`"));
    }

    #[test]
    fn rejects_malformed_empty_and_trailing() {
        assert!(detail(r#"{"items":["#).starts_with("malformed JSON"));
        assert_eq!(detail("  "), "request body must be a JSON object");
        assert!(detail(r#"{"items":[]} x"#).starts_with("malformed JSON"));
    }
}
