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
        let pid = &pids[name];
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name} stopped"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
