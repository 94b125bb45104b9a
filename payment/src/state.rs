//! The one application state every payment handler reads (`web::Data<AppState>`).

use crate::application::Payments;
use crate::config::Settings;

pub struct AppState {
    pub settings: Settings,
    pub payments: Payments,
}
