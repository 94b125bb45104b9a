//! PostgreSQL access for stock: a module per aggregate. Every change runs in one transaction —
//! the hot ones (reserve, complete, the end of a reservation) in one statement each, so an item
//! row is locked only for that statement and its commit; items are always locked in id order
//! (`ORDER BY id FOR NO KEY UPDATE`) before they are changed, so concurrent reservations,
//! releases, completions and the sweeper cannot deadlock. The `CHECK` constraint
//! `stock_never_oversold` (`0 <= reserved <= stock`) is the last word on overselling.
//!
//! Every statement is checked at compile time against the migrated schema (`sqlx::query!`, with
//! the descriptions in `.sqlx/`).

pub mod items;
pub mod reservations;

pub use shared::StorageError;

/// The database's schema, as its migrations make it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
