//! The stock service (SPEC §4): catalogue, reservations that never oversell, tombstones against
//! null compensation and hanging reservations, and an expiry sweeper.

pub mod api_doc;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod storage;
pub mod sweeper;
