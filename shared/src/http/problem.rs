//! Answering with RFC 9457 `application/problem+json` errors.
//!
//! Every error a service answers goes through [`Problem`], whose body is the contract's
//! [`ProblemBody`]. Route errors are `thiserror` enums that implement [`ToProblem`] (and list the
//! problems they can answer, for the OpenAPI document) and get `ResponseError` from
//! [`impl_response_error!`]. Internal causes (SQL, Redis, I/O) are logged, never sent: the client
//! sees `internal_error` and nothing more.

pub use crate::contract::problem::{ProblemBody, ProblemCode, ProblemContext, CONTENT_TYPE};
use crate::contract::{order::OrderStatus, payment::PaymentStatus, transfers::TransferStatus};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: ProblemCode,
    pub detail: String,
    /// What the problem is about (`orderId`, `itemId`, ...); boxed, so that a `Result` carrying
    /// a problem stays small.
    pub context: Box<ProblemContext>,
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            context: Box::default(),
            retry_after_secs: None,
        }
    }

    pub fn order_id(mut self, id: impl fmt::Display) -> Self {
        self.context.order_id = Some(id.to_string());
        self
    }

    pub fn item_id(mut self, id: i64) -> Self {
        self.context.item_id = Some(id);
        self
    }

    /// The units asked for and the units there were.
    pub fn shortfall(mut self, requested: i64, available: i64) -> Self {
        self.context.requested = Some(requested);
        self.context.available = Some(available);
        self
    }

    pub fn reservation_id(mut self, id: Uuid) -> Self {
        self.context.reservation_id = Some(id);
        self
    }

    pub fn payment_id(mut self, id: Uuid) -> Self {
        self.context.payment_id = Some(id);
        self
    }

    pub fn order_status(mut self, status: OrderStatus) -> Self {
        self.context.order_status = Some(status);
        self
    }

    pub fn payment_status(mut self, status: PaymentStatus) -> Self {
        self.context.payment_status = Some(status);
        self
    }

    pub fn recipient_id(mut self, id: Uuid) -> Self {
        self.context.recipient_id = Some(id);
        self
    }

    pub fn split_rule_id(mut self, id: Uuid) -> Self {
        self.context.split_rule_id = Some(id);
        self
    }

    pub fn product_id(mut self, id: i64) -> Self {
        self.context.product_id = Some(id);
        self
    }

    pub fn transfer_id(mut self, id: Uuid) -> Self {
        self.context.transfer_id = Some(id);
        self
    }

    pub fn transfer_status(mut self, status: TransferStatus) -> Self {
        self.context.transfer_status = Some(status);
        self
    }

    pub fn payout_id(mut self, id: Uuid) -> Self {
        self.context.payout_id = Some(id);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 400 `validation_error`; `detail` names the offending field.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ProblemCode::ValidationError,
            detail,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ProblemCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 500 `internal_error`, for [`ToProblem`] impls: building it logs nothing (the route error
    /// is logged once, when its response is made; see [`impl_response_error!`]).
    pub fn unexpected() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemCode::InternalError,
            "an internal error occurred; the request may be retried with the same Idempotency-Key",
        )
    }

    /// 500 `internal_error` answered directly: the cause is logged here and never sent.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(cause), "internal error");
        Self::unexpected()
    }

    /// 503 `dependency_unavailable` with `Retry-After`: nothing was done, and a retry with the same
    /// key is safe.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::DependencyUnavailable,
            detail,
        )
        .retry_after(1)
    }

    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_uri: ProblemBody::type_uri(self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            context: (*self.context).clone(),
        }
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        if let Some(secs) = self.retry_after_secs {
            builder.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        builder.body(serde_json::to_string(&self.body()).unwrap_or_else(|_| "{}".to_string()))
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

/// The problems an error type can answer, as `(status, code)` pairs: what the OpenAPI document
/// lists for the routes that answer it. Each route error's tests check that every one of its
/// variants answers a listed problem.
pub trait Answers {
    const ANSWERS: &'static [(u16, ProblemCode)];
}

/// Checks (in tests) that `problem` is one of the answers `T` lists.
#[track_caller]
pub fn assert_listed<T: Answers>(problem: &Problem) {
    assert!(
        T::ANSWERS.contains(&(problem.status.as_u16(), problem.code)),
        "{} {} is not listed in {}::ANSWERS",
        problem.status,
        problem.code,
        std::any::type_name::<T>()
    );
}

/// Implements `actix_web::ResponseError` for a route error through its [`ToProblem`]. A 5xx is
/// logged here, once per response, with the error's whole cause chain.
#[macro_export]
macro_rules! impl_response_error {
    ($($t:ty),+ $(,)?) => {$(
        impl ::actix_web::ResponseError for $t {
            fn status_code(&self) -> ::actix_web::http::StatusCode {
                $crate::http::problem::ToProblem::to_problem(self).status_code()
            }
            fn error_response(&self) -> ::actix_web::HttpResponse {
                let problem = $crate::http::problem::ToProblem::to_problem(self);
                $crate::http::problem::log_server_error(&problem, self);
                problem.to_response()
            }
        }
    )+};
}

/// Logs a 5xx answer's cause: an error for 500, a warning for an unavailable dependency.
pub fn log_server_error(problem: &Problem, error: &dyn std::error::Error) {
    if problem.status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(code = %problem.code, error = %error_chain(error), "internal error");
    } else if problem.status.is_server_error() {
        tracing::warn!(code = %problem.code, error = %error_chain(error), "dependency unavailable");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_written_as_the_contract_body() {
        let p = Problem::new(
            StatusCode::CONFLICT,
            ProblemCode::InsufficientStock,
            "item 1 has 0 available",
        )
        .item_id(1)
        .order_status(OrderStatus::Failed);
        let v: serde_json::Value = serde_json::to_value(p.body()).unwrap();
        assert_eq!(v["type"], "urn:checkout:problem:insufficient_stock");
        assert_eq!(v["title"], "Conflict");
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], "insufficient_stock");
        assert_eq!(v["itemId"], 1);
        assert_eq!(v["orderStatus"], "failed");
        assert!(v.get("retry_after_secs").is_none());
        assert_eq!(v.as_object().unwrap().len(), 7);
    }

    #[test]
    fn internal_problem_does_not_leak_the_cause() {
        let cause = std::io::Error::other("connection to 10.0.0.5:5432 refused");
        let p = Problem::internal(&cause);
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.detail.contains("10.0.0.5"));
    }
}
