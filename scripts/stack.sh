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
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"

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
        apt_install "${missing[@]}"
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
    command -v python3 >/dev/null || apt_install python3
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        apt_install python3-venv
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION in $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
        || die "schemathesis could not be installed"
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

# Whether a process runs. A process killed a moment ago may not be reaped yet: `kill -0` still
# succeeds on it, but it is a zombie (state Z) and gone for every purpose here.
alive() {
    local pid=${1:-} state
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/stat" ]; then
        state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
    else
        state="$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)"
    fi
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

pid_of() { cat "$STACK_DIR/run/$1.pid" 2>/dev/null || true; }

# Instances (`make up INSTANCES=n`): instance 1 of a service is named after it (order.pid,
# order.log, ORDER_PORT); instance i > 1 is order-i, on a port of its own chosen at `make up`.
# The count is the stack's, recorded by `make up`: every other command (stop, start, down, the
# state files) keeps it, whatever INSTANCES its shell has.
instances() {
    local n
    n="$(cat "$STACK_DIR/run/instances" 2>/dev/null || echo 1)"
    [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "the stack's count of instances ($STACK_DIR/run/instances) is not a number: '$n'"
    echo "$n"
}

# Whether any part of the stack runs.
stack_runs() {
    local f
    for f in "$STACK_DIR"/run/*.pid; do
        [ -f "$f" ] && alive "$(cat "$f" 2>/dev/null)" && return 0
    done
    return 1
}

# What `make up` starts: INSTANCES=n when given; else, on a running stack, its count (an `up` again
# changes nothing); else one of each — not the count of an earlier `make up INSTANCES=n`.
instances_to_start() {
    local n
    if [ -n "${INSTANCES:-}" ]; then
        n="$INSTANCES"
    elif stack_runs; then
        n="$(instances)"
    else
        n=1
    fi
    [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "INSTANCES must be a number from 1 to 99, not '$n'"
    echo "$n"
}

instance_name() { if [ "$2" = 1 ]; then echo "$1"; else echo "$1-$2"; fi; }

instance_port() {
    local name=$1 i=$2
    if [ "$i" = 1 ]; then service_port "$name"; return; fi
    cat "$STACK_DIR/run/$name-$i.port" 2>/dev/null || die "$name instance $i has no port (make up INSTANCES=n)"
}

# Chooses every instance's port at `make up` (instance 1 keeps its service's port).
choose_ports() {
    local n=$1 name i port next
    for name in "${SERVICES[@]}"; do
        next=$(( $(service_port "$name") + 100 ))
        for i in $(seq 2 "$n"); do
            port="$(cat "$STACK_DIR/run/$name-$i.port" 2>/dev/null || true)"
            if [ -z "$port" ]; then
                port="$(free_port "$next")"
                echo "$port" >"$STACK_DIR/run/$name-$i.port"
            fi
            next=$((port + 1))
        done
    done
}

# Every instance's URL, comma-separated: how order reaches all of stock and payment.
instance_urls() {
    local name=$1 i urls=""
    for i in $(seq 1 "$(instances)"); do
        urls="${urls:+$urls,}http://127.0.0.1:$(instance_port "$name" "$i")"
    done
    echo "$urls"
}

# nginx's `server` lines for a service's upstream. No instance is ever taken out (max_fails=0):
# a request that finds one refusing connections moves on to the next at once (a refused connection
# on this machine costs microseconds), and one restarted is used again from its first request.
# nginx's default would take an instance out for 10 s after one failure, and with each of two
# instances restarted in turn, both could be out at once.
server_lines() {
    local name=$1 i lines=""
    for i in $(seq 1 "$(instances)"); do
        lines="${lines}server 127.0.0.1:$(instance_port "$name" "$i") max_fails=0; "
    done
    echo "$lines"
}

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
        -e "s|\${ORDER_SERVERS}|$(server_lines order)|g" \
        -e "s|\${PAYMENT_SERVERS}|$(server_lines payment)|g" \
        -e "s|\${STOCK_SERVERS}|$(server_lines stock)|g" \
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

# The stack's tokens live in $STACK_DIR/tokens.env: `make up` writes there the ones it is given
# (SERVICE_TOKENS, ADMIN_TOKENS) or generates them, and every later `make start` uses them unless
# that start is given its own. A service started with other tokens than the others would refuse
# their calls (401), and a refused compensation is retried until someone notices.
save_tokens() {
    local s="${SERVICE_TOKENS:-}" a="${ADMIN_TOKENS:-}" kept_s="" kept_a=""
    if [ -f "$STACK_DIR/tokens.env" ]; then
        kept_s="$(sed -n 's/^SERVICE_TOKENS=//p' "$STACK_DIR/tokens.env")"
        kept_a="$(sed -n 's/^ADMIN_TOKENS=//p' "$STACK_DIR/tokens.env")"
    fi
    [ -n "$s" ] || s="${kept_s:-svc-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
    [ -n "$a" ] || a="${kept_a:-adm-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
    (umask 077 && printf 'SERVICE_TOKENS=%s\nADMIN_TOKENS=%s\n' "$s" "$a" >"$STACK_DIR/tokens.env.tmp")
    mv "$STACK_DIR/tokens.env.tmp" "$STACK_DIR/tokens.env"
}

tokens() {
    [ -f "$STACK_DIR/tokens.env" ] || save_tokens
    local s a
    s="${SERVICE_TOKENS:-$(sed -n 's/^SERVICE_TOKENS=//p' "$STACK_DIR/tokens.env")}"
    a="${ADMIN_TOKENS:-$(sed -n 's/^ADMIN_TOKENS=//p' "$STACK_DIR/tokens.env")}"
    export SERVICE_TOKENS="$s" ADMIN_TOKENS="$a"
}

service_port() {
    case "$1" in order) echo "$ORDER_PORT" ;; payment) echo "$PAYMENT_PORT" ;; stock) echo "$STOCK_PORT" ;; esac
}

start_service() {
    local name=$1 i=${2:-1} id port bin overrides stock_urls payment_urls
    id="$(instance_name "$name" "$i")"
    alive "$(pid_of "$id")" && return 0
    port="$(instance_port "$name" "$i")"
    stock_urls="$(instance_urls stock)"
    payment_urls="$(instance_urls payment)"
    bin="$ROOT/target/$PROFILE/$name"
    [ -x "$bin" ] || die "$bin is not built (make build)"
    tokens
    overrides="$(env | grep -E "$SERVICE_VARS" || true)"
    (
        # What `make up` was given, then what this start is given.
        # shellcheck disable=SC2163 # each line is NAME=value, exported as it is
        while IFS= read -r line; do [ -n "$line" ] && export "$line"; done \
            < <(cat "$STACK_DIR/service.env" 2>/dev/null; printf '%s\n' "$overrides")
        export PORT="$port" HOST=127.0.0.1
        # PostgreSQL and Redis run on this machine: the services reach them over their Unix
        # sockets, which cost the kernel less per round trip than TCP over loopback.
        DATABASE_URL="postgres://postgres@localhost:$(cat "$STACK_DIR/run/postgres.port")/$name?host=$(pg_dir)"
        export DATABASE_URL
        export REDIS_URL="redis+unix://$STACK_DIR/redis/redis.sock"
        export STOCK_URL="$stock_urls" PAYMENT_URL="$payment_urls"
        export SERVICE_TOKEN="${SERVICE_TOKENS%%,*}"
        exec setsid "$bin" >>"$STACK_DIR/logs/$id.log" 2>&1 </dev/null
    ) &
    echo $! >"$STACK_DIR/run/$id.pid"
}

wait_ready() {
    local name=$1 i=${2:-1} id port
    id="$(instance_name "$name" "$i")"
    port="$(instance_port "$name" "$i")"
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && return 0
        alive "$(pid_of "$id")" || { tail -20 "$STACK_DIR/logs/$id.log" >&2; die "$id exited"; }
        sleep 0.1
    done
    tail -20 "$STACK_DIR/logs/$id.log" >&2
    die "$id is not ready after 30 s"
}

# The instances a command acts on: INSTANCE=i, or all of them.
selected_instances() {
    local n
    n="$(instances)"
    if [ -n "${INSTANCE:-}" ]; then
        if ! [[ "$INSTANCE" =~ ^[0-9]+$ ]] || [ "$INSTANCE" -lt 1 ] || [ "$INSTANCE" -gt "$n" ]; then
            die "INSTANCE must be a number from 1 to $n"
        fi
        echo "$INSTANCE"
    else
        seq 1 "$n"
    fi
}

stop_pid() {
    local name=$1 pid
    pid="$(pid_of "$name")"
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
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
        local p i pids n
        n="$(instances)"
        for p in order payment stock redis postgres nginx; do
            echo "$(echo "$p" | tr '[:lower:]' '[:upper:]')_PID=$(pid_of "$p")"
        done
        # Every instance, instance 1 first (a stopped one has an empty place).
        for p in order payment stock; do
            pids=""
            for i in $(seq 1 "$n"); do
                [ "$i" = 1 ] || pids="$pids,"
                pids="$pids$(pid_of "$(instance_name "$p" "$i")")"
            done
            echo "$(echo "$p" | tr '[:lower:]' '[:upper:]')_PIDS=$pids"
            echo "$(echo "$p" | tr '[:lower:]' '[:upper:]')_URLS=$(instance_urls "$p")"
        done
        echo "INSTANCES=$n"
    } >"$f.tmp"
    mv "$f.tmp" "$f"
}

prepare() {
    mkdir -p "$STACK_DIR/run" "$STACK_DIR/logs"
}

cmd_up() {
    prepare
    local n s i
    n="$(instances_to_start)"
    if stack_runs && [ "$n" != "$(instances)" ]; then
        die "the stack runs $(instances) instance(s) of each service, not $n: make down first"
    fi
    echo "$n" >"$STACK_DIR/run/instances"
    choose_ports "$n"
    env | grep -E "$SERVICE_VARS" >"$STACK_DIR/service.env" || true
    save_tokens
    start_postgres
    start_redis
    # Instance 1 of each service first, alone: it runs the migrations, which the others then find
    # done (they would wait on the migrator's lock anyway).
    for s in "${SERVICES[@]}"; do start_service "$s" 1; done
    for s in "${SERVICES[@]}"; do wait_ready "$s" 1; done
    for i in $(seq 2 "$n"); do
        for s in "${SERVICES[@]}"; do start_service "$s" "$i"; done
    done
    for i in $(seq 2 "$n"); do
        for s in "${SERVICES[@]}"; do wait_ready "$s" "$i"; done
    done
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
    local s f
    stop_pid nginx
    for s in order payment stock; do
        for f in "$STACK_DIR/run/$s.pid" "$STACK_DIR/run/$s"-*.pid; do
            [ -f "$f" ] && stop_pid "$(basename "$f" .pid)"
        done
    done
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
        redis | nginx) stop_pid "$name" ;;
        order | payment | stock)
            local i
            for i in $(selected_instances); do stop_pid "$(instance_name "$name" "$i")"; done
            ;;
        *) die "unknown service $name" ;;
    esac
    write_env
    log "$name${INSTANCE:+ instance $INSTANCE} stopped"
}

cmd_start() {
    local name=${1:?SERVICE=order|payment|stock|redis|postgres|nginx}
    prepare
    case "$name" in
        postgres) start_postgres ;;
        redis) start_redis ;;
        nginx) start_nginx ;;
        order | payment | stock)
            local i
            for i in $(selected_instances); do start_service "$name" "$i"; done
            for i in $(selected_instances); do wait_ready "$name" "$i"; done
            ;;
        *) die "unknown service $name" ;;
    esac
    write_env
    log "$name${INSTANCE:+ instance $INSTANCE} started"
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
