//! stock's API: the catalogue and reservations. stock's routes write these bodies and the saga
//! reads them (and builds the requests it sends), so a change here changes both sides at once.

use super::cart::{either_form, either_form_schema, CartLines};
use super::values::{
    ActiveCurrency, Currency, Invalid, ItemId, ItemName, Limit, Offset, OrderRef, Price, Quantity,
    RestockQuantity, StockLevel,
};
use super::CanceledOrder;
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

/// `POST /reserve`: every line of an order, or none. Sent as `{"orderId","items":[...]}`; the
/// one-line form `{"orderId","itemId","quantity"}` is read too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReserveForms", rename_all = "camelCase")]
pub struct ReserveRequest {
    pub order_id: OrderRef,
    pub items: CartLines,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReserveForms {
    order_id: OrderRef,
    items: Option<CartLines>,
    item_id: Option<ItemId>,
    quantity: Option<Quantity>,
}

impl TryFrom<ReserveForms> for ReserveRequest {
    type Error = Invalid;
    fn try_from(forms: ReserveForms) -> Result<Self, Invalid> {
        Ok(ReserveRequest {
            order_id: forms.order_id,
            items: either_form(forms.items, forms.item_id, forms.quantity)?,
        })
    }
}

impl PartialSchema for ReserveRequest {
    fn schema() -> RefOr<Schema> {
        either_form_schema(&[("orderId", OrderRef::schema(), true)])
    }
}

impl ToSchema for ReserveRequest {}

/// `POST /release` and `POST /complete`: `{"reservationId"}` or `{"orderId"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TargetForms")]
pub enum ReservationTarget {
    #[serde(rename = "reservationId")]
    Reservation(Uuid),
    #[serde(rename = "orderId")]
    Order(OrderRef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TargetForms {
    reservation_id: Option<Uuid>,
    order_id: Option<OrderRef>,
}

impl TryFrom<TargetForms> for ReservationTarget {
    type Error = Invalid;
    fn try_from(forms: TargetForms) -> Result<Self, Invalid> {
        match (forms.reservation_id, forms.order_id) {
            (Some(id), None) => Ok(ReservationTarget::Reservation(id)),
            (None, Some(order)) => Ok(ReservationTarget::Order(order)),
            _ => Err(Invalid(
                "reservationId: give exactly one of reservationId or orderId".into(),
            )),
        }
    }
}

/// The schema of a body naming one thing by either of two ids.
pub(crate) fn one_of_two_ids(
    first: (&str, RefOr<Schema>),
    second: (&str, RefOr<Schema>),
) -> RefOr<Schema> {
    let only = |(name, schema): (&str, RefOr<Schema>)| {
        ObjectBuilder::new()
            .property(name, schema)
            .required(name)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build()
    };
    OneOfBuilder::new()
        .item(only(first))
        .item(only(second))
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
        assert_eq!(
            serde_json::to_value(&one).unwrap(),
            json!({"orderId": "o1", "items": [{"itemId": 3, "quantity": 2}]})
        );
        for bad in [
            json!({"orderId": "", "itemId": 1, "quantity": 1}),
            json!({"orderId": "o", "itemId": 1, "quantity": 0}),
            json!({"orderId": "o", "itemId": 1}),
            json!({"orderId": "o", "items": [], }),
            json!({"orderId": "o", "itemId": 1, "quantity": 1, "coupon": 1}),
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
            ReservationTarget::Order(OrderRef::parse("o1").unwrap())
        );
        assert_eq!(
            serde_json::to_value(&order).unwrap(),
            json!({"orderId": "o1"})
        );
        let id = Uuid::new_v4();
        let by_id = t(json!({"reservationId": id})).unwrap();
        assert_eq!(
            serde_json::to_value(&by_id).unwrap(),
            json!({"reservationId": id})
        );
        assert!(t(json!({"reservationId": "nope"})).is_err());
        assert!(t(json!({})).is_err());
        assert!(t(json!({"orderId": "o", "reservationId": id})).is_err());
    }

    #[test]
    fn a_release_answer_is_a_reservation_or_a_tombstone() {
        let tombstone: Released =
            serde_json::from_value(json!({"orderId": "o1", "status": "canceled"})).unwrap();
        assert!(matches!(tombstone, Released::Tombstone(_)));
    }
}
