//! PostgreSQL access for payments: a module per aggregate (here one: payments, with their retry
//! attempts and the tombstones of canceled orders).
//!
//! Every statement is checked at compile time against the migrated schema (`sqlx::query!`, with
//! the descriptions in `.sqlx/`).

pub mod payments;

pub use shared::StorageError;

/// The database's schema, as its migrations make it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
