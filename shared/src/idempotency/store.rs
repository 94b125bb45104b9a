//! The Redis side of the Idempotency-Key layer: an atomic claim with an expiring in-flight
//! marker, then the finished response stored for the retention period.

use super::key::{redis_key, IdempotencyKey, KeyPrefix};
use crate::redis_conn::{Redis, RedisTarget};
use redis::Script;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Entry {
    InFlight {
        fingerprint: String,
        owner: String,
    },
    Completed {
        fingerprint: String,
        #[serde(flatten)]
        response: StoredResponse,
    },
}

/// What is replayed: status, body and the headers that describe them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: String,
}

pub enum Claim {
    /// This request owns the key and must execute; `marker` identifies the claim.
    Acquired {
        marker: String,
    },
    Existing(Entry),
}

/// An HTTP worker's store. Its Redis connection — to one server or a cluster — is opened on first
/// use — from the worker, so that the connection's I/O runs on the worker's own thread — and
/// reconnects by itself; while Redis cannot be reached every call fails (and the request is
/// answered 503).
pub struct Store {
    target: RedisTarget,
    prefix: KeyPrefix,
    redis: OnceCell<Redis>,
    retention: Duration,
    lock: Duration,
}

const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Store {
    pub fn new(
        target: RedisTarget,
        prefix: KeyPrefix,
        retention: Duration,
        lock: Duration,
    ) -> Self {
        Store {
            target,
            prefix,
            redis: OnceCell::new(),
            retention,
            lock,
        }
    }

    /// The Redis key of `key` sent by `caller` to `method route` ([`redis_key`]).
    pub fn key(&self, caller: &str, method: &str, route: &str, key: &IdempotencyKey) -> String {
        redis_key(&self.prefix, caller, method, route, key)
    }

    async fn connection(&self) -> redis::RedisResult<Redis> {
        self.redis
            .get_or_try_init(|| self.target.connect())
            .await
            .cloned()
    }

    /// Claims `key` atomically (`SET NX PX ... GET`, Redis ≥ 7): either this request now owns it,
    /// or the entry already there is returned.
    pub async fn claim(&self, key: &str, fingerprint: &str) -> redis::RedisResult<Claim> {
        let marker = serde_json::to_string(&Entry::InFlight {
            fingerprint: fingerprint.to_string(),
            owner: uuid::Uuid::new_v4().to_string(),
        })
        .map_err(json_error)?;
        let mut conn = self.connection().await?;
        let previous: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&marker)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lock))
            .arg("GET")
            .query_async(&mut conn)
            .await?;
        match previous {
            None => Ok(Claim::Acquired { marker }),
            Some(raw) => Ok(Claim::Existing(
                serde_json::from_str(&raw).map_err(json_error)?,
            )),
        }
    }

    /// Stores the finished response over the key's entry, if the key still has one (`SET XX`).
    ///
    /// Not a compare-and-set on this request's marker, which would cost a script per request: it
    /// is not needed. The entry can be another request's only after this request's marker
    /// expired, and then every outcome equals the compare-and-set one, because a stored response
    /// is replayed only to a request with its fingerprint and PostgreSQL keeps one resource per
    /// key: a request with the same fingerprint gets this response or the other's, both about
    /// that one resource; a request with another fingerprint gets `idempotency_key_reused`
    /// either way. When the key has no entry (the marker expired, Redis lost it), nothing is
    /// stored and a retry is answered from PostgreSQL.
    pub async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: StoredResponse,
    ) -> redis::RedisResult<()> {
        let entry = serde_json::to_string(&Entry::Completed {
            fingerprint: fingerprint.to_string(),
            response,
        })
        .map_err(json_error)?;
        let mut conn = self.connection().await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(entry)
            .arg("XX")
            .arg("PX")
            .arg(millis(self.retention))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes this request's in-flight marker so that the key may be retried. Compared first (a
    /// script): deleting another request's marker would let a third run beside it.
    pub async fn release(&self, key: &str, marker: &str) -> redis::RedisResult<()> {
        let mut conn = self.connection().await?;
        let _: i64 = Script::new(COMPARE_AND_DELETE)
            .key(key)
            .arg(marker)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

fn json_error(e: serde_json::Error) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "idempotency entry is not valid JSON",
        e.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = Entry::Completed {
            fingerprint: "f".into(),
            response: StoredResponse {
                status: 201,
                content_type: Some("application/json".into()),
                location: None,
                body: "{}".into(),
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""state":"completed""#));
        match serde_json::from_str::<Entry>(&text).unwrap() {
            Entry::Completed { response, .. } => assert_eq!(response.status, 201),
            Entry::InFlight { .. } => panic!("wrong variant"),
        }
    }
}
