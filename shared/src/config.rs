//! Configuration from environment variables only, validated at start with messages that name the
//! variable. Each service builds its own settings from [`CommonSettings`] plus its own variables.

use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// Reads `name`, or `default` when unset or empty.
pub fn var_or<T: FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError(format!("{name}={raw:?} is invalid: {e}"))),
        _ => Ok(default),
    }
}

/// Reads `name` as a string, or `default`.
pub fn string_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw.trim().to_string(),
        _ => default.to_string(),
    }
}

/// Reads a probability in `0.0..=1.0`.
pub fn probability_or(name: &str, default: f64) -> Result<f64, ConfigError> {
    let p: f64 = var_or(name, default)?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(ConfigError(format!(
            "{name} must be between 0 and 1, got {p}"
        )))
    }
}

/// Reads a comma-separated list, dropping blanks.
pub fn list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Settings every service has.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub service: &'static str,
    pub host: String,
    pub port: u16,
    pub database_url: String,
    pub database_max_connections: u32,
    /// Where Redis is: `REDIS_URL` or `REDIS_CLUSTER_NODES`.
    pub redis: crate::redis_conn::RedisTarget,
    /// `REDIS_KEY_PREFIX`, by default the service's name.
    pub redis_key_prefix: crate::idempotency::KeyPrefix,
    pub idempotency_ttl: Duration,
    pub idempotency_lock: Duration,
    pub shutdown_timeout: Duration,
    pub startup_timeout: Duration,
    pub workers: usize,
}

impl CommonSettings {
    pub fn from_env(service: &'static str, default_port: u16) -> Result<Self, ConfigError> {
        let database_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                ConfigError(format!(
                    "DATABASE_URL is required (e.g. postgres://user@127.0.0.1:5432/{service})"
                ))
            })?;
        let idempotency_ttl: u64 = var_or("IDEMPOTENCY_TTL_SECS", 86_400)?;
        let idempotency_lock: u64 = var_or("IDEMPOTENCY_LOCK_SECS", 30)?;
        if idempotency_ttl == 0 || idempotency_lock == 0 {
            return Err(ConfigError(
                "IDEMPOTENCY_TTL_SECS and IDEMPOTENCY_LOCK_SECS must be positive".into(),
            ));
        }
        // One HTTP worker by default: handlers parse, check keys and wait; the work they wait for
        // (batched writes, outbound calls, the saga) runs on the main runtime (`RUNTIME_THREADS`).
        // More workers only add thread hand-offs (docs/design/benchmarks.md).
        let workers: usize = var_or("WORKERS", 1)?;
        Ok(CommonSettings {
            service,
            host: string_or("HOST", "0.0.0.0"),
            port: var_or("PORT", default_port)?,
            database_url,
            database_max_connections: var_or("DATABASE_MAX_CONNECTIONS", 16)?,
            redis: crate::redis_conn::RedisTarget::from_env()?,
            redis_key_prefix: crate::idempotency::KeyPrefix::parse(&string_or(
                "REDIS_KEY_PREFIX",
                service,
            ))
            .map_err(|why| ConfigError(format!("REDIS_KEY_PREFIX {why}")))?,
            idempotency_ttl: Duration::from_secs(idempotency_ttl),
            idempotency_lock: Duration::from_secs(idempotency_lock),
            shutdown_timeout: Duration::from_secs(var_or("SHUTDOWN_TIMEOUT_SECS", 10)?),
            startup_timeout: Duration::from_secs(var_or("STARTUP_TIMEOUT_SECS", 30)?),
            workers: workers.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_or_names_the_variable_on_bad_input() {
        std::env::set_var("SHARED_TEST_PORT", "eighty");
        let e = var_or::<u16>("SHARED_TEST_PORT", 1).unwrap_err();
        assert!(e.to_string().contains("SHARED_TEST_PORT=\"eighty\""));
        std::env::remove_var("SHARED_TEST_PORT");
        assert_eq!(var_or::<u16>("SHARED_TEST_PORT", 7).unwrap(), 7);
    }

    #[test]
    fn probability_is_bounded() {
        std::env::set_var("SHARED_TEST_P", "1.5");
        assert!(probability_or("SHARED_TEST_P", 0.5).is_err());
        std::env::set_var("SHARED_TEST_P", "0.25");
        assert_eq!(probability_or("SHARED_TEST_P", 0.5).unwrap(), 0.25);
    }

    #[test]
    fn lists_drop_blanks() {
        std::env::set_var("SHARED_TEST_LIST", " a, ,b ,");
        assert_eq!(list("SHARED_TEST_LIST"), vec!["a", "b"]);
    }
}
