//! Static checks of what operators deploy: docker-compose.yml against the Compose Specification
//! schema and the whole topology, every image of it built here from one Debian base, nginx.conf
//! through `nginx -t`, the Dockerfiles' shape, and the observability configuration. The compose
//! stack is also run for real, wherever a container engine answers: `make compose-test`
//! (scripts/compose.sh, docs/testing.md).

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use tests::workspace_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("docker-compose.yml")).expect("valid YAML");
    yaml.apply_merge().expect("merge keys resolve");
    serde_json::to_value(yaml).expect("YAML as JSON")
}

#[test]
fn docker_compose_follows_the_compose_specification() {
    let schema: Value = serde_json::from_str(&read("schemas/compose-spec.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the vendored schema compiles");
    let compose = compose();
    let errors: Vec<String> = validator
        .iter_errors(&compose)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "docker-compose.yml is not valid:\n{}",
        errors.join("\n")
    );
}

/// Every container's log rotates (a size limit and a number of files), so that a busy stack does
/// not fill the disk.
#[test]
fn every_container_of_docker_compose_rotates_its_log() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(services.len(), 9);
    for (name, service) in services {
        let logging = &service["logging"];
        assert_eq!(logging["driver"], "json-file", "{name}: {logging}");
        let size = logging["options"]["max-size"].as_str().unwrap_or_default();
        assert!(
            size.ends_with('m') || size.ends_with('k'),
            "{name}: max-size {size:?}"
        );
        let files: u32 = logging["options"]["max-file"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert!(files >= 1, "{name}: max-file {logging}");
    }
}

#[test]
fn docker_compose_has_the_whole_topology_with_health_checks() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    for name in [
        "postgres",
        "redis",
        "nginx",
        "order",
        "payment",
        "stock",
        "jaeger",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    for name in ["postgres", "redis", "nginx", "order", "payment", "stock"] {
        assert!(
            services[name].get("profiles").is_none(),
            "{name} runs by default"
        );
        assert_eq!(
            services[name]["restart"], "unless-stopped",
            "{name} comes back after a crash"
        );
    }
    // PostgreSQL, Redis and nginx have their health checks in their images.
    for name in ["postgres", "redis", "nginx"] {
        let dockerfile = read(&dockerfile_of(&services[name]));
        assert!(
            dockerfile.contains("\nHEALTHCHECK "),
            "{name}'s image has a health check"
        );
    }
    for name in ["order", "payment", "stock"] {
        let s = &services[name];
        assert_eq!(
            s["build"], ".",
            "{name} is built from the repository's Dockerfile"
        );
        assert_eq!(s["command"][0], name);
        assert_eq!(
            s["healthcheck"]["test"],
            serde_json::json!(["CMD", name, "--healthcheck"])
        );
        for dep in ["postgres", "redis"] {
            assert_eq!(
                s["depends_on"][dep]["condition"], "service_healthy",
                "{name} waits for {dep}"
            );
        }
        assert!(s["environment"]["DATABASE_URL"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}")));
        // Stopped, a service finishes what is in flight (SHUTDOWN_TIMEOUT_SECS) before the
        // engine kills it (stop_grace_period, default 10 s).
        let grace: u64 = s["stop_grace_period"]
            .as_str()
            .and_then(|g| g.strip_suffix('s'))
            .and_then(|g| g.parse().ok())
            .unwrap_or(10);
        let shutdown: u64 = s["environment"]["SHUTDOWN_TIMEOUT_SECS"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(10);
        assert!(
            grace > shutdown,
            "{name}: stop_grace_period {grace} s must exceed SHUTDOWN_TIMEOUT_SECS {shutdown} s"
        );
        assert!(
            s.get("env_file").is_none(),
            "{name} sees only the variables its environment lists"
        );
    }
    for dep in ["stock", "payment"] {
        assert_eq!(
            services["order"]["depends_on"][dep]["condition"],
            "service_healthy"
        );
    }
    for dep in ["order", "payment", "stock"] {
        assert_eq!(
            services["nginx"]["depends_on"][dep]["condition"],
            "service_healthy"
        );
    }
    let redis_conf = read("deploy/redis/redis.conf");
    assert!(
        redis_conf.contains("\nappendonly yes"),
        "Redis keeps an AOF"
    );
    assert!(
        read("deploy/nginx/Dockerfile").contains("COPY nginx.conf "),
        "the repository's nginx.conf"
    );
    for name in ["jaeger", "prometheus", "grafana"] {
        assert_eq!(
            services[name]["profiles"],
            serde_json::json!(["observability"])
        );
    }
    // Every secret the file requires is in .env.example.
    let example = read(".env.example");
    let text = read("docker-compose.yml");
    let required: BTreeSet<&str> = text
        .match_indices("${")
        .filter_map(|(i, _)| text[i + 2..].split([':', '}']).next())
        .collect();
    for var in required {
        assert!(
            example.contains(&format!("{var}=")),
            "{var} in .env.example"
        );
    }
}

/// A service's Dockerfile, from its `build` (a context, or a context and a Dockerfile).
fn dockerfile_of(service: &Value) -> String {
    match &service["build"] {
        Value::String(context) => format!("{context}/Dockerfile"),
        build => {
            let context = build["context"].as_str().unwrap_or(".");
            let file = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            if context == "." {
                file.to_string()
            } else {
                format!("{context}/{file}")
            }
        }
    }
}

/// Every image of the default profile is built here, from one Debian base and Debian's packages
/// (no registry image but the Rust stage of the services' Dockerfile, for operators who build
/// them in a container); only the observability profile pulls.
#[test]
fn every_image_of_the_platform_is_built_from_one_debian_base() {
    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        if service.get("profiles").is_some() {
            continue;
        }
        assert!(
            service.get("build").is_some(),
            "{name} is built from this repository, not pulled"
        );
        let dockerfile = read(&dockerfile_of(service));
        let bases: Vec<&str> = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix("FROM "))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        let stages: Vec<&str> = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix("FROM "))
            .filter_map(|l| l.split(" AS ").nth(1))
            .collect();
        for base in bases {
            assert!(
                base == "debian:bookworm-slim"
                    || stages.contains(&base)
                    || (name.as_str() != "postgres"
                        && base.starts_with("rust:")
                        && base.ends_with("-bookworm")),
                "{name}: FROM {base} is not the Debian base, one of its own stages or the Rust build stage"
            );
        }
        assert!(
            dockerfile.lines().any(|l| l.starts_with("USER ")),
            "{name} does not run as root"
        );
    }
}

#[test]
fn the_dockerfile_builds_release_binaries_into_a_small_non_root_image() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    // The runtime stage first: a builder without BuildKit builds every stage before the one asked
    // for, and `make compose-images` builds `runtime` where no Rust image can be had.
    assert_eq!(
        stages,
        [
            "FROM debian:bookworm-slim AS runtime",
            "FROM rust:1.95-slim-bookworm AS build",
            "FROM runtime",
        ],
        "runtime, build, and runtime with the binaries"
    );
    assert!(dockerfile.contains("cargo build --release"));
    assert!(dockerfile.contains("COPY --from=build /out/ /usr/local/bin/"));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "non-root"
    );
    let prebuilt = read("tests/compose/services.Dockerfile");
    assert!(prebuilt.contains("COPY order payment stock /usr/local/bin/"));
}

#[test]
fn nginx_accepts_the_repository_configuration() {
    let dir = workspace_root().join(".stack/test/nginx-check");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = read("nginx.conf")
        .replace("${NGINX_STATE_DIR}", &dir.display().to_string())
        .replace("${NGINX_PORT}", "127.0.0.1:18080")
        .replace(
            "${ORDER_SERVERS}",
            "server 127.0.0.1:13131; server 127.0.0.1:13141;",
        )
        .replace("${PAYMENT_SERVERS}", "server 127.0.0.1:13132;")
        .replace(
            "${STOCK_SERVERS}",
            "server 127.0.0.1:13133 max_fails=1 fail_timeout=2s;",
        );
    assert!(
        conf.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("${")),
        "every placeholder is rendered"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|n| Command::new(n).arg("-v").output().is_ok())
        .expect("nginx is installed (make deps)");
    let out = Command::new(nginx)
        .args(["-t", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_and_scrape_config_use_metrics_the_services_expose() {
    let dashboard: Value =
        serde_json::from_str(&read("observability/grafana/dashboards/checkout.json")).unwrap();
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for metric in [
        "checkouts_total",
        "saga_step_duration_seconds_bucket",
        "saga_compensations_total",
        "outbound_retries_total",
        "orders_in_flight",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "the dashboard shows {metric}"
        );
    }
    assert!(
        exprs.iter().any(|e| e.contains("histogram_quantile(0.99")),
        "p99 per step"
    );
    let prometheus: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("observability/prometheus.yml")).unwrap();
    let targets =
        serde_json::to_value(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"])
            .unwrap();
    assert_eq!(
        targets,
        serde_json::json!(["order:3131", "payment:3132", "stock:3133"])
    );
}

#[tokio::test]
async fn the_binaries_healthcheck_flag_asks_the_running_service() {
    let s = tests::Stack::start().await;
    for part in [tests::Part::Order, tests::Part::Payment, tests::Part::Stock] {
        let bin = workspace_root().join("target/debug").join(part.name());
        let ask = |port: u16| {
            Command::new(&bin)
                .arg("--healthcheck")
                .env_clear()
                .env("PORT", port.to_string())
                .status()
                .unwrap()
                .code()
        };
        assert_eq!(ask(s.port(part)), Some(0), "{part:?} is ready");
        assert_eq!(ask(tests::free_port()), Some(1), "nothing listens there");
    }
}

/// Every file of the repository that is not generated, for the checks below.
fn repository_files() -> Vec<std::path::PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(workspace_root())
        .output()
        .expect("git runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|f| workspace_root().join(f))
        .filter(|f| f.is_file())
        .collect()
}

/// Every environment variable a service reads is documented in docs/configuration.md.
#[test]
fn every_setting_is_documented() {
    let documented = read("docs/configuration.md");
    let mut read_vars = BTreeSet::new();
    for file in repository_files() {
        let path = file.to_string_lossy().to_string();
        let service_code = ["shared/src/", "order/src/", "payment/src/", "stock/src/"]
            .iter()
            .any(|dir| path.contains(dir));
        if !service_code || !path.ends_with(".rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for reader in [
            "var_or(\"",
            "string_or(\"",
            "probability_or(\"",
            "millis(\"",
            "list(\"",
            "env::var(\"",
        ] {
            for found in text.split(reader).skip(1) {
                let name: String = found
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > 2 {
                    read_vars.insert(name);
                }
            }
        }
    }
    assert!(read_vars.contains("DATABASE_URL") && read_vars.contains("SAGA_LEASE_SECS"));
    let missing: Vec<&String> = read_vars
        .iter()
        .filter(|v| !v.starts_with("SHARED_TEST") && !documented.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
}

/// The repository is self-contained: nothing in it refers to a file outside it.
#[test]
fn nothing_refers_outside_the_repository() {
    // Spelled in pieces, so that this file does not find itself.
    let patterns = [
        concat!("..", "/shared/"),
        concat!("SPEC", ".md"),
        concat!("SPEC ", "§"),
    ];
    let mut outside = Vec::new();
    for file in repository_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if patterns.iter().any(|p| line.contains(p)) {
                outside.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(outside.is_empty(), "{}", outside.join("\n"));
}
