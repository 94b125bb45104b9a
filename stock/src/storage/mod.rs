//! PostgreSQL access for stock. Every change runs in one transaction; items are always locked in
//! id order (`SELECT ... ORDER BY id FOR UPDATE`) before they are changed, so concurrent
//! reservations, releases, completions and the sweeper cannot deadlock. The `CHECK` constraint
//! `0 <= reserved <= stock` is the last word on overselling.

pub mod items;
pub mod reservations;
