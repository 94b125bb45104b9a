//! The order service (SPEC §6): the checkout orchestrator.

pub mod api_doc;
pub mod config;
pub mod startup;
