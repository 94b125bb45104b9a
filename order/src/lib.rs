//! The order service (SPEC §6): the checkout orchestrator — a durable saga over stock and payment
//! with retries, compensation and crash recovery.

pub mod api_doc;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod participants;
pub mod recovery;
pub mod retry;
pub mod routes;
pub mod saga;
pub mod startup;
pub mod storage;
