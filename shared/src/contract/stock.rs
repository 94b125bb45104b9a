//! stock's API: the catalogue and reservations. stock's routes write these bodies and the saga
//! reads them (and builds the requests it sends), so a change here changes both sides at once.

use super::cart::{either_form, either_form_schema, nullable, CartLines};
use super::values::{
    ActiveCurrency, Attempt, Currency, Invalid, ItemId, ItemName, Limit, Offset, OrderRef, Price,
    Quantity, RestockQuantity, StockLevel,
};
use super::{CanceledOrder, OrderAttempt};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaFormat};
use utoipa::openapi::{KnownFormat, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

crate::text_enum! {
    /// A reservation's state: `reserved` holds its units; the others are final.
    pub enum ReservationStatus {
        Reserved = "reserved",
        Completed = "completed",
        Canceled = "canceled",
        Expired = "expired",
    }
}

/// An item of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: ItemId,
    pub name: String,
    /// Minor units of `currency`.
    pub price: i64,
    pub currency: Currency,
    pub stock: i64,
    pub reserved: i64,
    /// `stock - reserved`.
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemList {
    pub items: Vec<Item>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `GET /items?limit=&offset=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    pub limit: Option<Limit>,
    pub offset: Option<Offset>,
}

/// `POST /items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewItem {
    pub name: ItemName,
    pub price: Price,
    #[serde(deserialize_with = "Currency::deserialize_active")]
    #[schema(value_type = ActiveCurrency)]
    pub currency: Currency,
    pub stock: StockLevel,
}

/// `POST /items/{id}/restock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Restock {
    pub quantity: RestockQuantity,
}

/// `POST /reserve`: every line of an order's attempt, or none. Sent as
/// `{"orderId","attempt"?,"items":[...]}`; the one-line form `{"orderId","attempt"?,"itemId","quantity"}`
/// is read too. `attempt` is 1 when absent, and not written when it is 1 (so a first attempt's
/// reserve is what it was before attempts were a field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReserveForms", rename_all = "camelCase")]
pub struct ReserveRequest {
    pub order_id: OrderRef,
    #[serde(skip_serializing_if = "Attempt::is_first")]
    pub attempt: Attempt,
    pub items: CartLines,
}

impl ReserveRequest {
    pub fn order_attempt(&self) -> OrderAttempt {
        OrderAttempt {
            order_id: self.order_id.clone(),
            attempt: self.attempt,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReserveForms {
    order_id: OrderRef,
    #[serde(default)]
    attempt: Option<Attempt>,
    items: Option<CartLines>,
    item_id: Option<ItemId>,
    quantity: Option<Quantity>,
}

impl TryFrom<ReserveForms> for ReserveRequest {
    type Error = Invalid;
    fn try_from(forms: ReserveForms) -> Result<Self, Invalid> {
        Ok(ReserveRequest {
            order_id: forms.order_id,
            attempt: forms.attempt.unwrap_or_default(),
            items: either_form(forms.items, forms.item_id, forms.quantity)?,
        })
    }
}

impl PartialSchema for ReserveRequest {
    fn schema() -> RefOr<Schema> {
        either_form_schema(&[
            ("orderId", OrderRef::schema(), true),
            ("attempt", Attempt::schema(), false),
        ])
    }
}

impl ToSchema for ReserveRequest {}

/// `POST /release` and `POST /complete`: `{"reservationId"}` or `{"orderId","attempt"?}` (the
/// order's attempt, 1 when absent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TargetForms")]
pub enum ReservationTarget {
    Reservation(Uuid),
    Order(OrderAttempt),
}

impl Serialize for ReservationTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ReservationTarget::Reservation(id) => {
                IdBody::Id("reservationId", id).serialize(serializer)
            }
            ReservationTarget::Order(order) => IdBody::Order(order).serialize(serializer),
        }
    }
}

/// How a body naming one thing is written: `{"<name>": id}`, or `{"orderId","attempt"}` with
/// `attempt` left out when it is 1 (as such bodies were before attempts were a field).
pub(crate) enum IdBody<'a> {
    Id(&'static str, &'a Uuid),
    Order(&'a OrderAttempt),
}

impl Serialize for IdBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            IdBody::Id(name, id) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(name, id)?;
                map.end()
            }
            IdBody::Order(order) => {
                let first = order.attempt.is_first();
                let mut map = serializer.serialize_map(Some(if first { 1 } else { 2 }))?;
                map.serialize_entry("orderId", &order.order_id)?;
                if !first {
                    map.serialize_entry("attempt", &order.attempt)?;
                }
                map.end()
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TargetForms {
    reservation_id: Option<Uuid>,
    order_id: Option<OrderRef>,
    attempt: Option<Attempt>,
}

impl TryFrom<TargetForms> for ReservationTarget {
    type Error = Invalid;
    fn try_from(forms: TargetForms) -> Result<Self, Invalid> {
        match (forms.reservation_id, forms.order_id, forms.attempt) {
            (Some(_), None, Some(_)) => Err(Invalid(
                "attempt: goes with orderId, not with reservationId".into(),
            )),
            (Some(id), None, None) => Ok(ReservationTarget::Reservation(id)),
            (None, Some(order_id), attempt) => Ok(ReservationTarget::Order(OrderAttempt {
                order_id,
                attempt: attempt.unwrap_or_default(),
            })),
            _ => Err(Invalid(
                "reservationId: give exactly one of reservationId or orderId".into(),
            )),
        }
    }
}

/// The schema of a body naming one thing by an id, or by the order (and attempt) it is of.
pub(crate) fn one_of_two_ids(
    first: (&str, RefOr<Schema>),
    second: (&str, RefOr<Schema>),
) -> RefOr<Schema> {
    let closed = |object: ObjectBuilder| {
        object
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build()
    };
    let (id, id_schema) = first;
    let (order, order_schema) = second;
    OneOfBuilder::new()
        .item(closed(
            ObjectBuilder::new().property(id, id_schema).required(id),
        ))
        .item(closed(
            ObjectBuilder::new()
                .property(order, order_schema)
                .required(order)
                .property("attempt", nullable(Attempt::schema())),
        ))
        .into()
}

pub(crate) fn uuid_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .into()
}

impl PartialSchema for ReservationTarget {
    fn schema() -> RefOr<Schema> {
        one_of_two_ids(
            ("reservationId", uuid_schema()),
            ("orderId", OrderRef::schema()),
        )
    }
}

impl ToSchema for ReservationTarget {}

/// One line of a reservation, priced when it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationLine {
    pub item_id: ItemId,
    /// The units of the item the order holds (its lines of this item added together).
    pub quantity: i64,
    /// Minor units, as the item was priced when reserved.
    pub unit_price: i64,
    /// `unitPrice × quantity`.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub order_id: String,
    /// The order's attempt this reservation is of: 1 unless its checkout was started again after
    /// a 503 (`dependency_unavailable`). (Read as 1 when absent, as stock wrote it before attempts
    /// were a field.)
    #[serde(default = "super::first_attempt")]
    #[schema(required = true, minimum = 1)]
    pub attempt: i32,
    pub status: ReservationStatus,
    pub items: Vec<ReservationLine>,
    pub total_amount: i64,
    pub currency: Currency,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `/release` answers: the reservation, or — for an order that had none — the tombstone
/// that now refuses a late reserve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Released {
    Reservation(Reservation),
    Tombstone(CanceledOrder),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reserve_request_reads_both_forms_and_is_sent_in_the_list_form() {
        let one: ReserveRequest =
            serde_json::from_value(json!({"orderId": "o1", "itemId": 3, "quantity": 2})).unwrap();
        let list: ReserveRequest = serde_json::from_value(
            json!({"orderId": "o1", "items": [{"itemId": 3, "quantity": 2}]}),
        )
        .unwrap();
        assert_eq!(one, list);
        assert_eq!(one.attempt, Attempt::FIRST);
        assert_eq!(
            serde_json::to_value(&one).unwrap(),
            json!({"orderId": "o1", "items": [{"itemId": 3, "quantity": 2}]})
        );
        let second: ReserveRequest = serde_json::from_value(
            json!({"orderId": "o1", "attempt": 2, "itemId": 3, "quantity": 2}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&second).unwrap(),
            json!({"orderId": "o1", "attempt": 2, "items": [{"itemId": 3, "quantity": 2}]})
        );
        for bad in [
            json!({"orderId": "", "itemId": 1, "quantity": 1}),
            json!({"orderId": "o", "itemId": 1, "quantity": 0}),
            json!({"orderId": "o", "itemId": 1}),
            json!({"orderId": "o", "items": [], }),
            json!({"orderId": "o", "itemId": 1, "quantity": 1, "coupon": 1}),
            json!({"orderId": "o", "attempt": 0, "itemId": 1, "quantity": 1}),
            json!({"orderId": "o", "attempt": "2", "itemId": 1, "quantity": 1}),
        ] {
            assert!(
                serde_json::from_value::<ReserveRequest>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_target_is_exactly_one_id() {
        let t = |v: serde_json::Value| serde_json::from_value::<ReservationTarget>(v);
        let order = t(json!({"orderId": "o1"})).unwrap();
        assert_eq!(
            order,
            ReservationTarget::Order(OrderAttempt::first(OrderRef::parse("o1").unwrap()))
        );
        assert_eq!(
            serde_json::to_value(&order).unwrap(),
            json!({"orderId": "o1"})
        );
        assert_eq!(t(json!({"orderId": "o1", "attempt": 1})).unwrap(), order);
        let second = t(json!({"orderId": "o1", "attempt": 2})).unwrap();
        assert_eq!(
            serde_json::to_value(&second).unwrap(),
            json!({"orderId": "o1", "attempt": 2})
        );
        assert!(t(json!({"orderId": "o1", "attempt": 0})).is_err());
        let id = Uuid::new_v4();
        let by_id = t(json!({"reservationId": id})).unwrap();
        assert_eq!(
            serde_json::to_value(&by_id).unwrap(),
            json!({"reservationId": id})
        );
        assert!(t(json!({"reservationId": "nope"})).is_err());
        assert!(t(json!({})).is_err());
        assert!(t(json!({"orderId": "o", "reservationId": id})).is_err());
        let e = t(json!({"reservationId": id, "attempt": 2})).unwrap_err();
        assert!(e.to_string().starts_with("attempt: "), "{e}");
    }

    #[test]
    fn a_release_answer_is_a_reservation_or_a_tombstone() {
        let tombstone: Released =
            serde_json::from_value(json!({"orderId": "o1", "status": "canceled"})).unwrap();
        assert!(matches!(tombstone, Released::Tombstone(_)));
    }
}
