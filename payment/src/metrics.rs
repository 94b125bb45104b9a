//! Payment's metrics (docs/operations.md), registered beside the shared ones.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct PaymentMetrics {
    /// `payments_total{status}`: each processor decision settled, and each refund made.
    pub payments: IntCounterVec,
    /// `split_allocations_total`: allocations made by captures.
    pub split_allocations: IntCounter,
    /// `split_anomalies_total{type}`: lines a capture could not split as their rule says.
    pub split_anomalies: IntCounterVec,
    /// `ledger_entries_total{kind}`: journal entries written.
    pub ledger_entries: IntCounterVec,
    /// `refunds_total{kind}`: refunds made, `full` (`/refund`) or `partial`.
    pub refunds: IntCounterVec,
    /// `transfers_total{status}`: transfers accepted (`pending`), `posted` and `canceled`.
    pub transfers: IntCounterVec,
    /// `payouts_total{status}`: payouts accepted (`pending`), `paid` and `failed`.
    pub payouts: IntCounterVec,
}

impl PaymentMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let payments = IntCounterVec::new(
            Opts::new("payments_total", "Payments settled, by resulting status"),
            &["status"],
        )?;
        let split_allocations = IntCounter::new(
            "split_allocations_total",
            "Allocations of captured payments to recipients",
        )?;
        let split_anomalies = IntCounterVec::new(
            Opts::new(
                "split_anomalies_total",
                "Lines a capture could not split as their rule says, by type",
            ),
            &["type"],
        )?;
        let ledger_entries = IntCounterVec::new(
            Opts::new("ledger_entries_total", "Journal entries written, by kind"),
            &["kind"],
        )?;
        let refunds = IntCounterVec::new(
            Opts::new("refunds_total", "Refunds made, full or partial"),
            &["kind"],
        )?;
        let transfers = IntCounterVec::new(
            Opts::new(
                "transfers_total",
                "Transfers accepted (pending), posted and canceled",
            ),
            &["status"],
        )?;
        let payouts = IntCounterVec::new(
            Opts::new(
                "payouts_total",
                "Payouts accepted (pending), paid and failed",
            ),
            &["status"],
        )?;
        registry.register(Box::new(payments.clone()))?;
        registry.register(Box::new(split_allocations.clone()))?;
        registry.register(Box::new(split_anomalies.clone()))?;
        registry.register(Box::new(ledger_entries.clone()))?;
        registry.register(Box::new(refunds.clone()))?;
        registry.register(Box::new(transfers.clone()))?;
        registry.register(Box::new(payouts.clone()))?;
        Ok(PaymentMetrics {
            payments,
            split_allocations,
            split_anomalies,
            ledger_entries,
            refunds,
            transfers,
            payouts,
        })
    }
}
