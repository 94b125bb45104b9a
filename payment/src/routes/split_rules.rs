//! Split rules: new versions (admin) and reads.

use crate::application::rules::{self, RuleCreated};
use crate::domain::rules::{Misplaced, SharesInvalid};
use crate::state::AppState;
use crate::storage::split_rules as store;
use crate::storage::StorageError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use shared::contract::splits::{NewSplitRule, SplitRule, SplitRules, SplitRulesQuery};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::{Json, Query};
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum SplitRuleError {
    #[error("split rule {0} does not exist")]
    NotFound(Uuid),
    #[error(transparent)]
    Invalid(SharesInvalid),
    #[error("recipient {0} does not exist")]
    UnknownRecipient(Uuid),
    #[error("effectiveFrom is in the past (now is {})", now.to_rfc3339())]
    InPast { now: DateTime<Utc> },
    #[error("{}", overlap(latest_from))]
    Overlap {
        product_id: i64,
        latest_from: Option<DateTime<Utc>>,
    },
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn overlap(latest_from: &Option<DateTime<Utc>>) -> String {
    match latest_from {
        Some(at) => format!(
            "effectiveFrom must be later than {}, the start of the product's latest rule",
            at.to_rfc3339()
        ),
        None => "effectiveFrom must be later than the start of the product's latest rule".into(),
    }
}

impl ToProblem for SplitRuleError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            SplitRuleError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                ProblemCode::SplitRuleNotFound,
                detail,
            )
            .split_rule_id(*id),
            SplitRuleError::Invalid(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::SplitSharesInvalid,
                detail,
            ),
            SplitRuleError::UnknownRecipient(id) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::RecipientNotFound,
                format!("shares: {detail}"),
            )
            .recipient_id(*id),
            SplitRuleError::InPast { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemCode::EffectiveFromInPast,
                detail,
            ),
            SplitRuleError::Overlap { product_id, .. } => {
                Problem::new(StatusCode::CONFLICT, ProblemCode::SplitRuleOverlap, detail)
                    .product_id(*product_id)
            }
            SplitRuleError::KeyReused => key_reused(),
            SplitRuleError::Storage(e) => e.to_problem(),
        }
    }
}

impl Answers for SplitRuleError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::SplitRuleNotFound),
        (409, ProblemCode::SplitRuleOverlap),
        (422, ProblemCode::SplitSharesInvalid),
        (422, ProblemCode::RecipientNotFound),
        (422, ProblemCode::EffectiveFromInPast),
        (422, ProblemCode::IdempotencyKeyReused),
    ];
}

impl_response_error!(SplitRuleError);

/// A new version of a product's split rule, in force from `effectiveFrom` (admin token).
#[utoipa::path(post, path = "/split-rules", operation_id = "createSplitRule", request_body = NewSplitRule, tag = "marketplace",
    responses((status = 201, body = SplitRule, description = "the new version, with its Location")))]
pub async fn create(
    state: web::Data<AppState>,
    idem: IdempotencyContext,
    body: Json<NewSplitRule>,
) -> Result<HttpResponse, SplitRuleError> {
    let new = body.0;
    let rule = match rules::create(state.payments.pool(), &new, &idem).await {
        Ok(RuleCreated::New(rule) | RuleCreated::Existing(rule)) => rule,
        Ok(RuleCreated::KeyReused) => return Err(SplitRuleError::KeyReused),
        Ok(RuleCreated::Invalid(why)) => return Err(SplitRuleError::Invalid(why)),
        Ok(RuleCreated::UnknownRecipient(id)) => return Err(SplitRuleError::UnknownRecipient(id)),
        Ok(RuleCreated::Misplaced(Misplaced::InPast { now })) => {
            return Err(SplitRuleError::InPast { now })
        }
        Ok(RuleCreated::Misplaced(Misplaced::NotAfterLatest { latest_from })) => {
            return Err(SplitRuleError::Overlap {
                product_id: new.product_id.get(),
                latest_from: Some(latest_from),
            })
        }
        // The product's lock makes this unreachable; the constraint is the last word.
        Err(e) if e.violates("one_split_rule_in_force") => {
            return Err(SplitRuleError::Overlap {
                product_id: new.product_id.get(),
                latest_from: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let location = format!(
        "{}/split-rules/{}",
        state.settings.public_prefix, rule.split_rule_id
    );
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(rule))
}

/// A version of a split rule (service or admin token).
#[utoipa::path(get, path = "/split-rules/{splitRuleId}", operation_id = "getSplitRule", params(("splitRuleId" = Uuid, Path)), tag = "marketplace",
    responses((status = 200, body = SplitRule, description = "the rule")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, SplitRuleError> {
    let id = id.into_inner();
    let mut conn = state
        .payments
        .pool()
        .acquire()
        .await
        .map_err(StorageError::from)?;
    match store::get(&mut conn, id).await? {
        Some(rule) => Ok(HttpResponse::Ok().json(rule)),
        None => Err(SplitRuleError::NotFound(id)),
    }
}

/// A product's split rules, newest version first; with `at`, only the one in force then (service
/// or admin token).
#[utoipa::path(get, path = "/split-rules", operation_id = "listSplitRules", params(SplitRulesQuery), tag = "marketplace",
    responses((status = 200, body = SplitRules, description = "the product's rules")))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<SplitRulesQuery>,
) -> Result<HttpResponse, SplitRuleError> {
    let query = query.0;
    let split_rules = store::list(
        state.payments.pool(),
        query.product_id,
        query.at.map(|at| at.get()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(SplitRules { split_rules }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        for e in [
            SplitRuleError::NotFound(Uuid::nil()),
            SplitRuleError::Invalid(SharesInvalid("x".into())),
            SplitRuleError::UnknownRecipient(Uuid::nil()),
            SplitRuleError::InPast { now: Utc::now() },
            SplitRuleError::Overlap {
                product_id: 1,
                latest_from: None,
            },
            SplitRuleError::KeyReused,
        ] {
            assert_listed::<SplitRuleError>(&e.to_problem());
        }
    }
}
