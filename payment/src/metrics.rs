//! Payment's metrics (docs/operations.md), registered beside the shared ones.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct PaymentMetrics {
    /// `payments_total{status}`: each processor decision settled, and each refund made.
    pub payments: IntCounterVec,
}

impl PaymentMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let payments = IntCounterVec::new(
            Opts::new("payments_total", "Payments settled, by resulting status"),
            &["status"],
        )?;
        registry.register(Box::new(payments.clone()))?;
        Ok(PaymentMetrics { payments })
    }
}
