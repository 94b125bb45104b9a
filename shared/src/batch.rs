//! Group commit: many requests' writes in one statement and one durable commit.
//!
//! PostgreSQL makes every commit durable before it answers (`synchronous_commit` stays on), and a
//! changed row stays locked until then. Writing each request alone therefore costs a commit per
//! request, and a popular row (a hot item) admits one change per durable commit while concurrent
//! requests queue behind each other's commits. A [`Batcher`] turns the queue into batches instead:
//! requests that arrive while a batch is being written wait for the next one, which writes all of
//! them together. No request waits for a timer: an idle batcher sends a lone request at once, and
//! batches grow only with load.
//!
//! A batch is all-or-nothing like each request in it. When a batch cannot be written whole, its
//! runner says so per request, and such a request takes its service's one-request path, where the
//! database's constraints decide it alone. Used by stock (reserves and completions), order
//! (orders written and moved by the saga) and payment (charges opened and settled).

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use tokio::sync::{mpsc, oneshot};

type Job<I, O> = (I, oneshot::Sender<O>);

/// What a batch did with one request: its result, or nothing, and the request goes alone.
pub enum Batched<T> {
    Done(T),
    Alone,
}

/// Whether each job is the first of its key in the batch. A statement can change a row only
/// once, so a job whose row an earlier job of the batch already changes goes alone afterwards.
pub fn first_of_each<J, K: Eq + Hash>(jobs: &[J], key: impl Fn(&J) -> K) -> Vec<bool> {
    let mut seen = HashSet::new();
    jobs.iter().map(|job| seen.insert(key(job))).collect()
}

/// Sends requests to a task that runs them in batches of up to `max`.
pub struct Batcher<I, O> {
    queue: mpsc::Sender<Job<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batch task on the current runtime. `run` gets the inputs of a batch and returns
    /// one output per input, in the same order.
    pub fn start<F, Fut>(max: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let max = max.max(1);
        let (queue, mut jobs) = mpsc::channel::<Job<I, O>>(max * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while jobs.recv_many(&mut batch, max).await > 0 {
                let (inputs, replies): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.drain(..).unzip();
                let outputs = run(inputs).await;
                for (reply, output) in replies.into_iter().zip(outputs) {
                    // The requester may have gone (its client disconnected): nothing to tell.
                    let _ = reply.send(output);
                }
            }
        });
        Batcher { queue }
    }

    /// Runs `input` in the next batch. `None` if the batch task is gone (the runtime is shutting
    /// down) or dropped the request without an answer: the caller goes on alone.
    pub async fn run(&self, input: I) -> Option<O> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((input, reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn requests_that_arrive_together_share_a_batch_and_get_their_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::start(8, move |inputs: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(inputs.len());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                inputs.into_iter().map(|i| i * 10).collect::<Vec<_>>()
            }
        });
        let answers = futures_util::future::join_all((0..20u32).map(|i| {
            let b = batcher.clone();
            async move { b.run(i).await }
        }))
        .await;
        assert_eq!(
            answers,
            (0..20u32).map(|i| Some(i * 10)).collect::<Vec<_>>()
        );
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
        assert!(sizes.len() < 20, "requests were batched: {sizes:?}");
    }

    #[test]
    fn a_repeated_key_goes_alone() {
        let jobs = [1, 2, 1, 3];
        assert_eq!(first_of_each(&jobs, |j| *j), [true, true, false, true]);
    }

    #[tokio::test]
    async fn a_lone_request_is_not_held_back() {
        let batcher = Batcher::start(64, |inputs: Vec<u8>| async move { inputs });
        let started = std::time::Instant::now();
        assert_eq!(batcher.run(7).await, Some(7));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
