#!/usr/bin/env bash
# `make bench`: a release build, a stack of its own from empty databases, a bench item with plenty of
# stock and a second one whose sales payment splits among three recipients, a warm-up, then health,
# replay, checkout and checkout_split, and transfer (64 clients, 30 s each), measured in one run.
# BENCH_TARGET says which stack:
#   native (the default)  scripts/stack.sh's (state in .stack/bench/stack, ports apart from `make up`);
#                         INSTANCES=n runs n instances of each service. Figures in .stack/bench.
#   compose               docker-compose.yml's, from the images `make compose-images` makes, as project
#                         checkout-bench (its .env, with generated secrets and nginx on the first free
#                         port from 19080, in .stack/bench/compose; scripts/compose.sh bench-*). Figures
#                         in .stack/bench/compose.
# The loadgen sequence is the same for both; only bringing the stack up and down, its tokens, its
# database server and restarting payment without a hold differ (native_* and compose_* below).
# Figures go to result.json (with the target, the core count and the instances), the latency
# histograms to *-latency.svg, and the table to the terminal.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${BENCH_TARGET:-native}"
CLIENTS="${BENCH_CLIENTS:-64}"
DURATION="${BENCH_DURATION:-30}"
INSTANCES="${INSTANCES:-1}"
export INSTANCES PROFILE=release
LOADGEN="$ROOT/target/release/loadgen"
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"

# What each target defines: up (brings the stack up from nothing and sets URL, DATABASE_SERVER — a
# URL without a database —, ADMIN_TOKEN and SERVICE_TOKEN), payment_without_hold (payment restarted
# with SPLIT_HOLD_SECS=0, healthy again) and down (nothing of the stack left).

native_up() {
    export STACK_DIR="$OUT/stack"
    export NGINX_PORT="${BENCH_NGINX_PORT:-18080}" ORDER_PORT="${BENCH_ORDER_PORT:-13131}"
    export PAYMENT_PORT="${BENCH_PAYMENT_PORT:-13132}" STOCK_PORT="${BENCH_STOCK_PORT:-13133}"
    "$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
    rm -rf "$STACK_DIR"
    # A port another stack holds would not stop this one from coming up: its readiness checks would
    # be answered by the other stack's service, and the bench would measure (and set up) the wrong one.
    local port
    for port in "$NGINX_PORT" "$ORDER_PORT" "$PAYMENT_PORT" "$STOCK_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is in use (BENCH_NGINX_PORT, BENCH_ORDER_PORT, BENCH_PAYMENT_PORT, BENCH_STOCK_PORT)" >&2
            exit 1
        fi
    done
    "$ROOT/scripts/stack.sh" up >/dev/null
    URL="http://127.0.0.1:$NGINX_PORT"
    DATABASE_SERVER="$(sed -n 's/^DATABASE_URL=//p' "$STACK_DIR/stack.env")"
    ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKENS=//p' "$STACK_DIR/tokens.env")"
    SERVICE_TOKEN="$(sed -n 's/^SERVICE_TOKENS=//p' "$STACK_DIR/tokens.env")"
    ADMIN_TOKEN="${ADMIN_TOKEN%%,*}" SERVICE_TOKEN="${SERVICE_TOKEN%%,*}"
}

native_payment_without_hold() {
    "$ROOT/scripts/stack.sh" stop payment >/dev/null
    SPLIT_HOLD_SECS=0 "$ROOT/scripts/stack.sh" start payment >/dev/null
}

native_down() { "$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true; }

# The compose project: docker-compose.yml with tests/compose/test.yml (the engine's images, never a
# registry's; PostgreSQL published on 127.0.0.1 for ANALYZE and the split check).
export COMPOSE_BENCH_PROJECT="${COMPOSE_BENCH_PROJECT:-checkout-bench}"

compose_up() {
    export COMPOSE_BENCH_DIR="$OUT"
    "$ROOT/scripts/compose.sh" bench-up
    URL="http://127.0.0.1:$(sed -n 's/^NGINX_PORT=//p' "$OUT/.env")"
    DATABASE_SERVER="$("$ROOT/scripts/compose.sh" bench-postgres-url)"
    ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKENS=//p' "$OUT/.env")"
    SERVICE_TOKEN="$(sed -n 's/^SERVICE_TOKENS=//p' "$OUT/.env")"
    # The second service token: the first is order's own.
    ADMIN_TOKEN="${ADMIN_TOKEN%%,*}" SERVICE_TOKEN="${SERVICE_TOKEN##*,}"
}

compose_payment_without_hold() { "$ROOT/scripts/compose.sh" bench-set payment SPLIT_HOLD_SECS=0 2>/dev/null; }

compose_down() { "$ROOT/scripts/compose.sh" bench-down 2>/dev/null || true; }

case "$TARGET" in
    native) OUT="$ROOT/.stack/bench" ;;
    compose)
        OUT="$ROOT/.stack/bench/compose"
        [ "$INSTANCES" = 1 ] || { echo "INSTANCES=$INSTANCES: the compose stack runs one instance of each service" >&2; exit 2; }
        ;;
    *)
        echo "BENCH_TARGET=$TARGET: native or compose" >&2
        exit 2
        ;;
esac

cargo build --release --bins
mkdir -p "$OUT"
# Every run starts from empty databases, so that runs are comparable. The result file says which
# stack it measured (loadgen merges its figures into what the file holds).
echo "{\"target\": \"$TARGET\"}" >"$OUT/result.json"
trap '${TARGET}_down' EXIT
# Interrupted or terminated, it still takes the stack down (the EXIT trap runs on exit).
trap 'exit 130' INT
trap 'exit 143' TERM
"${TARGET}_up"
echo "bench of the $TARGET stack at $URL" >&2
RUN="bench-$(date +%s%N)"
# POST $1 (a path under nginx) with the admin token, Idempotency-Key $2 and the JSON body $3.
admin() {
    curl -fsS "$URL$1" -H "Authorization: Bearer $ADMIN_TOKEN" -H "Idempotency-Key: $RUN-$2" \
        -H 'Content-Type: application/json' -d "$3"
}
item=$(admin /stock/items item '{"name":"bench item","price":100,"currency":"USD","stock":1000000000}' |
    sed -E 's/^\{"id":([0-9]+).*/\1/')
# checkout_split's product: the same price and stock as the bench item (so stock and order do the
# same work for both), each sale split 50/30/20 % among the same three recipients — the hot-account
# case, where every capture credits the same accounts (the platform takes nothing of it).
split_item=$(admin /stock/items split-item '{"name":"bench split item","price":100,"currency":"USD","stock":1000000000}' |
    sed -E 's/^\{"id":([0-9]+).*/\1/')
shares=""
for share in seller:5000 partner:3000 affiliate:2000; do
    recipient=$(admin /payment/recipients "recipient-${share%%:*}" "{\"name\":\"bench ${share%%:*}\"}" |
        sed -E 's/.*"recipientId":"([^"]+)".*/\1/')
    shares="$shares${shares:+,}{\"recipientId\":\"$recipient\",\"type\":\"percentage\",\"basisPoints\":${share##*:}}"
done
admin /payment/split-rules split-rule "{\"productId\":$split_item,\"shares\":[$shares]}" >/dev/null
echo "bench item $item, split item $split_item; warming up" >&2
# The warm-up alternates the two items, so that the split path's tables and plans are warm as well.
"$LOADGEN" run --scenario checkout --url "$URL" --clients "$CLIENTS" --duration 5 --items "$item,$split_item" \
    --quiet >/dev/null
# The warm-up ends with what autovacuum does within a running system's first minute: statistics
# for the tables the warm-up filled. (The services' cached query plans were made when the tables
# were empty; ANALYZE invalidates them, so the measured runs use the plans of a system in service,
# not sequential scans chosen for empty tables.)
for db in order payment stock; do
    psql "$DATABASE_SERVER/$db" -qc "ANALYZE" >/dev/null
done
"$LOADGEN" run --scenario health --url "$URL" --clients "$CLIENTS" --duration 10 --json "$OUT/result.json" \
    --instances "$INSTANCES" >/dev/null
# Replay right after health, before the long checkout run: the two are compared, so both are measured
# on the same quiet stack (the checkout run leaves PostgreSQL with minutes of vacuum and checkpoint
# work to do, which replay — Redis only — would otherwise be measured against).
"$LOADGEN" run --scenario replay --url "$URL" --clients "$CLIENTS" --duration 10 --items "$item" \
    --json "$OUT/result.json" --plot "$OUT/replay-latency.svg" >/dev/null
# checkout and checkout_split are compared with each other, so they take turns in one run, $DURATION
# each in all, in mirrored order: split, checkout, checkout, split (a quarter of the run each). Run one
# after the other, whichever went second would be measured on a bigger database, against the first
# one's vacuum and checkpoint work and on another minute of the machine's drifting speed; in mirrored
# order a steady trend weighs on both alike. (More turns would cancel faster swings too, but at each
# turn's end some of its background work — autovacuum, the folding of pending credits — spills into
# the next turn, the other scenario's.)
"$LOADGEN" run --scenario checkout_split,checkout --rounds 2 --url "$URL" --clients "$CLIENTS" \
    --duration "$DURATION" --items "$item" --split-items "$split_item" \
    --json "$OUT/result.json" --plot "$OUT/{scenario}-latency.svg" >/dev/null
# That the split item's captures were really split (warm-up included): three allocations each (a
# capture of the plain item has one, the platform's), 50/30/20 of its 100 to the same three recipients.
split=$(psql "$DATABASE_SERVER/payment" -qAt -c "
    SELECT count(DISTINCT payment_id) || ' payments captured, ' || count(*) || ' allocations, '
           || count(DISTINCT recipient_id) || ' recipients: '
           || CASE WHEN count(*) > 0 AND count(*) = 3 * count(DISTINCT payment_id)
                        AND count(DISTINCT (recipient_id, amount)) = 3
                        AND array_agg(DISTINCT amount ORDER BY amount) = '{20,30,50}'
                   THEN 'split 50/30/20 as its rule says' ELSE 'NOT split as its rule says' END
    FROM allocations WHERE product_id = $split_item" 2>&1) || true
echo "split item: $split" >&2
# transfer, last: recipients moving available money between them. payment is restarted without a
# hold, and two recipients are funded by a sale each (1000 units of an item wholly theirs, released
# within a second); then transfers of one unit between them, in either direction, for $DURATION,
# while the transfer worker posts them (every 500 ms): accepted per second, the worker's backlog
# sampled during the run, and how long it takes to post what is left.
"${TARGET}_payment_without_hold"
movers=""
for name in mover-a mover-b; do
    mover=$(admin /payment/recipients "recipient-$name" "{\"name\":\"bench $name\"}" |
        sed -E 's/.*"recipientId":"([^"]+)".*/\1/')
    fund=$(admin /stock/items "fund-$name" '{"name":"bench fund","price":100,"currency":"USD","stock":1000}' |
        sed -E 's/^\{"id":([0-9]+).*/\1/')
    admin /payment/split-rules "rule-$name" \
        "{\"productId\":$fund,\"shares\":[{\"recipientId\":\"$mover\",\"type\":\"percentage\",\"basisPoints\":10000}]}" \
        >/dev/null
    curl -fsS "$URL/order/checkout" -H "Idempotency-Key: $RUN-sale-$name" -H 'Content-Type: application/json' \
        -d "{\"items\":[{\"itemId\":$fund,\"quantity\":1000}]}" >/dev/null
    for _ in $(seq 100); do
        curl -fsS "$URL/payment/recipients/$mover/balances" -H "Authorization: Bearer $SERVICE_TOKEN" |
            grep -q '"available":100000' && break
        sleep 0.2
    done
    movers="$movers${movers:+,}$mover"
done
echo "transfers between $movers" >&2
"$LOADGEN" run --scenario transfer --url "$URL" --clients "$CLIENTS" --duration "$DURATION" \
    --recipients "$movers" --token "$SERVICE_TOKEN" \
    --json "$OUT/result.json" --plot "$OUT/transfer-latency.svg" >/dev/null
"$LOADGEN" table "$OUT/result.json"
echo "figures: $OUT/result.json; histograms: $OUT/checkout-latency.svg, $OUT/checkout_split-latency.svg," \
    "$OUT/replay-latency.svg, $OUT/transfer-latency.svg" >&2
