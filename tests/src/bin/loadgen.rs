//! The checkout load generator behind `make bench` (and the chaos harness's load).
//!
//! `loadgen run --scenario checkout|checkout_split|replay|health ...` drives the stack through nginx
//! with N concurrent clients for a duration or a count, shows a progress bar, prints a table
//! (throughput, p50/p95/p99/max latency, counts by status and code), and can merge its figures into
//! a JSON file and draw a latency histogram (SVG) next to it. Several scenarios given together
//! (`--scenario checkout,checkout_split --rounds 2`) run in turns, each measured on its own.
//! `loadgen table FILE` prints the table of a file.

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Checkout load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario, or several in turns.
    Run(Box<RunArgs>),
    /// Prints the table of a result file.
    Table { file: PathBuf },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Scenario {
    /// POST /order/checkout with a new Idempotency-Key per order.
    Checkout,
    /// The same checkouts, of products payment splits among recipients by a rule (`--split-items`;
    /// the rules are the caller's to make): what marketplace splits and their ledger cost.
    #[value(name = "checkout_split")]
    CheckoutSplit,
    /// Re-sends finished checkouts' keys: answered from the idempotency store.
    Replay,
    /// GET /stock/health/live through nginx: the HTTP ceiling.
    Health,
    /// POST /payment/transfers of one unit between `--recipients` (with `--token`), a new key each:
    /// what accepting a transfer costs; the worker's backlog is sampled during the run, and how
    /// long it takes to post what is left afterwards is measured.
    Transfer,
}

impl Scenario {
    /// Its name on the command line, in the result file and in the table.
    fn name(self) -> &'static str {
        match self {
            Scenario::Checkout => "checkout",
            Scenario::CheckoutSplit => "checkout_split",
            Scenario::Replay => "replay",
            Scenario::Health => "health",
            Scenario::Transfer => "transfer",
        }
    }
}

/// What `checkout_split` must reach against `checkout` in the same run: a share of its throughput
/// and a p99.
const SPLIT_THROUGHPUT_TARGET: f64 = 0.90;
const SPLIT_P99_TARGET_MS: f64 = 100.0;

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// One scenario, or several (comma-separated or repeated) to run in turns (see --rounds).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    scenario: Vec<Scenario>,
    /// nginx's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to run each scenario (seconds); the default when no --count is given is 10.
    #[arg(long)]
    duration: Option<f64>,
    /// How many requests to send per scenario instead of a duration.
    #[arg(long)]
    count: Option<u64>,
    /// Each scenario's duration (or count) is cut into this many segments, run in turns with the
    /// other scenarios' in mirrored order every other round (A B, B A, A B...): a trend over the
    /// run (a growing database, vacuum and checkpoint debt, the machine's speed) then weighs on
    /// each scenario alike instead of on the one that runs last.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Items the carts are made of (comma-separated ids).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    items: Vec<i64>,
    /// Items the carts of `checkout_split` are made of (products with a split rule); --items when
    /// not given.
    #[arg(long, value_delimiter = ',')]
    split_items: Vec<i64>,
    /// Send at most this many requests per second in all (each request waits for its turn): CPU per
    /// operation compared at the same rate, where batching is alike, instead of at saturation.
    #[arg(long)]
    rate: Option<f64>,
    /// Recipients the transfers move money between (at least two, with available USD).
    #[arg(long, value_delimiter = ',')]
    recipients: Vec<String>,
    /// The service (or admin) token transfers are sent with.
    #[arg(long)]
    token: Option<String>,
    /// How many instances of each service the stack runs (`make up INSTANCES=n`), recorded in the
    /// result file beside the figures.
    #[arg(long)]
    instances: Option<u32>,
    /// Lines per cart (one unit each, distinct items).
    #[arg(long, default_value_t = 1)]
    lines: usize,
    /// Share of checkouts that re-send an earlier finished key instead of a new one.
    #[arg(long, default_value_t = 0.0)]
    replay_share: f64,
    /// Share of checkouts immediately sent again with the same key (a client retry).
    #[arg(long, default_value_t = 0.0)]
    retry_share: f64,
    /// Finished checkouts the replay scenario makes first and then replays.
    #[arg(long, default_value_t = 500)]
    keys: usize,
    /// Merge the figures into this JSON file under the scenario's name (with the core count).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a latency histogram (SVG) here; `{scenario}` in the path is the scenario's name (which
    /// it must contain when several scenarios run).
    #[arg(long)]
    plot: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// What one client saw.
struct Tally {
    latency_us: Histogram<u64>,
    by_status: BTreeMap<String, u64>,
    by_code: BTreeMap<String, u64>,
    finished: Vec<(String, Value)>,
    /// `transfer`: the most transfers seen pending at once during the run.
    pending_max: Option<i64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            by_status: BTreeMap::new(),
            by_code: BTreeMap::new(),
            finished: Vec::new(),
            pending_max: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.by_code {
            *self.by_code.entry(k).or_default() += v;
        }
        self.pending_max = self.pending_max.max(other.pending_max);
        // The keys of finished checkouts are each client's to replay; nothing needs them merged.
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Report {
    clients: usize,
    duration_s: f64,
    requests: u64,
    requests_per_s: f64,
    /// Completed checkouts (201) per second for `checkout` and `checkout_split`; successful
    /// answers per second otherwise.
    throughput_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    by_status: BTreeMap<String, u64>,
    by_code: BTreeMap<String, u64>,
    /// `transfer`: the most transfers pending at once during the run (sampled every 0.5 s), how
    /// many were pending when it ended, and how long the worker then took to post them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_at_end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drained_after_s: Option<f64>,
}

fn cart(items: &[i64], lines: usize, n: u64) -> Value {
    let lines = lines.clamp(1, items.len().max(1));
    let start = (n as usize) % items.len().max(1);
    let chosen: Vec<Value> = (0..lines)
        .map(|i| json!({"itemId": items[(start + i) % items.len()], "quantity": 1}))
        .collect();
    json!({ "items": chosen })
}

#[allow(clippy::too_many_arguments)]
async fn send(
    client: &reqwest::Client,
    scenario: Scenario,
    url: &str,
    token: &str,
    key: &str,
    body: &Value,
    tally: &mut Tally,
) -> Option<u16> {
    let started = Instant::now();
    let request = match scenario {
        Scenario::Health => client.get(format!("{url}/stock/health/live")),
        Scenario::Transfer => client
            .post(format!("{url}/payment/transfers"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body.to_string()),
        _ => client
            .post(format!("{url}/order/checkout"))
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body.to_string()),
    };
    let result = request.send().await;
    let (status, code) = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let code = if status >= 400 {
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string))
            } else {
                None
            };
            (Some(status), code)
        }
        Err(e) => (
            None,
            Some(if e.is_timeout() {
                "timeout".into()
            } else {
                "connection_error".into()
            }),
        ),
    };
    let micros = u64::try_from(started.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let _ = tally.latency_us.record(micros.min(120_000_000));
    let label = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    *tally.by_status.entry(label).or_default() += 1;
    if let Some(code) = code {
        *tally.by_code.entry(code).or_default() += 1;
    }
    status
}

fn client(clients: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients * 2)
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .expect("http client")
}

/// Makes `keys` finished checkouts to replay.
async fn prepare_replays(args: &RunArgs) -> Vec<(String, Value)> {
    let http = client(args.clients);
    let made = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (http, args, made) = (http.clone(), args.clone(), made.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut tally = Tally::new();
                loop {
                    let n = made.fetch_add(1, Ordering::SeqCst);
                    if n >= args.keys as u64 {
                        return mine;
                    }
                    let key = uuid::Uuid::new_v4().to_string();
                    let body = cart(&args.items, args.lines, n);
                    let status = send(
                        &http,
                        Scenario::Checkout,
                        &args.url,
                        "",
                        &key,
                        &body,
                        &mut tally,
                    )
                    .await;
                    if status == Some(201) {
                        mine.push((key, body));
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

/// How many transfers are pending (`GET /payment/transfers?status=pending`); `None` when it cannot
/// tell.
async fn pending_transfers(http: &reqwest::Client, args: &RunArgs) -> Option<i64> {
    let r = http
        .get(format!(
            "{}/payment/transfers?status=pending&limit=1",
            args.url
        ))
        .bearer_auth(args.token.as_deref().unwrap_or_default())
        .send()
        .await
        .ok()?;
    let body: Value = r.json().await.ok()?;
    body["total"].as_i64()
}

/// After a `transfer` run: how many transfers were left pending, and how long the worker took to
/// post them (up to a minute).
async fn drain(http: &reqwest::Client, args: &RunArgs) -> (Option<i64>, Option<f64>) {
    let started = Instant::now();
    let at_end = pending_transfers(http, args).await;
    while started.elapsed() < Duration::from_secs(60) {
        if pending_transfers(http, args).await == Some(0) {
            return (at_end, Some(started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (at_end, None)
}

/// Runs the scenarios (in turns, when there are several or more than one round) and reports each.
async fn run(args: RunArgs) -> Vec<(Scenario, Report)> {
    let replays = if args.scenario.contains(&Scenario::Replay) {
        let r = prepare_replays(&args).await;
        assert!(!r.is_empty(), "no checkout completed: nothing to replay");
        Arc::new(r)
    } else {
        Arc::new(Vec::new())
    };
    let duration = args.duration.or(if args.count.is_some() {
        None
    } else {
        Some(10.0)
    });
    let rounds = args.rounds.max(1);
    let http = client(args.clients);
    let mut totals: Vec<(Tally, f64)> = args.scenario.iter().map(|_| (Tally::new(), 0.0)).collect();
    for round in 0..rounds {
        let mut turns: Vec<usize> = (0..args.scenario.len()).collect();
        if round % 2 == 1 {
            turns.reverse();
        }
        for i in turns {
            let scenario = args.scenario[i];
            let part = Part {
                scenario,
                items: match scenario {
                    Scenario::CheckoutSplit if !args.split_items.is_empty() => {
                        args.split_items.clone()
                    }
                    _ => args.items.clone(),
                },
                duration: duration.map(|d| d / f64::from(rounds)),
                count: args.count.map(|c| {
                    let (round, rounds) = (u64::from(round), u64::from(rounds));
                    c * (round + 1) / rounds - c * round / rounds
                }),
                label: if rounds > 1 {
                    format!("{} {}/{rounds}", scenario.name(), round + 1)
                } else {
                    scenario.name().to_string()
                },
            };
            let (tally, elapsed) = run_part(&http, &args, part, &replays).await;
            totals[i].0.merge(tally);
            totals[i].1 += elapsed;
        }
    }
    let drained = if args.scenario.contains(&Scenario::Transfer) {
        Some(drain(&http, &args).await)
    } else {
        None
    };
    args.scenario
        .iter()
        .zip(totals)
        .map(|(&scenario, (total, elapsed))| {
            if let Some(path) = &args.plot {
                let path = PathBuf::from(path.replace("{scenario}", scenario.name()));
                let title = format!("{} latency", scenario.name());
                if let Err(e) = plot(&total.latency_us, &path, &title) {
                    eprintln!("could not draw {}: {e}", path.display());
                }
            }
            let mut report = report(scenario, args.clients, total, elapsed);
            if let (Scenario::Transfer, Some((at_end, after))) = (scenario, drained) {
                report.pending_at_end = at_end;
                report.drained_after_s = after;
            }
            (scenario, report)
        })
        .collect()
}

/// One scenario's turn: its clients, until its deadline or count.
struct Part {
    scenario: Scenario,
    items: Vec<i64>,
    duration: Option<f64>,
    count: Option<u64>,
    label: String,
}

/// Runs a turn; what its clients saw, and how long it took (the last answers waited for).
async fn run_part(
    http: &reqwest::Client,
    args: &RunArgs,
    part: Part,
    replays: &Arc<Vec<(String, Value)>>,
) -> (Tally, f64) {
    let Part {
        scenario,
        items,
        duration,
        count,
        label,
    } = part;
    let items = Arc::new(items);
    let deadline = duration.map(|d| Instant::now() + Duration::from_secs_f64(d));
    let sent = Arc::new(AtomicU64::new(0));
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = match (duration, count) {
            (Some(d), _) => ProgressBar::new((d * 10.0) as u64),
            (None, Some(c)) => ProgressBar::new(c),
            _ => ProgressBar::new(0),
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>18} [{bar:40}] {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        bar
    };
    let started = Instant::now();
    let ticker = {
        let (bar, sent) = (bar.clone(), sent.clone());
        let by_time = duration.is_some();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = sent.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                bar.set_position(if by_time { (secs * 10.0) as u64 } else { n });
                bar.set_message(format!("{n} requests, {:.0}/s", n as f64 / secs.max(0.001)));
            }
        })
    };
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (http, args, sent, replays, items) = (
                http.clone(),
                args.clone(),
                sent.clone(),
                replays.clone(),
                items.clone(),
            );
            tokio::spawn(async move {
                let url = args.url.as_str();
                let token = args.token.as_deref().unwrap_or_default();
                let mut tally = Tally::new();
                let mut rng_state = uuid::Uuid::new_v4().as_u128() as u64 | 1;
                let mut random = move || {
                    // xorshift: cheap, and good enough to pick shares and keys.
                    rng_state ^= rng_state << 13;
                    rng_state ^= rng_state >> 7;
                    rng_state ^= rng_state << 17;
                    (rng_state >> 11) as f64 / (1u64 << 53) as f64
                };
                loop {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if count.is_some_and(|c| n >= c)
                        || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        return tally;
                    }
                    if let Some(rate) = args.rate.filter(|r| *r > 0.0) {
                        let turn = started + Duration::from_secs_f64(n as f64 / rate);
                        tokio::time::sleep_until(tokio::time::Instant::from_std(turn)).await;
                    }
                    match scenario {
                        Scenario::Health => {
                            send(&http, scenario, url, token, "", &Value::Null, &mut tally).await;
                        }
                        Scenario::Transfer => {
                            let n = args.recipients.len();
                            let from = (random() * n as f64) as usize % n;
                            let to =
                                (from + 1 + (random() * (n - 1) as f64) as usize % (n - 1)) % n;
                            let body = json!({
                                "fromRecipientId": args.recipients[from],
                                "toRecipientId": args.recipients[to],
                                "amount": 1,
                                "currency": "USD",
                            });
                            let key = uuid::Uuid::new_v4().to_string();
                            send(&http, scenario, url, token, &key, &body, &mut tally).await;
                        }
                        Scenario::Replay => {
                            let (key, body) = &replays
                                [(random() * replays.len() as f64) as usize % replays.len()];
                            send(&http, scenario, url, token, key, body, &mut tally).await;
                        }
                        Scenario::Checkout | Scenario::CheckoutSplit => {
                            let earlier = (!tally.finished.is_empty()
                                && random() < args.replay_share)
                                .then(|| {
                                    tally.finished[(random() * tally.finished.len() as f64)
                                        as usize
                                        % tally.finished.len()]
                                    .clone()
                                });
                            let (key, body) = earlier.unwrap_or_else(|| {
                                (
                                    uuid::Uuid::new_v4().to_string(),
                                    cart(&items, args.lines, n),
                                )
                            });
                            let status =
                                send(&http, scenario, url, token, &key, &body, &mut tally).await;
                            if status == Some(201) && tally.finished.len() < 10_000 {
                                tally.finished.push((key.clone(), body.clone()));
                            }
                            if random() < args.retry_share {
                                send(&http, scenario, url, token, &key, &body, &mut tally).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let most_pending = Arc::new(AtomicI64::new(-1));
    let sampler = (scenario == Scenario::Transfer).then(|| {
        let (http, args, most) = (http.clone(), args.clone(), most_pending.clone());
        tokio::spawn(async move {
            loop {
                if let Some(n) = pending_transfers(&http, &args).await {
                    most.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    });
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            total.merge(tally);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(sampler) = sampler {
        sampler.abort();
        let most = most_pending.load(Ordering::Relaxed);
        total.pending_max = (most >= 0).then_some(most);
    }
    ticker.abort();
    bar.finish_and_clear();
    (total, elapsed)
}

/// A scenario's figures from what its clients saw over `elapsed` seconds.
fn report(scenario: Scenario, clients: usize, total: Tally, elapsed: f64) -> Report {
    let requests = total.latency_us.len();
    let ok = match scenario {
        Scenario::Checkout | Scenario::CheckoutSplit => {
            total.by_status.get("201").copied().unwrap_or(0)
        }
        _ => total
            .by_status
            .iter()
            .filter(|(s, _)| s.starts_with('2'))
            .map(|(_, n)| *n)
            .sum(),
    };
    let ms = |q: f64| total.latency_us.value_at_quantile(q) as f64 / 1000.0;
    Report {
        clients,
        duration_s: elapsed,
        requests,
        requests_per_s: requests as f64 / elapsed,
        throughput_per_s: ok as f64 / elapsed,
        p50_ms: ms(0.50),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        max_ms: total.latency_us.max() as f64 / 1000.0,
        by_status: total.by_status,
        by_code: total.by_code,
        pending_max: total.pending_max,
        pending_at_end: None,
        drained_after_s: None,
    }
}

/// A histogram of latencies up to the 99.9th percentile, in 50 bins.
fn plot(
    latency_us: &Histogram<u64>,
    path: &Path,
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let top_ms = (latency_us.value_at_quantile(0.999) as f64 / 1000.0).max(1.0);
    let bins = 50usize;
    let width = top_ms / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in latency_us.iter_recorded() {
        let ms = v.value_iterated_to() as f64 / 1000.0;
        let i = ((ms / width) as usize).min(bins - 1);
        counts[i] += v.count_at_value();
    }
    let highest = counts.iter().copied().max().unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..top_ms, 0u64..highest + highest / 10)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms), up to p99.9")
        .y_desc("requests")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = i as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width * 0.9, c)], BLUE.mix(0.7).filled())
    }))?;
    root.present()?;
    Ok(())
}

fn table(results: &Value) {
    let report = |name: &str| {
        results
            .get(name)
            .and_then(|r| serde_json::from_value::<Report>(r.clone()).ok())
    };
    println!(
        "{:<14} {:>8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}  statuses / codes",
        "scenario", "clients", "requests", "ok/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for name in ["health", "checkout", "checkout_split", "replay", "transfer"] {
        let Some(r) = report(name) else { continue };
        let statuses: Vec<String> = r
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        let codes: Vec<String> = r.by_code.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!(
            "{:<14} {:>8} {:>10} {:>12.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {} {}",
            name,
            r.clients,
            r.requests,
            r.throughput_per_s,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            statuses.join(" "),
            codes.join(" ")
        );
    }
    if let Some(t) = report("transfer") {
        let or_unknown = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
        println!(
            "transfer worker: at most {} pending during the run, {} at its end, all posted {}",
            or_unknown(t.pending_max),
            or_unknown(t.pending_at_end),
            t.drained_after_s
                .map_or("not within a minute".to_string(), |s| format!(
                    "{s:.2} s after"
                ))
        );
    }
    if let Some(split) = report("checkout_split") {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        match report("checkout") {
            Some(plain) if plain.throughput_per_s > 0.0 => {
                let share = split.throughput_per_s / plain.throughput_per_s;
                println!(
                    "checkout_split throughput: {:.1} % of checkout's (target ≥ {:.0} %): {}",
                    share * 100.0,
                    SPLIT_THROUGHPUT_TARGET * 100.0,
                    met(share >= SPLIT_THROUGHPUT_TARGET)
                );
            }
            Some(_) => println!("checkout_split throughput: no checkout completed to compare with"),
            None => {}
        }
        println!(
            "checkout_split p99: {:.2} ms (target ≤ {:.0} ms): {}",
            split.p99_ms,
            SPLIT_P99_TARGET_MS,
            met(split.p99_ms <= SPLIT_P99_TARGET_MS)
        );
    }
    if let Some(target) = results.get("target").and_then(Value::as_str) {
        println!("stack measured: {target} (make bench BENCH_TARGET={target})");
    }
    if let Some(cores) = results.get("cores") {
        println!("cores: {cores}");
    }
    if let Some(instances) = results.get("instances") {
        println!("instances of each service: {instances}");
    }
}

/// What `run` cannot do, said before it starts.
fn check(args: &RunArgs) -> Result<(), String> {
    for (i, s) in args.scenario.iter().enumerate() {
        if args.scenario[..i].contains(s) {
            return Err(format!("--scenario {} is given twice", s.name()));
        }
    }
    if args.scenario.len() > 1
        && args
            .plot
            .as_ref()
            .is_some_and(|p| !p.contains("{scenario}"))
    {
        return Err("with several scenarios, --plot needs {scenario} in its path".into());
    }
    if args.scenario.contains(&Scenario::Transfer)
        && (args.recipients.len() < 2 || args.token.is_none())
    {
        return Err("--scenario transfer needs --recipients (two at least) and --token".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Table { file } => {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            table(&serde_json::from_str(&text).expect("a result file"));
        }
        Command::Run(args) => {
            if let Err(e) = check(&args) {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
            let json_path = args.json.clone();
            let instances = args.instances;
            let mut results = json!({});
            for (scenario, report) in run(*args).await {
                results[scenario.name()] = serde_json::to_value(&report).expect("report");
            }
            if let Some(path) = json_path {
                let mut existing: Value = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_else(|| json!({}));
                existing["cores"] =
                    json!(std::thread::available_parallelism().map_or(1, |n| n.get()));
                if let Some(n) = instances {
                    existing["instances"] = json!(n);
                }
                for (name, report) in results.as_object().expect("an object") {
                    existing[name] = report.clone();
                }
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&existing).expect("json"),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            table(&results);
        }
    }
}
