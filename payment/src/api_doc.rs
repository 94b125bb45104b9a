//! The OpenAPI document of the payment service.

use crate::domain::{CanceledOrder, ChargeBody, Payment, PaymentList, RefundBody};
use crate::routes::payments;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "payment", description = "Charges, refunds and payment retries. Money is in minor units; errors are application/problem+json."),
    paths(payments::charge, payments::refund, payments::retry, payments::get, payments::list),
    components(schemas(Payment, PaymentList, ChargeBody, RefundBody, CanceledOrder)),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "service_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}
