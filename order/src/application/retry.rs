//! The seam for step-level retry loops (compensations, and completion whose outcome must be
//! resolved before anything else is decided). The schedule comes from the `backoff` crate, which
//! is unmaintained (RUSTSEC-2025-0012): this file is the only place that knows it, so swapping it
//! for `backon` touches nothing else.

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use std::future::Future;
use std::time::Duration;

/// Runs `attempt` until it returns `Some`, pausing with exponential backoff and jitter between
/// attempts, never giving up. `attempt` gets the attempt number (1, 2, ...).
pub async fn until_done<T, F, Fut>(max_pause: Duration, mut attempt: F) -> T
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut schedule = ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::from_millis(50))
        .with_max_interval(max_pause)
        .with_randomization_factor(0.5)
        .with_multiplier(2.0)
        .with_max_elapsed_time(None)
        .build();
    let mut n = 1;
    loop {
        if let Some(done) = attempt(n).await {
            return done;
        }
        n += 1;
        tokio::time::sleep(schedule.next_backoff().unwrap_or(max_pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_trying_until_done() {
        let done = until_done(Duration::from_millis(5), |n| async move {
            (n == 4).then_some(n)
        })
        .await;
        assert_eq!(done, 4);
    }
}
