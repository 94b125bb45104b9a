//! What a storage layer tells its callers when a statement does not do what was asked: the
//! services' `storage` modules return [`StorageError`], never `sqlx::Error`, so that routes and
//! workers decide on meanings (not found, a constraint said no, a race was lost, the database is
//! away) instead of on driver details.

use crate::http::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A row the operation needs is not there (and its absence is not an answer by itself).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A constraint refused the write (unique, check, exclusion or foreign key).
    #[error("constraint {constraint} refused the write")]
    Conflict {
        constraint: String,
        #[source]
        source: sqlx::Error,
    },
    /// Concurrent writers kept changing what this operation read; it may be retried.
    #[error("lost a race: {0}")]
    LostRace(&'static str),
    /// The database cannot be reached: restarting, failing over, or the pool is exhausted.
    /// Nothing was written.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StorageError {
    /// Something the storage layer cannot make sense of (a row breaking a rule the schema should
    /// have kept): an internal error.
    pub fn other(what: impl Into<String>) -> Self {
        StorageError::Other(what.into().into())
    }

    /// Whether the write was refused by `constraint`.
    pub fn violates(&self, name: &str) -> bool {
        matches!(self, StorageError::Conflict { constraint, .. } if constraint == name)
    }

    /// The answer to a request that failed on storage: 503 `dependency_unavailable` with
    /// `Retry-After` when the database cannot be reached (nothing was written, so a retry with the
    /// same key is safe), 500 `internal_error` otherwise.
    pub fn to_problem(&self) -> Problem {
        match self {
            StorageError::Unavailable(_) => Problem::unavailable(
                "the database cannot be reached; retry with the same Idempotency-Key",
            ),
            StorageError::LostRace(_) => Problem::unavailable(
                "concurrent requests kept changing the same rows; retry with the same Idempotency-Key",
            ),
            _ => Problem::unexpected(),
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StorageError::Unavailable(e),
            sqlx::Error::Database(db) => {
                let code = db.code();
                let code = code.as_deref().unwrap_or("");
                if is_unavailable_sqlstate(code) {
                    StorageError::Unavailable(e)
                } else if code.starts_with("23") {
                    let constraint = db.constraint().unwrap_or("").to_string();
                    StorageError::Conflict {
                        constraint,
                        source: e,
                    }
                } else {
                    StorageError::Other(e.into())
                }
            }
            _ => StorageError::Other(e.into()),
        }
    }
}

/// SQLSTATEs a restarting server answers with: class 57P (operator intervention: admin shutdown,
/// crash shutdown, cannot connect now) and 08 (connection exception).
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("57P") || code.starts_with("08")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;

    #[test]
    fn an_unreachable_database_is_transient_anything_else_internal() {
        let down = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        for e in [down, sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let e = StorageError::from(e);
            assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
            let p = e.to_problem();
            assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(p.code.as_str(), "dependency_unavailable");
            assert_eq!(p.retry_after_secs, Some(1));
        }
        let p = StorageError::from(sqlx::Error::RowNotFound).to_problem();
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(is_unavailable_sqlstate("57P01"));
        assert!(is_unavailable_sqlstate("08006"));
        assert!(!is_unavailable_sqlstate("23505"));
    }
}
