//! The payment service: charges, refunds and retries through a pluggable processor, one payment
//! per order and attempt, tombstones against null compensation and hanging charges; and the marketplace's
//! money — recipients, versioned split rules, the split of each captured payment and its reversal
//! by refunds, in a double-entry ledger.
//!
//! Layout (the same in every service): `config` (settings, plain data), `state` (what handlers
//! read), `startup` (building and running it), `routes` (thin HTTP handlers), `domain` (pure
//! rules), `application` (the logic around storage and the processor), `storage` (SQL, a module
//! per aggregate), `metrics`, `api_doc` (the OpenAPI document).

pub mod api_doc;
pub mod application;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;
