//! order's application logic: the checkout ([`checkout`]: open the order, drive it, answer by the
//! deadline), the saga's driver ([`saga`]), the participants port ([`participants`]), the
//! recovery worker ([`recovery`]) and the retry schedule of steps that must succeed ([`retry`]).

pub mod checkout;
pub mod participants;
pub mod recovery;
pub mod retry;
pub mod saga;

pub use checkout::Checkout;
pub use participants::{HttpParticipants, Participants};
pub use saga::Saga;
