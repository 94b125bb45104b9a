//! The chaos harness behind `make chaos` (and the short run in `make test`).
//!
//! It starts a whole stack of its own — its own PostgreSQL server, so that it can crash it — and
//! runs checkout clients against it while a seeded fault schedule SIGKILLs and restarts order,
//! payment and stock, restarts Redis with its data lost, crashes and restarts PostgreSQL, and turns
//! the payment processor's `PAYMENT_FAULT_RATE` / `PAYMENT_LATENCY_MS` up and down. Clients behave
//! the way a client following the API's advice does: they retry with the same key on 5xx, 202, 409
//! `request_in_progress`, timeouts and connection errors. Meanwhile an admin restocks.
//!
//! The items are products of a marketplace: before the faults start, recipients are made and the
//! products given split rules (percentage, fixed and remainder shares, the platform among them,
//! rules without a remainder whose basis points sum to 10000, a fixed share asking more than the
//! line, a new version of one rule taking over halfway through the run, one product left to the
//! platform's default). Captured money is held for `SPLIT_HOLD_SECS=2`, so the release worker
//! releases it during the run. Beside each checkout client a refunder takes a seeded share of its
//! completed orders and refunds their payments in one or two parts (sometimes all of it), now and
//! then asking for one unit more than is left (which must be refused), retrying with the same key
//! like the clients.
//!
//! Meanwhile a mover moves the recipients' available money: transfers between them (some canceled
//! at once, racing the transfer worker) and payouts, with the simulated payout provider refusing a
//! fifth of them — each request retried with its key like the clients'.
//!
//! When the faults end it waits until every order is terminal, every refund settled and every
//! transfer and payout settled, checks
//! the invariants (shared with the saga tests: [`tests::invariants`] — the checkout's and the
//! ledger's), the trial balance payment answers, and that every client saw the truth (a 201 means
//! a completed order, a final refusal a failed one; a refund answered 201 is stored, of its
//! amount), prints the fault counts and every violation, writes `result.json` (with the names of
//! the invariants checked), and exits non-zero on any violation.

use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::fault_proxy::Fault as FaultOnWire;
use tests::invariants::{self, Databases, PLATFORM};
use tests::{
    workspace_root, Link, Options, OwnPostgres, Part, Peer, Stack, ADMIN_TOKEN, SERVICE_TOKEN,
};
use tokio::sync::mpsc;

#[derive(Parser, Clone)]
#[command(about = "Checkout under a seeded fault schedule, then the invariant check")]
struct Args {
    /// Seconds of faults.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Seed of the fault schedule and of the carts (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent checkout clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// `debug` or `release` service binaries.
    #[arg(long, default_value = "debug")]
    profile: String,
    /// Where the stack, its PostgreSQL server, logs and `result.json` go.
    #[arg(long, default_value = ".stack/chaos")]
    out: PathBuf,
    /// How long to wait for every order to become terminal once the faults end (seconds).
    #[arg(long, default_value_t = 180.0)]
    quiet_timeout: f64,
    /// Instances of each service behind nginx. With more than one, a kill takes one instance of a
    /// service (drawn by the seed) while the others serve, and a change of the processor's faults
    /// restarts payment's instances one at a time.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Faults on the wire as well: a seeded fault proxy on every link between the stack's
    /// processes (tests/src/fault_proxy.rs), and network faults drawn among the others.
    #[arg(long)]
    network: bool,
}

/// SplitMix64: a seeded, reproducible schedule without another dependency.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fault {
    KillOrder,
    KillPayment,
    KillStock,
    KillRedis,
    RestartPostgres,
    PaymentFaults,
    /// A fault on one link ([`NetFault`]), with `--network`.
    Network,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::KillOrder,
        Fault::KillPayment,
        Fault::KillStock,
        Fault::KillRedis,
        Fault::RestartPostgres,
        Fault::PaymentFaults,
    ];

    /// Which fault comes next: mostly process kills, and with `network` as many faults on the
    /// wire.
    fn draw(rng: &mut Rng, network: bool) -> Fault {
        const WEIGHTED: [(Fault, u32); 7] = [
            (Fault::KillOrder, 30),
            (Fault::KillPayment, 25),
            (Fault::KillStock, 25),
            (Fault::KillRedis, 12),
            (Fault::RestartPostgres, 10),
            (Fault::PaymentFaults, 15),
            (Fault::Network, 117),
        ];
        let weight = |f: Fault, w: u32| {
            if f == Fault::Network && !network {
                0
            } else {
                w
            }
        };
        let total: u32 = WEIGHTED.iter().map(|&(f, w)| weight(f, w)).sum();
        let mut pick = (rng.next() % u64::from(total)) as u32;
        for (fault, w) in WEIGHTED {
            let w = weight(fault, w);
            if pick < w {
                return fault;
            }
            pick -= w;
        }
        Fault::KillOrder
    }

    fn is_process_kill(self) -> bool {
        matches!(
            self,
            Fault::KillOrder | Fault::KillPayment | Fault::KillStock | Fault::KillRedis
        )
    }
}

/// One fault on the wire: which link, what, when and for how long.
#[derive(Serialize)]
struct NetFault {
    link: String,
    kind: &'static str,
    at_s: f64,
    length_s: f64,
}

/// A fault on one link drawn by the seed: its kind (a partition only between an instance and
/// PostgreSQL or Redis, where the others still reach them) and how long it lasts.
fn draw_net_fault(rng: &mut Rng, link: Link) -> (FaultOnWire, Duration) {
    let store = matches!(link.to, Peer::Postgres | Peer::Redis);
    let kinds = if store { 8 } else { 7 };
    let fault = match rng.below(kinds) {
        0 => FaultOnWire::Latency {
            base: Duration::from_millis(20 + rng.below(200) as u64),
            jitter: Duration::from_millis(rng.below(100) as u64),
        },
        1 => FaultOnWire::BlackHole,
        2 => FaultOnWire::ResetRequest,
        3 => FaultOnWire::ResetResponse,
        4 => FaultOnWire::Trickle {
            bytes: 1 + rng.below(64),
            pause: Duration::from_millis(1 + rng.below(20) as u64),
        },
        5 => FaultOnWire::Refuse,
        6 => FaultOnWire::DropResponses,
        _ => FaultOnWire::Partition,
    };
    (fault, Duration::from_secs_f64(rng.between(0.3, 3.0)))
}

/// What the clients saw, per key.
#[derive(Default)]
struct Seen {
    /// Keys answered 201.
    completed: Vec<String>,
    /// Keys answered a final refusal (4xx, or a problem saying the order failed).
    refused: Vec<String>,
    /// Keys the client gave up retrying (the order must still end terminal).
    abandoned: Vec<String>,
    answers: BTreeMap<String, u64>,
    attempts: u64,
}

/// One process kill: when, which, for how long, and how many checkouts completed meanwhile.
#[derive(Serialize)]
struct Kill {
    fault: Fault,
    /// Which instance of the service (1 when there is one).
    instance: usize,
    at_s: f64,
    down_s: f64,
    /// Checkouts answered 201 from the kill to the instance being ready again.
    completed_meanwhile: usize,
}

#[derive(Serialize)]
struct Report {
    seed: u64,
    seconds: f64,
    clients: usize,
    instances: usize,
    /// Checkouts answered 201 in each second from the start of the faults until the clients
    /// stopped.
    completions_per_second: Vec<usize>,
    kills: Vec<Kill>,
    /// Checkouts completed while an instance of a service was down (kills of Redis excluded).
    completed_during_service_kills: usize,
    faults: BTreeMap<String, u64>,
    /// Every fault on the wire (with `--network`), in order.
    network_faults: Vec<NetFault>,
    process_kills: u64,
    checkouts: u64,
    completed: usize,
    refused: usize,
    abandoned: usize,
    attempts: u64,
    answers: BTreeMap<String, u64>,
    restocks: u64,
    orders_by_status: BTreeMap<String, i64>,
    /// Orders that ran more than one attempt (a retry of their key after
    /// `dependency_unavailable`).
    orders_with_new_attempts: i64,
    quiet_after_s: f64,
    /// The recipients and split rules the run sells under.
    marketplace: Marketplace,
    refunds: RefundReport,
    /// Seconds from every order being terminal to every refund settled.
    refunds_settled_after_s: f64,
    /// What the money mover did and was told: transfers, cancels and payouts.
    moves: MovesReport,
    /// Seconds from every refund settled to every transfer and payout settled.
    moves_settled_after_s: f64,
    /// What the ledger holds at the end: entries by kind, allocations, payments by status, refunds.
    ledger: BTreeMap<String, i64>,
    /// `GET /payment/ledger/trial-balance` at the end.
    trial_balance: Value,
    /// The invariants checked, by name.
    checked: Vec<String>,
    violations: Vec<String>,
}

#[derive(Serialize, Default)]
struct Marketplace {
    recipients: BTreeMap<String, String>,
    /// Per item (`{id} at {price}`): its rule's versions, as `{version}: {shares}`.
    split_rules: BTreeMap<String, Vec<String>>,
    /// When the second version of a rule takes over, in seconds after the faults start.
    new_version_at_s: f64,
}

#[derive(Serialize, Default)]
struct RefundReport {
    /// Completed orders the refunders were handed, and those they refunded (at least one 201).
    orders_seen: u64,
    orders_refunded: u64,
    /// Orders whose payment was refunded whole, in parts.
    orders_refunded_whole: u64,
    /// Refunds answered 201, and their sum.
    refunds: usize,
    amount: i64,
    /// Asks for one unit more than was left, refused as they must be.
    over_asks_refused: u64,
    /// Refunds given up on (their outcome unknown to the client).
    abandoned: u64,
    attempts: u64,
    answers: BTreeMap<String, u64>,
}

/// The answer's label for the tally, and whether the client is done with the key.
fn classify(status: Option<u16>, body: &Value) -> (String, bool) {
    let code = body["code"].as_str().unwrap_or("");
    let label = match status {
        Some(s) if code.is_empty() => s.to_string(),
        Some(s) => format!("{s} {code}"),
        None => code.to_string(),
    };
    let done = match status {
        Some(201) => true,
        Some(202) | Some(408) | Some(429) | None => false,
        Some(409) if code == "request_in_progress" => false,
        // stock or payment could not be reached and everything was undone: the same key runs the
        // checkout again (a new attempt), as a client following Retry-After does.
        Some(503) if code == "dependency_unavailable" => false,
        // A failure that says the order is over is final; other 5xx are retried.
        Some(s) if s >= 500 => body["orderStatus"].as_str() == Some("failed"),
        Some(_) => true,
    };
    (label, done)
}

/// Where a client tells of each checkout completed: the refunder beside it (the order, when), and
/// the run's timeline of completions.
struct Completions {
    orders: mpsc::UnboundedSender<(String, Instant)>,
    at: Arc<Mutex<Vec<Instant>>>,
}

async fn client_loop(
    stack: Arc<Stack>,
    http: reqwest::Client,
    items: Arc<Vec<(i64, i64)>>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    give_up_at: Arc<Mutex<Option<Instant>>>,
    completions: Completions,
) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::SeqCst) {
        let key = uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
        let lines = 1 + rng.below(3);
        let start = rng.below(items.len());
        let cart: Vec<Value> = (0..lines)
            .map(|i| {
                let (id, _) = items[(start + i) % items.len()];
                json!({"itemId": id, "quantity": 1 + rng.below(2)})
            })
            .collect();
        let body = json!({ "items": cart }).to_string();
        let mut backoff = Duration::from_millis(50);
        loop {
            seen.attempts += 1;
            let result = http
                .post(stack.url("/order/checkout"))
                .header("Idempotency-Key", &key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let (status, answer) = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    // A status whose body was cut off (a fault on the wire) is no answer: its
                    // outcome is unknown, and the key is retried.
                    match r.text().await {
                        Ok(text) => (
                            Some(status),
                            serde_json::from_str(&text).unwrap_or(Value::Null),
                        ),
                        Err(_) => (None, json!({"code": "body_cut_off"})),
                    }
                }
                Err(e) => (
                    None,
                    json!({"code": if e.is_timeout() { "timeout" } else { "connection_error" }}),
                ),
            };
            let (label, done) = classify(status, &answer);
            *seen.answers.entry(label).or_default() += 1;
            if done {
                if status == Some(201) {
                    completions
                        .at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Instant::now());
                    if let Some(order) = answer["orderId"].as_str() {
                        let _ = completions.orders.send((order.to_string(), Instant::now()));
                    }
                    seen.completed.push(key);
                } else {
                    seen.refused.push(key);
                }
                break;
            }
            let deadline = *give_up_at.lock().unwrap_or_else(|p| p.into_inner());
            if deadline.is_some_and(|d| Instant::now() >= d) {
                seen.abandoned.push(key);
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
    seen
}

/// An admin restocking now and then, retrying each restock with its key until it is answered.
async fn restocker(
    stack: Arc<Stack>,
    http: reqwest::Client,
    items: Arc<Vec<(i64, i64)>>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut done = 0;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (id, _) = items[rng.below(items.len())];
        let key = uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
        let body = json!({"quantity": 10 + rng.below(30)}).to_string();
        for _ in 0..100 {
            let r = http
                .post(stack.url(&format!("/stock/items/{id}/restock")))
                .bearer_auth(ADMIN_TOKEN)
                .header("Idempotency-Key", &key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match r.map(|r| r.status().as_u16()) {
                Ok(200) => {
                    done += 1;
                    break;
                }
                Ok(s) if (400..500).contains(&s) && s != 409 && s != 408 && s != 429 => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    done
}

/// The share of completed orders a refunder refunds.
const REFUND_SHARE: f64 = 0.3;

/// What a refunder did and was told.
#[derive(Default)]
struct Refunds {
    report: RefundReport,
    /// Refunds answered 201: (refund id, payment id, amount).
    created: Vec<(String, String, i64)>,
    /// Per payment, what the refunder was told was refunded of it; `None` when it does not know
    /// (a refund given up on).
    told: HashMap<String, Option<i64>>,
    /// Answers a refund of a completed order's payment must not get.
    surprises: Vec<String>,
}

/// How a refund request ended.
enum RefundOutcome {
    Created(Value),
    /// A final refusal: its label (status and code).
    Refused(String),
    Abandoned,
}

fn deadline_passed(give_up_at: &Mutex<Option<Instant>>) -> bool {
    let deadline = *give_up_at.lock().unwrap_or_else(|p| p.into_inner());
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// `POST /payment/payments/{id}/refunds` under one key, retried with it until a final answer or
/// the give-up deadline (see [`post_until_final`]).
async fn refund_once(
    stack: &Stack,
    http: &reqwest::Client,
    payment_id: &str,
    amount: i64,
    key: &str,
    give_up_at: &Mutex<Option<Instant>>,
    tally: &mut RefundReport,
) -> RefundOutcome {
    let path = format!("/payment/payments/{payment_id}/refunds");
    let body = json!({ "amount": amount });
    let mut tries = Tries {
        attempts: &mut tally.attempts,
        answers: &mut tally.answers,
    };
    match post_until_final(stack, http, &path, &body, key, give_up_at, &mut tries).await {
        Final::Done(201, answer) => RefundOutcome::Created(answer),
        Final::Done(status, _) => RefundOutcome::Refused(status.to_string()),
        Final::Refused(label) => RefundOutcome::Refused(label),
        Final::Abandoned => {
            tally.abandoned += 1;
            RefundOutcome::Abandoned
        }
    }
}

/// How a `POST` under one key ended.
enum Final {
    /// A 2xx answer: its status and body.
    Done(u16, Value),
    /// A final refusal: its label (status and code).
    Refused(String),
    /// The give-up deadline came first.
    Abandoned,
}

/// Where a `POST` counts its tries and the answers it got (by label).
struct Tries<'a> {
    attempts: &'a mut u64,
    answers: &'a mut BTreeMap<String, u64>,
}

/// `POST path` (service token) under one key, retried with it — on 5xx (503
/// `processor_unavailable` included), 408, 429, 409 `request_in_progress`, timeouts and connection
/// errors — until a final answer or the give-up deadline.
async fn post_until_final(
    stack: &Stack,
    http: &reqwest::Client,
    path: &str,
    body: &Value,
    key: &str,
    give_up_at: &Mutex<Option<Instant>>,
    tries: &mut Tries<'_>,
) -> Final {
    let body = body.to_string();
    let mut backoff = Duration::from_millis(50);
    loop {
        *tries.attempts += 1;
        let result = http
            .post(stack.url(path))
            .bearer_auth(SERVICE_TOKEN)
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let (status, answer) = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                // A body cut off by a fault on the wire: the outcome is unknown, retried.
                match r.text().await {
                    Ok(text) => (
                        Some(status),
                        serde_json::from_str(&text).unwrap_or(Value::Null),
                    ),
                    Err(_) => (None, json!({"code": "body_cut_off"})),
                }
            }
            Err(e) => (
                None,
                json!({"code": if e.is_timeout() { "timeout" } else { "connection_error" }}),
            ),
        };
        let code = answer["code"].as_str().unwrap_or("");
        let label = match status {
            Some(s) if code.is_empty() => s.to_string(),
            Some(s) => format!("{s} {code}"),
            None => code.to_string(),
        };
        *tries.answers.entry(label.clone()).or_default() += 1;
        let retry = match status {
            Some(s) if (200..300).contains(&s) => return Final::Done(s, answer),
            Some(409) => code == "request_in_progress",
            Some(s) => s >= 500 || s == 408 || s == 429,
            None => true,
        };
        if !retry {
            return Final::Refused(label);
        }
        if deadline_passed(give_up_at) {
            return Final::Abandoned;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// What the money mover did and was told.
#[derive(Serialize, Default)]
struct MovesReport {
    transfers_accepted: u64,
    /// Refused 409 `insufficient_funds`, as they may be.
    transfers_refused: u64,
    transfers_canceled: u64,
    /// Cancels answered 409 `transfer_not_cancelable`: the worker posted the transfer first.
    cancels_too_late: u64,
    payouts_accepted: u64,
    payouts_refused: u64,
    /// Requests given up on (their outcome unknown to the mover).
    abandoned: u64,
    attempts: u64,
    answers: BTreeMap<String, u64>,
    /// Answers a transfer, payout or cancel must not get.
    #[serde(skip)]
    surprises: Vec<String>,
}

/// Moves the recipients' available money while the faults go on: transfers between them (a third
/// canceled at once, racing the worker) and payouts out of the platform, at random amounts —
/// many refused for want of money, as they must be. Each request is retried with its key like the
/// clients'.
async fn mover(
    stack: Arc<Stack>,
    http: reqwest::Client,
    recipients: Vec<String>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    give_up_at: Arc<Mutex<Option<Instant>>>,
) -> MovesReport {
    let mut out = MovesReport::default();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs_f64(rng.between(0.02, 0.15))).await;
        let from = recipients[rng.below(recipients.len())].clone();
        let amount = 1 + rng.below(3_000) as i64;
        let key = tests::new_key();
        let mut tries = Tries {
            attempts: &mut out.attempts,
            answers: &mut out.answers,
        };
        if rng.unit() < 0.3 {
            let body = json!({"recipientId": from, "amount": amount, "currency": "EUR"});
            match post_until_final(
                &stack,
                &http,
                "/payment/payouts",
                &body,
                &key,
                &give_up_at,
                &mut tries,
            )
            .await
            {
                Final::Done(202, _) => out.payouts_accepted += 1,
                Final::Refused(label) if label == "409 insufficient_funds" => {
                    out.payouts_refused += 1
                }
                Final::Abandoned => out.abandoned += 1,
                Final::Done(status, answer) => out
                    .surprises
                    .push(format!("payout {body}: {status} {answer}")),
                Final::Refused(label) => out.surprises.push(format!("payout {body}: {label}")),
            }
            continue;
        }
        let mut to = recipients[rng.below(recipients.len())].clone();
        if to == from {
            to = recipients
                [(recipients.iter().position(|r| *r == from).unwrap_or(0) + 1) % recipients.len()]
            .clone();
        }
        let body = json!({"fromRecipientId": from, "toRecipientId": to, "amount": amount, "currency": "EUR"});
        let transfer_id = match post_until_final(
            &stack,
            &http,
            "/payment/transfers",
            &body,
            &key,
            &give_up_at,
            &mut tries,
        )
        .await
        {
            Final::Done(202, answer) => {
                out.transfers_accepted += 1;
                answer["transferId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
            Final::Refused(label) if label == "409 insufficient_funds" => {
                out.transfers_refused += 1;
                continue;
            }
            Final::Abandoned => {
                out.abandoned += 1;
                continue;
            }
            Final::Done(status, answer) => {
                out.surprises
                    .push(format!("transfer {body}: {status} {answer}"));
                continue;
            }
            Final::Refused(label) => {
                out.surprises.push(format!("transfer {body}: {label}"));
                continue;
            }
        };
        if rng.unit() >= 0.3 {
            continue;
        }
        let path = format!("/payment/transfers/{transfer_id}/cancel");
        match post_until_final(
            &stack,
            &http,
            &path,
            &json!({}),
            &tests::new_key(),
            &give_up_at,
            &mut tries,
        )
        .await
        {
            Final::Done(200, answer) if answer["status"] == "canceled" => {
                out.transfers_canceled += 1
            }
            Final::Refused(label) if label == "409 transfer_not_cancelable" => {
                out.cancels_too_late += 1
            }
            Final::Abandoned => out.abandoned += 1,
            Final::Done(status, answer) => out
                .surprises
                .push(format!("cancel of {transfer_id}: {status} {answer}")),
            Final::Refused(label) => out
                .surprises
                .push(format!("cancel of {transfer_id}: {label}")),
        }
    }
    out
}

/// `GET /order/orders/{id}`, retried on 5xx, timeouts and connection errors; `None` on another
/// answer or at the give-up deadline.
async fn fetch_order(
    stack: &Stack,
    http: &reqwest::Client,
    order_id: &str,
    give_up_at: &Mutex<Option<Instant>>,
) -> Result<Value, String> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let result = http
            .get(stack.url(&format!("/order/orders/{order_id}")))
            .send()
            .await;
        match result {
            Ok(r) if r.status().as_u16() == 200 => {
                let text = r.text().await.unwrap_or_default();
                return serde_json::from_str(&text).map_err(|e| e.to_string());
            }
            Ok(r) if r.status().as_u16() < 500 && r.status().as_u16() != 429 => {
                return Err(format!("answered {}", r.status().as_u16()));
            }
            _ => {}
        }
        if deadline_passed(give_up_at) {
            return Err("given up".into());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Refunds a seeded share of one client's completed orders, 0–4 s after each completed (or as soon
/// as it can, and without waiting once the faults are over), so that some refunds take back money
/// still pending and others money released meanwhile: in one or two parts of random amounts,
/// sometimes the last taking all that is left, now and then followed by an ask for one unit more
/// than is left — which must be refused (409 `refund_exceeds_payment`, or `payment_not_refundable`
/// once nothing is left).
async fn refunder(
    stack: Arc<Stack>,
    http: reqwest::Client,
    mut completions: mpsc::UnboundedReceiver<(String, Instant)>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    give_up_at: Arc<Mutex<Option<Instant>>>,
) -> Refunds {
    let mut out = Refunds::default();
    while let Some((order_id, completed_at)) = completions.recv().await {
        out.report.orders_seen += 1;
        if rng.unit() >= REFUND_SHARE {
            continue;
        }
        let parts = 1 + rng.below(2);
        let whole = rng.unit() < 0.2;
        let over_ask = rng.unit() < 0.15;
        let at = completed_at + Duration::from_secs_f64(rng.between(0.0, 4.0));
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep_until(at.into()).await;
        }
        let order = match fetch_order(&stack, &http, &order_id, &give_up_at).await {
            Ok(order) => order,
            Err(why) => {
                out.surprises.push(format!(
                    "completed order {order_id} could not be read: {why}"
                ));
                continue;
            }
        };
        let (Some(payment_id), Some(total)) =
            (order["paymentId"].as_str(), order["totalAmount"].as_i64())
        else {
            out.surprises.push(format!(
                "completed order {order_id} has no payment or total: {order}"
            ));
            continue;
        };
        if order["status"] != "completed" {
            out.surprises.push(format!(
                "order {order_id} was answered 201 but reads {}",
                order["status"]
            ));
            continue;
        }
        let payment_id = payment_id.to_string();
        let mut left = total;
        let mut known = true;
        let mut refunded_any = false;
        for part in 0..parts {
            let amount = if part + 1 == parts && whole {
                left
            } else if left >= 2 {
                1 + rng.below((left - 1) as usize) as i64
            } else {
                break;
            };
            let key = uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
            match refund_once(
                &stack,
                &http,
                &payment_id,
                amount,
                &key,
                &give_up_at,
                &mut out.report,
            )
            .await
            {
                RefundOutcome::Created(refund) => {
                    let id = refund["refundId"].as_str().unwrap_or_default().to_string();
                    if refund["paymentId"].as_str() != Some(payment_id.as_str())
                        || refund["amount"].as_i64() != Some(amount)
                    {
                        out.surprises.push(format!(
                            "a refund of {amount} of payment {payment_id} was answered {refund}"
                        ));
                    }
                    out.created.push((id, payment_id.clone(), amount));
                    out.report.refunds += 1;
                    out.report.amount += amount;
                    left -= amount;
                    refunded_any = true;
                }
                RefundOutcome::Refused(label) => {
                    out.surprises.push(format!(
                        "a refund of {amount} of payment {payment_id} ({left} of {total} left) was refused: {label}"
                    ));
                    break;
                }
                RefundOutcome::Abandoned => {
                    known = false;
                    break;
                }
            }
        }
        if over_ask && known {
            let expected = if left == 0 {
                "409 payment_not_refundable"
            } else {
                "409 refund_exceeds_payment"
            };
            let key = uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
            match refund_once(
                &stack,
                &http,
                &payment_id,
                left + 1,
                &key,
                &give_up_at,
                &mut out.report,
            )
            .await
            {
                RefundOutcome::Refused(label) if label == expected => {
                    out.report.over_asks_refused += 1
                }
                RefundOutcome::Refused(label) => out.surprises.push(format!(
                    "a refund of {} of payment {payment_id} ({left} left) was refused {label}, not {expected}",
                    left + 1
                )),
                RefundOutcome::Created(refund) => {
                    out.surprises.push(format!(
                        "a refund of {} of payment {payment_id}, with {left} left, was granted: {refund}",
                        left + 1
                    ));
                    known = false;
                }
                RefundOutcome::Abandoned => known = false,
            }
        }
        if refunded_any {
            out.report.orders_refunded += 1;
            if left == 0 {
                out.report.orders_refunded_whole += 1;
            }
        }
        out.told.insert(payment_id, known.then_some(total - left));
    }
    out
}

/// An admin `POST` of the setup, retried with its key (the setup runs before the faults, but
/// payment may still be starting) until it is answered 201; its body.
async fn setup_post(stack: &Stack, http: &reqwest::Client, path: &str, body: &Value) -> Value {
    let key = tests::new_key();
    for _ in 0..120 {
        let r = http
            .post(stack.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", &key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        if let Ok(r) = r {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if status == 201 {
                return serde_json::from_str(&text).expect("a JSON answer");
            }
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let retry = status >= 500
                || status == 408
                || status == 429
                || (status == 409 && answer["code"] == "request_in_progress");
            assert!(retry, "POST {path} {body} answered {status}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("POST {path} {body} was never answered 201");
}

/// The marketplace the run sells in: four recipients beside the platform, and a split rule for
/// every item but the last (left to the platform's default). `items` are the items the run made;
/// the first item's rule gets a second version, in force from `new_version_in` on.
async fn marketplace(
    stack: &Stack,
    http: &reqwest::Client,
    items: &[(i64, i64)],
    new_version_in: Duration,
) -> Marketplace {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    names.insert(PLATFORM.to_string(), "platform".to_string());
    let mut ids = Vec::new();
    for name in ["seller-a", "seller-b", "partner-c", "affiliate-d"] {
        let made = setup_post(stack, http, "/payment/recipients", &json!({ "name": name })).await;
        let id = made["recipientId"]
            .as_str()
            .expect("a recipient id")
            .to_string();
        names.insert(id.clone(), name.to_string());
        ids.push(id);
    }
    let (a, b, c, d, p) = (
        ids[0].as_str(),
        ids[1].as_str(),
        ids[2].as_str(),
        ids[3].as_str(),
        PLATFORM,
    );
    let pct = |r: &str, bp: i64| json!({"recipientId": r, "type": "percentage", "basisPoints": bp});
    let fixed = |r: &str, amount: i64| json!({"recipientId": r, "type": "fixed", "amount": amount});
    let rest = |r: &str| json!({"recipientId": r, "type": "remainder"});
    let rules: Vec<(usize, Vec<Value>)> = vec![
        // Fixed, percentage and remainder, the platform taking a percentage.
        (0, vec![fixed(a, 30), pct(p, 1000), rest(b)]),
        // No remainder: the basis points sum to 10000 and the leftover units go by largest
        // fractional part.
        (1, vec![pct(a, 3333), pct(c, 3333), pct(d, 3334)]),
        (2, vec![fixed(d, 125), pct(p, 1500), pct(b, 2500), rest(c)]),
        (3, vec![pct(p, 1234), pct(a, 4321), pct(b, 4445)]),
    ];
    let mut split_rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let describe = |shares: &[Value]| -> String {
        shares
            .iter()
            .map(|s| {
                let who = names
                    .get(s["recipientId"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                match s["type"].as_str() {
                    Some("percentage") => format!("{} bp {who}", s["basisPoints"]),
                    Some("fixed") => format!("{}/unit {who}", s["amount"]),
                    _ => format!("rest {who}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let item_label = |i: usize| format!("{} at {}", items[i].0, items[i].1);
    for (item, shares) in &rules {
        let made = setup_post(
            stack,
            http,
            "/payment/split-rules",
            &json!({"productId": items[*item].0, "shares": shares}),
        )
        .await;
        split_rules
            .entry(item_label(*item))
            .or_default()
            .push(format!("v{}: {}", made["version"], describe(shares)));
    }
    // A second version of the first item's rule, from halfway through the run: fixed shares asking
    // more than a unit's price (the second one capped, the remainder left with nothing).
    let from = sqlx::types::chrono::Utc::now() + new_version_in;
    let shares = vec![fixed(a, 200), fixed(c, 100), rest(p)];
    let made = setup_post(
        stack,
        http,
        "/payment/split-rules",
        &json!({
            "productId": items[0].0,
            "effectiveFrom": from.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "shares": shares,
        }),
    )
    .await;
    split_rules.entry(item_label(0)).or_default().push(format!(
        "v{} from {}: {}",
        made["version"],
        made["effectiveFrom"].as_str().unwrap_or_default(),
        describe(&shares)
    ));
    split_rules.insert(
        item_label(items.len() - 1),
        vec!["none: the platform's".to_string()],
    );
    Marketplace {
        recipients: names,
        split_rules,
        new_version_at_s: 0.0,
    }
}

/// Payment's fault settings, kept across its restarts.
#[derive(Clone)]
struct PaymentFaults {
    rate: &'static str,
    latency_ms: &'static str,
}

impl PaymentFaults {
    const OFF: PaymentFaults = PaymentFaults {
        rate: "0",
        latency_ms: "0",
    };
    fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("PAYMENT_FAULT_RATE", self.rate),
            ("PAYMENT_LATENCY_MS", self.latency_ms),
        ]
    }
    fn is_off(&self) -> bool {
        self.rate == "0" && self.latency_ms == "0"
    }
}

/// Injects `fault`; for a process kill, says which instance it took (1 for Redis, or when
/// each service runs once).
async fn inject(
    stack: &Stack,
    pg: &OwnPostgres,
    fault: Fault,
    rng: &mut Rng,
    payment: &mut PaymentFaults,
) -> usize {
    let down = Duration::from_secs_f64(rng.between(0.05, 1.0));
    match fault {
        Fault::KillOrder | Fault::KillPayment | Fault::KillStock => {
            let part = match fault {
                Fault::KillOrder => Part::Order,
                Fault::KillPayment => Part::Payment,
                _ => Part::Stock,
            };
            let instance = 1 + rng.below(stack.instances());
            stack.kill_instance(part, instance).await;
            tokio::time::sleep(down).await;
            let env = if part == Part::Payment {
                payment.env().to_vec()
            } else {
                Vec::new()
            };
            stack.start_instance_part(part, instance, &env).await;
            return instance;
        }
        Fault::KillRedis => {
            stack.kill(Part::Redis).await;
            tokio::time::sleep(down).await;
            stack.start_part(Part::Redis, &[]).await;
        }
        Fault::RestartPostgres => pg.crash_and_restart(down).await,
        Fault::PaymentFaults => {
            const RATES: [&str; 3] = ["0", "0.2", "0.5"];
            const LATENCIES: [&str; 3] = ["0", "200", "1500"];
            *payment = PaymentFaults {
                rate: RATES[rng.below(RATES.len())],
                latency_ms: LATENCIES[rng.below(LATENCIES.len())],
            };
            restart_payment(stack, payment).await;
        }
        // Drawn and applied by the schedule, which records it ([`draw_net_fault`]).
        Fault::Network => {}
    }
    1
}

/// payment restarted with the processor's faults of `payment`: at once when it runs alone, one
/// instance at a time when there are several (as a rolling restart would).
async fn restart_payment(stack: &Stack, payment: &PaymentFaults) {
    if stack.instances() == 1 {
        stack.stop(Part::Payment).await;
        stack.start_part(Part::Payment, &payment.env()).await;
        return;
    }
    for i in 1..=stack.instances() {
        stack.stop_instance(Part::Payment, i).await;
        stack
            .start_instance_part(Part::Payment, i, &payment.env())
            .await;
    }
}

async fn orders_by_key(stack: &Stack) -> BTreeMap<String, String> {
    let db = stack.db(Part::Order).await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT idempotency_key, status FROM orders")
        .fetch_all(&db)
        .await
        .expect("orders readable");
    // Stored keys are scoped by caller: `{caller}:{key}`.
    rows.into_iter()
        .map(|(scoped, status)| {
            let key = scoped.split_once(':').map_or(scoped.as_str(), |(_, k)| k);
            (key.to_string(), status)
        })
        .collect()
}

async fn run(args: Args) -> Report {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    println!(
        "chaos: seed {seed}, {} s of faults, {} clients",
        args.seconds, args.clients
    );
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        workspace_root().join(&args.out)
    };
    let _ = std::fs::remove_dir_all(out.join("stacks"));
    std::fs::create_dir_all(&out).expect("output directory");
    let (pg, pg_url) = OwnPostgres::start_fresh(&out.join("postgres"));

    let options = Options {
        postgres_url: Some(pg_url),
        dir: Some(out.join("stacks")),
        profile: Some(args.profile.clone()),
        instances: args.instances.max(1),
        fault_proxies: args.network.then_some(seed),
        ..Options::default()
    }
    // Recovery paced for a short run: a saga whose driver died is taken over within seconds, and
    // an in-flight marker left by a killed process expires soon.
    .env("SAGA_LEASE_SECS", 6)
    .env("SAGA_STEP_BUDGET_MS", 3000)
    .env("OUTBOUND_TIMEOUT_MS", 2000)
    .env("RECOVERY_INTERVAL_MS", 500)
    .env("COMPENSATION_MAX_BACKOFF_MS", 1000)
    .env("CHECKOUT_DEADLINE_MS", 3000)
    .env("IDEMPOTENCY_LOCK_SECS", 10)
    .env("STARTUP_TIMEOUT_SECS", 60)
    // Captured money is held two seconds, so that the release worker releases during the run and
    // refunds take back money both pending and available.
    .env("SPLIT_HOLD_SECS", 2)
    .env("SPLIT_RELEASE_INTERVAL_MS", 500)
    // Transfers and payouts are settled during the run; the payout provider refuses a fifth.
    .env("TRANSFER_INTERVAL_MS", 200)
    .env("PAYOUT_FAILURE_RATE", 0.2)
    .env("RUST_LOG", "warn");
    let stack = Arc::new(Stack::start_with(options).await);
    println!("chaos: stack in {}", stack.dir().display());

    let mut rng = Rng(seed);
    // Five items; one is dear enough that two of it are declined (PAYMENT_DECLINE_ABOVE 100000).
    // Every one but the last has a split rule.
    let mut items = Vec::new();
    for (price, stock) in [
        (250, 120),
        (1_999, 80),
        (5_000, 60),
        (60_000, 40),
        (799, 100),
    ] {
        items.push((stack.create_item(price, "EUR", stock).await, price));
    }

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(8))
        .build()
        .expect("http client");
    let new_version_in = Duration::from_secs_f64(args.seconds / 2.0);
    let mut market = marketplace(&stack, &http, &items, new_version_in).await;
    let new_version_at = Instant::now() + new_version_in;
    let items = Arc::new(items);

    let stop = Arc::new(AtomicBool::new(false));
    let give_up_at = Arc::new(Mutex::new(None));
    let mut clients = Vec::new();
    let mut refunders = Vec::new();
    let completed_at = Arc::new(Mutex::new(Vec::new()));
    for i in 0..args.clients {
        let (completions, completed) = mpsc::unbounded_channel();
        let client_seed = seed ^ (i as u64 + 1).wrapping_mul(0x5851_F42D_4C95_7F2D);
        clients.push(tokio::spawn(client_loop(
            stack.clone(),
            http.clone(),
            items.clone(),
            Rng(client_seed),
            stop.clone(),
            give_up_at.clone(),
            Completions {
                orders: completions,
                at: completed_at.clone(),
            },
        )));
        refunders.push(tokio::spawn(refunder(
            stack.clone(),
            http.clone(),
            completed,
            Rng(client_seed.rotate_left(29) ^ 0xD1B5_4A32_D192_ED03),
            stop.clone(),
            give_up_at.clone(),
        )));
    }
    let moves = tokio::spawn(mover(
        stack.clone(),
        http.clone(),
        market.recipients.keys().cloned().collect(),
        Rng(seed.rotate_left(41) ^ 0x9E37_79B9_7F4A_7C15),
        stop.clone(),
        give_up_at.clone(),
    ));
    let restocks = tokio::spawn(restocker(
        stack.clone(),
        http.clone(),
        items.clone(),
        Rng(seed.rotate_left(17)),
        stop.clone(),
    ));

    // The fault schedule.
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut process_kills = 0;
    let mut kills: Vec<(Fault, usize, Instant, Instant)> = Vec::new();
    let mut payment = PaymentFaults::OFF;
    let started = Instant::now();
    market.new_version_at_s = new_version_at
        .saturating_duration_since(started)
        .as_secs_f64();
    let end = started + Duration::from_secs_f64(args.seconds);
    // Every kind of fault once, in a seeded order, then drawn at random: even a short run covers
    // them all.
    let mut first_round = Fault::ALL.to_vec();
    if args.network {
        first_round.push(Fault::Network);
    }
    let links = stack.links();
    let mut network_faults = Vec::new();
    for i in (1..first_round.len()).rev() {
        first_round.swap(i, rng.below(i + 1));
    }
    let mut first_round = first_round.into_iter();
    loop {
        let pause = Duration::from_secs_f64(rng.between(0.4, 1.6));
        if Instant::now() + pause >= end {
            break;
        }
        tokio::time::sleep(pause).await;
        let fault = first_round
            .next()
            .unwrap_or_else(|| Fault::draw(&mut rng, args.network));
        let label = serde_json::to_value(fault)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!("chaos: {:>6.1} s  {label}", started.elapsed().as_secs_f64());
        let at = Instant::now();
        if fault == Fault::Network && !links.is_empty() {
            let link = links[rng.below(links.len())];
            let (on_wire, length) = draw_net_fault(&mut rng, link);
            println!(
                "chaos:          {} on {} for {:.1} s",
                on_wire.kind(),
                link.name(),
                length.as_secs_f64()
            );
            stack.set_fault(link, on_wire);
            tokio::time::sleep(length).await;
            stack.set_fault(link, FaultOnWire::None);
            network_faults.push(NetFault {
                link: link.name(),
                kind: on_wire.kind(),
                at_s: at.duration_since(started).as_secs_f64(),
                length_s: length.as_secs_f64(),
            });
        }
        let instance = inject(&stack, &pg, fault, &mut rng, &mut payment).await;
        if fault.is_process_kill() {
            kills.push((fault, instance, at, Instant::now()));
        }
        *faults.entry(label).or_default() += 1;
        if fault.is_process_kill() {
            process_kills += 1;
        }
    }
    if let Some(rest) = end.checked_duration_since(Instant::now()) {
        tokio::time::sleep(rest).await;
    }

    // Faults over: the processor heals, clients finish the keys they hold (for a bounded time).
    if !payment.is_off() {
        restart_payment(&stack, &PaymentFaults::OFF).await;
    }
    stop.store(true, Ordering::SeqCst);
    *give_up_at.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Instant::now() + Duration::from_secs(60));
    let mut seen = Seen::default();
    for c in clients {
        if let Ok(s) = c.await {
            seen.completed.extend(s.completed);
            seen.refused.extend(s.refused);
            seen.abandoned.extend(s.abandoned);
            seen.attempts += s.attempts;
            for (k, v) in s.answers {
                *seen.answers.entry(k).or_default() += v;
            }
        }
    }
    let clients_stopped = Instant::now();
    let restocks = restocks.await.unwrap_or(0);
    let moves = moves.await.unwrap_or_default();
    let mut refunds = Refunds::default();
    for r in refunders {
        if let Ok(r) = r.await {
            let (sum, one) = (&mut refunds.report, r.report);
            sum.orders_seen += one.orders_seen;
            sum.orders_refunded += one.orders_refunded;
            sum.orders_refunded_whole += one.orders_refunded_whole;
            sum.refunds += one.refunds;
            sum.amount += one.amount;
            sum.over_asks_refused += one.over_asks_refused;
            sum.abandoned += one.abandoned;
            sum.attempts += one.attempts;
            for (k, v) in one.answers {
                *sum.answers.entry(k).or_default() += v;
            }
            refunds.created.extend(r.created);
            refunds.told.extend(r.told);
            refunds.surprises.extend(r.surprises);
        }
    }

    println!("chaos: faults over; waiting for every order, refund, transfer and payout to settle");
    let (order_db, stock_db, payment_db) = (
        stack.db(Part::Order).await,
        stack.db(Part::Stock).await,
        stack.db(Part::Payment).await,
    );
    // Then every refund and every transfer and payout settled, and every invariant checked.
    let (findings, settling) = invariants::settle_then_check(
        &Databases {
            order: &order_db,
            stock: &stock_db,
            payment: &payment_db,
        },
        invariants::Callers::OrderOnly,
        Duration::from_secs_f64(args.quiet_timeout),
    )
    .await
    .expect("invariant queries run");
    let invariants::Settling {
        quiet_after_s,
        refunds_settled_after_s,
        moves_settled_after_s,
    } = settling;
    let mut checked: Vec<String> = findings.checked.iter().map(|c| c.to_string()).collect();
    let mut violations = findings.violations;
    let mut record = |name: &str, found: Vec<String>| {
        checked.push(name.to_string());
        violations.extend(found.into_iter().map(|v| format!("{name}: {v}")));
    };
    record("money_move_answers_as_expected", moves.surprises.clone());

    // What the clients were told agrees with what happened.
    let orders = orders_by_key(&stack).await;
    let mut found = Vec::new();
    for key in &seen.completed {
        let status = orders.get(key).map_or("missing", String::as_str);
        if status != "completed" {
            found.push(format!(
                "key {key} was answered 201 but its order is {status}"
            ));
        }
    }
    record("answered_201_means_completed", found);
    let mut found = Vec::new();
    for key in &seen.refused {
        if orders.get(key).map(String::as_str) == Some("completed") {
            found.push(format!("key {key} was refused but its order is completed"));
        }
    }
    record("refused_means_not_completed", found);

    // What the refunders were told agrees with what payment holds.
    record("refund_answers_as_expected", refunds.surprises.clone());
    let stored: HashMap<String, (String, i64)> = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT id::text, payment_id::text, amount FROM refunds",
    )
    .fetch_all(&payment_db)
    .await
    .expect("refunds readable")
    .into_iter()
    .map(|(id, payment, amount)| (id, (payment, amount)))
    .collect();
    let mut found = Vec::new();
    for (id, payment, amount) in &refunds.created {
        match stored.get(id) {
            Some((p, a)) if p == payment && a == amount => {}
            other => found.push(format!(
                "refund {id} of {amount} of payment {payment} was answered 201 but payment holds {other:?}"
            )),
        }
    }
    record("refunds_answered_201_are_stored", found);
    let refunded: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT id::text, refunded_amount FROM payments")
            .fetch_all(&payment_db)
            .await
            .expect("payments readable")
            .into_iter()
            .collect();
    let mut found = Vec::new();
    for (payment, told) in &refunds.told {
        if let Some(told) = told {
            let holds = refunded.get(payment).copied();
            if holds != Some(*told) {
                found.push(format!(
                    "payment {payment}: its refunds were answered 201 for {told} in all, but it has {holds:?} refunded"
                ));
            }
        }
    }
    record("refunded_amounts_as_told", found);

    // The ledger's own verdict.
    let mut trial_balance = Value::Null;
    for _ in 0..40 {
        let r = http
            .get(stack.url("/payment/ledger/trial-balance"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().as_u16() == 200 {
                trial_balance = serde_json::from_str(&r.text().await.unwrap_or_default())
                    .unwrap_or(Value::Null);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    record(
        "trial_balance_consistent",
        if trial_balance["consistent"] == true {
            Vec::new()
        } else {
            vec![format!("the trial balance answers {trial_balance}")]
        },
    );

    let ledger: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT 'entries_' || kind, count(*) FROM ledger_entries GROUP BY kind
         UNION ALL SELECT 'payments_' || status, count(*) FROM payments GROUP BY status
         UNION ALL SELECT 'payments_partly_refunded', count(*) FROM payments
                   WHERE refunded_amount > 0 AND refunded_amount < amount
         UNION ALL SELECT 'refunds_' || kind, count(*) FROM refunds GROUP BY kind
         UNION ALL SELECT 'refunds_unsettled', count(*) FROM refunds WHERE settled_at IS NULL
         UNION ALL SELECT 'refund_legs_from_' || l.debit_account, count(*)
                   FROM ledger_legs l JOIN ledger_entries e ON e.id = l.entry_id
                   WHERE e.kind = 'refund' GROUP BY l.debit_account
         UNION ALL SELECT 'allocations', count(*) FROM allocations
         UNION ALL SELECT 'allocations_released', count(*) FROM allocations
                   WHERE released_at IS NOT NULL
         UNION ALL SELECT 'allocations_reversed', count(*) FROM allocations WHERE reversed > 0
         UNION ALL SELECT 'pending_credits_queued', count(*) FROM pending_credits
         UNION ALL SELECT 'split_rules', count(*) FROM split_rules
         UNION ALL SELECT 'transfers_' || status, count(*) FROM transfers GROUP BY status
         UNION ALL SELECT 'payouts_' || status, count(*) FROM payouts GROUP BY status
         UNION ALL SELECT 'payouts_asked_again', count(*) FROM simulated_payouts WHERE asked > 1",
    )
    .fetch_all(&payment_db)
    .await
    .expect("the ledger is readable")
    .into_iter()
    .collect();

    let mut orders_by_status: BTreeMap<String, i64> = BTreeMap::new();
    for status in orders.values() {
        *orders_by_status.entry(status.clone()).or_default() += 1;
    }
    let orders_with_new_attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE attempt > 1")
            .fetch_one(&order_db)
            .await
            .expect("orders readable");
    let completed_at = std::mem::take(&mut *completed_at.lock().unwrap_or_else(|p| p.into_inner()));
    let seconds_run = clients_stopped.saturating_duration_since(started).as_secs() as usize + 1;
    let mut completions_per_second = vec![0; seconds_run];
    for t in &completed_at {
        if let Some(second) = t.checked_duration_since(started) {
            if let Some(n) = completions_per_second.get_mut(second.as_secs() as usize) {
                *n += 1;
            }
        }
    }
    let kills: Vec<Kill> = kills
        .into_iter()
        .map(|(fault, instance, at, back)| Kill {
            fault,
            instance,
            at_s: at.saturating_duration_since(started).as_secs_f64(),
            down_s: back.saturating_duration_since(at).as_secs_f64(),
            completed_meanwhile: completed_at
                .iter()
                .filter(|t| **t >= at && **t <= back)
                .count(),
        })
        .collect();
    let completed_during_service_kills = kills
        .iter()
        .filter(|k| k.fault != Fault::KillRedis)
        .map(|k| k.completed_meanwhile)
        .sum();
    let report = Report {
        seed,
        seconds: args.seconds,
        clients: args.clients,
        instances: stack.instances(),
        completions_per_second,
        kills,
        completed_during_service_kills,
        faults,
        network_faults,
        process_kills,
        checkouts: (seen.completed.len() + seen.refused.len() + seen.abandoned.len()) as u64,
        completed: seen.completed.len(),
        refused: seen.refused.len(),
        abandoned: seen.abandoned.len(),
        attempts: seen.attempts,
        answers: seen.answers,
        restocks,
        orders_by_status,
        orders_with_new_attempts,
        quiet_after_s,
        marketplace: market,
        refunds: refunds.report,
        refunds_settled_after_s,
        moves,
        moves_settled_after_s,
        ledger,
        trial_balance,
        checked,
        violations,
    };
    drop((order_db, stock_db, payment_db));
    drop(stack);
    if report.violations.is_empty() {
        pg.remove();
    } else {
        println!(
            "chaos: the databases are kept for inspection ({})",
            out.join("postgres").display()
        );
    }
    let path = out.join("result.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).expect("report"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("chaos: result in {}", path.display());
    report
}

fn print(report: &Report) {
    println!(
        "\nseed {}  |  {} s of faults  |  {} process kills",
        report.seed, report.seconds, report.process_kills
    );
    for (fault, n) in &report.faults {
        println!("  {fault:<18} {n}");
    }
    if report.instances > 1 {
        let service_kills = report
            .kills
            .iter()
            .filter(|k| k.fault != Fault::KillRedis)
            .count();
        println!(
            "{} instances of each service: {} checkouts completed during {} single-instance kills",
            report.instances, report.completed_during_service_kills, service_kills
        );
    }
    println!(
        "checkouts {} (201: {}, refused: {}, abandoned: {}) in {} attempts; {} restocks",
        report.checkouts,
        report.completed,
        report.refused,
        report.abandoned,
        report.attempts,
        report.restocks
    );
    let answers: Vec<String> = report
        .answers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("answers: {}", answers.join(", "));
    let orders: Vec<String> = report
        .orders_by_status
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!(
        "orders: {} ({} with new attempts; terminal {:.1} s after the faults)",
        orders.join(", "),
        report.orders_with_new_attempts,
        report.quiet_after_s
    );
    let r = &report.refunds;
    println!(
        "refunds: {} of {} orders refunded ({} whole) in {} refunds of {} in all; {} over-asks refused; {} abandoned; settled {:.1} s after",
        r.orders_refunded,
        r.orders_seen,
        r.orders_refunded_whole,
        r.refunds,
        r.amount,
        r.over_asks_refused,
        r.abandoned,
        report.refunds_settled_after_s
    );
    let answers: Vec<String> = r.answers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("refund answers: {}", answers.join(", "));
    let m = &report.moves;
    println!(
        "moves: transfers {} accepted, {} refused, {} canceled ({} cancels too late); payouts {} accepted, {} refused; {} abandoned; settled {:.1} s after",
        m.transfers_accepted,
        m.transfers_refused,
        m.transfers_canceled,
        m.cancels_too_late,
        m.payouts_accepted,
        m.payouts_refused,
        m.abandoned,
        report.moves_settled_after_s
    );
    let ledger: Vec<String> = report
        .ledger
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("ledger: {}", ledger.join(", "));
    println!(
        "trial balance consistent: {}",
        report.trial_balance["consistent"]
    );
    if report.violations.is_empty() {
        println!(
            "invariants: all {} hold (0 violations)",
            report.checked.len()
        );
    } else {
        println!("invariants: {} VIOLATIONS", report.violations.len());
        for v in &report.violations {
            println!("  - {v}");
        }
    }
}

#[tokio::main]
async fn main() {
    let report = run(Args::parse()).await;
    print(&report);
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
