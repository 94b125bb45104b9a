//! A seeded userspace TCP proxy that puts faults on one link (the chaos harness's network faults;
//! docs/testing.md#chaos). It listens on a port of 127.0.0.1 and forwards every connection to one
//! upstream address, chunk by chunk in each direction, applying the fault in force at that moment —
//! to the connections already open as well as to new ones:
//!
//! - [`Fault::Latency`]: every chunk waits `base` plus a seeded share of `jitter`;
//! - [`Fault::BlackHole`]: connections are accepted and nothing moves either way — the proxy stops
//!   reading, so what is sent waits in the sockets' buffers as it would in a network that drops
//!   packets and retransmits them: nothing comes back until the caller gives up, or the fault ends
//!   and everything arrives late, nothing lost;
//! - [`Fault::ResetRequest`] / [`Fault::ResetResponse`]: the connection is reset part-way through the
//!   next request (the upstream sees a cut request) or the next response (the work was done, the
//!   answer is lost);
//! - [`Fault::Trickle`]: chunks are cut into a few bytes each, with a pause between them;
//! - [`Fault::Refuse`]: a new connection is reset before a byte passes (what a refused connect looks
//!   like to a pooled client), open ones go on;
//! - [`Fault::DropResponses`]: one direction cut — requests pass, answers wait (as above) until the
//!   fault ends;
//! - [`Fault::Partition`]: every open connection is reset and new ones are refused, until it ends.
//!
//! Nothing needs root: it is a process's sockets, not the kernel's packet filter. The seed decides
//! the jitter and where a reset falls, so a run is reproduced by its seed and schedule.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A fault on a link; [`Fault::None`] forwards untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    Latency { base: Duration, jitter: Duration },
    BlackHole,
    ResetRequest,
    ResetResponse,
    Trickle { bytes: usize, pause: Duration },
    Refuse,
    DropResponses,
    Partition,
}

impl Fault {
    /// Its name in a chaos run's `result.json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Latency { .. } => "latency",
            Fault::BlackHole => "black_hole",
            Fault::ResetRequest => "reset_request",
            Fault::ResetResponse => "reset_response",
            Fault::Trickle { .. } => "trickle",
            Fault::Refuse => "refuse",
            Fault::DropResponses => "drop_responses",
            Fault::Partition => "partition",
        }
    }
}

/// A small seeded generator (xorshift64*): the jitter and where a reset cuts.
struct Rng(u64);

impl Rng {
    /// Every seed its own sequence (splitmix64 of it; xorshift's one fixed point, 0, avoided).
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Which way a chunk goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the caller to the upstream.
    Request,
    /// From the upstream back to the caller.
    Response,
}

/// What a direction's pump decided about its connection.
enum Verdict {
    /// The sender closed its side: the other side is told (FIN).
    Closed,
    /// Reset both sides now.
    Reset,
}

struct Shared {
    upstream: SocketAddr,
    rng: Mutex<Rng>,
    fault: watch::Sender<Fault>,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.borrow()
    }
    fn draw(&self, n: u64) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).below(n)
    }
}

/// A running proxy: its address, and the handle that sets its fault. Dropping it stops it (and
/// resets what it holds open).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, with no fault yet.
    pub async fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(Rng::new(seed)),
            fault,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy { addr, shared, task })
    }

    /// Where callers connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault from now on (for open connections too); [`Fault::None`] ends it.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections see the fault channel close and reset.
        self.shared.fault.send_replace(Fault::Partition);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if matches!(shared.fault(), Fault::Refuse | Fault::Partition) {
                reset(client);
                return;
            }
            let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
                reset(client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            relay(client, upstream, shared).await;
        });
    }
}

/// Closes a connection with a reset (RST) instead of an orderly close.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream, shared: Arc<Shared>) {
    let verdict = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let requests = pump(client_read, upstream_write, Direction::Request, &shared);
        let responses = pump(upstream_read, client_write, Direction::Response, &shared);
        let mut partition = shared.fault.subscribe();
        let partitioned = async move {
            loop {
                if *partition.borrow_and_update() == Fault::Partition {
                    return;
                }
                if partition.changed().await.is_err() {
                    return;
                }
            }
        };
        let (mut requests, mut responses) = (std::pin::pin!(requests), std::pin::pin!(responses));
        let mut partitioned = std::pin::pin!(partitioned);
        let (mut requests_closed, mut responses_closed) = (false, false);
        // Either direction's reset resets both at once (the other may be waiting for a read
        // that never comes); the connection ends in order once both senders have closed.
        loop {
            let verdict = tokio::select! {
                v = &mut requests, if !requests_closed => (v, Direction::Request),
                v = &mut responses, if !responses_closed => (v, Direction::Response),
                _ = &mut partitioned => (Verdict::Reset, Direction::Request),
            };
            match verdict {
                (Verdict::Reset, _) => break Verdict::Reset,
                (Verdict::Closed, Direction::Request) => requests_closed = true,
                (Verdict::Closed, Direction::Response) => responses_closed = true,
            }
            if requests_closed && responses_closed {
                break Verdict::Closed;
            }
        }
    };
    if let Verdict::Reset = verdict {
        reset(client);
        reset(upstream);
    }
}

/// Whether a fault holds a direction still (nothing read from it until the fault changes).
fn holds(fault: Fault, direction: Direction) -> bool {
    match fault {
        Fault::BlackHole => true,
        Fault::DropResponses => direction == Direction::Response,
        _ => false,
    }
}

/// Forwards one direction chunk by chunk under the fault in force; returns when the sender closed
/// (after passing the close on) or when the connection must be reset (a reset fault, or an error).
async fn pump<R, W>(mut from: R, mut to: W, direction: Direction, shared: &Shared) -> Verdict
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut faults = shared.fault.subscribe();
    loop {
        // Held still: nothing is read (or lost) until the fault changes.
        while holds(*faults.borrow_and_update(), direction) {
            if faults.changed().await.is_err() {
                return Verdict::Reset;
            }
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) => {
                    let _ = to.shutdown().await;
                    return Verdict::Closed;
                }
                Ok(n) => n,
                Err(_) => return Verdict::Reset,
            },
            // A fault that holds this direction begins while it waits to read: hold it.
            changed = faults.changed() => {
                if changed.is_err() {
                    return Verdict::Reset;
                }
                continue;
            }
        };
        let chunk = &buf[..n];
        let written = match shared.fault() {
            Fault::None | Fault::Refuse | Fault::BlackHole | Fault::DropResponses => {
                to.write_all(chunk).await
            }
            Fault::Partition => return Verdict::Reset,
            Fault::Latency { base, jitter } => {
                let extra = shared.draw(jitter.as_micros() as u64 + 1);
                tokio::time::sleep(base + Duration::from_micros(extra)).await;
                to.write_all(chunk).await
            }
            Fault::Trickle { bytes, pause } => {
                let mut result = Ok(());
                for piece in chunk.chunks(bytes.max(1)) {
                    result = to.write_all(piece).await;
                    if result.is_err() {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                result
            }
            Fault::ResetRequest if direction == Direction::Request => {
                cut_short(&mut to, chunk, shared).await;
                return Verdict::Reset;
            }
            Fault::ResetResponse if direction == Direction::Response => {
                cut_short(&mut to, chunk, shared).await;
                return Verdict::Reset;
            }
            Fault::ResetRequest | Fault::ResetResponse => to.write_all(chunk).await,
        };
        if written.is_err() {
            return Verdict::Reset;
        }
    }
}

/// Passes on a seeded part of a chunk (less than all of it), then the caller resets.
async fn cut_short<W: AsyncWriteExt + Unpin>(to: &mut W, chunk: &[u8], shared: &Shared) {
    let keep = shared.draw(chunk.len() as u64) as usize;
    let _ = to.write_all(&chunk[..keep]).await;
    let _ = to.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// An upstream that reads requests of `len` bytes and answers each with the same bytes,
    /// counting the bytes it received.
    async fn echo(len: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let counted = received.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; len];
                    loop {
                        let mut got = 0;
                        while got < len {
                            match s.read(&mut buf[got..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    got += n;
                                    counted.fetch_add(n, Ordering::SeqCst);
                                }
                            }
                        }
                        if s.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, received)
    }

    const LEN: usize = 4096;

    fn request() -> Vec<u8> {
        (0..LEN).map(|i| (i % 251) as u8).collect()
    }

    /// Sends one request and reads the answer: the bytes, or what went wrong, within `wait`.
    async fn round_trip(s: &mut TcpStream, wait: Duration) -> Result<Vec<u8>, String> {
        s.write_all(&request()).await.map_err(|e| e.to_string())?;
        let mut answer = vec![0u8; LEN];
        match tokio::time::timeout(wait, s.read_exact(&mut answer)).await {
            Err(_) => Err("timeout".into()),
            Ok(Err(e)) => Err(e.kind().to_string()),
            Ok(Ok(_)) => Ok(answer),
        }
    }

    #[tokio::test]
    async fn without_a_fault_it_forwards_both_ways() {
        let (upstream, _) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 1).await.expect("proxy");
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        for _ in 0..3 {
            let answer = round_trip(&mut s, Duration::from_secs(5)).await;
            assert_eq!(answer, Ok(request()));
        }
    }

    #[tokio::test]
    async fn latency_delays_every_chunk_and_changes_nothing_else() {
        let (upstream, _) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 2).await.expect("proxy");
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        proxy.set(Fault::Latency {
            base: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
        });
        let started = Instant::now();
        assert_eq!(
            round_trip(&mut s, Duration::from_secs(5)).await,
            Ok(request())
        );
        // One chunk each way at least, each delayed.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_black_hole_answers_nothing_until_it_ends_and_loses_nothing() {
        let (upstream, received) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 3).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        proxy.set(Fault::BlackHole);
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let answer = round_trip(&mut s, Duration::from_millis(300)).await;
        assert_eq!(answer, Err("timeout".to_string()));
        let answer = round_trip(&mut open, Duration::from_millis(300)).await;
        assert_eq!(answer, Err("timeout".to_string()));
        assert_eq!(received.load(Ordering::SeqCst), 0);
        proxy.set(Fault::None);
        let mut late = vec![0u8; LEN];
        for s in [&mut s, &mut open] {
            let read = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut late)).await;
            assert!(matches!(read, Ok(Ok(_))), "{read:?}");
            assert_eq!(late, request());
        }
    }

    #[tokio::test]
    async fn a_reset_in_the_response_loses_the_answer_after_the_work_was_done() {
        let (upstream, received) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 4).await.expect("proxy");
        proxy.set(Fault::ResetResponse);
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let answer = round_trip(&mut s, Duration::from_secs(5)).await;
        assert!(answer.is_err(), "{answer:?}");
        assert_ne!(answer, Err("timeout".to_string()));
        // The upstream had the whole request: the work was done.
        assert_eq!(received.load(Ordering::SeqCst), LEN);
    }

    #[tokio::test]
    async fn a_reset_in_the_request_cuts_it_short() {
        let (upstream, received) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 5).await.expect("proxy");
        proxy.set(Fault::ResetRequest);
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let answer = round_trip(&mut s, Duration::from_secs(5)).await;
        assert!(answer.is_err(), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(received.load(Ordering::SeqCst) < LEN);
    }

    #[tokio::test]
    async fn a_trickle_passes_everything_a_few_bytes_at_a_time() {
        let (upstream, _) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 6).await.expect("proxy");
        proxy.set(Fault::Trickle {
            bytes: 512,
            pause: Duration::from_millis(10),
        });
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let started = Instant::now();
        assert_eq!(
            round_trip(&mut s, Duration::from_secs(5)).await,
            Ok(request())
        );
        // 8 pieces each way, 10 ms apart.
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn refused_connections_get_no_byte_through_and_open_ones_go_on() {
        let (upstream, received) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 7).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(
            round_trip(&mut open, Duration::from_secs(5)).await,
            Ok(request())
        );
        proxy.set(Fault::Refuse);
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("connect");
        let answer = round_trip(&mut refused, Duration::from_secs(5)).await;
        assert!(
            answer.is_err() && answer != Err("timeout".to_string()),
            "{answer:?}"
        );
        assert_eq!(received.load(Ordering::SeqCst), LEN);
        assert_eq!(
            round_trip(&mut open, Duration::from_secs(5)).await,
            Ok(request())
        );
    }

    #[tokio::test]
    async fn dropped_responses_let_the_request_through_and_nothing_back_until_it_ends() {
        let (upstream, received) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 8).await.expect("proxy");
        proxy.set(Fault::DropResponses);
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let answer = round_trip(&mut s, Duration::from_millis(300)).await;
        assert_eq!(answer, Err("timeout".to_string()));
        assert_eq!(received.load(Ordering::SeqCst), LEN);
        proxy.set(Fault::None);
        let mut late = vec![0u8; LEN];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut late)).await;
        assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    }

    #[tokio::test]
    async fn a_partition_resets_open_connections_and_refuses_new_ones_until_it_ends() {
        let (upstream, _) = echo(LEN).await;
        let proxy = FaultProxy::start(upstream, 9).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(
            round_trip(&mut open, Duration::from_secs(5)).await,
            Ok(request())
        );
        proxy.set(Fault::Partition);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(round_trip(&mut open, Duration::from_secs(5)).await.is_err());
        let mut new = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(round_trip(&mut new, Duration::from_secs(5)).await.is_err());
        proxy.set(Fault::None);
        let mut after = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(
            round_trip(&mut after, Duration::from_secs(5)).await,
            Ok(request())
        );
    }

    #[test]
    fn the_seed_decides_the_draws() {
        let draws = |seed: u64| {
            let mut rng = Rng::new(seed);
            (0..8).map(|_| rng.below(1000)).collect::<Vec<u64>>()
        };
        assert_eq!(draws(42), draws(42));
        assert_ne!(draws(42), draws(43));
    }
}
