//! The stock domain: parsed requests (parse, don't validate) and the pure rules of a reservation.

pub mod item;
pub mod reservation;
pub mod views;

pub use item::{ItemId, NewItem, RestockQuantity};
pub use reservation::{
    plan, ItemState, Plan, PlannedLine, Rejection, ReservationStatus, ReserveRequest, Target,
};
pub use views::{CanceledOrder, Item, ItemList, Reservation, ReservationLine};
