//! The saga's participants, as a port: the five calls the saga makes, each with a contract request
//! and the Idempotency-Key derived from the order (`{order}:{step}`), answering the contract's
//! types. [`HttpParticipants`] calls stock and payment over HTTP; tests drive the saga with a
//! fake.

use crate::domain::policy::Call;
use shared::client::{CallContext, ServiceClient};
use shared::contract::payment::{ChargeRequest, Payment, RefundTarget, Refunded};
use shared::contract::stock::{Released, Reservation, ReservationTarget, ReserveRequest};
use std::future::Future;

pub trait Participants: Send + Sync + 'static {
    /// stock `POST /reserve`.
    fn reserve(
        &self,
        request: &ReserveRequest,
        key: &str,
        context: &CallContext,
    ) -> impl Future<Output = Call<Reservation>> + Send;
    /// payment `POST /charge`.
    fn charge(
        &self,
        request: &ChargeRequest,
        key: &str,
        context: &CallContext,
    ) -> impl Future<Output = Call<Payment>> + Send;
    /// stock `POST /complete`.
    fn complete(
        &self,
        target: &ReservationTarget,
        key: &str,
        context: &CallContext,
    ) -> impl Future<Output = Call<Reservation>> + Send;
    /// payment `POST /refund`.
    fn refund(
        &self,
        target: &RefundTarget,
        key: &str,
        context: &CallContext,
    ) -> impl Future<Output = Call<Refunded>> + Send;
    /// stock `POST /release`.
    fn release(
        &self,
        target: &ReservationTarget,
        key: &str,
        context: &CallContext,
    ) -> impl Future<Output = Call<Released>> + Send;
}

/// stock and payment over HTTP, through the outbound client (retries of transient failures within
/// each step's budget).
#[derive(Clone)]
pub struct HttpParticipants {
    pub stock: ServiceClient,
    pub payment: ServiceClient,
}

impl Participants for HttpParticipants {
    async fn reserve(
        &self,
        request: &ReserveRequest,
        key: &str,
        context: &CallContext,
    ) -> Call<Reservation> {
        self.stock.post("/reserve", key, request, context).await
    }

    async fn charge(
        &self,
        request: &ChargeRequest,
        key: &str,
        context: &CallContext,
    ) -> Call<Payment> {
        self.payment.post("/charge", key, request, context).await
    }

    async fn complete(
        &self,
        target: &ReservationTarget,
        key: &str,
        context: &CallContext,
    ) -> Call<Reservation> {
        self.stock.post("/complete", key, target, context).await
    }

    async fn refund(
        &self,
        target: &RefundTarget,
        key: &str,
        context: &CallContext,
    ) -> Call<Refunded> {
        self.payment.post("/refund", key, target, context).await
    }

    async fn release(
        &self,
        target: &ReservationTarget,
        key: &str,
        context: &CallContext,
    ) -> Call<Released> {
        self.stock.post("/release", key, target, context).await
    }
}
