//! The chaos harness behind `make chaos` (and the short run in `make test`).
//!
//! It starts a whole stack of its own — its own PostgreSQL server, so that it can crash it — and
//! runs checkout clients against it while a seeded fault schedule SIGKILLs and restarts order,
//! payment and stock, restarts Redis with its data lost, crashes and restarts PostgreSQL, and turns
//! the payment processor's `PAYMENT_FAULT_RATE` / `PAYMENT_LATENCY_MS` up and down. Clients behave
//! the way a client following the API's advice does: they retry with the same key on 5xx, 202, 409
//! `request_in_progress`, timeouts and connection errors. Meanwhile an admin restocks.
//!
//! When the faults end it waits until every order is terminal, checks the invariants (shared with the saga
//! tests: [`tests::invariants`]) and that every client saw the truth (a 201 means a completed
//! order, a final refusal a failed one), prints the fault counts and every violation, writes
//! `result.json`, and exits non-zero on any violation.

use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::{workspace_root, Options, OwnPostgres, Part, Stack, ADMIN_TOKEN};

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

    /// Which fault comes next: mostly process kills.
    fn draw(rng: &mut Rng) -> Fault {
        const WEIGHTED: [(Fault, u32); 6] = [
            (Fault::KillOrder, 30),
            (Fault::KillPayment, 25),
            (Fault::KillStock, 25),
            (Fault::KillRedis, 12),
            (Fault::RestartPostgres, 10),
            (Fault::PaymentFaults, 15),
        ];
        let total: u32 = WEIGHTED.iter().map(|w| w.1).sum();
        let mut pick = (rng.next() % u64::from(total)) as u32;
        for (fault, weight) in WEIGHTED {
            if pick < weight {
                return fault;
            }
            pick -= weight;
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

#[derive(Serialize)]
struct Report {
    seed: u64,
    seconds: f64,
    clients: usize,
    faults: BTreeMap<String, u64>,
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
    violations: Vec<String>,
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

async fn client_loop(
    stack: Arc<Stack>,
    http: reqwest::Client,
    items: Arc<Vec<(i64, i64)>>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    give_up_at: Arc<Mutex<Option<Instant>>>,
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
                    let text = r.text().await.unwrap_or_default();
                    (
                        Some(status),
                        serde_json::from_str(&text).unwrap_or(Value::Null),
                    )
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

async fn inject(
    stack: &Stack,
    pg: &OwnPostgres,
    fault: Fault,
    rng: &mut Rng,
    payment: &mut PaymentFaults,
) {
    let down = Duration::from_secs_f64(rng.between(0.05, 1.0));
    match fault {
        Fault::KillOrder | Fault::KillPayment | Fault::KillStock | Fault::KillRedis => {
            let part = match fault {
                Fault::KillOrder => Part::Order,
                Fault::KillPayment => Part::Payment,
                Fault::KillStock => Part::Stock,
                _ => Part::Redis,
            };
            stack.kill(part).await;
            tokio::time::sleep(down).await;
            let env = if part == Part::Payment {
                payment.env().to_vec()
            } else {
                Vec::new()
            };
            stack.start_part(part, &env).await;
        }
        Fault::RestartPostgres => pg.crash_and_restart(down).await,
        Fault::PaymentFaults => {
            const RATES: [&str; 3] = ["0", "0.2", "0.5"];
            const LATENCIES: [&str; 3] = ["0", "200", "1500"];
            *payment = PaymentFaults {
                rate: RATES[rng.below(RATES.len())],
                latency_ms: LATENCIES[rng.below(LATENCIES.len())],
            };
            stack.stop(Part::Payment).await;
            stack.start_part(Part::Payment, &payment.env()).await;
        }
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
    .env("RUST_LOG", "warn");
    let stack = Arc::new(Stack::start_with(options).await);
    println!("chaos: stack in {}", stack.dir().display());

    let mut rng = Rng(seed);
    // Four items; one is dear enough that two of it are declined (PAYMENT_DECLINE_ABOVE 100000).
    let mut items = Vec::new();
    for (price, stock) in [(250, 120), (1_999, 80), (5_000, 60), (60_000, 40)] {
        items.push((stack.create_item(price, "EUR", stock).await, price));
    }
    let items = Arc::new(items);

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(8))
        .build()
        .expect("http client");
    let stop = Arc::new(AtomicBool::new(false));
    let give_up_at = Arc::new(Mutex::new(None));
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(client_loop(
                stack.clone(),
                http.clone(),
                items.clone(),
                Rng(seed ^ (i as u64 + 1).wrapping_mul(0x5851_F42D_4C95_7F2D)),
                stop.clone(),
                give_up_at.clone(),
            ))
        })
        .collect();
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
    let mut payment = PaymentFaults::OFF;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.seconds);
    // Every kind of fault once, in a seeded order, then drawn at random: even a short run covers
    // them all.
    let mut first_round = Fault::ALL.to_vec();
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
        let fault = first_round.next().unwrap_or_else(|| Fault::draw(&mut rng));
        let label = serde_json::to_value(fault)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!("chaos: {:>6.1} s  {label}", started.elapsed().as_secs_f64());
        inject(&stack, &pg, fault, &mut rng, &mut payment).await;
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
        stack.stop(Part::Payment).await;
        stack
            .start_part(Part::Payment, &PaymentFaults::OFF.env())
            .await;
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
    let restocks = restocks.await.unwrap_or(0);

    println!("chaos: faults over; waiting for every order to be terminal");
    let quiet_started = Instant::now();
    let mut violations = stack
        .quiet_and_check(Duration::from_secs_f64(args.quiet_timeout))
        .await;
    let quiet_after_s = quiet_started.elapsed().as_secs_f64();

    // What the clients were told agrees with what happened.
    let orders = orders_by_key(&stack).await;
    for key in &seen.completed {
        let status = orders.get(key).map_or("missing", String::as_str);
        if status != "completed" {
            violations.push(format!(
                "key {key} was answered 201 but its order is {status}"
            ));
        }
    }
    for key in &seen.refused {
        if orders.get(key).map(String::as_str) == Some("completed") {
            violations.push(format!("key {key} was refused but its order is completed"));
        }
    }
    let mut orders_by_status: BTreeMap<String, i64> = BTreeMap::new();
    for status in orders.values() {
        *orders_by_status.entry(status.clone()).or_default() += 1;
    }
    let orders_with_new_attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE attempt > 1")
            .fetch_one(&stack.db(Part::Order).await)
            .await
            .expect("orders readable");
    let report = Report {
        seed,
        seconds: args.seconds,
        clients: args.clients,
        faults,
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
        violations,
    };
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
    if report.violations.is_empty() {
        println!("invariants: all hold (0 violations)");
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
