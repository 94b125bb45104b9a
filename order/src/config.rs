//! Settings of the order service, from environment variables.

use shared::config::{CommonSettings, ConfigError};

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Settings {
            common: CommonSettings::from_env("order", 3131)?,
        })
    }
}
