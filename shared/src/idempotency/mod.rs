//! The Idempotency-Key layer (docs/api.md, "Idempotency-Key"; docs/design/idempotency.md), as actix middleware a route opts into with
//! `.wrap(from_fn(idempotency::layer))`.
//!
//! Redis is the fast path: the first request claims the key with an expiring in-flight marker,
//! concurrent ones get 409 `request_in_progress`, finished ones are replayed byte for byte with
//! `Idempotent-Replayed: true`, a different request under the same key gets 422. PostgreSQL is
//! the guard: handlers read [`IdempotencyContext`] and store [`IdempotencyContext::scoped`] with the
//! resource under a unique constraint, so a retry after Redis lost its data finds the resource
//! instead of creating a second one.

mod key;
mod store;

pub use key::{fingerprint, redis_key, IdempotencyKey, KeyError, KeyPrefix, KEY_PATTERN};
pub use store::{Claim, Entry, Store, StoredResponse};

use crate::http::auth::Caller;
use crate::http::json::body_error;
use crate::http::problem::{Problem, ProblemCode};
use crate::telemetry::metrics::Metrics;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::{ready, Ready};

pub const HEADER: &str = "Idempotency-Key";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// What a handler behind the layer knows of the key.
#[derive(Debug, Clone)]
pub struct IdempotencyContext {
    pub key: IdempotencyKey,
    /// The key qualified by its caller: what handlers store under a unique constraint.
    pub scoped: String,
    /// Fingerprint of the request, stored beside `scoped` to tell a retry from a reuse.
    pub fingerprint: String,
}

impl FromRequest for IdempotencyContext {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<IdempotencyContext>()
                .cloned()
                .ok_or_else(|| Problem::internal(&NotBehindLayer)),
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("handler expects the idempotency layer but the route does not wrap it")]
struct NotBehindLayer;

/// 422 `idempotency_key_reused`, also answered by handlers when PostgreSQL finds the key stored
/// with another fingerprint.
pub fn key_reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ProblemCode::IdempotencyKeyReused,
        "this Idempotency-Key was already used for a different request",
    )
}

/// What a route's 202 means for a retry of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// A result like any other, replayed as first answered (transfers, payouts).
    Replayed,
    /// The state of work that goes on: not kept, so that a retry answers the state then (order's
    /// checkout, whose retry answers the order as it is).
    CurrentState,
}

/// Whether an answer is kept for replay: business outcomes are (a 202 unless the route answers
/// current state), while 5xx answers, validation failures and other answers given before anything
/// executed are not, so the key may be retried.
fn is_stored(status: StatusCode, accepted: Accepted) -> bool {
    !(status.is_server_error()
        || (status == StatusCode::ACCEPTED && accepted == Accepted::CurrentState)
        || matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
                | StatusCode::TOO_MANY_REQUESTS
        ))
}

fn replay(response: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    if let Some(ct) = response.content_type {
        builder.insert_header((header::CONTENT_TYPE, ct));
    }
    if let Some(location) = response.location {
        builder.insert_header((header::LOCATION, location));
    }
    builder.insert_header((REPLAYED_HEADER, "true"));
    builder.body(response.body)
}

/// The middleware. Needs `web::Data<Store>` and `web::Data<Metrics>` in app data. A 202 is kept
/// and replayed like any other result.
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    run(req, next, Accepted::Replayed).await
}

/// The middleware for a route whose 202 answers the state of work that goes on (order's
/// checkout): a 202 is not kept, so a retry of the key runs the handler again, which answers the
/// state then. Everything else as [`layer`].
pub async fn layer_answering_current_state(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    run(req, next, Accepted::CurrentState).await
}

/// The middleware's steps:
///
/// 1. parse the key ([`IdempotencyKey::parse`]);
/// 2. read the body and fingerprint the request;
/// 3. claim the key in Redis — or answer from what is there ([`answer_existing`]);
/// 4. run the handler with the key in its request ([`IdempotencyContext`]);
/// 5. keep its answer for replay, or release the key ([`keep_or_release`]).
async fn run(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    accepted: Accepted,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (Some(store), Some(metrics)) = (
        req.app_data::<web::Data<Store>>().cloned(),
        req.app_data::<web::Data<Metrics>>().cloned(),
    ) else {
        return Ok(req.into_response(Problem::internal(&NotConfigured).to_response()));
    };
    let outcome = |name: &str| {
        metrics
            .idempotency_requests
            .with_label_values(&[name])
            .inc()
    };

    let key = match IdempotencyKey::parse(req.headers().get(HEADER).map(|v| v.as_bytes())) {
        Ok(key) => key,
        Err(e) => {
            outcome("invalid");
            return Ok(req.into_response(refusal(e).to_response()));
        }
    };
    let body = match req.extract::<web::Bytes>().await {
        Ok(body) => body,
        Err(e) => return Ok(req.into_response(body_error(&e).to_response())),
    };
    let caller = req
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "public".to_string(), |c| c.id.clone());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| req.path().to_string());
    let fp = fingerprint(req.method().as_str(), req.path(), &body);
    let claimed = Claimed {
        redis_key: store.key(&caller, req.method().as_str(), &route, &key),
        fingerprint: fp.clone(),
        marker: String::new(),
    };

    let claimed = match store.claim(&claimed.redis_key, &fp).await {
        Ok(Claim::Acquired { marker }) => Claimed { marker, ..claimed },
        Ok(Claim::Existing(entry)) => {
            let (label, response) = answer_existing(entry, &fp);
            outcome(label);
            return Ok(req.into_response(response));
        }
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store unavailable");
            let problem = Problem::unavailable("the idempotency store is unavailable; retry later");
            return Ok(req.into_response(problem.to_response()));
        }
    };

    outcome("executed");
    req.extensions_mut().insert(IdempotencyContext {
        scoped: format!("{caller}:{}", key.as_str()),
        key,
        fingerprint: fp,
    });
    req.set_payload(Payload::from(body));
    match next.call(req).await {
        Ok(response) => {
            Ok(keep_or_release(&store, &claimed, response.map_into_boxed_body(), accepted).await)
        }
        Err(e) => {
            release(&store, &claimed.redis_key, &claimed.marker).await;
            Err(e)
        }
    }
}

/// A key this request holds in Redis: where, for which request, and its in-flight marker.
struct Claimed {
    redis_key: String,
    fingerprint: String,
    marker: String,
}

/// The answer to a key that is taken: 422 for another request, the stored answer replayed, or 409
/// while the first still runs; with the metric label of each.
fn answer_existing(entry: Entry, fingerprint: &str) -> (&'static str, HttpResponse) {
    let stored_fingerprint = match &entry {
        Entry::InFlight { fingerprint, .. } | Entry::Completed { fingerprint, .. } => fingerprint,
    };
    if stored_fingerprint != fingerprint {
        return ("key_reused", key_reused().to_response());
    }
    match entry {
        Entry::Completed { response, .. } => ("replayed", replay(response)),
        Entry::InFlight { .. } => (
            "in_progress",
            Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::RequestInProgress,
                "a request with this Idempotency-Key is still being processed",
            )
            .retry_after(1)
            .to_response(),
        ),
    }
}

/// 400 for a missing or malformed key.
fn refusal(error: KeyError) -> Problem {
    match error {
        KeyError::Missing => Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemCode::IdempotencyKeyMissing,
            "the Idempotency-Key header is required on this endpoint",
        ),
        KeyError::Invalid(why) => Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemCode::IdempotencyKeyInvalid,
            format!("the Idempotency-Key header {why}"),
        ),
    }
}

/// Keeps a finished answer for replay in place of the key's marker, or — for an answer that is
/// not kept ([`is_stored`]) — releases the key so that it may be retried.
async fn keep_or_release(
    store: &Store,
    claimed: &Claimed,
    response: ServiceResponse<BoxBody>,
    accepted: Accepted,
) -> ServiceResponse<BoxBody> {
    if !is_stored(response.status(), accepted) {
        release(store, &claimed.redis_key, &claimed.marker).await;
        return response;
    }
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            release(store, &claimed.redis_key, &claimed.marker).await;
            let problem = Problem::internal(&BodyUnreadable);
            return ServiceResponse::new(request, problem.to_response());
        }
    };
    let header_text = |name| {
        head.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => {
            let stored = StoredResponse {
                status: head.status().as_u16(),
                content_type: header_text(header::CONTENT_TYPE),
                location: header_text(header::LOCATION),
                body: text,
            };
            if let Err(e) = store
                .complete(&claimed.redis_key, &claimed.fingerprint, stored)
                .await
            {
                // The resource is safe in PostgreSQL; a retry will be answered from there.
                tracing::warn!(error = %e, "could not store the idempotent response");
            }
        }
        Err(_) => release(store, &claimed.redis_key, &claimed.marker).await,
    }
    ServiceResponse::new(request, head.set_body(bytes).map_into_boxed_body())
}

async fn release(store: &Store, key: &str, marker: &str) {
    if let Err(e) = store.release(key, marker).await {
        tracing::warn!(error = %e, "could not release the idempotency key; it expires by itself");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the idempotency layer needs Store and Metrics in app data")]
struct NotConfigured;

#[derive(Debug, thiserror::Error)]
#[error("the response body could not be read for storing")]
struct BodyUnreadable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_answers_are_stored_but_not_failures_before_execution() {
        for accepted in [Accepted::Replayed, Accepted::CurrentState] {
            for s in [200, 201, 402, 404, 409, 422] {
                assert!(is_stored(StatusCode::from_u16(s).unwrap(), accepted), "{s}");
            }
            for s in [400, 401, 403, 413, 429, 500, 502, 503, 504] {
                assert!(
                    !is_stored(StatusCode::from_u16(s).unwrap(), accepted),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn a_202_is_replayed_unless_the_route_answers_current_state() {
        assert!(is_stored(StatusCode::ACCEPTED, Accepted::Replayed));
        assert!(!is_stored(StatusCode::ACCEPTED, Accepted::CurrentState));
    }
}
