//! What the three services share, written once: configuration, RFC 9457 errors, the JSON extractor,
//! bearer-token authentication, the Idempotency-Key layer, health checks, request ids, telemetry,
//! metrics, API docs and start-up helpers.

pub mod auth;
pub mod batch;
pub mod cart;
pub mod config;
pub mod docs;
pub mod health;
pub mod http_client;
pub mod idempotency;
pub mod json;
pub mod log_lines;
pub mod metrics;
pub mod problem;
pub mod request_id;
pub mod startup;
pub mod telemetry;
pub mod trace_ids;
pub mod validate;

pub use problem::{Problem, ToProblem};
