//! Stock's metrics (docs/operations.md), registered beside the shared ones.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct StockMetrics {
    /// `stock_reservations_total{outcome}`: answers of reserve/release/complete, and sweeps.
    pub reservations: IntCounterVec,
    /// `stock_available{item_id}`: `stock - reserved`, refreshed by the sweeper.
    pub available: IntGaugeVec,
}

impl StockMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = StockMetrics {
            reservations: IntCounterVec::new(
                Opts::new(
                    "stock_reservations_total",
                    "Reservation operations by outcome",
                ),
                &["outcome"],
            )?,
            available: IntGaugeVec::new(
                Opts::new(
                    "stock_available",
                    "Units available (stock - reserved) per item",
                ),
                &["item_id"],
            )?,
        };
        registry.register(Box::new(m.reservations.clone()))?;
        registry.register(Box::new(m.available.clone()))?;
        Ok(m)
    }

    pub fn count(&self, outcome: &str) {
        self.reservations.with_label_values(&[outcome]).inc();
    }
}
