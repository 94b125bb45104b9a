//! stock's application logic: reserving, completing and releasing around the storage statements
//! (with group commit), and the expiry sweeper.

pub mod reservations;
pub mod sweeper;

pub use reservations::{Completed, Released, Reservations, Reserved};
