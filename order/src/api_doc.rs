//! The OpenAPI document of the order service.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(
    title = "order",
    description = "Checkout orchestrator. Money is in minor units; errors are application/problem+json."
))]
pub struct ApiDoc;
