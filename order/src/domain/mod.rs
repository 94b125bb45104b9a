//! The order domain: the order as the saga knows it, and the saga's policy — from a state and a
//! participant's answer to the next state, its events and the compensations to run — as pure
//! functions ([`policy`]). No I/O here.

pub mod order;
pub mod policy;

pub use order::{Line, Order};
pub use policy::{Changes, Compensation, Transition};
