//! PostgreSQL access for payments: a module per aggregate — payments (with their retry attempts
//! and the tombstones of canceled orders), refunds, recipients, split rules, the ledger
//! (allocations, entries and legs, balances), transfers and payouts.
//!
//! Every statement is checked at compile time against the migrated schema (`sqlx::query!`, with
//! the descriptions in `.sqlx/`).

pub mod ledger;
pub mod payments;
pub mod payouts;
pub mod recipients;
pub mod refunds;
pub mod split_rules;
pub mod transfers;

pub use shared::StorageError;

/// The database's schema, as its migrations make it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
