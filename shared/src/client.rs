//! The one outbound HTTP client services use to call each other (reqwest + reqwest-middleware +
//! reqwest-retry), with typed answers: a call sends a contract request body and gets back the
//! contract's answer type, a typed refusal (the participant's problem with its code), or the news
//! that no business answer came within the budget.
//!
//! - Transient failures only are retried, with exponential backoff and jitter, within a total
//!   budget per call: connect errors, timeouts, 5xx, 408, 429, and 409 with `Retry-After` (the
//!   Idempotency-Key layer's `request_in_progress`). Every other answer is a business answer,
//!   returned as it is and never retried.
//! - Each attempt has its own timeout; the bearer token, `Idempotency-Key`, `X-Request-ID` and W3C
//!   `traceparent` go on every attempt, so a retry is the same request.
//! - A participant may run as several instances: its URL setting is then a comma-separated list
//!   ([`BaseUrls`]), and each attempt goes to the next instance in turn, so that a retry after an
//!   instance refused the connection (it died, it is restarting) reaches another one.
//! - An inner layer counts attempts (metrics `outbound_requests_total`, `outbound_retries_total`)
//!   and records whether any attempt may have reached the server: a call whose every attempt failed
//!   to connect certainly did not execute.

use crate::contract::problem::ProblemBody;
use crate::telemetry::metrics::Metrics;
use actix_web::web;
use http::Extensions;
use reqwest::{header, Method, Request, Response, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{
    default_on_request_failure, Jitter, RetryTransientMiddleware, Retryable, RetryableStrategy,
};
use serde::de::DeserializeOwned;
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

/// A business answer: any status that is not transient.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    /// A success, with the body the contract says.
    Done(T),
    /// A refusal: an error status with a problem body, its `code` one the contract knows.
    Refused(Box<ProblemBody>),
    /// Neither: a success whose body is not the contract's, or an error without a problem body
    /// the contract knows. Something is wrong with the participant (a bug, a version skew).
    Unexpected { status: u16, reason: String },
}

/// A call's business answer and how many attempts it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub answer: Answer<T>,
    pub attempts: u32,
}

impl<T: DeserializeOwned> Reply<T> {
    /// Reads an answer's status and body as the contract says.
    pub fn read(status: StatusCode, body: &[u8], attempts: u32) -> Self {
        let unexpected = |reason: String| Answer::Unexpected {
            status: status.as_u16(),
            reason,
        };
        let answer = if status.is_success() {
            serde_json::from_slice(body)
                .map(Answer::Done)
                .unwrap_or_else(|e| unexpected(format!("the body is not the contract's: {e}")))
        } else {
            serde_json::from_slice::<ProblemBody>(body)
                .map(|p| Answer::Refused(Box::new(p)))
                .unwrap_or_else(|e| unexpected(format!("no problem the contract knows: {e}")))
        };
        Reply { answer, attempts }
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

/// Where a participant answers: one base URL per instance, parsed from a comma-separated list
/// (`http://10.0.0.5:3133,http://10.0.0.6:3133`). One URL is the common case (a single instance, or
/// a name that balances itself, such as a Kubernetes Service).
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUrls(Vec<String>);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("'{0}' is not an http(s) URL (a base URL, or several separated by commas)")]
pub struct InvalidBaseUrl(pub String);

impl std::str::FromStr for BaseUrls {
    type Err = InvalidBaseUrl;
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let urls = list
            .split(',')
            .map(str::trim)
            .map(|one| {
                let url = reqwest::Url::parse(one).map_err(|_| InvalidBaseUrl(one.to_string()))?;
                let ok = matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none();
                ok.then(|| one.trim_end_matches('/').to_string())
                    .ok_or_else(|| InvalidBaseUrl(one.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BaseUrls(urls))
    }
}

impl BaseUrls {
    pub fn first(&self) -> &str {
        &self.0[0]
    }
}

/// Sends each attempt to the next instance in turn. Requests are built against the first base
/// URL; this layer, inside the retry layer, swaps that base for the instance whose turn it is.
struct Spread {
    urls: BaseUrls,
    next: AtomicU32,
}

#[async_trait::async_trait]
impl Middleware for Spread {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.urls.0.len();
        let base = &self.urls.0[turn];
        if turn != 0 {
            if let Some(rest) = req.url().as_str().strip_prefix(self.urls.first()) {
                let url = reqwest::Url::parse(&format!("{base}{rest}"))
                    .map_err(|e| reqwest_middleware::Error::Middleware(e.into()))?;
                *req.url_mut() = url;
            }
        }
        next.run(req, extensions).await
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
        base_urls: &BaseUrls,
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
        let mut http = ClientBuilder::new(http)
            .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                policy,
                TransientOnly,
            ))
            .with(Counting { target, metrics });
        if base_urls.0.len() > 1 {
            http = http.with(Spread {
                urls: base_urls.clone(),
                next: AtomicU32::new(0),
            });
        }
        let http = http.build();
        Ok(ServiceClient {
            target,
            base_url: base_urls.first().to_string(),
            token: settings.token.clone(),
            http,
        })
    }

    /// `POST {base}{path}` with a JSON body under `idempotency_key`; the answer is read as `T`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        idempotency_key: &str,
        body: &impl Serialize,
        context: &CallContext,
    ) -> Result<Reply<T>, Unavailable> {
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
        let response = result.map_err(|e| failed(crate::http::problem::error_chain(&e)))?;
        if is_transient(&response) {
            return Err(failed(format!("answered {}", response.status())));
        }
        let status = response.status();
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        Ok(Reply::read(status, &body, attempts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::problem::ProblemCode;

    #[test]
    fn base_urls_are_one_or_several_http_urls() {
        let one: BaseUrls = "http://127.0.0.1:3133/".parse().unwrap();
        assert_eq!(one, BaseUrls(vec!["http://127.0.0.1:3133".into()]));
        let two: BaseUrls = "http://a:1, https://b:2/stock".parse().unwrap();
        assert_eq!(
            two,
            BaseUrls(vec!["http://a:1".into(), "https://b:2/stock".into()])
        );
        for bad in [
            "",
            "a:1",
            "http://a:1,",
            "ftp://a",
            "http://a:1?x=1",
            "http://a,,http://b",
        ] {
            assert!(bad.parse::<BaseUrls>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_are_read_as_the_contract_says() {
        let done: Reply<crate::contract::CanceledOrder> =
            Reply::read(StatusCode::OK, br#"{"orderId":"o","status":"canceled"}"#, 1);
        assert!(matches!(done.answer, Answer::Done(_)));
        let refused: Reply<crate::contract::CanceledOrder> = Reply::read(
            StatusCode::CONFLICT,
            br#"{"type":"t","title":"Conflict","status":409,"detail":"d","code":"insufficient_stock","itemId":3}"#,
            2,
        );
        match refused.answer {
            Answer::Refused(p) => {
                assert_eq!(
                    (p.code, p.context.item_id),
                    (ProblemCode::InsufficientStock, Some(3))
                )
            }
            other => panic!("{other:?}"),
        }
        for (status, body) in [
            (StatusCode::OK, &br#"{"orderId":"o"}"#[..]),
            (StatusCode::CONFLICT, br#"{"code":"no_such_code"}"#),
            (StatusCode::NOT_FOUND, b"<html>"),
        ] {
            let r: Reply<crate::contract::CanceledOrder> = Reply::read(status, body, 1);
            assert!(matches!(r.answer, Answer::Unexpected { .. }), "{status}");
        }
    }

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
