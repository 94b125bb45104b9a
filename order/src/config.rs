//! Settings of the order service, read once from environment variables.

use shared::client::{BaseUrls, ClientSettings};
use shared::config::{string_or, var_or, CommonSettings, ConfigError};
use std::time::Duration;

pub const NAME: &str = "order";
pub const DEFAULT_PORT: u16 = 3131;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    /// `STOCK_URL` (`http://127.0.0.1:3133`) and `PAYMENT_URL` (`http://127.0.0.1:3132`): each a
    /// base URL, or several separated by commas (one per instance, taken in turn).
    pub stock_url: BaseUrls,
    pub payment_url: BaseUrls,
    /// Outbound calls: `SERVICE_TOKEN` (required unless `AUTH_DISABLED=true`),
    /// `OUTBOUND_TIMEOUT_MS` (2000) per attempt, `SAGA_STEP_BUDGET_MS` (10000) per step.
    pub client: ClientSettings,
    /// `CHECKOUT_DEADLINE_MS` (5000): how long `POST /checkout` waits before answering 202.
    pub checkout_deadline: Duration,
    /// `SAGA_LEASE_SECS` (30): how long a driver holds an order before recovery may take it.
    pub lease: Duration,
    /// `RECOVERY_INTERVAL_MS` (2000): how often the recovery worker looks for stale orders.
    pub recovery_interval: Duration,
    /// `COMPENSATION_MAX_BACKOFF_MS` (5000): the longest pause between compensation attempts.
    pub compensation_max_backoff: Duration,
    /// `PUBLIC_PATH_PREFIX` (`/order`): where nginx publishes this service, for `Location` and
    /// the OpenAPI document's server.
    pub public_prefix: String,
    /// `SAGA_BATCH_MAX` (128): the most orders opened (or moved) in one statement; 1 writes each
    /// alone.
    pub batch_max: usize,
}

fn millis(name: &str, default: u64) -> Result<Duration, ConfigError> {
    let ms: u64 = var_or(name, default)?;
    if ms == 0 {
        return Err(ConfigError(format!("{name} must be positive")));
    }
    Ok(Duration::from_millis(ms))
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let auth_disabled: bool = var_or("AUTH_DISABLED", false)?;
        let token = std::env::var("SERVICE_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        if token.is_none() && !auth_disabled {
            return Err(ConfigError(
                "SERVICE_TOKEN (the token order sends to stock and payment) is required, or set AUTH_DISABLED=true".into(),
            ));
        }
        let lease = Duration::from_secs(var_or("SAGA_LEASE_SECS", 30)?.max(1));
        let client = ClientSettings {
            attempt_timeout: millis("OUTBOUND_TIMEOUT_MS", 2000)?,
            budget: millis("SAGA_STEP_BUDGET_MS", 10_000)?,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(1000),
            token,
        };
        if client.budget + client.attempt_timeout >= lease {
            return Err(ConfigError(
                "SAGA_LEASE_SECS must exceed SAGA_STEP_BUDGET_MS + OUTBOUND_TIMEOUT_MS".into(),
            ));
        }
        Ok(Settings {
            common: CommonSettings::from_env(NAME, DEFAULT_PORT)?,
            stock_url: base_urls("STOCK_URL", "http://127.0.0.1:3133")?,
            payment_url: base_urls("PAYMENT_URL", "http://127.0.0.1:3132")?,
            client,
            checkout_deadline: millis("CHECKOUT_DEADLINE_MS", 5000)?,
            lease,
            recovery_interval: millis("RECOVERY_INTERVAL_MS", 2000)?,
            compensation_max_backoff: millis("COMPENSATION_MAX_BACKOFF_MS", 5000)?,
            public_prefix: string_or("PUBLIC_PATH_PREFIX", "/order"),
            batch_max: var_or("SAGA_BATCH_MAX", 128usize)?.max(1),
        })
    }
}

fn base_urls(name: &str, default: &str) -> Result<BaseUrls, ConfigError> {
    string_or(name, default)
        .parse()
        .map_err(|e| ConfigError(format!("{name}: {e}")))
}
