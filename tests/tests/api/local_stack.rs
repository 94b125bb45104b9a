//! The local stack (docs/operations.md): the script behind `make up`, `make stop|start SERVICE=x` and `make down`.

use serde_json::json;
use std::collections::HashMap;
use std::process::Command;
use tests::{free_port, new_key, workspace_root};

fn stack(
    dir: &std::path::Path,
    ports: &HashMap<&str, u16>,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    // PostgreSQL's and Redis's ports are drawn here, as the services' are: stacks made by tests
    // running side by side would otherwise race for the script's first free port.
    let run = dir.join("run");
    if !run.join("postgres.port").exists() {
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("postgres.port"), free_port().to_string()).unwrap();
        std::fs::write(run.join("redis.port"), free_port().to_string()).unwrap();
    }
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("scripts/stack.sh"))
        .args(args)
        .env("STACK_DIR", dir)
        .env(
            "PROFILE",
            std::env::var("TEST_PROFILE").unwrap_or_else(|_| "debug".into()),
        )
        .env_remove("SERVICE_TOKENS")
        .env_remove("ADMIN_TOKENS");
    for (name, port) in ports {
        cmd.env(name, port.to_string());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("stack.sh runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "stack.sh {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Whether a process is gone: no such process, or one that died and is not reaped yet (a zombie,
/// which this machine's init may leave for a second or so).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn read_env(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn the_local_stack_comes_up_stops_and_starts_parts_and_goes_down() {
    let dir = workspace_root().join(".stack/test/local").join(new_key());
    let ports: HashMap<&str, u16> = ["NGINX_PORT", "ORDER_PORT", "PAYMENT_PORT", "STOCK_PORT"]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
    let nginx = format!("http://127.0.0.1:{}", ports["NGINX_PORT"]);
    let out = stack(
        &dir,
        &ports,
        &["up"],
        &[("PAYMENT_DECLINE_ABOVE", "50"), ("SPLIT_HOLD_SECS", "1")],
    );
    assert_eq!(out.trim(), nginx, "make up prints the URL");

    let env = read_env(&dir.join("stack.env"));
    for name in [
        "NGINX_URL",
        "ORDER_URL",
        "PAYMENT_URL",
        "STOCK_URL",
        "REDIS_URL",
        "DATABASE_URL",
    ] {
        assert!(
            env.get(name).is_some_and(|v| !v.is_empty()),
            "{name} in stack.env"
        );
    }
    for name in [
        "ORDER_PID",
        "PAYMENT_PID",
        "STOCK_PID",
        "REDIS_PID",
        "POSTGRES_PID",
        "NGINX_PID",
    ] {
        let pid = &env[name];
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name}={pid} is alive"
        );
    }
    let tokens = read_env(&dir.join("tokens.env"));
    let token = tokens["SERVICE_TOKENS"].clone();

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let charge = |amount: i64| {
        client
            .post(format!("{nginx}/payment/charge"))
            .bearer_auth(&token)
            .header("Idempotency-Key", new_key())
            .json(&json!({"amount": amount, "currency": "USD"}))
            .send()
    };
    for svc in ["order", "payment", "stock"] {
        let r = client
            .get(format!("{nginx}/{svc}/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{svc}");
    }
    // Variables given to `up` reach the services.
    let r: serde_json::Value = charge(60).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "failed", "PAYMENT_DECLINE_ABOVE=50 applies");
    let r: serde_json::Value = charge(10).await.unwrap().json().await.unwrap();
    let released = format!(
        "{nginx}/payment/ledger/entries?kind=release&paymentId={}",
        r["paymentId"].as_str().unwrap()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let entries: serde_json::Value = client
            .get(&released)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if entries["total"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SPLIT_HOLD_SECS=1 applies: released within seconds"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    stack(&dir, &ports, &["stop", "payment"], &[]);
    assert_eq!(read_env(&dir.join("stack.env"))["PAYMENT_PID"], "");
    assert_eq!(charge(10).await.unwrap().status(), 503);

    // `start` keeps what `up` was given and takes overrides.
    stack(
        &dir,
        &ports,
        &["start", "payment"],
        &[("PAYMENT_FAULT_RATE", "1")],
    );
    assert_eq!(charge(10).await.unwrap().status(), 503, "fault injected");
    stack(&dir, &ports, &["stop", "payment"], &[]);
    stack(&dir, &ports, &["start", "payment"], &[]);
    let r: serde_json::Value = charge(60).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "failed", "still PAYMENT_DECLINE_ABOVE=50");

    stack(&dir, &ports, &["stop", "redis"], &[]);
    let r = client
        .get(format!("{nginx}/stock/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    stack(&dir, &ports, &["start", "redis"], &[]);

    let pids = read_env(&dir.join("stack.env"));
    stack(&dir, &ports, &["down"], &[]);
    for name in [
        "ORDER_PID",
        "PAYMENT_PID",
        "STOCK_PID",
        "REDIS_PID",
        "NGINX_PID",
    ] {
        assert!(gone(&pids[name]), "{name} stopped");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stack of its own, made by `scripts/stack.sh up` with `env`, and taken down when dropped.
struct LocalStack {
    dir: std::path::PathBuf,
    ports: HashMap<&'static str, u16>,
    nginx: String,
    client: reqwest::Client,
}

impl LocalStack {
    fn up(env: &[(&str, &str)]) -> LocalStack {
        let dir = workspace_root().join(".stack/test/local").join(new_key());
        let ports: HashMap<&str, u16> = ["NGINX_PORT", "ORDER_PORT", "PAYMENT_PORT", "STOCK_PORT"]
            .into_iter()
            .map(|n| (n, free_port()))
            .collect();
        // Made before `up`, so that a failed `up` is taken down too (when the test panics).
        let local = LocalStack {
            nginx: format!("http://127.0.0.1:{}", ports["NGINX_PORT"]),
            dir,
            ports,
            // No connection kept between requests: nginx is taken down and brought up again on
            // the same port, and a kept connection would be one it closed.
            client: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        local.run(&["up"], env);
        local
    }

    /// `scripts/stack.sh` with `args`, as `make` would run it (no tokens in the environment).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        stack(&self.dir, &self.ports, args, env)
    }

    fn env(&self) -> HashMap<String, String> {
        read_env(&self.dir.join("stack.env"))
    }

    async fn item(&self, admin: &str) -> i64 {
        let r: serde_json::Value = self
            .client
            .post(format!("{}/stock/items", self.nginx))
            .bearer_auth(admin)
            .header("Idempotency-Key", new_key())
            .json(&json!({"name": "local", "price": 100, "currency": "USD", "stock": 1000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["id"].as_i64().expect("an item")
    }

    /// A checkout of one unit; its status code and body.
    async fn checkout(&self, item: i64) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}/order/checkout", self.nginx))
            .header("Idempotency-Key", new_key())
            .json(&json!({"items": [{"itemId": item, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("scripts/stack.sh"))
            .arg("down")
            .env("STACK_DIR", &self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill_9(pid: &str) {
    let status = Command::new("kill").args(["-9", pid]).status().unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Two ways an operator's `make start` went wrong: right after `kill -9` (the killed process, not
/// yet reaped, was taken for a running one, so nothing was started), and in a shell without the
/// tokens `make up` was given (the service made new ones and refused the others' calls).
#[tokio::test]
async fn make_start_works_right_after_kill_9_and_keeps_the_tokens_make_up_was_given() {
    let stack = LocalStack::up(&[
        ("SERVICE_TOKENS", "svc-given-by-the-operator"),
        ("ADMIN_TOKENS", "adm-given-by-the-operator"),
    ]);
    let item = stack.item("adm-given-by-the-operator").await;
    assert_eq!(stack.checkout(item).await.0, 201);

    for service in ["order", "payment", "stock"] {
        let before = stack.env();
        let pid = &before[&format!("{}_PID", service.to_uppercase())];
        kill_9(pid);
        stack.run(&["start", service], &[]);
        let after = stack.env();
        let new_pid = &after[&format!("{}_PID", service.to_uppercase())];
        assert_ne!(new_pid, pid, "{service} was started again");
        assert!(!gone(new_pid), "{service} runs");
        assert_eq!(
            stack.checkout(item).await.0,
            201,
            "after {service} restarted"
        );
    }

    // payment stopped and started from a shell that has no tokens: it keeps those `up` was given,
    // so order's calls are accepted and a checkout completes.
    stack.run(&["stop", "payment"], &[]);
    stack.run(&["start", "payment"], &[]);
    let (status, order) = stack.checkout(item).await;
    assert_eq!(status, 201, "{order}");
    let tokens = read_env(&stack.dir.join("tokens.env"));
    assert_eq!(tokens["SERVICE_TOKENS"], "svc-given-by-the-operator");
    assert_eq!(tokens["ADMIN_TOKENS"], "adm-given-by-the-operator");
    // A start may still override them, as any other setting.
    stack.run(
        &["start", "order"],
        &[("SERVICE_TOKENS", "svc-given-by-the-operator")],
    );
}

/// `make up INSTANCES=2`: two instances of each service behind nginx; single instances stop,
/// start and die while checkouts keep completing; `make stop|start` and an `up` again keep the
/// stack's count whatever `INSTANCES` their shell has; `make down` stops them all, and a `make up`
/// without `INSTANCES` afterwards starts one of each.
#[tokio::test]
async fn two_instances_of_each_service_serve_through_one_dying() {
    let stack = LocalStack::up(&[("INSTANCES", "2")]);
    let env = stack.env();
    assert_eq!(env["INSTANCES"], "2");
    // An `up` again without INSTANCES changes nothing; with another count it is refused.
    stack.run(&["up"], &[]);
    assert_eq!(stack.env()["ORDER_PIDS"], env["ORDER_PIDS"]);
    let refused = Command::new("bash")
        .arg(workspace_root().join("scripts/stack.sh"))
        .arg("up")
        .env("STACK_DIR", &stack.dir)
        .env("INSTANCES", "3")
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "an up with another count while it runs"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("make down first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // `make stop|start SERVICE=order` from a shell with INSTANCES=1 act on both instances.
    stack.run(&["stop", "order"], &[("INSTANCES", "1")]);
    let stopped = stack.env();
    assert_eq!(stopped["INSTANCES"], "2");
    assert_eq!(stopped["ORDER_PIDS"], ",", "both order instances stopped");
    stack.run(&["start", "order"], &[("INSTANCES", "1")]);
    let started = stack.env();
    assert_eq!(started["INSTANCES"], "2");
    assert!(
        started["ORDER_PIDS"]
            .split(',')
            .all(|p| !p.is_empty() && !gone(p)),
        "both order instances started: {}",
        started["ORDER_PIDS"]
    );
    let env = stack.env();
    let mut all = Vec::new();
    for service in ["ORDER", "PAYMENT", "STOCK"] {
        let pids: Vec<String> = env[&format!("{service}_PIDS")]
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(pids.len(), 2, "{service}_PIDS");
        assert_eq!(pids[0], env[&format!("{service}_PID")], "instance 1 first");
        assert!(pids.iter().all(|p| !gone(p)), "{service} instances run");
        let urls: Vec<&str> = env[&format!("{service}_URLS")].split(',').collect();
        for url in &urls {
            let r = stack
                .client
                .get(format!("{url}/health/ready"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{url}");
        }
        all.extend(pids);
    }
    let admin = read_env(&stack.dir.join("tokens.env"))["ADMIN_TOKENS"].clone();
    let item = stack.item(&admin).await;
    for _ in 0..6 {
        assert_eq!(stack.checkout(item).await.0, 201);
    }

    // One instance of each service stopped: the others serve every request.
    for service in ["order", "payment", "stock"] {
        stack.run(&["stop", service], &[("INSTANCE", "2")]);
    }
    let env = stack.env();
    assert!(env["ORDER_PIDS"].ends_with(','), "{}", env["ORDER_PIDS"]);
    for _ in 0..6 {
        assert_eq!(stack.checkout(item).await.0, 201);
    }
    for service in ["order", "payment", "stock"] {
        stack.run(&["start", service], &[("INSTANCE", "2")]);
    }

    // Instance 1 of each killed: checkouts keep completing on instance 2 — nginx moves requests
    // away from a refused connection, and order reaches the stock and payment that live.
    let env = stack.env();
    for service in ["ORDER", "PAYMENT", "STOCK"] {
        kill_9(&env[&format!("{service}_PID")]);
    }
    for _ in 0..6 {
        let (status, order) = stack.checkout(item).await;
        assert_eq!(status, 201, "{order}");
    }
    for service in ["order", "payment", "stock"] {
        stack.run(&["start", service], &[("INSTANCE", "1")]);
    }
    let env = stack.env();
    stack.run(&["down"], &[]);
    for service in ["ORDER", "PAYMENT", "STOCK"] {
        for pid in env[&format!("{service}_PIDS")].split(',') {
            assert!(gone(pid), "{service} instance {pid} stopped");
        }
    }

    // Up again without INSTANCES: one of each, not the earlier count.
    stack.run(&["up"], &[]);
    let env = stack.env();
    assert_eq!(env["INSTANCES"], "1");
    for service in ["ORDER", "PAYMENT", "STOCK"] {
        let pids = &env[&format!("{service}_PIDS")];
        assert!(!pids.contains(','), "{service}: one instance, {pids}");
        assert!(!gone(pids), "{service} runs");
    }
    let (status, order) = stack.checkout(item).await;
    assert_eq!(status, 201, "{order}");
}
