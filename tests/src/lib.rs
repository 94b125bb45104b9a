//! The integration harness: [`Stack::start`] gives each test its own stack on free ports — a Redis
//! server, a database per service in the shared test PostgreSQL server, the three service binaries
//! and nginx rendered from the repository's `nginx.conf` — and tests drive it through nginx.
//! Parts can be stopped, killed and restarted for real ([`Stack::stop`], [`Stack::kill`],
//! [`Stack::restart`]). Everything is killed when the `Stack` is dropped. With
//! [`Options::redis_cluster`] the services use a three-master Redis Cluster of the stack's own
//! ([`RedisCluster`]) instead of the single Redis server.
//!
//! Pointed at a stack it did not start (`TEST_STACK_URL`, see [`Remote`]), the suite's black-box
//! tests — the `black_box` module of each test file, which speak only HTTP to nginx — run against
//! that stack instead: `make compose-test` runs them through docker-compose's nginx.

pub mod fault_proxy;
pub mod invariants;

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const SERVICE_TOKEN: &str = "svc-test-token-1";
pub const SERVICE_TOKEN_2: &str = "svc-test-token-2";
pub const ADMIN_TOKEN: &str = "adm-test-token";

/// A stack the suite did not start, named by the environment, that the black-box tests run
/// against instead of starting their own:
///
/// - `TEST_STACK_URL`: its nginx (`http://127.0.0.1:8080`);
/// - `TEST_SERVICE_TOKENS`: two of its service tokens, comma-separated (the first stands for
///   [`SERVICE_TOKEN`], the second for [`SERVICE_TOKEN_2`]); `TEST_ADMIN_TOKEN`: one admin token;
/// - `TEST_STACK_SETTINGS`: the settings its services were given that differ from the defaults,
///   `NAME=value` separated by commas (empty: none).
///
/// A test runs against it only if the settings it asks for ([`Options::env`]) are exactly those,
/// and it asks for nothing else of its stack (instances, a cluster, a server of its own): anything
/// else panics, naming what the test needs. Everything that reaches past nginx — a process, a
/// database, a log, Redis, a service's own port — panics too: those tests need a stack of their own.
#[derive(Debug)]
pub struct Remote {
    pub url: String,
    pub service_tokens: [String; 2],
    pub admin_token: String,
    pub settings: Vec<(String, String)>,
}

impl Remote {
    fn from_env() -> Option<Remote> {
        let url = std::env::var("TEST_STACK_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| panic!("TEST_STACK_URL is set: {name} must be set too"))
        };
        let tokens: Vec<String> = var("TEST_SERVICE_TOKENS")
            .split(',')
            .map(|t| t.trim().to_string())
            .collect();
        let [first, second] = <[String; 2]>::try_from(tokens).unwrap_or_else(|t| {
            panic!("TEST_SERVICE_TOKENS must hold two tokens, not {}", t.len())
        });
        Some(Remote {
            url: url.trim_end_matches('/').to_string(),
            service_tokens: [first, second],
            admin_token: var("TEST_ADMIN_TOKEN"),
            settings: parse_settings(&std::env::var("TEST_STACK_SETTINGS").unwrap_or_default()),
        })
    }

    /// Panics unless a test asking for `options` can run against this stack.
    fn admit(&self, options: &Options) {
        let mut asked = options.env.clone();
        asked.sort();
        let mut has = self.settings.clone();
        has.sort();
        let own = options.postgres_url.is_some()
            || options.dir.is_some()
            || options.profile.is_some()
            || options.instances > 1
            || options.redis != RedisMode::Single;
        assert!(
            !own && asked == has,
            "this test needs a stack of its own (it asks for {options:?}), or one whose settings \
             (TEST_STACK_SETTINGS) are exactly {asked:?}; the stack at {} has {has:?}",
            self.url
        );
    }
}

/// `NAME=value,NAME=value` (empty: none).
fn parse_settings(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => panic!("TEST_STACK_SETTINGS: {s:?} is not NAME=value"),
        })
        .collect()
}

/// The stack the suite was pointed at, if any ([`Remote`]).
pub fn remote() -> Option<&'static Remote> {
    static REMOTE: OnceLock<Option<Remote>> = OnceLock::new();
    REMOTE.get_or_init(Remote::from_env).as_ref()
}

/// The token of a service caller: [`SERVICE_TOKEN`] on a stack of the suite's own, the first of
/// `TEST_SERVICE_TOKENS` on a [`Remote`] one.
pub fn service_token() -> &'static str {
    remote().map_or(SERVICE_TOKEN, |r| r.service_tokens[0].as_str())
}

/// Another service caller's token ([`SERVICE_TOKEN_2`], or the second of `TEST_SERVICE_TOKENS`).
pub fn service_token_2() -> &'static str {
    remote().map_or(SERVICE_TOKEN_2, |r| r.service_tokens[1].as_str())
}

/// An admin token ([`ADMIN_TOKEN`], or `TEST_ADMIN_TOKEN`).
pub fn admin_token() -> &'static str {
    remote().map_or(ADMIN_TOKEN, |r| r.admin_token.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    Order,
    Payment,
    Stock,
    Redis,
    Nginx,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Order => "order",
            Part::Payment => "payment",
            Part::Stock => "stock",
            Part::Redis => "redis",
            Part::Nginx => "nginx",
        }
    }
    pub const SERVICES: [Part; 3] = [Part::Stock, Part::Payment, Part::Order];
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn binary(name: &str, profile: Option<&str>) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile = profile
        .map(str::to_string)
        .or_else(|| std::env::var("TEST_PROFILE").ok())
        .unwrap_or_else(|| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: build the services first (`cargo build --bins`, or `make test`)",
        path.display()
    );
    path
}

/// The test PostgreSQL server: `TEST_DATABASE_URL`, or one started by `scripts/stack.sh`.
pub fn postgres_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            if !url.is_empty() {
                return url;
            }
        }
        let out = Command::new("bash")
            .arg(workspace_root().join("scripts/stack.sh"))
            .arg("test-postgres")
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/stack.sh test-postgres runs");
        assert!(out.status.success(), "could not start the test PostgreSQL");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A PostgreSQL server of one's own (for the chaos run, and for tests that stop it), through
/// `scripts/stack.sh` (as the `postgres` user when run as root), with its state in `dir`.
pub struct OwnPostgres {
    dir: PathBuf,
}

impl OwnPostgres {
    fn script(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("scripts/stack.sh"))
            .args(args)
            .env("TEST_STACK_DIR", &self.dir)
            .env("STACK_DIR", &self.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("scripts/stack.sh runs");
        assert!(
            out.status.success(),
            "scripts/stack.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts a new, empty server in `dir`; returns it and its URL. Its port is drawn like the
    /// stacks' ports ([`free_port`]) and kept across stops: a stopped server's port is never
    /// taken by a server another test starts meanwhile (`scripts/stack.sh` starts from 15432).
    pub fn start_fresh(dir: &Path) -> (OwnPostgres, String) {
        let pg = OwnPostgres {
            dir: dir.to_path_buf(),
        };
        pg.script(&["test-postgres-stop"], &[]);
        let run = dir.join("run");
        std::fs::create_dir_all(&run).expect("the server's run directory is made");
        std::fs::write(run.join("postgres.port"), free_port().to_string())
            .expect("the server's port is written");
        let url = pg.script(&["test-postgres"], &[]);
        (pg, url)
    }

    /// Stops the server, keeping its data; `crash` stops it as a crash would (`pg_ctl -m
    /// immediate`: the next start replays the WAL).
    pub fn stop(&self, crash: bool) {
        let mode = if crash { "immediate" } else { "fast" };
        self.script(&["stop", "postgres"], &[("PG_STOP_MODE", mode)]);
    }

    pub fn start(&self) {
        self.script(&["start", "postgres"], &[]);
    }

    /// A crash, a pause, and a start that replays the WAL.
    pub async fn crash_and_restart(&self, down: Duration) {
        self.stop(true);
        tokio::time::sleep(down).await;
        self.start();
    }

    /// Stops the server and removes its directory.
    pub fn remove(&self) {
        self.script(&["test-postgres-stop"], &[]);
    }
}

/// `host:port` of a URL such as `postgres://user@127.0.0.1:15432/db`.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.contains(':').then(|| host_port.to_string())
}

/// A port nothing listens on, from 20000..32000: below the kernel's ephemeral range (32768+),
/// where outgoing connections would otherwise take the ports stacks are about to listen on. A
/// process-wide counter keeps concurrent tests from drawing the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        let seed = (std::process::id() as u16 % 600) * 20;
        let _ = NEXT.compare_exchange(0, 20_000 + seed, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let mut port = NEXT.fetch_add(1, Ordering::SeqCst);
        if port >= 32_000 {
            port = 20_000 + port % 12_000;
            NEXT.store(port + 1, Ordering::SeqCst);
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn which(name: &str, fallbacks: &[&str]) -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    fallbacks
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed (make deps)"))
}

/// A local Redis Cluster of three masters and no replicas, on free ports (and free cluster-bus
/// ports, so that nothing is assumed of port + 10000), with its state in a directory of its own.
/// Its servers are killed when it is dropped.
pub struct RedisCluster {
    dir: PathBuf,
    /// Each master's port and cluster-bus port.
    nodes: Vec<(u16, u16)>,
    /// Each master's process, `None` while it is killed ([`Self::kill`]).
    children: Mutex<Vec<Option<Child>>>,
}

impl RedisCluster {
    pub const MASTERS: usize = 3;

    /// Starts the servers, joins them into a cluster (`redis-cli --cluster create`) and waits
    /// until every node reports `cluster_state:ok`.
    pub async fn start(dir: &Path) -> RedisCluster {
        std::fs::create_dir_all(dir).expect("redis cluster dir");
        let cluster = RedisCluster {
            dir: dir.to_path_buf(),
            nodes: (0..Self::MASTERS)
                .map(|_| (free_port(), free_port()))
                .collect(),
            children: Mutex::new((0..Self::MASTERS).map(|_| None).collect()),
        };
        for node in 0..Self::MASTERS {
            cluster.spawn(node);
        }
        for node in 0..Self::MASTERS {
            cluster.wait_port(node).await;
        }
        let created = tokio::process::Command::new(which("redis-cli", &["/usr/bin/redis-cli"]))
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_ok().await;
        cluster
    }

    fn spawn(&self, node: usize) {
        let (port, bus) = self.nodes[node];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("redis-{port}.log")))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        // The node's cluster configuration (its id, its slots) is kept in its file, so that a
        // node started again takes its place in the cluster; its data is not kept. A killed
        // master is not declared failed within a test's time (60 s): no replica could take its
        // place, and a master declared failed would stay so for twice that after its return.
        let child = Command::new(which("redis-server", &["/usr/bin/redis-server"]))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus.to_string()])
            .args(["--cluster-node-timeout", "60000"])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server does not start: {e}"));
        self.children()[node] = Some(child);
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<Option<Child>>> {
        self.children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn wait_port(&self, node: usize) {
        let (port, _) = self.nodes[node];
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "cluster node {port} does not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every master reports `cluster_state:ok`.
    pub async fn wait_ok(&self) {
        let started = Instant::now();
        while !self
            .each("CLUSTER INFO")
            .iter()
            .all(|info| info.contains("cluster_state:ok"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the cluster is not ok: {:?}",
                self.each("CLUSTER INFO")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL of one master (`0..MASTERS`): its slots have no master until it is started again.
    pub fn kill(&self, node: usize) {
        if let Some(mut child) = self.children()[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed master again, on its port and with its slots (and without its data), and
    /// waits until the cluster is ok.
    pub async fn start_node(&self, node: usize) {
        self.spawn(node);
        self.wait_port(node).await;
        self.wait_ok().await;
    }

    /// The masters' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(port, _)| *port).collect()
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3` (the form of `REDIS_CLUSTER_NODES`).
    pub fn nodes(&self) -> String {
        let nodes: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        nodes.join(",")
    }

    /// `redis+cluster://127.0.0.1:P1,...` (the cluster form of `REDIS_URL`).
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.nodes())
    }

    /// Sends one command to every master; their answers, in the order of [`Self::ports`] (a
    /// killed master's is empty).
    pub fn each(&self, command: &str) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| send_command(port, command).unwrap_or_default())
            .collect()
    }

    /// Sends one command to every master and answers as one server would: the answer they all
    /// gave (`FLUSHALL`: `+OK`), the sum of integer answers (`DBSIZE`), else every answer, one
    /// a line.
    pub fn command(&self, command: &str) -> String {
        let answers = self.each(command);
        if answers.iter().all(|a| a == &answers[0]) {
            return answers[0].clone();
        }
        let integers: Option<Vec<i64>> = answers
            .iter()
            .map(|a| a.strip_prefix(':').and_then(|n| n.parse().ok()))
            .collect();
        match integers {
            Some(numbers) => format!(":{}", numbers.iter().sum::<i64>()),
            None => answers.join("\n"),
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in 0..Self::MASTERS {
            self.kill(node);
        }
    }
}

/// Sends one command to the Redis server on `port`, the way redis-cli would; its raw answer, or
/// `None` when nothing listens there.
fn send_command(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("{command}\r\n").as_bytes())
        .expect("redis write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// An HTTP answer, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The problem `code`, for error answers.
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        if let Some(code) = code {
            assert_eq!(self.code(), code, "unexpected answer: {}", self.text);
            assert_eq!(
                self.header("content-type"),
                Some("application/problem+json"),
                "errors are problem+json"
            );
        }
        self
    }
}

/// How a stack's services reach Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisMode {
    /// One server ([`Part::Redis`]), named by `REDIS_URL=redis://...`.
    #[default]
    Single,
    /// A three-master cluster of the stack's own ([`RedisCluster`]), named by
    /// `REDIS_URL=redis+cluster://...`.
    Cluster,
    /// The same cluster named by `REDIS_CLUSTER_NODES`, while `REDIS_URL` names a port where
    /// nothing listens: ready services show that `REDIS_CLUSTER_NODES` was used.
    ClusterNodes,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment for every service (e.g. `PAYMENT_FAULT_RATE`).
    pub env: Vec<(String, String)>,
    /// The PostgreSQL server the services' databases are made in (default: [`postgres_url`]).
    pub postgres_url: Option<String>,
    /// Where the stack's directory is made (default: `.stack/test/stacks`).
    pub dir: Option<PathBuf>,
    /// `debug` or `release` binaries (default: `TEST_PROFILE`, else `debug`).
    pub profile: Option<String>,
    /// Instances of each service behind nginx (default 1), all started at once; order is given
    /// every instance of stock and payment.
    pub instances: usize,
    /// One Redis server (default) or a cluster.
    pub redis: RedisMode,
    /// A seeded fault proxy ([`fault_proxy::FaultProxy`]) on every link that crosses a process
    /// boundary — nginx→each instance, order→each stock and payment instance, each instance→
    /// PostgreSQL and →Redis (one Redis server only) — whose faults [`Stack::set_fault`] sets; the
    /// seed the proxies draw from.
    pub fault_proxies: Option<u64>,
}

impl Options {
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn instances(mut self, n: usize) -> Self {
        self.instances = n;
        self
    }

    /// The services use a three-master Redis Cluster ([`RedisMode::Cluster`]).
    pub fn redis_cluster(mut self) -> Self {
        self.redis = RedisMode::Cluster;
        self
    }

    /// The services use a Redis Cluster named by `REDIS_CLUSTER_NODES`
    /// ([`RedisMode::ClusterNodes`]).
    pub fn redis_cluster_nodes(mut self) -> Self {
        self.redis = RedisMode::ClusterNodes;
        self
    }
}

/// A process of the stack: a part and, for a service, which of its instances (1 for the others).
type Proc = (Part, usize);

/// One end of a link: a service's instance, nginx, PostgreSQL or Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Nginx,
    Instance(Part, usize),
    Postgres,
    Redis,
}

impl Peer {
    pub fn name(self) -> String {
        match self {
            Peer::Nginx => "nginx".into(),
            Peer::Instance(part, i) => format!("{}#{i}", part.name()),
            Peer::Postgres => "postgres".into(),
            Peer::Redis => "redis".into(),
        }
    }
}

/// A link that crosses a process boundary: who connects to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    pub from: Peer,
    pub to: Peer,
}

impl Link {
    /// `order#1->stock#2`, `nginx->payment#1`, `payment#2->postgres`.
    pub fn name(self) -> String {
        format!("{}->{}", self.from.name(), self.to.name())
    }
}

pub struct Stack {
    pub id: String,
    pub nginx_url: String,
    pub client: reqwest::Client,
    dir: PathBuf,
    ports: HashMap<Proc, u16>,
    options: Options,
    children: Mutex<HashMap<Proc, Child>>,
    /// The stack's Redis Cluster, when its services use one instead of [`Part::Redis`].
    redis_cluster: Option<RedisCluster>,
    /// The fault proxies on the stack's links ([`Options::fault_proxies`]).
    proxies: BTreeMap<Link, fault_proxy::FaultProxy>,
    /// A stack the suite did not start ([`Remote`]): only its nginx is reached.
    remote: bool,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Stack {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        if let Some(remote) = remote() {
            remote.admit(&options);
            let dir = workspace_root().join(".stack/test/remote").join(&id);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            return Stack {
                id,
                nginx_url: remote.url.clone(),
                client: Self::http_client(),
                dir,
                ports: HashMap::new(),
                options,
                children: Mutex::new(HashMap::new()),
                redis_cluster: None,
                proxies: BTreeMap::new(),
                remote: true,
            };
        }
        let dir = options
            .dir
            .clone()
            .unwrap_or_else(|| workspace_root().join(".stack/test/stacks"))
            .join(&id);
        std::fs::create_dir_all(&dir).expect("stack dir");
        let instances = options.instances.max(1);
        let ports: HashMap<Proc, u16> = [Part::Redis, Part::Nginx]
            .into_iter()
            .map(|p| (p, 1))
            .chain(
                Part::SERVICES
                    .into_iter()
                    .flat_map(|p| (1..=instances).map(move |i| (p, i))),
            )
            .map(|proc| (proc, free_port()))
            .collect();
        let redis_cluster = match options.redis {
            RedisMode::Single => None,
            RedisMode::Cluster | RedisMode::ClusterNodes => {
                Some(RedisCluster::start(&dir.join("redis-cluster")).await)
            }
        };
        let mut stack = Stack {
            nginx_url: format!("http://127.0.0.1:{}", ports[&(Part::Nginx, 1)]),
            id,
            client: Self::http_client(),
            dir,
            ports,
            options,
            children: Mutex::new(HashMap::new()),
            redis_cluster,
            proxies: BTreeMap::new(),
            remote: false,
        };
        if let Some(seed) = stack.options.fault_proxies {
            stack.proxies = stack.start_proxies(seed).await;
        }
        if stack.redis_cluster.is_none() {
            stack.spawn((Part::Redis, 1), &[]);
            stack.wait_port(Part::Redis).await;
        }
        // Every instance at once, on databases that may not exist yet: instances that start
        // together must agree on who creates the databases and runs the migrations.
        for proc in stack.service_procs() {
            stack.spawn(proc, &[]);
        }
        for proc in stack.service_procs() {
            stack.wait_ready(proc).await;
        }
        stack.spawn((Part::Nginx, 1), &[]);
        stack.wait_port(Part::Nginx).await;
        stack
    }

    /// A fault proxy on every link ([`Options::fault_proxies`]), each seeded apart from `seed`.
    async fn start_proxies(&self, seed: u64) -> BTreeMap<Link, fault_proxy::FaultProxy> {
        let server = match &self.options.postgres_url {
            Some(url) => url.clone(),
            None => postgres_url().to_string(),
        };
        let postgres =
            host_port(&server).expect("the PostgreSQL server's URL names a host and port");
        let redis = format!("127.0.0.1:{}", self.port(Part::Redis));
        let mut links: Vec<(Link, String)> = Vec::new();
        for (part, i) in self.service_procs() {
            let me = Peer::Instance(part, i);
            links.push((
                Link {
                    from: Peer::Nginx,
                    to: me,
                },
                format!("127.0.0.1:{}", self.instance_port(part, i)),
            ));
            links.push((
                Link {
                    from: me,
                    to: Peer::Postgres,
                },
                postgres.clone(),
            ));
            if self.redis_cluster.is_none() {
                links.push((
                    Link {
                        from: me,
                        to: Peer::Redis,
                    },
                    redis.clone(),
                ));
            }
            if part == Part::Order {
                for to in [Part::Stock, Part::Payment] {
                    for j in 1..=self.instances() {
                        let upstream = format!("127.0.0.1:{}", self.instance_port(to, j));
                        links.push((
                            Link {
                                from: me,
                                to: Peer::Instance(to, j),
                            },
                            upstream,
                        ));
                    }
                }
            }
        }
        let mut proxies = BTreeMap::new();
        for (n, (link, upstream)) in links.into_iter().enumerate() {
            let addr = tokio::net::lookup_host(&upstream)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .expect("a link's upstream resolves");
            let proxy = fault_proxy::FaultProxy::start(addr, seed.wrapping_add(n as u64))
                .await
                .expect("a fault proxy starts");
            proxies.insert(link, proxy);
        }
        proxies
    }

    /// The links with a fault proxy ([`Options::fault_proxies`]).
    pub fn links(&self) -> Vec<Link> {
        self.proxies.keys().copied().collect()
    }

    /// The fault on a link from now on ([`fault_proxy::Fault::None`] ends it).
    pub fn set_fault(&self, link: Link, fault: fault_proxy::Fault) {
        if let Some(proxy) = self.proxies.get(&link) {
            proxy.set(fault);
        }
    }

    /// Where `from` connects for `to`: the link's proxy when there is one, else `upstream`.
    fn through(&self, from: Peer, to: Peer, upstream: String) -> String {
        match self.proxies.get(&Link { from, to }) {
            Some(proxy) => proxy.addr().to_string(),
            None => upstream,
        }
    }

    fn http_client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client")
    }

    /// Whether the suite started this stack (else it is a [`Remote`] one, reached only through
    /// its nginx).
    pub fn is_own(&self) -> bool {
        !self.remote
    }

    /// Panics on a [`Remote`] stack: `what` reaches past its nginx.
    #[track_caller]
    fn own(&self, what: &str) {
        assert!(
            !self.remote,
            "{what} needs a stack of the suite's own: the stack at {} is reached only through its nginx",
            self.nginx_url
        );
    }

    /// The processes; a panic elsewhere never keeps them from being killed.
    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<Proc, Child>> {
        self.children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many instances of each service run behind nginx.
    pub fn instances(&self) -> usize {
        self.options.instances.max(1)
    }

    /// Every instance of every service, instance 1 of each first.
    fn service_procs(&self) -> Vec<Proc> {
        (1..=self.instances())
            .flat_map(|i| Part::SERVICES.into_iter().map(move |p| (p, i)))
            .collect()
    }

    /// The port of a part (of a service's instance 1).
    pub fn port(&self, part: Part) -> u16 {
        self.instance_port(part, 1)
    }

    pub fn instance_port(&self, part: Part, instance: usize) -> u16 {
        self.own("a service's own port");
        self.ports[&(part, instance)]
    }

    /// A service's URL (its instance 1), without nginx.
    pub fn service_url(&self, part: Part) -> String {
        self.instance_url(part, 1)
    }

    pub fn instance_url(&self, part: Part, instance: usize) -> String {
        format!("http://127.0.0.1:{}", self.instance_port(part, instance))
    }

    /// Every instance's URL, comma-separated: how an order instance is told where stock and
    /// payment are (through its links' proxies).
    fn instance_urls(&self, (from, i): Proc, part: Part) -> String {
        (1..=self.instances())
            .map(|j| {
                let direct = format!("127.0.0.1:{}", self.instance_port(part, j));
                let to = Peer::Instance(part, j);
                format!(
                    "http://{}",
                    self.through(Peer::Instance(from, i), to, direct)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The database URL an instance is given (through its link's proxy).
    fn database_url_of(&self, (part, i): Proc) -> String {
        let url = self.database_url(part);
        match (
            host_port(&url),
            self.proxies.get(&Link {
                from: Peer::Instance(part, i),
                to: Peer::Postgres,
            }),
        ) {
            (Some(direct), Some(proxy)) => url.replacen(&direct, &proxy.addr().to_string(), 1),
            _ => url,
        }
    }

    pub fn database_url(&self, service: Part) -> String {
        self.own("a database");
        let server = match &self.options.postgres_url {
            Some(url) => url.as_str(),
            None => postgres_url(),
        };
        format!("{}/{}_{}", server, service.name(), self.id)
    }

    /// The stack's directory (its logs and state; on a [`Remote`] stack, a scratch directory of
    /// the test's own).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self, part: Part) -> PathBuf {
        self.instance_log_path(part, 1)
    }

    pub fn instance_log_path(&self, part: Part, instance: usize) -> PathBuf {
        self.own("a log");
        match instance {
            1 => self.dir.join(format!("{}.log", part.name())),
            i => self.dir.join(format!("{}-{i}.log", part.name())),
        }
    }

    fn command(&self, (part, instance): Proc, extra: &[(String, String)]) -> Command {
        let mut cmd = match part {
            Part::Redis => {
                let mut c = Command::new(which("redis-server", &["/usr/bin/redis-server"]));
                c.args(["--bind", "127.0.0.1", "--port"])
                    .arg(self.port(part).to_string())
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                    .arg("--dir")
                    .arg(&self.dir);
                c
            }
            Part::Nginx => {
                let conf = self.render_nginx();
                let mut c = Command::new(which("nginx", &["/usr/sbin/nginx"]));
                c.arg("-p").arg(self.dir.join("nginx")).arg("-c").arg(conf);
                c.args(["-g", "daemon off;"]);
                c
            }
            service => {
                let mut c = Command::new(binary(service.name(), self.options.profile.as_deref()));
                c.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("HOST", "127.0.0.1")
                    .env("PORT", self.instance_port(service, instance).to_string())
                    .env("DATABASE_URL", self.database_url_of((service, instance)))
                    .env("DATABASE_MAX_CONNECTIONS", "8")
                    .envs(self.redis_env((service, instance)))
                    .env(
                        "SERVICE_TOKENS",
                        format!("{SERVICE_TOKEN},{SERVICE_TOKEN_2}"),
                    )
                    .env("ADMIN_TOKENS", ADMIN_TOKEN)
                    .env("SERVICE_TOKEN", SERVICE_TOKEN)
                    .env(
                        "STOCK_URL",
                        self.instance_urls((service, instance), Part::Stock),
                    )
                    .env(
                        "PAYMENT_URL",
                        self.instance_urls((service, instance), Part::Payment),
                    )
                    .env("WORKERS", "2")
                    .env("RESERVATION_SWEEP_INTERVAL_MS", "200")
                    .env("RUST_LOG", "info,sqlx=warn");
                for (k, v) in &self.options.env {
                    c.env(k, v);
                }
                c
            }
        };
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// How an instance is told where Redis is ([`RedisMode`]; through its link's proxy).
    fn redis_env(&self, (part, i): Proc) -> Vec<(&'static str, String)> {
        let direct = format!("127.0.0.1:{}", self.port(Part::Redis));
        let single = format!(
            "redis://{}",
            self.through(Peer::Instance(part, i), Peer::Redis, direct)
        );
        match (&self.redis_cluster, self.options.redis) {
            (Some(cluster), RedisMode::Cluster) => vec![("REDIS_URL", cluster.url())],
            (Some(cluster), RedisMode::ClusterNodes) => vec![
                // Nothing listens there: the stack's single server is not started.
                ("REDIS_URL", single),
                ("REDIS_CLUSTER_NODES", cluster.nodes()),
            ],
            _ => vec![("REDIS_URL", single)],
        }
    }

    fn render_nginx(&self) -> PathBuf {
        let state = self.dir.join("nginx");
        std::fs::create_dir_all(&state).expect("nginx dir");
        let template = std::fs::read_to_string(workspace_root().join("nginx.conf"))
            .expect("nginx.conf at the workspace root");
        let conf = template
            .replace("${NGINX_STATE_DIR}", &state.display().to_string())
            .replace(
                "${NGINX_PORT}",
                &format!("127.0.0.1:{}", self.port(Part::Nginx)),
            )
            .replace("${ORDER_SERVERS}", &self.server_lines(Part::Order))
            .replace("${PAYMENT_SERVERS}", &self.server_lines(Part::Payment))
            .replace("${STOCK_SERVERS}", &self.server_lines(Part::Stock))
            .replace("worker_processes auto;", "worker_processes 1;");
        let path = state.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf rendered");
        path
    }

    /// nginx's `server` lines for a service: one per instance, never taken out (as the local
    /// stack's, `scripts/stack.sh`): a refused connection moves the request to the next.
    fn server_lines(&self, part: Part) -> String {
        (1..=self.instances())
            .map(|i| {
                let direct = format!("127.0.0.1:{}", self.instance_port(part, i));
                let to = Peer::Instance(part, i);
                format!(
                    "server {} max_fails=0;",
                    self.through(Peer::Nginx, to, direct)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn spawn(&self, proc: Proc, extra: &[(String, String)]) {
        let (part, instance) = proc;
        assert!(
            !(part == Part::Redis && self.redis_cluster.is_some()),
            "this stack's services use a Redis Cluster: there is no single Redis to start"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.instance_log_path(part, instance))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .command(proc, extra)
            .stdout(log)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} {instance} does not start: {e}", part.name()));
        self.children().insert(proc, child);
    }

    pub fn pid(&self, part: Part) -> Option<u32> {
        self.instance_pid(part, 1)
    }

    pub fn instance_pid(&self, part: Part, instance: usize) -> Option<u32> {
        self.own("a process");
        self.children().get(&(part, instance)).map(Child::id)
    }

    async fn wait_port(&self, part: Part) {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port(part))).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} does not listen; log: {}",
                part.name(),
                self.log(part)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ready(&self, proc: Proc) {
        let (part, instance) = proc;
        let started = Instant::now();
        let url = format!("{}/health/ready", self.instance_url(part, instance));
        loop {
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            let exited = self
                .children()
                .get_mut(&proc)
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "{} {instance} exited ({status}); log: {}",
                    part.name(),
                    self.instance_log(part, instance)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} {instance} is not ready; log: {}",
                part.name(),
                self.instance_log(part, instance)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self, part: Part) -> String {
        self.instance_log(part, 1)
    }

    /// The last 30 lines of an instance's log.
    pub fn instance_log(&self, part: Part, instance: usize) -> String {
        let text =
            std::fs::read_to_string(self.instance_log_path(part, instance)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, and waits for the process to exit; returns its exit code. (For a service, every
    /// instance is stopped; the exit code is instance 1's.)
    pub async fn stop(&self, part: Part) -> Option<i32> {
        let mut code = None;
        for i in (1..=self.instances_of(part)).rev() {
            code = self.stop_instance(part, i).await;
        }
        code
    }

    fn instances_of(&self, part: Part) -> usize {
        if Part::SERVICES.contains(&part) {
            self.instances()
        } else {
            1
        }
    }

    /// SIGTERM to one instance, and waits for it to exit; returns its exit code.
    pub async fn stop_instance(&self, part: Part, instance: usize) -> Option<i32> {
        self.own("stopping a process");
        let child = self.children().remove(&(part, instance));
        let mut child = child?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the process dies mid-flight. (nginx is stopped with SIGTERM, which is immediate
    /// for it, so that its workers do not outlive it.)
    /// (For a service, every instance is killed.)
    pub async fn kill(&self, part: Part) {
        self.own("killing a process");
        if part == Part::Nginx {
            self.stop(part).await;
            return;
        }
        for i in 1..=self.instances_of(part) {
            self.kill_instance(part, i).await;
        }
    }

    /// SIGKILL to one instance of a service.
    pub async fn kill_instance(&self, part: Part, instance: usize) {
        self.own("killing a process");
        let child = self.children().remove(&(part, instance));
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped part again on its port (every stopped instance of a service), with extra
    /// environment for this start.
    pub async fn start_part(&self, part: Part, extra: &[(&str, &str)]) {
        let stopped: Vec<usize> = (1..=self.instances_of(part))
            .filter(|i| !self.children().contains_key(&(part, *i)))
            .collect();
        for i in stopped {
            self.start_instance_part(part, i, extra).await;
        }
    }

    /// Starts one stopped instance again on its port, with extra environment for this start.
    pub async fn start_instance_part(&self, part: Part, instance: usize, extra: &[(&str, &str)]) {
        self.own("starting a process");
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn((part, instance), &extra);
        match part {
            Part::Redis | Part::Nginx => self.wait_port(part).await,
            _ => self.wait_ready((part, instance)).await,
        }
    }

    pub async fn restart(&self, part: Part) {
        self.stop(part).await;
        self.start_part(part, &[]).await;
    }

    /// Another process of a service beside the stack's own (the same databases, Redis and
    /// tokens), on a port of its own and reached directly, not through nginx: two instances of a
    /// service working side by side. Killed when the returned [`Instance`] is dropped.
    pub async fn start_instance(&self, service: Part, extra: &[(&str, &str)]) -> Instance {
        self.own("another instance");
        assert!(
            Part::SERVICES.contains(&service),
            "only a service has instances"
        );
        let port = free_port();
        let mut env: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("PORT".into(), port.to_string()));
        let log_path = self.dir.join(format!("{}-{port}.log", service.name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .command((service, 1), &env)
            .stdout(log)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("another {} does not start: {e}", service.name()));
        let mut instance = Instance {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let started = Instant::now();
        loop {
            let ready = self
                .client
                .get(format!("{}/health/ready", instance.url))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return instance;
            }
            if let Ok(Some(status)) = instance.child.try_wait() {
                panic!(
                    "another {} exited ({status}); log: {}",
                    service.name(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "another {} is not ready",
                service.name()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends one command to Redis, the way redis-cli would (`FLUSHALL`, `DBSIZE`, ...); to a
    /// cluster, it goes to every master and the answers are combined ([`RedisCluster::command`]).
    pub fn redis(&self, command: &str) -> String {
        self.own("Redis");
        match &self.redis_cluster {
            Some(cluster) => cluster.command(command),
            None => send_command(self.port(Part::Redis), command).expect("redis"),
        }
    }

    /// Sends one command to each Redis server — the single one, or every master of the
    /// cluster — and returns their answers.
    pub fn redis_each(&self, command: &str) -> Vec<String> {
        self.own("Redis");
        match &self.redis_cluster {
            Some(cluster) => cluster.each(command),
            None => vec![send_command(self.port(Part::Redis), command).expect("redis")],
        }
    }

    /// The stack's Redis Cluster, when it has one ([`Options::redis_cluster`]).
    pub fn redis_cluster(&self) -> Option<&RedisCluster> {
        self.redis_cluster.as_ref()
    }

    /// What an instance of a service exposes on `/metrics` (on its own port: nginx does not
    /// publish it).
    pub async fn metrics(&self, part: Part, instance: usize) -> String {
        self.client
            .get(format!("{}/metrics", self.instance_url(part, instance)))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics read")
    }

    /// A connection pool to one service's database, for checking stored state.
    pub async fn db(&self, service: Part) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url(service))
            .await
            .expect("service database")
    }

    // ----- HTTP through nginx -----

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.nginx_url, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        self.send(r).await
    }

    /// POST with a JSON body, an optional bearer token and an optional Idempotency-Key.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> Answer {
        let mut r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        self.send(r).await
    }

    /// POST as a service caller with a fresh Idempotency-Key.
    pub async fn call(&self, path: &str, body: &Value) -> Answer {
        self.post(path, Some(service_token()), Some(&new_key()), body)
            .await
    }

    /// POST as an admin with a fresh Idempotency-Key.
    pub async fn admin(&self, path: &str, body: &Value) -> Answer {
        self.post(path, Some(admin_token()), Some(&new_key()), body)
            .await
    }

    /// Creates an item through the admin API; returns its id.
    pub async fn create_item(&self, price: i64, currency: &str, stock: i64) -> i64 {
        let a = self
            .admin(
                "/stock/items",
                &serde_json::json!({"name": "test item", "price": price, "currency": currency, "stock": stock}),
            )
            .await;
        a.expect(201, None);
        a.json["id"].as_i64().expect("item id")
    }

    /// Waits until every order is terminal (or `timeout` passes), then checks the checkout's
    /// invariants; returns the violations. On a [`Remote`] stack it checks nothing (its databases
    /// are not reached; `make compose-test` checks them once, after the suite): no violations.
    pub async fn quiet_and_check(&self, timeout: Duration) -> Vec<String> {
        if self.remote {
            return Vec::new();
        }
        let (order, stock, payment) = (
            self.db(Part::Order).await,
            self.db(Part::Stock).await,
            self.db(Part::Payment).await,
        );
        let started = Instant::now();
        while started.elapsed() < timeout {
            if invariants::unfinished(&order).await.unwrap_or(1) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        invariants::check(&invariants::Databases {
            order: &order,
            stock: &stock,
            payment: &payment,
        })
        .await
        .expect("invariant queries run")
    }

    /// `POST /order/checkout` with a fresh key.
    pub async fn checkout(&self, body: Value) -> Answer {
        self.post("/order/checkout", None, Some(&new_key()), &body)
            .await
    }

    pub async fn item(&self, id: i64) -> Value {
        let a = self.get(&format!("/stock/items/{id}"), None).await;
        a.expect(200, None);
        a.json
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A remote stack's scratch directory goes with a test that passed (one that failed keeps
        // it, for what it left there: schemathesis's reports).
        if self.remote && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        {
            let mut children = self.children();
            for (part, child) in children.iter_mut() {
                // SIGKILL on nginx's master would orphan its workers: stop it with SIGTERM.
                if part.0 == Part::Nginx {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_secs(5) {
                        if let Ok(Some(_)) = child.try_wait() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A service process started by [`Stack::start_instance`]: its base URL (without the nginx
/// prefix); SIGKILLed when dropped.
pub struct Instance {
    pub url: String,
    child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn new_order_id() -> String {
    format!("ord-{}", uuid::Uuid::new_v4().simple())
}
