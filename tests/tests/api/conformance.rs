//! The OpenAPI documents are exact: schemathesis (every check, its examples, coverage, fuzzing and
//! stateful phases) finds nothing on any service through nginx; unknown methods answer 405
//! problem+json with `Allow` (nginx's TRACE included); what a document says about methods is what
//! the service serves.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use tests::{admin_token, service_token, workspace_root, Stack};

/// schemathesis, as `make test` installs it (`scripts/stack.sh test-deps`), or `SCHEMATHESIS`.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".stack/venv/bin/st"));
    assert!(
        path.exists(),
        "{} is missing: install it with `scripts/stack.sh test-deps` (make test does)",
        path.display()
    );
    path
}

/// How schemathesis runs here. Business answers a valid request can get are not refusals of
/// valid data: 402 (a declined payment) and 422 (an unknown item, mixed currencies, a key reused
/// for another request, shares that do not make a rule) join the default accepted statuses. Two
/// rules the document states only in words are left to the service: a charge's lines must sum to
/// its amount (400 naming `lines`), and only a charge of an order (`orderId`) has an `attempt`
/// (400 naming `attempt`), so `/charge` may answer 400 to data the schema allows. Links are the documents' own (the inferred ones pair unrelated operations).
const CONFIG: &str = r#"
[auth.openapi.service_token]
bearer = "${SERVICE_TOKEN}"
[auth.openapi.admin_token]
bearer = "${ADMIN_TOKEN}"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "402", "422", "429", "5xx"]
[phases.stateful.inference]
algorithms = []
[[operations]]
include-path = "/charge"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "402", "422", "429", "5xx"]
"#;

/// A path of the document with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{itemId}" => "1",
            s if s.starts_with('{') => "00000000-0000-0000-0000-000000000000",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`; schemathesis works in a scratch directory there), one shared and in use.
mod black_box {
    use super::*;

    #[tokio::test]
    async fn schemathesis_finds_nothing_on_any_service() {
        let st = schemathesis();
        let s = Stack::start().await;
        let dir = s.dir().join("schemathesis");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("schemathesis.toml");
        std::fs::write(
            &config,
            CONFIG
                .replace("${SERVICE_TOKEN}", service_token())
                .replace("${ADMIN_TOKEN}", admin_token()),
        )
        .unwrap();
        let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "40".into());
        let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "5".into());
        let runs = ["stock", "payment", "order"].map(|service| {
            let base = s.url(&format!("/{service}"));
            let out = std::fs::File::create(dir.join(format!("{service}.txt"))).unwrap();
            let child = tokio::process::Command::new(&st)
                .arg("--config-file")
                .arg(&config)
                .args(["--no-color", "run"])
                .arg(format!("{base}/openapi.json"))
                .args(["--url", &base, "--checks", "all"])
                .args(["--max-examples", &examples, "--seed", &seed])
                .current_dir(&dir)
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("schemathesis starts");
            (service, child)
        });
        let mut failed = Vec::new();
        for (service, mut child) in runs {
            let status = child.wait().await.expect("schemathesis runs");
            if !status.success() {
                let report = std::fs::read_to_string(dir.join(format!("{service}.txt"))).unwrap();
                failed.push(format!("----- {service}: {status}\n{report}"));
            }
        }
        assert!(
            failed.is_empty(),
            "schemathesis found:\n{}",
            failed.join("\n")
        );
    }

    /// Every method a path does not serve — through the service, and TRACE, which nginx refuses
    /// itself — answers 405 problem+json with `Allow` naming exactly the methods its document
    /// has.
    #[tokio::test]
    async fn unknown_methods_answer_405_with_the_documented_methods() {
        let s = Stack::start().await;
        for service in ["order", "payment", "stock"] {
            let doc = s.get(&format!("/{service}/openapi.json"), None).await.json;
            let paths = doc["paths"].as_object().expect("paths").clone();
            for (template, item) in paths {
                let documented: Vec<String> = ["get", "post", "put", "patch", "delete"]
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| m.to_uppercase())
                    .collect();
                let path = concrete(&template);
                for method in ["TRACE", "OPTIONS", "PUT", "DELETE", "PATCH", "QUERY"] {
                    if documented.iter().any(|m| m == method) {
                        continue;
                    }
                    let a = s
                        .send(s.client.request(
                            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                            s.url(&format!("/{service}{path}")),
                        ))
                        .await;
                    a.expect(405, Some("method_not_allowed"));
                    let allow: Vec<&str> = a
                        .header("allow")
                        .unwrap_or_else(|| panic!("{method} /{service}{path}: no Allow"))
                        .split(", ")
                        .collect();
                    assert_eq!(allow, documented, "{method} /{service}{path}");
                }
            }
        }
    }

    /// Bodies are JSON: another declared media type is refused with 415 before anything runs, and
    /// the key may be used again.
    #[tokio::test]
    async fn a_body_that_is_not_json_is_refused_with_415() {
        let s = Stack::start().await;
        let item = s.create_item(1000, "USD", 10).await;
        let key = tests::new_key();
        let body = json!({"itemId": item, "quantity": 1}).to_string();
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let a = s
                .send(
                    s.client
                        .post(s.url("/order/checkout"))
                        .header("Idempotency-Key", &key)
                        .header("content-type", content_type)
                        .body(body.clone()),
                )
                .await;
            a.expect(415, Some("unsupported_media_type"));
        }
        if s.is_own() {
            let orders = s.get("/order/orders", None).await;
            assert_eq!(orders.json["total"], 0, "nothing was written");
        }
        let a = s
            .send(
                s.client
                    .post(s.url("/order/checkout"))
                    .header("Idempotency-Key", &key)
                    .header("content-type", "application/json; charset=utf-8")
                    .body(body),
            )
            .await;
        a.expect(201, None);
        assert_eq!(a.header("idempotent-replayed"), None, "the key ran afresh");
        let state = s.item(item).await;
        assert_eq!(
            (state["stock"].as_i64(), state["reserved"].as_i64()),
            (Some(9), Some(0)),
            "one unit shipped: the refused requests held none"
        );
        let doc: Value = s.get("/order/openapi.json", None).await.json;
        assert!(doc["paths"]["/checkout"]["post"]["responses"]["415"].is_object());
    }
}
