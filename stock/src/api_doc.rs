//! The OpenAPI document of the stock service.

use crate::domain::item::{NewItemBody, RestockBody};
use crate::domain::reservation::{ReserveBody, TargetBody};
use crate::domain::{CanceledOrder, Item, ItemList, Reservation, ReservationLine};
use crate::routes::{items, reservations};
use shared::cart::LineBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "stock", description = "Catalogue and reservations. Money is in minor units; errors are application/problem+json."),
    paths(items::list, items::get, items::create, items::restock,
          reservations::reserve, reservations::release, reservations::complete, reservations::get),
    components(schemas(Item, ItemList, NewItemBody, RestockBody, Reservation, ReservationLine,
                       ReserveBody, LineBody, TargetBody, CanceledOrder)),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["service_token", "admin_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}
