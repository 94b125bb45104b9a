//! Integration tests: each drives a real stack (PostgreSQL, Redis, nginx, the services) through
//! nginx. See `tests/src/lib.rs` for the harness.

mod auth;
mod checkout;
mod conformance;
mod contract;
mod conventions;
mod deploy;
mod idempotency;
mod instances;
mod local_stack;
mod observability;
mod payment;
mod splits;
mod stock;
mod storage;
mod tracing;
mod transfers;
