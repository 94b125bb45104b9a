//! The one application state every stock handler reads (`web::Data<AppState>`).

use crate::application::Reservations;
use crate::config::Settings;
use crate::metrics::StockMetrics;
use sqlx::PgPool;

pub struct AppState {
    pub settings: Settings,
    pub pool: PgPool,
    pub reservations: Reservations,
    pub metrics: StockMetrics,
}
