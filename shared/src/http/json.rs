//! Extractors whose errors are problem+json naming the field: a JSON body
//! (`items[0].quantity: must be between 1 and 1000, got 0`) and a query string
//! (`limit: must be between 1 and 1000, got 0`).

use super::problem::{Problem, ProblemCode};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use serde::de::DeserializeOwned;

/// The body limit every service applies: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body, parsed into a contract type.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let media = check_media_type(req);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            media?;
            let bytes = body.await.map_err(|e| body_error(&e))?;
            parse(&bytes).map(Json)
        })
    }
}

/// A body is JSON: `Content-Type: application/json` (or any `+json` type, with parameters such
/// as `charset`), or no `Content-Type` at all. Anything else is 415 `unsupported_media_type`.
pub fn check_media_type(req: &HttpRequest) -> Result<(), Problem> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemCode::UnsupportedMediaType,
            "the body must be sent as Content-Type: application/json",
        ))
    }
}

/// Maps a payload read error to a problem: 413 when over the limit, 400 otherwise.
pub fn body_error(error: &actix_web::Error) -> Problem {
    if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
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
        } else {
            Problem::validation(named(&path, without_position(&inner)))
        }
    })?;
    de.end()
        .map_err(|e| Problem::validation(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// serde_json's message without the ` at line 1 column 35` it ends with: the path says where.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&position).unwrap_or(&text).to_string()
}

/// `path: message`, or the message alone when it is about the whole document (it then names its
/// field itself).
fn named(path: &str, error: impl std::fmt::Display) -> String {
    if path == "." || path.is_empty() {
        error.to_string()
    } else {
        format!("{path}: {error}")
    }
}

/// A query string, parsed into a contract type; unknown parameters are ignored, repeated ones
/// refused.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(Query))
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Problem::validation(named(&path, e.into_inner()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::values::{Limit, Quantity};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Line {
        #[allow(dead_code)]
        item_id: i64,
        #[allow(dead_code)]
        quantity: Quantity,
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
    fn names_the_field_with_the_wrong_type_or_value() {
        let d = detail(r#"{"items":[{"itemId":1,"quantity":"2"}]}"#);
        assert!(d.starts_with("items[0].quantity: invalid type"), "{d}");
        let d = detail(r#"{"items":[{"itemId":1,"quantity":0}]}"#);
        assert_eq!(d, "items[0].quantity: must be between 1 and 1000, got 0");
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

    #[derive(Debug, Deserialize)]
    struct Page {
        limit: Option<Limit>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(
            parse_query::<Page>("limit=5").unwrap().limit.unwrap().get(),
            5
        );
        assert!(parse_query::<Page>("").unwrap().limit.is_none());
        let e = parse_query::<Page>("limit=0").unwrap_err();
        assert_eq!(e.detail, "limit: must be between 1 and 1000, got 0");
        assert!(parse_query::<Page>("limit=x")
            .unwrap_err()
            .detail
            .starts_with("limit: "));
        assert!(parse_query::<Page>("limit=1&limit=2").is_err());
    }

    #[test]
    fn only_json_bodies_are_read() {
        let req = |ct: Option<&str>| {
            let mut r = actix_web::test::TestRequest::post();
            if let Some(ct) = ct {
                r = r.insert_header((header::CONTENT_TYPE, ct));
            }
            r.to_http_request()
        };
        for ok in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/merge-patch+json"),
        ] {
            assert!(check_media_type(&req(ok)).is_ok(), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
            "",
        ] {
            let p = check_media_type(&req(Some(bad))).unwrap_err();
            assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
    }
}
