//! payment's application logic: charges, refunds and retries around the processor call
//! ([`flows`]), the processor port and the simulated processor ([`processor`]), and fault
//! injection for testing the saga against a misbehaving payment service ([`faults`]).

pub mod faults;
pub mod flows;
pub mod processor;

pub use flows::{Charged, FlowError, Payments, Refunded, Retried};
