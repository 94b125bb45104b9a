//! The payment service (SPEC §5): charges, refunds and retries through a pluggable processor,
//! one payment per order, tombstones against null compensation and hanging charges.

pub mod api_doc;
pub mod config;
pub mod domain;
pub mod faults;
pub mod flows;
pub mod metrics;
pub mod processor;
pub mod routes;
pub mod startup;
pub mod storage;
