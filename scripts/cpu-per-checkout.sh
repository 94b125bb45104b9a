#!/usr/bin/env bash
# CPU per completed checkout, per process, of the release build of a tree: compares two builds.
#
#   scripts/cpu-per-checkout.sh TREE LABEL
#
# TREE is a checkout of the repository with its release binaries built (`cargo build --release
# --bins`); the load generator is this tree's. A fresh stack of TREE's scripts and binaries (state in
# .stack/cpu, ports apart from `make up` and `make bench`), a bench item, a 5 s warm-up and `ANALYZE`,
# then checkouts for DURATION (20) seconds at CLIENTS (64) clients — at most RATE per second when RATE
# is given. CPU time is read from /proc before and after, summed per process name. Prints one line:
# checkouts, rate, p99, and CPU ms per checkout for all, the services, PostgreSQL, Redis and nginx.
#
# The machine's speed drifts by a fifth and more within half an hour: compare two builds in
# alternating runs (A B A B A B), never one run of each. At saturation, a slower build also makes
# smaller batches, which costs every process more per checkout; at one RATE below both builds'
# saturation, the batches are alike and the difference is the builds' own work.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TREE="$(cd "${1:?usage: $0 TREE LABEL}" && pwd)"
LABEL="${2:?usage: $0 TREE LABEL}"
OUT="$ROOT/.stack/cpu"
export STACK_DIR="$OUT/stack" PROFILE=release
export NGINX_PORT="${CPU_NGINX_PORT:-18070}" ORDER_PORT="${CPU_ORDER_PORT:-13161}"
export PAYMENT_PORT="${CPU_PAYMENT_PORT:-13162}" STOCK_PORT="${CPU_STOCK_PORT:-13163}"
URL="http://127.0.0.1:$NGINX_PORT"
LOADGEN="$ROOT/target/release/loadgen"
RATE_ARGS=()
if [ -n "${RATE:-}" ]; then RATE_ARGS=(--rate "$RATE"); fi

mkdir -p "$OUT"
"$TREE/scripts/stack.sh" down >/dev/null 2>&1 || true
rm -rf "$STACK_DIR"
trap '"$TREE/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
"$TREE/scripts/stack.sh" up >/dev/null 2>&1
# shellcheck disable=SC1091
. "$STACK_DIR/tokens.env"
# shellcheck disable=SC1091
. "$STACK_DIR/stack.env"
item=$(curl -fsS "$URL/stock/items" -H "Authorization: Bearer ${ADMIN_TOKENS%%,*}" \
    -H "Idempotency-Key: cpu-$(date +%s%N)" -H 'Content-Type: application/json' \
    -d '{"name":"cpu item","price":100,"currency":"USD","stock":1000000000}' |
    sed -E 's/^\{"id":([0-9]+).*/\1/')
"$LOADGEN" run --scenario checkout --url "$URL" --clients "${CLIENTS:-64}" --duration 5 --items "$item" \
    --quiet >/dev/null
for db in order payment stock; do psql "$DATABASE_URL/$db" -qc "ANALYZE" >/dev/null; done

# user + system ticks of every live process, summed per process name.
ticks() {
    for p in /proc/[0-9]*; do
        name=$(cat "$p/comm" 2>/dev/null) || continue
        stat=$(cat "$p/stat" 2>/dev/null) || continue
        # shellcheck disable=SC2086
        set -- ${stat##*) }
        echo "$name $((${12} + ${13}))"
    done | awk '{t[$1] += $2} END {for (k in t) print k, t[k]}'
}
ticks >"$OUT/before"
"$LOADGEN" run --scenario checkout --url "$URL" --clients "${CLIENTS:-64}" --duration "${DURATION:-20}" \
    "${RATE_ARGS[@]}" --items "$item" --json "$OUT/$LABEL.json" --quiet >/dev/null
ticks >"$OUT/after"
python3 - "$LABEL" "$OUT" "$(getconf CLK_TCK)" <<'PY'
import json, sys
label, out, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = json.load(open(f"{out}/{label}.json"))["checkout"]
done = run["by_status"].get("201", 0)
before = dict(l.split() for l in open(f"{out}/before"))
after = dict(l.split() for l in open(f"{out}/after"))
def ms(name):
    return (int(after.get(name, 0)) - int(before.get(name, 0))) * 1000.0 / hz / max(done, 1)
row = {n: ms(n) for n in ["order", "payment", "stock", "postgres", "redis-server", "nginx"]}
services = row["order"] + row["payment"] + row["stock"]
print(f"{label}: {done} checkouts, {run['throughput_per_s']:.0f}/s, p99 {run['p99_ms']:.0f} ms | "
      f"CPU ms/checkout: all {sum(row.values()):.3f}, services {services:.3f} (order {row['order']:.3f}, "
      f"payment {row['payment']:.3f}, stock {row['stock']:.3f}), PostgreSQL {row['postgres']:.3f}, "
      f"Redis {row['redis-server']:.3f}, nginx {row['nginx']:.3f}")
PY
