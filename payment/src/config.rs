//! Settings of the payment service, read once from environment variables.

use crate::application::faults::Faults;
use crate::application::processor::SimulatedProcessor;
use shared::config::{probability_or, string_or, var_or, CommonSettings, ConfigError};
use shared::http::auth::Tokens;
use std::time::Duration;

pub const NAME: &str = "payment";
pub const DEFAULT_PORT: u16 = 3132;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub tokens: Tokens,
    /// `PAYMENT_MAX_RETRIES` (3): failed retries after which a payment is `exhausted`.
    pub max_retries: i32,
    /// `PAYMENT_DECLINE_ABOVE` (100000), `PAYMENT_RETRY_SUCCESS_PROBABILITY` (0.5) and
    /// `PAYMENT_LATENCY_MS` (0, added to every processor call).
    pub processor: SimulatedProcessor,
    /// `PAYMENT_FAULT_RATE` (0).
    pub faults: Faults,
    /// `PAYMENT_BATCH_MAX` (128): the most charges opened (or settled) in one statement; 1
    /// writes each alone.
    pub batch_max: usize,
    /// `SPLIT_HOLD_SECS` (86400): how long a capture's money stays `pending` before it is
    /// released to `available`.
    pub hold: Duration,
    /// `SPLIT_RELEASE_INTERVAL_MS` (1000): how often the release worker looks for due
    /// allocations, folds pending credits and settles refunds the processor has not confirmed.
    pub release_interval: Duration,
    /// `TRANSFER_INTERVAL_MS` (500): how often the transfer and payout workers look for pending
    /// transfers and payouts.
    pub transfer_interval: Duration,
    /// `PAYOUT_FAILURE_RATE` (0): the share of payouts the simulated payout provider refuses
    /// (fixed per payout); `PAYOUT_LATENCY_MS` (0): how long its answer takes, after it acted.
    pub payout_failure_rate: f64,
    pub payout_latency: Duration,
    /// `PUBLIC_PATH_PREFIX` (`/payment`): where nginx publishes this service, for the OpenAPI
    /// document's server.
    pub public_prefix: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let max_retries: i32 = var_or("PAYMENT_MAX_RETRIES", 3)?;
        if max_retries < 1 {
            return Err(ConfigError("PAYMENT_MAX_RETRIES must be at least 1".into()));
        }
        Ok(Settings {
            common: CommonSettings::from_env(NAME, DEFAULT_PORT)?,
            tokens: Tokens::from_env(true)?,
            max_retries,
            processor: SimulatedProcessor {
                decline_above: var_or("PAYMENT_DECLINE_ABOVE", 100_000)?,
                retry_success_probability: probability_or(
                    "PAYMENT_RETRY_SUCCESS_PROBABILITY",
                    0.5,
                )?,
                latency: Duration::from_millis(var_or("PAYMENT_LATENCY_MS", 0)?),
            },
            faults: Faults {
                rate: probability_or("PAYMENT_FAULT_RATE", 0.0)?,
            },
            batch_max: var_or("PAYMENT_BATCH_MAX", 128usize)?.max(1),
            hold: Duration::from_secs(var_or("SPLIT_HOLD_SECS", 86_400)?),
            release_interval: Duration::from_millis(
                var_or("SPLIT_RELEASE_INTERVAL_MS", 1000u64)?.max(1),
            ),
            transfer_interval: Duration::from_millis(
                var_or("TRANSFER_INTERVAL_MS", 500u64)?.max(1),
            ),
            payout_failure_rate: probability_or("PAYOUT_FAILURE_RATE", 0.0)?,
            payout_latency: Duration::from_millis(var_or("PAYOUT_LATENCY_MS", 0)?),
            public_prefix: string_or("PUBLIC_PATH_PREFIX", "/payment"),
        })
    }
}
