//! The one application state every order handler reads (`web::Data<AppState>`).

use crate::application::{HttpParticipants, Saga};
use crate::config::Settings;
use std::sync::Arc;

pub struct AppState {
    pub settings: Settings,
    pub saga: Arc<Saga<HttpParticipants>>,
}
