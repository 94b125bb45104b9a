//! The stock service: the catalogue, reservations that never oversell, tombstones against null
//! compensation and hanging reservations, and an expiry sweeper.
//!
//! Layout (the same in every service): `config` (settings, plain data), `state` (what handlers
//! read), `startup` (building and running it), `routes` (thin HTTP handlers), `domain` (pure
//! rules), `application` (the logic around storage), `storage` (SQL, a module per aggregate),
//! `metrics`, `api_doc` (the OpenAPI document).

pub mod api_doc;
pub mod application;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;
