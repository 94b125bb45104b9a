#!/usr/bin/env bash
# `make bench`: a release build, its own stack (state in .stack/bench/stack, ports apart from `make up`),
# a bench item with plenty of stock, a warm-up, then health, replay and checkout (64 clients, 30 s),
# measured in one run. Figures go to .stack/bench/result.json (with the core count), the checkout
# latency histogram to .stack/bench/checkout-latency.svg, and the table to the terminal.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.stack/bench"
export STACK_DIR="$OUT/stack" PROFILE=release
export NGINX_PORT="${BENCH_NGINX_PORT:-18080}" ORDER_PORT=13131 PAYMENT_PORT=13132 STOCK_PORT=13133
CLIENTS="${BENCH_CLIENTS:-64}"
DURATION="${BENCH_DURATION:-30}"
URL="http://127.0.0.1:$NGINX_PORT"
LOADGEN="$ROOT/target/release/loadgen"

cargo build --release --bins
mkdir -p "$OUT"
rm -f "$OUT/result.json"
# Every run starts from empty databases, so that runs are comparable.
"$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
rm -rf "$STACK_DIR"
trap '"$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
"$ROOT/scripts/stack.sh" up >/dev/null
# shellcheck disable=SC1091
. "$STACK_DIR/tokens.env"
item=$(curl -fsS "$URL/stock/items" -H "Authorization: Bearer ${ADMIN_TOKENS%%,*}" \
    -H "Idempotency-Key: bench-item-$(date +%s%N)" -H 'Content-Type: application/json' \
    -d '{"name":"bench item","price":100,"currency":"USD","stock":1000000000}' | sed -E 's/^\{"id":([0-9]+).*/\1/')
echo "bench item $item; warming up" >&2
"$LOADGEN" run --scenario checkout --url "$URL" --clients "$CLIENTS" --duration 5 --items "$item" --quiet >/dev/null
# The warm-up ends with what autovacuum does within a running system's first minute: statistics
# for the tables the warm-up filled. (The services' cached query plans were made when the tables
# were empty; ANALYZE invalidates them, so the measured runs use the plans of a system in service,
# not sequential scans chosen for empty tables.)
# shellcheck disable=SC1091
. "$STACK_DIR/stack.env"
for db in order payment stock; do
    psql "$DATABASE_URL/$db" -qc "ANALYZE" >/dev/null
done
"$LOADGEN" run --scenario health --url "$URL" --clients "$CLIENTS" --duration 10 --json "$OUT/result.json" >/dev/null
# Replay right after health, before the long checkout run: the two are compared, so both are measured
# on the same quiet stack (the checkout run leaves PostgreSQL with minutes of vacuum and checkpoint
# work to do, which replay — Redis only — would otherwise be measured against).
"$LOADGEN" run --scenario replay --url "$URL" --clients "$CLIENTS" --duration 10 --items "$item" \
    --json "$OUT/result.json" --plot "$OUT/replay-latency.svg" >/dev/null
"$LOADGEN" run --scenario checkout --url "$URL" --clients "$CLIENTS" --duration "$DURATION" --items "$item" \
    --json "$OUT/result.json" --plot "$OUT/checkout-latency.svg" >/dev/null
"$LOADGEN" table "$OUT/result.json"
echo "figures: $OUT/result.json; histograms: $OUT/checkout-latency.svg, $OUT/replay-latency.svg" >&2
