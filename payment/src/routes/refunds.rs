//! Partial refunds of a payment.

use crate::application::{FlowError, PartRefunded};
use crate::domain::RefundRefusal;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use shared::contract::payment::PaymentStatus;
use shared::contract::splits::{NewRefund, Refund};
use shared::http::problem::{Answers, ProblemCode};
use shared::http::Json;
use shared::idempotency::{key_reused, IdempotencyContext};
use shared::{impl_response_error, Problem, ToProblem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("payment {0} does not exist")]
    NotFound(Uuid),
    #[error("payment {id} is {status}; only a succeeded payment can be refunded")]
    NotRefundable { id: Uuid, status: PaymentStatus },
    #[error("amount: {asked} is more than the {left} left to refund of payment {id}")]
    Exceeds { id: Uuid, asked: i64, left: i64 },
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl ToProblem for RefundError {
    fn to_problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            RefundError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, ProblemCode::PaymentNotFound, detail)
                    .payment_id(*id)
            }
            RefundError::NotRefundable { id, status } => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::PaymentNotRefundable,
                detail,
            )
            .payment_id(*id)
            .payment_status(*status),
            RefundError::Exceeds { id, asked, left } => Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::RefundExceedsPayment,
                detail,
            )
            .payment_id(*id)
            .shortfall(*asked, *left),
            RefundError::KeyReused => key_reused(),
            RefundError::Flow(e) => e.to_problem(),
        }
    }
}

impl Answers for RefundError {
    const ANSWERS: &'static [(u16, ProblemCode)] = &[
        (404, ProblemCode::PaymentNotFound),
        (409, ProblemCode::PaymentNotRefundable),
        (409, ProblemCode::RefundExceedsPayment),
        (422, ProblemCode::IdempotencyKeyReused),
        (503, ProblemCode::ProcessorUnavailable),
    ];
}

impl_response_error!(RefundError);

/// Gives back part of a succeeded payment, reversing its split in proportion (service token).
#[utoipa::path(post, path = "/payments/{paymentId}/refunds", operation_id = "refundPart", params(("paymentId" = Uuid, Path)), request_body = NewRefund, tag = "marketplace",
    responses((status = 201, body = Refund, description = "the refund")))]
pub async fn create(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    idem: IdempotencyContext,
    body: Json<NewRefund>,
) -> Result<HttpResponse, RefundError> {
    let id = id.into_inner();
    let asked = body.0.amount.get();
    match state.payments.refund_part(id, asked, &idem).await? {
        PartRefunded::Refund(refund) => Ok(HttpResponse::Created().json(refund)),
        PartRefunded::NotFound => Err(RefundError::NotFound(id)),
        PartRefunded::Refused(payment, RefundRefusal::NotRefundable(status)) => {
            Err(RefundError::NotRefundable {
                id: payment.payment_id,
                status,
            })
        }
        PartRefunded::Refused(_, RefundRefusal::Exceeds { left }) => {
            Err(RefundError::Exceeds { id, asked, left })
        }
        PartRefunded::KeyReused => Err(RefundError::KeyReused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::processor::ProcessorError;
    use shared::http::problem::assert_listed;

    #[test]
    fn every_error_answers_a_listed_problem() {
        for e in [
            RefundError::NotFound(Uuid::nil()),
            RefundError::NotRefundable {
                id: Uuid::nil(),
                status: PaymentStatus::Failed,
            },
            RefundError::Exceeds {
                id: Uuid::nil(),
                asked: 2,
                left: 1,
            },
            RefundError::KeyReused,
            RefundError::Flow(FlowError::Processor(ProcessorError::Unavailable(
                "x".into(),
            ))),
        ] {
            assert_listed::<RefundError>(&e.to_problem());
        }
    }
}
