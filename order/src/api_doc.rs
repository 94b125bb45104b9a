//! The OpenAPI document of the order service.

use crate::domain::{Accepted, CheckoutBody, Order, OrderEvent, OrderLine, OrderList};
use crate::routes::{checkout, orders};
use shared::cart::LineBody;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order",
        description = "Checkout orchestrator: reserve stock, charge, complete, with compensation. Money is in minor units; errors are application/problem+json."
    ),
    paths(checkout::checkout, orders::get, orders::list),
    components(schemas(
        Order,
        OrderLine,
        OrderEvent,
        OrderList,
        Accepted,
        CheckoutBody,
        LineBody
    ))
)]
pub struct ApiDoc;
