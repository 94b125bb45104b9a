# shellcheck shell=bash
# The observability profile's Prometheus, for real (docs/testing.md#docker-compose). Sourced by
# scripts/compose.sh, whose helpers it uses (compose_test, get_env, log, die, now, since, within);
# `check_prometheus` runs on the test's project, which must be up.
#
# Prometheus is the image of Debian's package (tests/compose/prometheus.Dockerfile; the override
# tests/compose/test.yml puts it in place of prom/prometheus) with the repository's
# observability/prometheus.yml, as the profile mounts it. Jaeger and Grafana have no Debian package
# and cannot be pulled here: they are only checked statically (tests/tests/api/deploy.rs).

compose_observability() { compose_test --profile observability "$@"; }

# The last log lines of Prometheus, then the error.
prometheus_die() {
    log "last log lines of prometheus:"
    compose_observability logs --no-color --tail 20 prometheus >&2 2>&1 || true
    die "$*"
}

# GET $2 (a path under /api/v1/) of the Prometheus at $1, the rest of the arguments given to curl,
# and prints what the Python expression $3 makes of the answer's `data` (d).
prometheus_api() {
    local url=$1 path=$2 expression=$3 answer
    shift 3
    answer="$(curl -fsS --max-time 5 "$url/api/v1/$path" "$@" 2>/dev/null)" || return 1
    python3 -c 'import json, sys; d = json.loads(sys.argv[1])["data"]; print(eval(sys.argv[2]))' \
        "$answer" "$expression"
}

# The checkout job's targets and their health, sorted: `order:3131=up payment:3132=up ...`.
checkout_targets() {
    prometheus_api "$1" targets \
        '" ".join(sorted(t["labels"]["instance"] + "=" + t["health"] for t in d["activeTargets"] if t["labels"]["job"] == "checkout"))' \
        -G --data-urlencode state=active
}

# Completed checkouts, as Prometheus has them from order's last scrape (0 before the first).
completed_checkouts() {
    prometheus_api "$1" query 'int(float(d["result"][0]["value"][1])) if d["result"] else 0' \
        -G --data-urlencode 'query=sum(checkouts_total{job="checkout",outcome="completed"})'
}

# Prometheus of the observability profile is started on the running stack (no other service
# touched); every target of the `checkout` job (observability/prometheus.yml: order, payment,
# stock) must be up within 60 s, and a checkout through nginx must show in the completed checkouts'
# counter (order's checkouts_total{outcome="completed"}) within 60 s. Nothing else checks out
# meanwhile. Then its container is removed: the rest of the test sees the stack as before.
check_prometheus() {
    docker image inspect checkout-prometheus:latest >/dev/null 2>&1 \
        || die "checkout-prometheus:latest is missing: make compose-images"
    log "Prometheus of the observability profile (Debian's package) on the running stack"
    local started
    started="$(now)"
    compose_observability up --detach --no-deps --no-build prometheus >"$TEST_DIR/prometheus-up.log" 2>&1 \
        || { cat "$TEST_DIR/prometheus-up.log" >&2; die "docker compose --profile observability up prometheus failed"; }
    local prometheus version
    prometheus="http://$(compose_observability port prometheus 9090)"
    until version="$(prometheus_api "$prometheus" status/buildinfo 'd["version"]')"; do
        within "$started" 60 || prometheus_die "Prometheus does not answer on $prometheus after 60 s"
        sleep 0.5
    done

    local expected="order:3131=up payment:3132=up stock:3133=up" targets=""
    until [ "$targets" = "$expected" ]; do
        within "$started" 60 || prometheus_die "the checkout job's targets after 60 s: ${targets:-none}"
        sleep 0.5
        targets="$(checkout_targets "$prometheus")" || targets=""
    done
    local targets_up_s
    targets_up_s="$(since "$started")"
    log "Prometheus $version: every target of the checkout job up $targets_up_s s after up ($targets)"

    local before
    before="$(completed_checkouts "$prometheus")" || prometheus_die "Prometheus does not answer a query"
    local url key admin item status
    url="http://127.0.0.1:$(get_env NGINX_PORT)"
    key="prometheus-check-$(date +%s%N)"
    admin="$(get_env ADMIN_TOKENS)"
    item="$(curl -fsS "$url/stock/items" -H "Authorization: Bearer ${admin%%,*}" \
        -H "Idempotency-Key: $key-item" -H 'Content-Type: application/json' \
        -d '{"name":"Prometheus check item","price":100,"currency":"USD","stock":1}' \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')" \
        || die "POST /stock/items through nginx failed"
    status="$(curl -sS -o "$TEST_DIR/prometheus-checkout.json" -w '%{http_code}' "$url/order/checkout" \
        -H "Idempotency-Key: $key-checkout" -H 'Content-Type: application/json' \
        -d "{\"items\":[{\"itemId\":$item,\"quantity\":1}]}")" \
        || die "POST /order/checkout through nginx failed"
    case "$status" in
        201 | 202) ;;
        *) die "POST /order/checkout answered $status: $(cat "$TEST_DIR/prometheus-checkout.json")" ;;
    esac
    local answered after=""
    answered="$(now)"
    until [ -n "$after" ] && [ "$after" -gt "$before" ]; do
        within "$answered" 60 \
            || prometheus_die "completed checkouts in Prometheus still ${after:-unknown} (before: $before) 60 s after the checkout"
        sleep 0.5
        after="$(completed_checkouts "$prometheus")" || after=""
    done
    local counter_s
    counter_s="$(since "$answered")"
    log "the checkout ($status) in Prometheus $counter_s s after its answer: checkouts_total{outcome=\"completed\"} $before -> $after"
    printf '{"version": "%s", "targets_up_s": %s, "counter_s": %s}\n' "$version" "$targets_up_s" "$counter_s" \
        >"$TEST_DIR/prometheus.json"

    compose_observability rm --stop --force --volumes prometheus >/dev/null 2>&1 \
        || die "docker compose --profile observability rm prometheus failed"
    [ -z "$(compose_observability ps --all --quiet prometheus)" ] || die "the prometheus container is still there"
}
