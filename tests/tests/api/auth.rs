//! Authentication (docs/api.md): bearer tokens, their classes, and refusing to start without them.

use serde_json::json;
use std::process::Command;
use tests::{admin_token, new_key, new_order_id, service_token, workspace_root, Stack};

fn run_without_tokens(service: &str, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let bin = workspace_root().join("target/debug").join(service);
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("STARTUP_TIMEOUT_SECS", "0")
        .env("RUST_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("service binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_service_without_tokens_refuses_to_start_unless_auth_is_disabled() {
    for service in ["stock", "payment"] {
        let (code, text) = run_without_tokens(service, &[]);
        assert_eq!(code, Some(2), "{service}: {text}");
        assert!(text.contains("SERVICE_TOKENS"), "{service}: {text}");
        // With AUTH_DISABLED it gets past configuration (and then fails on the bogus database).
        let (code, text) = run_without_tokens(service, &[("AUTH_DISABLED", "true")]);
        assert_eq!(code, Some(1), "{service}: {text}");
        assert!(
            text.contains("AUTH_DISABLED=true"),
            "{service} warns: {text}"
        );
    }
    let (code, text) = run_without_tokens("stock", &[("SERVICE_TOKENS", "a")]);
    assert_eq!(code, Some(2), "stock needs admin tokens too: {text}");
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`): one shared and in use, where the test works on an item of its own.
mod black_box {
    use super::*;

    #[tokio::test]
    async fn state_changes_and_payment_reads_need_the_right_token() {
        let s = Stack::start().await;
        let item = s.create_item(1000, "USD", 10).await;
        let reserve = json!({"orderId": new_order_id(), "itemId": item, "quantity": 1});
        let charge = json!({"amount": 10, "currency": "USD"});
        let restock = format!("/stock/items/{item}/restock");
        for (path, body) in [
            ("/stock/reserve", &reserve),
            ("/stock/release", &json!({"orderId": "o"})),
            ("/stock/complete", &json!({"orderId": "o"})),
            ("/payment/charge", &charge),
            ("/payment/refund", &json!({"orderId": "o"})),
            (
                "/payment/payments/6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e/retry",
                &json!({}),
            ),
            (
                "/stock/items",
                &json!({"name":"x","price":1,"currency":"USD","stock":1}),
            ),
            (restock.as_str(), &json!({"quantity": 1})),
        ] {
            s.post(path, None, Some(&new_key()), body)
                .await
                .expect(401, Some("unauthorized"));
            s.post(path, Some("not-a-token"), Some(&new_key()), body)
                .await
                .expect(401, Some("unauthorized"));
        }
        // The wrong class of token.
        s.post(
            "/stock/reserve",
            Some(admin_token()),
            Some(&new_key()),
            &reserve,
        )
        .await
        .expect(403, Some("forbidden"));
        s.post(
            "/payment/charge",
            Some(admin_token()),
            Some(&new_key()),
            &charge,
        )
        .await
        .expect(403, Some("forbidden"));
        s.post(
            "/stock/items",
            Some(service_token()),
            Some(&new_key()),
            &json!({"name":"x","price":1,"currency":"USD","stock":1}),
        )
        .await
        .expect(403, Some("forbidden"));
        let state = s.item(item).await;
        assert_eq!(
            (state["stock"].as_i64(), state["reserved"].as_i64()),
            (Some(10), Some(0)),
            "nothing reserved, nothing restocked"
        );

        s.get("/payment/payments", None)
            .await
            .expect(401, Some("unauthorized"));
        s.get(
            "/payment/payments/6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e",
            None,
        )
        .await
        .expect(401, Some("unauthorized"));
        s.get(
            "/stock/reservations/6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e",
            None,
        )
        .await
        .expect(401, Some("unauthorized"));
        // Public reads.
        s.get("/stock/items", None).await.expect(200, None);
        s.get("/stock/items/1", None).await.expect(200, None);
        for svc in ["order", "payment", "stock"] {
            s.get(&format!("/{svc}/health"), None)
                .await
                .expect(200, None);
            s.get(&format!("/{svc}/openapi.json"), None)
                .await
                .expect(200, None);
        }
    }
}
