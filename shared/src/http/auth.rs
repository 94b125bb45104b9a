//! Bearer-token authentication (docs/api.md, "Authentication"): a service class and an admin class of tokens.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time; the caller is identified
//! downstream (idempotency scope, logs) by a short digest prefix, never by the token.

use super::problem::{Problem, ProblemCode};
use crate::config::{list, var_or, ConfigError};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenClass {
    Service,
    Admin,
}

/// The authenticated caller, put in the request extensions by the auth middleware.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A stable, non-reversible id of the token (16 hex digits of its SHA-256).
    pub id: String,
    pub class: Option<TokenClass>,
}

#[derive(Clone)]
pub struct Tokens {
    service: Vec<[u8; 32]>,
    admin: Vec<[u8; 32]>,
    disabled: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("service", &self.service.len())
            .field("admin", &self.admin.len())
            .field("disabled", &self.disabled)
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn new(service: &[String], admin: &[String], disabled: bool) -> Self {
        Tokens {
            service: service.iter().map(|t| digest(t)).collect(),
            admin: admin.iter().map(|t| digest(t)).collect(),
            disabled,
        }
    }

    /// `SERVICE_TOKENS`, `ADMIN_TOKENS`, `AUTH_DISABLED`. Without tokens the service refuses to
    /// start unless auth is explicitly disabled.
    pub fn from_env(needs_admin: bool) -> Result<Self, ConfigError> {
        let disabled: bool = var_or("AUTH_DISABLED", false)?;
        let service = list("SERVICE_TOKENS");
        let admin = list("ADMIN_TOKENS");
        if disabled {
            tracing::warn!("AUTH_DISABLED=true: every caller is accepted without a token");
        } else if service.is_empty() || (needs_admin && admin.is_empty()) {
            let needed = if needs_admin {
                "SERVICE_TOKENS and ADMIN_TOKENS"
            } else {
                "SERVICE_TOKENS"
            };
            return Err(ConfigError(format!(
                "{needed} must list at least one token (comma-separated), or set AUTH_DISABLED=true for local experiments"
            )));
        }
        Ok(Tokens::new(&service, &admin, disabled))
    }

    fn matches(candidates: &[[u8; 32]], presented: &[u8; 32]) -> bool {
        // Every candidate is compared, so the time taken does not depend on which one matched.
        candidates
            .iter()
            .fold(subtle::Choice::from(0), |acc, c| acc | c.ct_eq(presented))
            .into()
    }

    /// Checks an `Authorization` header value for a token of class `required`.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        required: TokenClass,
    ) -> Result<Caller, Problem> {
        self.authenticate_any(authorization, &[required])
    }

    /// Checks an `Authorization` header value for a token of one of the classes `allowed`.
    pub fn authenticate_any(
        &self,
        authorization: Option<&str>,
        allowed: &[TokenClass],
    ) -> Result<Caller, Problem> {
        if self.disabled {
            return Ok(Caller {
                id: "anonymous".into(),
                class: None,
            });
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let presented = digest(token);
        let class = if Self::matches(&self.service, &presented) {
            TokenClass::Service
        } else if Self::matches(&self.admin, &presented) {
            TokenClass::Admin
        } else {
            return Err(unauthorized("the bearer token is not valid"));
        };
        if !allowed.contains(&class) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                ProblemCode::Forbidden,
                "this token may not call this endpoint",
            ));
        }
        Ok(Caller {
            id: hex::encode(&presented[..8]),
            class: Some(class),
        })
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::Unauthorized, detail)
}

async fn require(
    allowed: &[TokenClass],
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(tokens) = req.app_data::<web::Data<Tokens>>() else {
        return Ok(req.into_response(Problem::internal(&NoTokens).to_response()));
    };
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match tokens.authenticate_any(header, allowed) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(problem) => Ok(req.into_response(problem.to_response())),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("auth tokens are not configured in app data")]
struct NoTokens;

/// Middleware (`from_fn`) requiring a service token.
pub async fn require_service(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    require(&[TokenClass::Service], req, next).await
}

/// Middleware (`from_fn`) requiring an admin token.
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    require(&[TokenClass::Admin], req, next).await
}

/// Middleware (`from_fn`) requiring a service or an admin token (reads operators and services
/// both make).
pub async fn require_service_or_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    require(&[TokenClass::Service, TokenClass::Admin], req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&["svc-a".into(), "svc-b".into()], &["adm".into()], false)
    }

    #[test]
    fn accepts_any_token_of_the_right_class() {
        let t = tokens();
        let a = t
            .authenticate(Some("Bearer svc-a"), TokenClass::Service)
            .unwrap();
        let b = t
            .authenticate(Some("Bearer svc-b"), TokenClass::Service)
            .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 16);
        assert!(!a.id.contains("svc"));
        assert!(t
            .authenticate(Some("Bearer adm"), TokenClass::Admin)
            .is_ok());
    }

    #[test]
    fn missing_or_wrong_token_is_401_wrong_class_is_403() {
        let t = tokens();
        for h in [
            None,
            Some("svc-a"),
            Some("Bearer "),
            Some("Bearer nope"),
            Some("Basic svc-a"),
        ] {
            let p = t.authenticate(h, TokenClass::Service).unwrap_err();
            assert_eq!(
                (p.status.as_u16(), p.code),
                (401, ProblemCode::Unauthorized),
                "{h:?}"
            );
        }
        let p = t
            .authenticate(Some("Bearer adm"), TokenClass::Service)
            .unwrap_err();
        assert_eq!((p.status.as_u16(), p.code), (403, ProblemCode::Forbidden));
        let p = t
            .authenticate(Some("Bearer svc-a"), TokenClass::Admin)
            .unwrap_err();
        assert_eq!(p.status.as_u16(), 403);
    }

    #[test]
    fn either_class_when_both_are_allowed() {
        let t = tokens();
        let both = [TokenClass::Service, TokenClass::Admin];
        assert!(t.authenticate_any(Some("Bearer adm"), &both).is_ok());
        assert!(t.authenticate_any(Some("Bearer svc-a"), &both).is_ok());
        let p = t.authenticate_any(Some("Bearer x"), &both).unwrap_err();
        assert_eq!(p.status.as_u16(), 401);
    }

    #[test]
    fn disabled_accepts_everyone() {
        let t = Tokens::new(&[], &[], true);
        assert!(t.authenticate(None, TokenClass::Admin).is_ok());
    }
}
