//! The one outbound HTTP client services use to call each other (reqwest + reqwest-middleware +
//! reqwest-retry).
//!
//! - Transient failures only are retried, with exponential backoff and jitter, within a total
//!   budget per call: connect errors, timeouts, 5xx, 408, 429, and 409 with `Retry-After` (the
//!   Idempotency-Key layer's `request_in_progress`). Every other answer is a business answer,
//!   returned as it is and never retried.
//! - Each attempt has its own timeout; the bearer token, `Idempotency-Key`, `X-Request-ID` and W3C
//!   `traceparent` go on every attempt, so a retry is the same request.
//! - An inner layer counts attempts (metrics `outbound_requests_total`, `outbound_retries_total`)
//!   and records whether any attempt may have reached the server: a call whose every attempt failed
//!   to connect certainly did not execute.

use crate::metrics::Metrics;
use actix_web::web;
use http::Extensions;
use reqwest::{header, Method, Request, Response, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{
    default_on_request_failure, Jitter, RetryTransientMiddleware, Retryable, RetryableStrategy,
};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// Total time a call may spend retrying.
    pub budget: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Sent as `Authorization: Bearer ...` when set.
    pub token: Option<String>,
}

/// A business answer: any status that is not transient, with its JSON body (Null if none).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
    /// How many attempts the call took.
    pub attempts: u32,
}

impl Reply {
    /// The problem `code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// What every call made on behalf of one request carries along.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: String,
    /// The W3C `traceparent` of the request the calls are made for; the caller continues that trace
    /// (the calls themselves carry the current span's, see [`crate::telemetry::inject`]).
    pub traceparent: Option<String>,
}

/// No business answer within the budget.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{target} did not answer after {attempts} attempts: {reason}")]
pub struct Unavailable {
    pub target: &'static str,
    pub reason: String,
    pub attempts: u32,
    /// Whether any attempt may have reached the server (so the operation may have executed).
    pub maybe_executed: bool,
}

/// Retries transient failures only.
struct TransientOnly;

impl RetryableStrategy for TransientOnly {
    fn handle(&self, res: &Result<Response, reqwest_middleware::Error>) -> Option<Retryable> {
        match res {
            Ok(r) if is_transient(r) => Some(Retryable::Transient),
            Ok(r) if r.status().is_success() => None,
            Ok(_) => Some(Retryable::Fatal),
            Err(e) => default_on_request_failure(e),
        }
    }
}

/// A transient answer: 5xx, 408, 429, and 409 with `Retry-After` (the Idempotency-Key layer's
/// `request_in_progress`). Every other answer is a business answer.
fn is_transient(response: &Response) -> bool {
    let status = response.status();
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::CONFLICT && response.headers().contains_key(header::RETRY_AFTER))
}

/// Per-call bookkeeping the counting layer fills in.
#[derive(Clone, Default)]
struct CallLog {
    attempts: Arc<AtomicU32>,
    reached: Arc<AtomicBool>,
}

struct Counting {
    target: &'static str,
    metrics: Option<web::Data<Metrics>>,
}

#[async_trait::async_trait]
impl Middleware for Counting {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let log = extensions.get::<CallLog>().cloned().unwrap_or_default();
        let attempt = log.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt > 1 {
            tracing::info!(target_service = self.target, attempt, "retrying call");
        }
        let result = next.run(req, extensions).await;
        let outcome = match &result {
            Ok(r) if r.status().is_server_error() => "server_error",
            Ok(r) if is_transient(r) => "busy",
            Ok(_) => "answered",
            Err(reqwest_middleware::Error::Reqwest(e)) if e.is_connect() => "connect_error",
            Err(reqwest_middleware::Error::Reqwest(e)) if e.is_timeout() => "timeout",
            Err(_) => "error",
        };
        if outcome != "connect_error" {
            log.reached.store(true, Ordering::SeqCst);
        }
        if let Some(m) = &self.metrics {
            m.outbound_requests
                .with_label_values(&[self.target, outcome])
                .inc();
            if attempt > 1 {
                m.outbound_retries.with_label_values(&[self.target]).inc();
            }
        }
        result
    }
}

/// A client for one participant service.
#[derive(Clone)]
pub struct ServiceClient {
    target: &'static str,
    base_url: String,
    token: Option<String>,
    http: ClientWithMiddleware,
}

impl ServiceClient {
    pub fn new(
        target: &'static str,
        base_url: &str,
        settings: &ClientSettings,
        metrics: Option<web::Data<Metrics>>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(settings.attempt_timeout)
            .connect_timeout(settings.attempt_timeout.min(Duration::from_secs(1)))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        let policy = ExponentialBackoff::builder()
            .retry_bounds(settings.min_backoff, settings.max_backoff)
            .jitter(Jitter::Bounded)
            .base(2)
            .build_with_total_retry_duration(settings.budget);
        let http = ClientBuilder::new(http)
            .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                policy,
                TransientOnly,
            ))
            .with(Counting { target, metrics })
            .build();
        Ok(ServiceClient {
            target,
            base_url: base_url.trim_end_matches('/').to_string(),
            token: settings.token.clone(),
            http,
        })
    }

    /// `POST {base}{path}` with a JSON body under `idempotency_key`.
    pub async fn post(
        &self,
        path: &str,
        idempotency_key: &str,
        body: &impl Serialize,
        context: &CallContext,
    ) -> Result<Reply, Unavailable> {
        let unavailable = |reason: String| Unavailable {
            target: self.target,
            reason,
            attempts: 0,
            maybe_executed: false,
        };
        let body = serde_json::to_vec(body).map_err(|e| unavailable(e.to_string()))?;
        let mut request = self
            .http
            .request(Method::POST, format!("{}{path}", self.base_url))
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", idempotency_key)
            .header("X-Request-ID", &context.request_id)
            .body(body);
        for (name, value) in crate::telemetry::inject() {
            request = request.header(name, value);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let request = request.build().map_err(|e| unavailable(e.to_string()))?;
        let log = CallLog::default();
        let mut extensions = Extensions::new();
        extensions.insert(log.clone());
        let result = self
            .http
            .execute_with_extensions(request, &mut extensions)
            .await;
        let attempts = log.attempts.load(Ordering::SeqCst);
        let failed = |reason: String| Unavailable {
            target: self.target,
            reason,
            attempts,
            maybe_executed: log.reached.load(Ordering::SeqCst),
        };
        let response = result.map_err(|e| failed(crate::problem::error_chain(&e)))?;
        if is_transient(&response) {
            return Err(failed(format!("answered {}", response.status())));
        }
        let status = response.status();
        let text = response.text().await.map_err(|e| failed(e.to_string()))?;
        Ok(Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
            attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, retry_after: bool) -> Response {
        let mut b = http::Response::builder().status(status);
        if retry_after {
            b = b.header("retry-after", "1");
        }
        Response::from(b.body(Vec::<u8>::new()).unwrap())
    }

    #[test]
    fn only_transient_answers_are_retried() {
        for (status, retry_after) in [
            (500, false),
            (502, false),
            (503, true),
            (429, false),
            (408, false),
            (409, true),
        ] {
            assert!(is_transient(&response(status, retry_after)), "{status}");
        }
        for (status, retry_after) in [
            (200, false),
            (201, false),
            (400, false),
            (402, false),
            (404, false),
            (409, false),
            (422, false),
        ] {
            assert!(!is_transient(&response(status, retry_after)), "{status}");
        }
    }
}
