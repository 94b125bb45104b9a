//! payment's application logic: charges and retries around the processor call, each success
//! captured into the ledger in the same transaction ([`flows`]); full and partial refunds with
//! their reversals ([`refunds`]); new versions of split rules ([`rules`]); the release worker
//! ([`release`]); transfers between recipients and their worker ([`transfers`]); payouts, their
//! worker and the payout provider port ([`payouts`]); the processor port and the simulated
//! processor ([`processor`]); and fault injection for testing the saga against a misbehaving
//! payment service ([`faults`]).

pub mod faults;
pub mod flows;
pub mod payouts;
pub mod processor;
pub mod refunds;
pub mod release;
pub mod rules;
pub mod transfers;

pub use flows::{Charged, FlowError, Payments, Retried};
pub use refunds::{PartRefunded, Refunded};

/// A balance change that overflows 64 bits is a broken batch: the transaction fails (an internal
/// error), nothing is written.
pub(crate) fn overflow(e: crate::domain::ledger::Overflow) -> crate::storage::StorageError {
    crate::storage::StorageError::other(e.to_string())
}
