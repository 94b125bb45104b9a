#!/usr/bin/env bash
# The local stack (docs/operations.md): PostgreSQL, Redis, nginx and the three services on this machine, with
# their state under $STACK_DIR (default .stack/). Used by the Makefile; run without arguments for help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
PROFILE="${PROFILE:-release}"
NGINX_PORT="${NGINX_PORT:-8080}"
ORDER_PORT="${ORDER_PORT:-3131}"
PAYMENT_PORT="${PAYMENT_PORT:-3132}"
STOCK_PORT="${STOCK_PORT:-3133}"
SERVICES=(stock payment order)
# Variables given to `make up` that are kept for the services (and for `make start`).
SERVICE_VARS='^(PAYMENT_|SPLIT_|TRANSFER_|PAYOUT_|RESERVATION_|IDEMPOTENCY_|CHECKOUT_|SAGA_|RECOVERY_|OUTBOUND_|COMPENSATION_|OTEL_|RUST_LOG=|SHUTDOWN_TIMEOUT_SECS=|STARTUP_TIMEOUT_SECS=|DATABASE_MAX_CONNECTIONS=|WORKERS=|RUNTIME_THREADS=|AUTH_DISABLED=)'

log() { printf '\033[1m[stack]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

# Installs what is missing, from the distribution's packages.
cmd_deps() {
    local missing=()
    pg_bin >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || die "please install: ${missing[*]}"
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
}

# What the tests need beyond the stack: schemathesis (the OpenAPI conformance fuzzer), pinned, in a
# virtual environment of the checkout's own (.stack/venv).
SCHEMATHESIS_VERSION=4.32.5
cmd_test_deps() {
    local venv="$ROOT/.stack/venv"
    if "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        return 0
    fi
    command -v python3 >/dev/null || {
        command -v apt-get >/dev/null || die "please install python3"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null
    }
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        command -v apt-get >/dev/null || die "please install python3-venv"
        log "installing python3-venv"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION in $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
        || die "schemathesis could not be installed"
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

free_port() {
    local port=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

pid_of() { cat "$STACK_DIR/run/$1.pid" 2>/dev/null || true; }

# PostgreSQL refuses to run as root: as root it runs as the `postgres` user, in a directory that
# user can reach.
pg_user_run() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_dir() {
    local dir="$STACK_DIR/pg"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
        dir="/var/tmp/checkout-pg-$(echo "$STACK_DIR" | md5sum | cut -c1-12)"
    fi
    echo "$dir"
}

start_postgres() {
    local bin dir port
    bin="$(pg_bin)" || die "PostgreSQL is not installed (make deps)"
    dir="$(pg_dir)"
    port="$(cat "$STACK_DIR/run/postgres.port" 2>/dev/null || free_port 15432)"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        log "initialising PostgreSQL in $dir/data"
        pg_user_run "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
    fi
    if ! pg_user_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        pg_user_run "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null \
            || { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
    fi
    echo "$port" >"$STACK_DIR/run/postgres.port"
    head -1 "$dir/data/postmaster.pid" >"$STACK_DIR/run/postgres.pid"
    log "PostgreSQL on 127.0.0.1:$port"
}

stop_postgres() {
    local bin dir
    bin="$(pg_bin)" || return 0
    dir="$(pg_dir)"
    [ -f "$dir/data/PG_VERSION" ] || return 0
    # PG_STOP_MODE=immediate is a crash (the chaos harness's PostgreSQL restart): recovery replays the WAL.
    pg_user_run "$bin/pg_ctl" -D "$dir/data" -m "${PG_STOP_MODE:-fast}" -w stop >/dev/null 2>&1 || true
    rm -f "$STACK_DIR/run/postgres.pid"
}

start_redis() {
    local port
    port="$(cat "$STACK_DIR/run/redis.port" 2>/dev/null || free_port 16379)"
    mkdir -p "$STACK_DIR/redis"
    alive "$(pid_of redis)" && return 0
    setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$STACK_DIR/redis" \
        --unixsocket "$STACK_DIR/redis/redis.sock" --unixsocketperm 700 \
        --appendonly yes --save '' --protected-mode no --daemonize no \
        >>"$STACK_DIR/logs/redis.log" 2>&1 </dev/null &
    echo $! >"$STACK_DIR/run/redis.pid"
    echo "$port" >"$STACK_DIR/run/redis.port"
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    log "Redis on 127.0.0.1:$port"
}

render_nginx() {
    mkdir -p "$STACK_DIR/nginx"
    sed -e "s|\${NGINX_STATE_DIR}|$STACK_DIR/nginx|g" \
        -e "s|\${NGINX_PORT}|$NGINX_PORT|g" \
        -e "s|\${ORDER_UPSTREAM}|127.0.0.1:$ORDER_PORT|g" \
        -e "s|\${PAYMENT_UPSTREAM}|127.0.0.1:$PAYMENT_PORT|g" \
        -e "s|\${STOCK_UPSTREAM}|127.0.0.1:$STOCK_PORT|g" \
        "$ROOT/nginx.conf" >"$STACK_DIR/nginx/nginx.conf"
}

start_nginx() {
    alive "$(pid_of nginx)" && return 0
    render_nginx
    "$(nginx_bin)" -t -q -p "$STACK_DIR/nginx" -c "$STACK_DIR/nginx/nginx.conf" -g 'daemon off;' \
        || die "nginx.conf is not valid"
    setsid "$(nginx_bin)" -p "$STACK_DIR/nginx" -c "$STACK_DIR/nginx/nginx.conf" -g 'daemon off;' \
        >>"$STACK_DIR/logs/nginx.log" 2>&1 </dev/null &
    echo $! >"$STACK_DIR/run/nginx.pid"
    log "nginx on http://127.0.0.1:$NGINX_PORT"
}

tokens() {
    if [ -z "${SERVICE_TOKENS:-}" ] || [ -z "${ADMIN_TOKENS:-}" ]; then
        if [ ! -f "$STACK_DIR/tokens.env" ]; then
            local s a
            s="svc-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            a="adm-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            printf 'SERVICE_TOKENS=%s\nADMIN_TOKENS=%s\n' "$s" "$a" >"$STACK_DIR/tokens.env"
            chmod 600 "$STACK_DIR/tokens.env"
        fi
        # shellcheck disable=SC1091
        . "$STACK_DIR/tokens.env"
    fi
    export SERVICE_TOKENS ADMIN_TOKENS
}

service_port() {
    case "$1" in order) echo "$ORDER_PORT" ;; payment) echo "$PAYMENT_PORT" ;; stock) echo "$STOCK_PORT" ;; esac
}

start_service() {
    local name=$1 port bin overrides
    alive "$(pid_of "$name")" && return 0
    port="$(service_port "$name")"
    bin="$ROOT/target/$PROFILE/$name"
    [ -x "$bin" ] || die "$bin is not built (make build)"
    tokens
    overrides="$(env | grep -E "$SERVICE_VARS" || true)"
    (
        # What `make up` was given, then what this start is given.
        while IFS= read -r line; do [ -n "$line" ] && export "$line"; done \
            < <(cat "$STACK_DIR/service.env" 2>/dev/null; printf '%s\n' "$overrides")
        set -a
        PORT="$port"
        HOST=127.0.0.1
        # PostgreSQL and Redis run on this machine: the services reach them over their Unix
        # sockets, which cost the kernel less per round trip than TCP over loopback.
        DATABASE_URL="postgres://postgres@localhost:$(cat "$STACK_DIR/run/postgres.port")/$name?host=$(pg_dir)"
        REDIS_URL="redis+unix://$STACK_DIR/redis/redis.sock"
        STOCK_URL="http://127.0.0.1:$STOCK_PORT"
        PAYMENT_URL="http://127.0.0.1:$PAYMENT_PORT"
        SERVICE_TOKEN="${SERVICE_TOKENS%%,*}"
        set +a
        exec setsid "$bin" >>"$STACK_DIR/logs/$name.log" 2>&1 </dev/null
    ) &
    echo $! >"$STACK_DIR/run/$name.pid"
}

wait_ready() {
    local name=$1 port
    port="$(service_port "$name")"
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && return 0
        alive "$(pid_of "$name")" || { tail -20 "$STACK_DIR/logs/$name.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    tail -20 "$STACK_DIR/logs/$name.log" >&2
    die "$name is not ready after 30 s"
}

stop_pid() {
    local name=$1 pid
    pid="$(pid_of "$name")"
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STACK_DIR/run/$name.pid"
}

write_env() {
    local f="$STACK_DIR/stack.env"
    {
        echo "NGINX_URL=http://127.0.0.1:$NGINX_PORT"
        echo "ORDER_URL=http://127.0.0.1:$ORDER_PORT"
        echo "PAYMENT_URL=http://127.0.0.1:$PAYMENT_PORT"
        echo "STOCK_URL=http://127.0.0.1:$STOCK_PORT"
        echo "REDIS_URL=redis://127.0.0.1:$(cat "$STACK_DIR/run/redis.port" 2>/dev/null)"
        echo "DATABASE_URL=postgres://postgres@127.0.0.1:$(cat "$STACK_DIR/run/postgres.port" 2>/dev/null)"
        local p
        for p in order payment stock redis postgres nginx; do
            echo "$(echo "$p" | tr '[:lower:]' '[:upper:]')_PID=$(pid_of "$p")"
        done
    } >"$f.tmp"
    mv "$f.tmp" "$f"
}

prepare() {
    mkdir -p "$STACK_DIR/run" "$STACK_DIR/logs"
}

cmd_up() {
    prepare
    env | grep -E "$SERVICE_VARS" >"$STACK_DIR/service.env" || true
    start_postgres
    start_redis
    local s
    for s in "${SERVICES[@]}"; do start_service "$s"; done
    for s in "${SERVICES[@]}"; do wait_ready "$s"; done
    start_nginx
    local url="http://127.0.0.1:$NGINX_PORT"
    for s in order payment stock; do
        for _ in $(seq 100); do
            curl -fsS -o /dev/null "$url/$s/health/ready" 2>/dev/null && break
            sleep 0.1
        done
        curl -fsS -o /dev/null "$url/$s/health/ready" || die "$url/$s/health/ready does not answer 200"
    done
    write_env
    log "stack is up: $url  (tokens in $STACK_DIR/tokens.env, URLs and pids in $STACK_DIR/stack.env)"
    echo "$url"
}

cmd_down() {
    prepare
    local s
    stop_pid nginx
    for s in order payment stock; do stop_pid "$s"; done
    stop_pid redis
    stop_postgres
    write_env
    log "stack is down"
}

cmd_stop() {
    local name=${1:?SERVICE=order|payment|stock|redis|postgres|nginx}
    prepare
    case "$name" in
        postgres) stop_postgres ;;
        order | payment | stock | redis | nginx) stop_pid "$name" ;;
        *) die "unknown service $name" ;;
    esac
    write_env
    log "$name stopped"
}

cmd_start() {
    local name=${1:?SERVICE=order|payment|stock|redis|postgres|nginx}
    prepare
    case "$name" in
        postgres) start_postgres ;;
        redis) start_redis ;;
        nginx) start_nginx ;;
        order | payment | stock) start_service "$name" && wait_ready "$name" ;;
        *) die "unknown service $name" ;;
    esac
    write_env
    log "$name started"
}

cmd_run() {
    local follower=""
    trap '[ -n "$follower" ] && kill "$follower" 2>/dev/null; cmd_down; exit 0' INT TERM
    cmd_up >/dev/null
    log "running in the foreground; Ctrl-C stops everything. Logs: $STACK_DIR/logs/"
    tail -n 0 -F "$STACK_DIR"/logs/*.log &
    follower=$!
    while true; do sleep 1; done
}

# A PostgreSQL server for the integration tests (each test stack creates its own databases in it);
# prints its URL. Idempotent. TEST_STACK_DIR (default .stack/test) says where it lives: the chaos
# harness has its own, which it restarts.
cmd_test_postgres() {
    STACK_DIR="${TEST_STACK_DIR:-$ROOT/.stack/test}"
    prepare
    start_postgres >/dev/null 2>&1 || start_postgres
    echo "postgres://postgres@127.0.0.1:$(cat "$STACK_DIR/run/postgres.port")"
}

# Stops the test server and removes everything the tests left (their databases, logs, sockets).
cmd_test_postgres_stop() {
    STACK_DIR="${TEST_STACK_DIR:-$ROOT/.stack/test}"
    prepare
    stop_postgres
    rm -rf "$(pg_dir)" "$STACK_DIR"
}

case "${1:-}" in
    deps) cmd_deps ;;
    test-deps) cmd_test_deps ;;
    up) cmd_up ;;
    down) cmd_down ;;
    run) cmd_run ;;
    stop) cmd_stop "${2:-}" ;;
    start) cmd_start "${2:-}" ;;
    test-postgres) cmd_test_postgres ;;
    test-postgres-stop) cmd_test_postgres_stop ;;
    *)
        echo "usage: $0 deps|test-deps|up|down|run|stop SERVICE|start SERVICE|test-postgres|test-postgres-stop" >&2
        exit 2
        ;;
esac
