//! The saga's metrics (docs/operations.md), registered beside the shared ones.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct SagaMetrics {
    pub checkouts: IntCounterVec,
    pub step_duration: HistogramVec,
    pub compensations: IntCounterVec,
    pub recoveries: IntCounter,
    pub in_flight: IntGauge,
    /// Steps that must succeed (complete, refund, release) being asked again, by step and reason
    /// (`refused`: the participant answers but refuses, which waiting alone will not mend — a
    /// token, a bug; `unavailable`: no answer). What an alert watches: a `refused` above zero for a
    /// minute is an order that needs an operator.
    pub steps_retrying: IntGaugeVec,
}

impl SagaMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = SagaMetrics {
            checkouts: IntCounterVec::new(
                Opts::new(
                    "checkouts_total",
                    "Checkouts that reached a terminal state, by outcome",
                ),
                &["outcome"],
            )?,
            step_duration: HistogramVec::new(
                HistogramOpts::new("saga_step_duration_seconds", "Duration of saga steps").buckets(
                    vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ],
                ),
                &["step"],
            )?,
            compensations: IntCounterVec::new(
                Opts::new(
                    "saga_compensations_total",
                    "Compensating actions done, by step",
                ),
                &["step"],
            )?,
            recoveries: IntCounter::new(
                "saga_recoveries_total",
                "Orders resumed by the recovery worker",
            )?,
            in_flight: IntGauge::new("orders_in_flight", "Orders being driven by this instance")?,
            steps_retrying: IntGaugeVec::new(
                Opts::new(
                    "saga_steps_retrying",
                    "Steps that must succeed being asked again by this instance, by step and reason",
                ),
                &["step", "reason"],
            )?,
        };
        registry.register(Box::new(m.checkouts.clone()))?;
        registry.register(Box::new(m.step_duration.clone()))?;
        registry.register(Box::new(m.compensations.clone()))?;
        registry.register(Box::new(m.recoveries.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.steps_retrying.clone()))?;
        // Present at zero from the start, so that an alert on them has a series to watch.
        for step in ["complete", "refund", "release"] {
            for reason in ["refused", "unavailable"] {
                m.steps_retrying.with_label_values(&[step, reason]).set(0);
            }
        }
        Ok(m)
    }
}
