//! The order service: the checkout orchestrator — a durable saga over stock and payment with
//! retries, compensation and crash recovery.
//!
//! Layout (the same in every service): `config` (settings, plain data), `state` (what handlers
//! read), `startup` (building and running it), `routes` (thin HTTP handlers), `domain` (the order
//! and the saga's policy, pure), `application` (the checkout, the saga's driver, participants,
//! recovery), `storage` (SQL), `metrics`, `api_doc` (the OpenAPI document).

pub mod api_doc;
pub mod application;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;
