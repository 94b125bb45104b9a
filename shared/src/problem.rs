//! RFC 9457 `application/problem+json` errors with a stable machine `code`.
//!
//! Every error a service answers goes through [`Problem`]. Route errors are `thiserror` enums that
//! implement [`ToProblem`] and get `ResponseError` from [`impl_response_error!`]. Internal causes
//! (SQL, Redis, I/O) are logged, never sent: the client sees `internal_error` and nothing more.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

pub const CONTENT_TYPE: &str = "application/problem+json";

const STANDARD_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "code"];

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable snake_case machine code; the `type` URI and `title` derive from it and `status`.
    pub code: &'static str,
    pub detail: String,
    /// Context members such as `orderId` or `itemId`.
    pub extensions: Map<String, Value>,
    pub retry_after_secs: Option<u64>,
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(5 + self.extensions.len()))?;
        map.serialize_entry("type", &format!("urn:checkout:problem:{}", self.code))?;
        map.serialize_entry("title", self.status.canonical_reason().unwrap_or("Error"))?;
        map.serialize_entry("status", &self.status.as_u16())?;
        map.serialize_entry("detail", &self.detail)?;
        map.serialize_entry("code", self.code)?;
        for (name, value) in &self.extensions {
            // The standard members are never shadowed by context members.
            if !STANDARD_MEMBERS.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after_secs: None,
        }
    }

    /// Adds a context member such as `orderId` or `itemId`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_string(), value.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 400 `validation_error`; `detail` names the offending field.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 500 `internal_error`, for [`ToProblem`] impls: building it logs nothing (the route error
    /// is logged once, when its response is made; see [`impl_response_error!`]).
    pub fn unexpected() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; the request may be retried with the same Idempotency-Key",
        )
    }

    /// 500 `internal_error` answered directly: the cause is logged here and never sent.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(cause), "internal error");
        Self::unexpected()
    }

    /// The answer to a storage error, for [`ToProblem`] impls: a database that cannot be reached
    /// (restarting, failing over, pool exhausted) is 503 `dependency_unavailable` with
    /// `Retry-After`, since nothing was written and a retry with the same key is safe; anything
    /// else is 500 `internal_error`.
    pub fn storage(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::unavailable(
                "the database cannot be reached; retry with the same Idempotency-Key",
            ),
            sqlx::Error::Database(db) if is_unavailable_sqlstate(db.code().as_deref()) => {
                Self::unavailable("the database is restarting; retry with the same Idempotency-Key")
            }
            _ => Self::unexpected(),
        }
    }

    /// 503 `dependency_unavailable` with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            detail,
        )
        .retry_after(1)
    }

    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        if let Some(secs) = self.retry_after_secs {
            builder.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        builder.body(serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string()))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl std::error::Error for Problem {}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }
    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// A route error: something that knows the problem it answers with. `to_problem` must have no
/// side effects — it may be called several times per request (status, response, metrics).
pub trait ToProblem {
    fn to_problem(&self) -> Problem;
}

/// Implements `actix_web::ResponseError` for a route error through its [`ToProblem`]. A 5xx is
/// logged here, once per response, with the error's whole cause chain.
#[macro_export]
macro_rules! impl_response_error {
    ($($t:ty),+ $(,)?) => {$(
        impl ::actix_web::ResponseError for $t {
            fn status_code(&self) -> ::actix_web::http::StatusCode {
                $crate::problem::ToProblem::to_problem(self).status_code()
            }
            fn error_response(&self) -> ::actix_web::HttpResponse {
                let problem = $crate::problem::ToProblem::to_problem(self);
                $crate::problem::log_server_error(&problem, self);
                problem.to_response()
            }
        }
    )+};
}

/// Logs a 5xx answer's cause: an error for 500, a warning for an unavailable dependency.
pub fn log_server_error(problem: &Problem, error: &dyn std::error::Error) {
    if problem.status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(code = problem.code, error = %error_chain(error), "internal error");
    } else if problem.status.is_server_error() {
        tracing::warn!(code = problem.code, error = %error_chain(error), "dependency unavailable");
    }
}

/// `error: cause: cause-of-cause`, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// SQLSTATEs a restarting server answers with: class 57P (operator intervention: admin shutdown,
/// crash shutdown, cannot connect now) and 08 (connection exception).
fn is_unavailable_sqlstate(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("57P") || c.starts_with("08"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serialises_code_and_extensions_flat() {
        let p = Problem::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            "item 1 has 0 available",
        )
        .with("itemId", 1);
        let v: Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:checkout:problem:insufficient_stock");
        assert_eq!(v["title"], "Conflict");
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], "insufficient_stock");
        assert_eq!(v["itemId"], 1);
        assert!(v.get("retry_after_secs").is_none());
        let shadowing = Problem::new(StatusCode::CONFLICT, "x", "y").with("status", "failed");
        let text = serde_json::to_string(&shadowing).unwrap();
        assert_eq!(text.matches("\"status\"").count(), 1, "{text}");
    }

    #[test]
    fn an_unreachable_database_is_transient_anything_else_internal() {
        let down = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        for e in [down, sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let p = Problem::storage(&e);
            assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
            assert_eq!(p.code, "dependency_unavailable");
            assert_eq!(p.retry_after_secs, Some(1));
        }
        let p = Problem::storage(&sqlx::Error::RowNotFound);
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(is_unavailable_sqlstate(Some("57P01")));
        assert!(is_unavailable_sqlstate(Some("08006")));
        assert!(!is_unavailable_sqlstate(Some("23505")));
    }

    #[test]
    fn internal_problem_does_not_leak_the_cause() {
        let cause = std::io::Error::other("connection to 10.0.0.5:5432 refused");
        let p = Problem::internal(&cause);
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.detail.contains("10.0.0.5"));
    }
}
