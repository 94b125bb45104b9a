//! The load of the compose scenarios (`make compose-test`, tests/compose/scenarios.sh): clients that
//! check out, each retrying its Idempotency-Key until a final answer, as a client following
//! `Retry-After` does, while an operator restarts, kills, cuts off or scales the stack under them.
//!
//!     scenario-load --url URL --admin-token T --service-token T --stop-file F --out result.json
//!
//! It first makes its own items (one of them split among two recipients by a rule, so that every
//! scenario writes ledger entries), then runs until the stop file appears. The file may hold
//! `{"from": s, "to": s}`: when the disruption began and ended (seconds since the epoch). No new key is
//! started after that; every key begun is retried until its final answer (or `--give-up-secs`);
//! a share of the completed checkouts' payments is partly refunded, each refund under its own key
//! retried the same way. Then every key is sent once more: it must be answered as it was first
//! answered (201 the same order and payment; a refusal the same status and code).
//!
//! It writes what it saw to `--out` — answers by status and code, keys by final answer, the gap
//! (the first and last answer that says a part could not be reached, relative to the disruption's
//! start), the longest time without a completed checkout, checkouts completed during the
//! disruption — and exits 1 when a key had no final answer, a final answer is not one the
//! checkout documents, a replay differs, or no checkout completed after the disruption ended.

use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(about = "Keyed checkouts and refunds under an operator's disruption (compose scenarios)")]
struct Args {
    /// nginx's URL.
    #[arg(long)]
    url: String,
    #[arg(long)]
    admin_token: String,
    #[arg(long)]
    service_token: String,
    /// Concurrent clients, each with one key at a time.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// A client's pause between two keys (milliseconds): the load is a steady trickle, not a
    /// saturating flood, so that what is measured is the disruption and not the queue.
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// Stop starting new keys once this file exists.
    #[arg(long)]
    stop_file: PathBuf,
    /// How long after the stop a key may still be retried before it is given up (and counted).
    #[arg(long, default_value_t = 120.0)]
    give_up_secs: f64,
    /// The share of completed checkouts whose payment is then partly refunded.
    #[arg(long, default_value_t = 0.2)]
    refund_share: f64,
    /// Where the figures go (JSON).
    #[arg(long)]
    out: PathBuf,
    /// A label for the figures (the scenario's name).
    #[arg(long, default_value = "")]
    name: String,
}

/// The checkout's final refusals its contract documents (docs/api.md): a key answered one of
/// these is done, as one answered 201 is.
const DOCUMENTED_REFUSALS: [&str; 5] = [
    "402 payment_declined",
    "409 insufficient_stock",
    "409 reservation_expired",
    "422 item_not_found",
    "422 mixed_currency",
];

/// One answer: `status code` (or `status`, or `timeout`/`connection_error` when none came).
fn label(status: Option<u16>, body: &Value) -> String {
    let code = body["code"].as_str().unwrap_or("");
    match status {
        Some(s) if code.is_empty() => s.to_string(),
        Some(s) => format!("{s} {code}"),
        None => code.to_string(),
    }
}

/// Whether an answer says the client should retry its key: the checkout still runs (202, 409
/// `request_in_progress`), or a part could not be reached or answer in time (5xx, 408, 429, no
/// answer). Everything else is final.
fn retry(status: Option<u16>, body: &Value) -> bool {
    match status {
        None | Some(202) | Some(408) | Some(429) => true,
        Some(409) => body["code"] == "request_in_progress",
        // Stock or payment could not be reached and everything was undone: the key runs the
        // checkout again (a new attempt of the same order) once they answer.
        Some(503) if body["code"] == "dependency_unavailable" => true,
        // A failure that says its order is over is final (a 502 `checkout_rejected`, say).
        Some(s) if s >= 500 => body["orderStatus"] != "failed",
        Some(_) => false,
    }
}

/// Whether an answer is one of the gap's: a part could not be reached (nginx's 503, order's 503
/// `dependency_unavailable`, a 502 or 504, no answer at all).
fn unavailable(status: Option<u16>) -> bool {
    matches!(status, None | Some(500..=599))
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Everything the clients saw, shared.
#[derive(Default)]
struct Seen {
    attempts: u64,
    answers: BTreeMap<String, u64>,
    /// 503 answers without a `Retry-After` header.
    unavailable_without_retry_after: u64,
    /// When (seconds since the epoch) each answer of the gap came.
    unavailable_at: Vec<f64>,
    /// When each checkout completed.
    completed_at: Vec<f64>,
    /// Every key's final answer.
    finals: Vec<Final>,
    abandoned: Vec<String>,
    refunds: BTreeMap<String, u64>,
    refunds_abandoned: u64,
}

struct Client {
    http: reqwest::Client,
    url: String,
    seen: Arc<Mutex<Seen>>,
    /// After the stop: when keys are given up on.
    give_up_at: Arc<Mutex<Option<Instant>>>,
}

impl Client {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn given_up(&self) -> bool {
        let at = *self.give_up_at.lock().unwrap_or_else(|p| p.into_inner());
        at.is_some_and(|at| Instant::now() >= at)
    }

    /// Sends one request and records its answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> (Option<u16>, Value) {
        let result = request.send().await;
        let (status, body, retry_after) = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let text = r.text().await.unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                (Some(status), body, retry_after)
            }
            Err(e) => {
                let code = if e.is_timeout() {
                    "timeout"
                } else {
                    "connection_error"
                };
                (None, json!({ "code": code }), false)
            }
        };
        let mut seen = self.seen();
        seen.attempts += 1;
        *seen.answers.entry(label(status, &body)).or_default() += 1;
        if unavailable(status) {
            seen.unavailable_at.push(epoch_s());
        }
        if status == Some(503) && !retry_after {
            seen.unavailable_without_retry_after += 1;
        }
        (status, body)
    }

    /// POSTs `body` to `path` under `key` until a final answer; `None` once given up on.
    async fn until_final(
        &self,
        path: &str,
        token: Option<&str>,
        key: &str,
        body: &Value,
    ) -> Option<(Option<u16>, Value)> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut request = self
                .http
                .post(format!("{}{path}", self.url))
                .header("Idempotency-Key", key)
                .json(body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let (status, answer) = self.send(request).await;
            if !retry(status, &answer) {
                return Some((status, answer));
            }
            if self.given_up() {
                return None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// A small deterministic generator (a client's carts and refunds), seeded per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    client: Arc<Client>,
    items: Arc<Vec<i64>>,
    service_token: String,
    refund_share: f64,
    pause: Duration,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::SeqCst) {
        let key = uuid::Uuid::new_v4().to_string();
        let first = rng.below(items.len() as u64) as usize;
        let lines = 1 + rng.below(2) as usize;
        let cart: Vec<Value> = (0..lines.min(items.len()))
            .map(|i| json!({"itemId": items[(first + i) % items.len()], "quantity": 1 + rng.below(2)}))
            .collect();
        let body = json!({ "items": cart });
        let Some((status, answer)) = client
            .until_final("/order/checkout", None, &key, &body)
            .await
        else {
            client.seen().abandoned.push(key);
            continue;
        };
        let final_label = label(status, &answer);
        if status == Some(201) {
            client.seen().completed_at.push(epoch_s());
            let payment = answer["paymentId"].as_str().map(str::to_string);
            let total = answer["totalAmount"].as_i64().unwrap_or(0);
            if let Some(payment) = payment {
                if (rng.below(1000) as f64) < refund_share * 1000.0 && total >= 2 {
                    let refund_key = uuid::Uuid::new_v4().to_string();
                    let path = format!("/payment/payments/{payment}/refunds");
                    let refund = json!({ "amount": total / 2 });
                    let outcome = client
                        .until_final(&path, Some(&service_token), &refund_key, &refund)
                        .await;
                    let mut seen = client.seen();
                    match outcome {
                        Some((status, answer)) => {
                            *seen.refunds.entry(label(status, &answer)).or_default() += 1
                        }
                        None => seen.refunds_abandoned += 1,
                    }
                }
            }
        }
        client.seen().finals.push(Final {
            key,
            body,
            label: final_label,
            answer,
        });
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// An admin or service POST during setup, retried until it is answered 2xx.
async fn setup_post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Value {
    let key = uuid::Uuid::new_v4().to_string();
    loop {
        let answer = http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        if let Ok(r) = answer {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if status.is_success() {
                return serde_json::from_str(&text).unwrap_or(Value::Null);
            }
            if status.is_client_error() && status.as_u16() != 409 && status.as_u16() != 429 {
                eprintln!("scenario-load: setup {path} refused: {status} {text}");
                std::process::exit(2);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two items with plenty of stock, the second split between two recipients (60 % to one, the
/// rest to the other): their ids.
async fn setup(http: &reqwest::Client, args: &Args) -> Vec<i64> {
    let admin = args.admin_token.as_str();
    let mut items = Vec::new();
    for (name, price) in [("scenario plain", 100), ("scenario split", 250)] {
        let body = json!({"name": name, "price": price, "currency": "USD", "stock": 1_000_000_000});
        let item = setup_post(http, &args.url, admin, "/stock/items", body).await;
        items.push(item["id"].as_i64().unwrap_or(0));
    }
    let mut shares = Vec::new();
    for name in ["scenario seller", "scenario partner"] {
        let body = json!({ "name": name });
        let recipient = setup_post(http, &args.url, admin, "/payment/recipients", body).await;
        shares.push(if shares.is_empty() {
            json!({"type": "percentage", "recipientId": recipient["recipientId"], "basisPoints": 6000})
        } else {
            json!({"type": "remainder", "recipientId": recipient["recipientId"]})
        });
    }
    let rule = json!({ "productId": items[1], "shares": shares });
    setup_post(http, &args.url, admin, "/payment/split-rules", rule).await;
    items
}

#[derive(Serialize)]
struct Report {
    name: String,
    clients: usize,
    keys: usize,
    completed: usize,
    /// Final answers other than 201, by label: documented refusals, then anything else.
    refused: BTreeMap<String, u64>,
    undocumented: BTreeMap<String, u64>,
    abandoned: usize,
    attempts: u64,
    answers: BTreeMap<String, u64>,
    refunds: BTreeMap<String, u64>,
    refunds_abandoned: u64,
    replays_same: usize,
    replays_different: Vec<String>,
    /// The disruption, when the stop file told it: its length, and the checkouts completed within.
    disruption_s: Option<f64>,
    completed_during_disruption: Option<usize>,
    completed_after_disruption: Option<usize>,
    /// The gap: how many answers said a part could not be reached, and the first and last of them
    /// relative to the disruption's start (or to the run's).
    unavailable_answers: usize,
    unavailable_first_s: Option<f64>,
    unavailable_last_s: Option<f64>,
    unavailable_span_s: Option<f64>,
    unavailable_without_retry_after: u64,
    /// The longest time without a completed checkout, from the first key to the stop.
    longest_without_completion_s: f64,
    run_s: f64,
    problems: Vec<String>,
}

/// A key's final answer: the body it was sent with, the answer's label, the answer.
struct Final {
    key: String,
    body: Value,
    label: String,
    answer: Value,
}

/// Sends every finished key once more, with its body, 16 at a time; the answers that differ from
/// the first (another label, or a 201 of another order or payment).
async fn replays(client: &Client, finals: &[Final]) -> (usize, Vec<String>) {
    let mut same = 0;
    let mut different = Vec::new();
    for chunk in finals.chunks(16) {
        let sent = chunk.iter().map(|f| async move {
            let again = client
                .until_final("/order/checkout", None, &f.key, &f.body)
                .await;
            (f, again)
        });
        for (f, again) in futures_util::future::join_all(sent).await {
            match again {
                Some((status, answer)) if label(status, &answer) == f.label => {
                    if answer["orderId"] == f.answer["orderId"]
                        && answer["paymentId"] == f.answer["paymentId"]
                    {
                        same += 1;
                    } else {
                        different.push(format!(
                            "{}: first {} {}, then {} {}",
                            f.key,
                            f.answer["orderId"],
                            f.answer["paymentId"],
                            answer["orderId"],
                            answer["paymentId"]
                        ));
                    }
                }
                Some((status, answer)) => different.push(format!(
                    "{}: first {}, then {}",
                    f.key,
                    f.label,
                    label(status, &answer)
                )),
                None => different.push(format!("{}: no final answer to its replay", f.key)),
            }
        }
    }
    (same, different)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scenario-load: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let http = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(2))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            eprintln!("scenario-load: {e}");
            return ExitCode::from(2);
        }
    };
    let items = Arc::new(setup(&http, &args).await);
    let client = Arc::new(Client {
        http,
        url: args.url.clone(),
        seen: Arc::default(),
        give_up_at: Arc::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let started_epoch = epoch_s();
    let seeds = AtomicU64::new(started_epoch.to_bits());
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let seed = seeds.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        clients.push(tokio::spawn(client_loop(
            client.clone(),
            items.clone(),
            args.service_token.clone(),
            args.refund_share,
            Duration::from_millis(args.pause_ms),
            stop.clone(),
            seed,
        )));
    }
    eprintln!("scenario-load: {} clients on items {items:?}", args.clients);
    while !args.stop_file.exists() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped_epoch = epoch_s();
    stop.store(true, Ordering::SeqCst);
    *client.give_up_at.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Instant::now() + Duration::from_secs_f64(args.give_up_secs));
    let window: Value = std::fs::read_to_string(&args.stop_file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    for c in clients {
        let _ = c.await;
    }
    let run_s = started.elapsed().as_secs_f64();
    let finals = std::mem::take(&mut client.seen().finals);
    // The replays have a give-up time of their own.
    *client.give_up_at.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Instant::now() + Duration::from_secs_f64(args.give_up_secs));
    let (replays_same, replays_different) = replays(&client, &finals).await;

    let seen = std::mem::take(&mut *client.seen());
    let (from, to) = (window["from"].as_f64(), window["to"].as_f64());
    let origin = from.unwrap_or(started_epoch);
    let mut refused = BTreeMap::new();
    let mut undocumented = BTreeMap::new();
    let mut completed = 0;
    for f in &finals {
        if f.label == "201" {
            completed += 1;
        } else if DOCUMENTED_REFUSALS.contains(&f.label.as_str()) {
            *refused.entry(f.label.clone()).or_default() += 1;
        } else {
            *undocumented.entry(f.label.clone()).or_default() += 1;
        }
    }
    let mut completions = seen.completed_at.clone();
    completions.sort_by(f64::total_cmp);
    let mut marks = vec![started_epoch];
    marks.extend(completions.iter().copied().filter(|t| *t <= stopped_epoch));
    marks.push(stopped_epoch);
    let longest_without_completion_s = marks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let count_within = |a: f64, b: f64| completions.iter().filter(|t| **t >= a && **t <= b).count();
    let unavailable_first = seen.unavailable_at.iter().copied().reduce(f64::min);
    let unavailable_last = seen.unavailable_at.iter().copied().reduce(f64::max);
    let mut report = Report {
        name: args.name.clone(),
        clients: args.clients,
        keys: finals.len() + seen.abandoned.len(),
        completed,
        refused,
        undocumented,
        abandoned: seen.abandoned.len(),
        attempts: seen.attempts,
        answers: seen.answers,
        refunds: seen.refunds,
        refunds_abandoned: seen.refunds_abandoned,
        replays_same,
        replays_different,
        disruption_s: from.zip(to).map(|(a, b)| b - a),
        completed_during_disruption: from.zip(to).map(|(a, b)| count_within(a, b)),
        completed_after_disruption: to.map(|b| count_within(b, f64::MAX)),
        unavailable_answers: seen.unavailable_at.len(),
        unavailable_first_s: unavailable_first.map(|t| t - origin),
        unavailable_last_s: unavailable_last.map(|t| t - origin),
        unavailable_span_s: unavailable_first.zip(unavailable_last).map(|(a, b)| b - a),
        unavailable_without_retry_after: seen.unavailable_without_retry_after,
        longest_without_completion_s,
        run_s,
        problems: Vec::new(),
    };
    let mut problems = Vec::new();
    if report.abandoned > 0 {
        problems.push(format!("{} keys had no final answer", report.abandoned));
    }
    if !report.undocumented.is_empty() {
        problems.push(format!(
            "final answers the checkout does not document: {:?}",
            report.undocumented
        ));
    }
    if !report.replays_different.is_empty() {
        problems.push(format!(
            "{} keys answered otherwise when sent again, e.g. {}",
            report.replays_different.len(),
            report.replays_different[0]
        ));
    }
    if report.refunds_abandoned > 0 || report.refunds.keys().any(|l| l != "201") {
        problems.push(format!(
            "refunds not all created: {:?}, {} given up",
            report.refunds, report.refunds_abandoned
        ));
    }
    if report.completed_after_disruption == Some(0) || report.completed == 0 {
        problems.push("no checkout completed after the disruption".to_string());
    }
    report.problems = problems;
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Err(e) = std::fs::write(&args.out, &text) {
        eprintln!("scenario-load: cannot write {}: {e}", args.out.display());
        return ExitCode::from(2);
    }
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            eprintln!("scenario-load: {p}");
        }
        ExitCode::from(1)
    }
}
