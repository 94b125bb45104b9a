//! Settings of the stock service, read once from environment variables.

use shared::config::{string_or, var_or, CommonSettings, ConfigError};
use shared::http::auth::Tokens;
use std::time::Duration;

pub const NAME: &str = "stock";
pub const DEFAULT_PORT: u16 = 3133;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub tokens: Tokens,
    /// `RESERVATION_TTL_SECS` (900): a reservation not completed by then expires.
    pub reservation_ttl_secs: u64,
    /// `RESERVATION_SWEEP_INTERVAL_MS` (1000): how often expired reservations are swept.
    pub sweep_interval: Duration,
    /// `RESERVATION_BATCH_MAX` (128): the most reserves (and completions) written in one
    /// statement; 1 writes each alone.
    pub batch_max: usize,
    /// `PUBLIC_PATH_PREFIX` (`/stock`): where nginx publishes this service, for `Location` and
    /// the OpenAPI document's server.
    pub public_prefix: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let reservation_ttl_secs: u64 = var_or("RESERVATION_TTL_SECS", 900)?;
        if reservation_ttl_secs == 0 {
            return Err(ConfigError("RESERVATION_TTL_SECS must be positive".into()));
        }
        let sweep_ms: u64 = var_or("RESERVATION_SWEEP_INTERVAL_MS", 1000)?;
        Ok(Settings {
            common: CommonSettings::from_env(NAME, DEFAULT_PORT)?,
            tokens: Tokens::from_env(true)?,
            reservation_ttl_secs,
            sweep_interval: Duration::from_millis(sweep_ms.max(10)),
            batch_max: var_or("RESERVATION_BATCH_MAX", 128usize)?.max(1),
            public_prefix: string_or("PUBLIC_PATH_PREFIX", "/stock"),
        })
    }
}
