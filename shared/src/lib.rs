//! What the three services share, written once and grouped by concern:
//!
//! - [`contract`]: the typed contract between the services — every body, status and problem code
//!   that crosses a service boundary, from which the OpenAPI documents are generated;
//! - [`http`]: the HTTP edge — problem+json errors, extractors, auth, request ids, health, 404/405;
//! - [`openapi`]: a service's OpenAPI document, completed with what the layers add;
//! - [`idempotency`]: the Idempotency-Key layer;
//! - [`redis_conn`]: Redis, one server or a cluster;
//! - [`storage`]: the errors a storage layer answers with;
//! - [`batch`]: group commit;
//! - [`client`]: the outbound client the saga calls participants with;
//! - [`startup`], [`config`], [`telemetry`]: running a service.

pub mod batch;
pub mod client;
pub mod config;
pub mod contract;
pub mod http;
pub mod idempotency;
pub mod openapi;
pub mod redis_conn;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod text;

pub use http::problem::{Problem, ToProblem};
pub use storage::StorageError;

/// What the [`text_enum!`] macro needs, so that crates using it need not depend on these.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use sqlx;
    pub use utoipa;
}
