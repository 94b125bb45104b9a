//! Refunds, full (`/refund`, the saga's compensation) and partial (`/payments/{id}/refunds`), as
//! two phases around the processor call:
//!
//! 1. In one transaction holding the payment's row: what may be refunded is decided
//!    ([`refund_amount`]), the refund is written, the allocations are reversed
//!    ([`ledger::reversal`]) with a `refund` entry, the recipients' balances are debited and the
//!    payment's `refundedAmount` grows (it turns `refunded` at its amount). Refunds of one payment
//!    queue on its row, so together they never exceed it (and a constraint says so too).
//! 2. The processor gives the money back, idempotently by refund id; the refund is then settled.
//!    If the processor does not answer, the request answers 503 and the refund stays unsettled: the
//!    same request retried, a `/refund` of the payment, or the release worker asks again.

use super::flows::{FlowError, Payments};
use super::overflow;
use super::processor::RefundCall;
use crate::domain::ledger as split;
use crate::domain::{refund_amount, RefundAsk, RefundRefusal};
use crate::storage::payments::{self as store, RefundStart};
use crate::storage::refunds::{self, RefundKind};
use crate::storage::{ledger, StorageError};
use shared::contract::ledger::EntryKind;
use shared::contract::payment::{Payment, PaymentStatus, RefundTarget};
use shared::contract::splits::Refund;
use shared::contract::values::Currency;
use shared::contract::OrderAttempt;
use shared::idempotency::IdempotencyContext;
use std::time::Duration;
use uuid::Uuid;

/// How many times a partial refund tries again after a concurrent request with its key won.
const ATTEMPTS: usize = 3;
/// Unsettled refunds younger than this are left to the request that made them.
const SETTLE_AFTER: Duration = Duration::from_secs(5);

pub enum Refunded {
    Payment(Payment),
    /// The order's attempt had no payment: its tombstone now refuses a late charge.
    Tombstone(OrderAttempt),
    NotFound(Uuid),
}

pub enum PartRefunded {
    Refund(Refund),
    NotFound,
    Refused(Payment, RefundRefusal),
    KeyReused,
}

/// What phase 1 did.
enum Written {
    Refund(Refund, Currency),
    Refused(Payment, RefundRefusal),
    NotFound,
}

impl Payments {
    /// `/refund`: gives back all that is left of the payment (or leaves the order's tombstone),
    /// then makes sure every refund of it reached the processor.
    pub async fn refund(&self, target: &RefundTarget) -> Result<Refunded, FlowError> {
        let start = match target {
            RefundTarget::Payment(id) => {
                match store::get(&mut *self.pool.acquire().await?, *id).await? {
                    Some(p) => RefundStart::Payment(p),
                    None => RefundStart::NotFound(*id),
                }
            }
            RefundTarget::Order(order) => store::refund_order(&self.pool, order).await?,
        };
        let payment = match start {
            RefundStart::Payment(p) => self.resolve_pending(p).await?,
            RefundStart::Tombstone(order) => return Ok(Refunded::Tombstone(order)),
            RefundStart::NotFound(id) => return Ok(Refunded::NotFound(id)),
        };
        let id = payment.payment_id;
        let mut tries = 0;
        // Refunded already, or nothing was taken: nothing more to give back.
        let payment = loop {
            match self.write(id, RefundAsk::Rest, None).await? {
                Written::Refund(refund, currency) => {
                    self.give_back(&refund, currency).await?;
                    break self.current(id).await?;
                }
                // A retry of the payment opened an attempt meanwhile: settle it, then decide.
                Written::Refused(payment, _)
                    if payment.status == PaymentStatus::Pending && tries + 1 < ATTEMPTS =>
                {
                    tries += 1;
                    self.resolve_pending(payment).await?;
                }
                Written::Refused(payment, _) if payment.status == PaymentStatus::Pending => {
                    return Err(StorageError::LostRace(
                        "retries of the payment kept racing with its refund",
                    )
                    .into())
                }
                Written::Refused(payment, _) => break payment,
                Written::NotFound => return Ok(Refunded::NotFound(id)),
            }
        };
        for (refund, currency) in
            refunds::unsettled(&self.pool, Some(id), Duration::ZERO, 100).await?
        {
            self.give_back(&refund, currency).await?;
        }
        Ok(Refunded::Payment(payment))
    }

    /// `POST /payments/{id}/refunds`: gives back `amount` of a succeeded payment, once per key.
    pub async fn refund_part(
        &self,
        payment_id: Uuid,
        amount: i64,
        idem: &IdempotencyContext,
    ) -> Result<PartRefunded, FlowError> {
        for _ in 0..ATTEMPTS {
            // The same request made before (its answer lost, or Redis forgot it): resume it.
            let before = refunds::by_key(&mut *self.pool.acquire().await?, &idem.scoped).await?;
            if let Some(before) = before {
                if before.fingerprint.as_deref() != Some(idem.fingerprint.as_str()) {
                    return Ok(PartRefunded::KeyReused);
                }
                if !before.settled {
                    self.give_back(&before.refund, before.currency).await?;
                }
                return Ok(PartRefunded::Refund(before.refund));
            }
            let Some(payment) = store::get(&mut *self.pool.acquire().await?, payment_id).await?
            else {
                return Ok(PartRefunded::NotFound);
            };
            self.resolve_pending(payment).await?;
            let key = Some((idem.scoped.as_str(), idem.fingerprint.as_str()));
            match self.write(payment_id, RefundAsk::Part(amount), key).await {
                Ok(Written::Refund(refund, currency)) => {
                    self.give_back(&refund, currency).await?;
                    return Ok(PartRefunded::Refund(refund));
                }
                Ok(Written::Refused(payment, why)) => {
                    return Ok(PartRefunded::Refused(payment, why))
                }
                Ok(Written::NotFound) => return Ok(PartRefunded::NotFound),
                // A concurrent request with the same key wrote its refund first: answer it.
                Err(e) if e.violates("refunds_idempotency_key_key") => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::LostRace("the refund kept racing with another under its key").into())
    }

    /// Phase 1: the refund, its reversal and the payment's new refunded total, in one
    /// transaction holding the payment's row.
    async fn write(
        &self,
        payment_id: Uuid,
        ask: RefundAsk,
        key: Option<(&str, &str)>,
    ) -> Result<Written, StorageError> {
        let mut tx = self.pool.begin().await?;
        let Some(payment) = store::lock(&mut tx, payment_id).await? else {
            return Ok(Written::NotFound);
        };
        let amount = match refund_amount(&payment, ask) {
            Ok(amount) => amount,
            Err(why) => {
                // Not pending: a pending one (a retry's attempt open) is settled first.
                if ask == RefundAsk::Rest && payment.status != PaymentStatus::Pending {
                    // `/refund` answered: the order was compensated, and the payment is never
                    // charged afterwards (a retry of it is refused).
                    store::mark_compensated(&mut tx, payment_id).await?;
                    tx.commit().await?;
                }
                return Ok(Written::Refused(payment, why));
            }
        };
        let held = ledger::held(&mut tx, payment_id).await?;
        let reversal = split::reversal(&held, payment.amount, payment.refunded_amount, amount)
            .map_err(|e| StorageError::other(format!("payment {payment_id}'s allocations: {e}")))?;
        let kind = match ask {
            RefundAsk::Rest => RefundKind::Full,
            RefundAsk::Part(_) => RefundKind::Partial,
        };
        let refund = refunds::insert(
            &mut tx,
            &refunds::NewRefund {
                payment_id,
                amount,
                kind,
                key: key.map(|k| k.0),
                fingerprint: key.map(|k| k.1),
            },
        )
        .await?;
        ledger::add_reversals(&mut tx, payment_id, &reversal.reversed).await?;
        ledger::record_entries(
            &mut tx,
            &[ledger::NewEntry {
                kind: EntryKind::Refund,
                currency: payment.currency,
                payment_id: Some(payment_id),
                refund_id: Some(refund.refund_id),
                transfer_id: None,
                payout_id: None,
                legs: &reversal.legs,
            }],
        )
        .await?;
        ledger::change_balances(
            &mut tx,
            payment.currency,
            &split::balance_changes(&reversal.legs).map_err(overflow)?,
        )
        .await?;
        let refunded = store::add_refunded(&mut tx, payment_id, amount).await?;
        tx.commit().await?;
        self.metrics
            .refunds
            .with_label_values(&[kind.as_str()])
            .inc();
        self.metrics
            .ledger_entries
            .with_label_values(&[EntryKind::Refund.as_str()])
            .inc();
        if refunded.status != payment.status {
            self.metrics
                .payments
                .with_label_values(&[refunded.status.as_str()])
                .inc();
        }
        Ok(Written::Refund(refund, payment.currency))
    }

    /// Phase 2: the processor gives the money back (idempotent by refund id); then the refund is
    /// settled.
    async fn give_back(&self, refund: &Refund, currency: Currency) -> Result<(), FlowError> {
        self.processor
            .refund(&RefundCall {
                refund_id: refund.refund_id,
                payment_id: refund.payment_id,
                amount: refund.amount,
                currency,
            })
            .await?;
        refunds::mark_settled(&self.pool, refund.refund_id).await?;
        Ok(())
    }

    async fn current(&self, id: Uuid) -> Result<Payment, StorageError> {
        store::get(&mut *self.pool.acquire().await?, id)
            .await?
            .ok_or(StorageError::NotFound("payment"))
    }

    /// For the worker: asks the processor again for refunds left unsettled (their request got a
    /// 503 and was not retried); returns how many it settled.
    pub async fn settle_forgotten_refunds(&self, limit: i64) -> Result<usize, FlowError> {
        let forgotten = refunds::unsettled(&self.pool, None, SETTLE_AFTER, limit).await?;
        let mut settled = 0;
        // One the processor still does not take does not keep the others waiting.
        for (refund, currency) in forgotten {
            match self.give_back(&refund, currency).await {
                Ok(()) => settled += 1,
                Err(e) => {
                    tracing::warn!(refund_id = %refund.refund_id, error = %e, "the processor has not confirmed a refund yet; will ask again")
                }
            }
        }
        Ok(settled)
    }
}
