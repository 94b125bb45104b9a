//! Where the services' log lines go: a buffer in memory that one thread writes to stdout.
//!
//! Logging a line is a copy under a lock — no system call on the request's thread, and no other
//! thread woken. The writer thread wakes every [`FLUSH_EVERY`] and writes everything buffered with
//! one `write(2)`. (A channel to a writer thread, as `tracing-appender` has, wakes that thread for
//! nearly every line, which costs more than the line; docs/design/benchmarks.md.) No line is
//! ever dropped: when a burst fills [`FLUSH_AT`] bytes before the writer's next turn, the thread
//! logging writes the buffer itself. Lines keep their order: one writer at a time takes the buffer.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How much may wait in memory.
pub const FLUSH_AT: usize = 1 << 20;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Where lines go; held while a taken buffer is written, so that buffers arrive in the order
    /// they were taken.
    output: Mutex<Box<dyn Write + Send>>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding the lock left whole lines (or none) behind.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Writes out what is buffered.
    fn flush(&self) {
        let mut output = lock(&self.output);
        let taken = {
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                return;
            }
            // The next turn's buffer starts as large as this one ended, instead of growing again.
            let capacity = pending.capacity();
            std::mem::replace(&mut *pending, Vec::with_capacity(capacity))
        };
        // Nothing to do about a closed stdout but go on serving.
        let _ = output.write_all(&taken);
        let _ = output.flush();
    }
}

/// The handle loggers append to (cheap to clone).
#[derive(Clone)]
pub struct LogLines(Arc<Shared>);

/// Stops the writer thread after a last write; see [`LogLines::start`].
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogLines {
    /// Starts the writer thread ("log-writer") for stdout.
    pub fn start() -> (LogLines, Flusher) {
        Self::start_with(Box::new(std::io::stdout()))
    }

    pub fn start_with(output: Box<dyn Write + Send>) -> (LogLines, Flusher) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            output: Mutex::new(output),
            closed: AtomicBool::new(false),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                while !writer.closed.load(Ordering::Acquire) {
                    std::thread::sleep(FLUSH_EVERY);
                    writer.flush();
                }
            })
            .ok();
        let flusher = Flusher {
            shared: shared.clone(),
            thread,
        };
        (LogLines(shared), flusher)
    }

    /// Appends one whole line (with its newline).
    pub fn push(&self, line: &[u8]) {
        let full = {
            let mut pending = lock(&self.0.pending);
            pending.extend_from_slice(line);
            pending.len() >= FLUSH_AT
        };
        // No writer thread (it could not be started) or closed: nobody else will write it.
        if full || self.0.closed.load(Ordering::Acquire) {
            self.0.flush();
        }
    }
}

impl Flusher {
    /// Writes what is left and stops the writer thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.flush();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_by_the_writer_thread_and_the_rest_at_shutdown() {
        let sink = Sink::default();
        let (lines, flusher) = LogLines::start_with(Box::new(sink.clone()));
        lines.push(b"one\n");
        lines.push(b"two\n");
        let waited = std::time::Instant::now();
        while lock(&sink.0).is_empty() && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(FLUSH_EVERY);
        }
        assert_eq!(
            lock(&sink.0).as_slice(),
            b"one\ntwo\n",
            "the writer's turn came"
        );
        lines.push(b"three\n");
        flusher.shutdown();
        assert_eq!(
            lock(&sink.0).as_slice(),
            b"one\ntwo\nthree\n",
            "written at shutdown"
        );
        // After shutdown, a line is written at once rather than kept.
        lines.push(b"late\n");
        assert!(lock(&sink.0).ends_with(b"late\n"));
    }

    #[test]
    fn a_full_buffer_is_written_by_the_thread_that_fills_it() {
        let sink = Sink::default();
        let (lines, _flusher) = LogLines::start_with(Box::new(sink.clone()));
        let long = vec![b'x'; FLUSH_AT];
        lines.push(&long);
        assert_eq!(lock(&sink.0).len(), FLUSH_AT);
    }
}
