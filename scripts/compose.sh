#!/usr/bin/env bash
# docker-compose for real (docs/operations.md#docker-compose, docs/testing.md#docker-compose): the
# images of docker-compose.yml made on an engine that cannot pull, the compose test, and the bench's
# project. Used by the Makefile (`make compose-images`, `make compose-test`) and scripts/bench.sh
# (`make bench BENCH_TARGET=compose`); run without arguments for help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
# Where the base is made, the binaries are put for the services' image, and the test keeps its
# .env, its logs and its result.
WORK="$STACK_DIR/compose"
BASE_IMAGE=debian:bookworm-slim
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The compose test's project: its containers, network and volumes carry this name, and nothing of
# it is left when the test ends.
PROJECT="${COMPOSE_TEST_PROJECT:-checkout-compose-test}"
SERVICES=(order payment stock)

log() { printf '\033[1m[compose]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"
# shellcheck source=tests/compose/observability.sh
. "$ROOT/tests/compose/observability.sh"

# ----- what the commands below need -----

# Compose v2 (`docker compose`). Where the engine's packages have only Compose v1 (Debian 12's
# docker-compose 1.29, which has no `up --wait`), Compose v2 is taken from Debian's own package of it
# (Debian 13's docker-compose), verified as apt verifies a package — the release file's signature
# against Debian's archive keys, the package index's hash, the package's hash — and installed as the
# user's Docker CLI plugin.
compose_v2() { docker compose version 2>/dev/null | grep -qE 'version v?2\.'; }

install_compose_v2() {
    local arch tmp index filename sha plugins tool
    for tool in curl gpgv xz dpkg-deb; do
        command -v "$tool" >/dev/null || { apt_install curl gpgv xz-utils dpkg; break; }
    done
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || apt_install debian-archive-keyring
    arch="$(dpkg --print-architecture)"
    tmp="$(mktemp -d)"
    log "installing Compose v2 from Debian's docker-compose package (trixie)"
    curl -fsSL "$DEBIAN_MIRROR/dists/trixie/InRelease" -o "$tmp/InRelease"
    gpgv --quiet --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
        --output "$tmp/Release" "$tmp/InRelease" 2>/dev/null \
        || die "the signature of Debian trixie's release file does not verify"
    index="main/binary-$arch/Packages.xz"
    sha="$(awk -v f="$index" '/^SHA256:/ {s=1; next} /^[^ ]/ {s=0} s && $3 == f {print $1}' "$tmp/Release")"
    curl -fsSL "$DEBIAN_MIRROR/dists/trixie/$index" -o "$tmp/Packages.xz"
    echo "$sha  $tmp/Packages.xz" | sha256sum --check --quiet --status \
        || die "Debian trixie's package index does not match its release file"
    read -r filename sha < <(xz -dc "$tmp/Packages.xz" | awk '
        /^Package: / {p = ($2 == "docker-compose")}
        p && /^Filename: / {f = $2}
        p && /^SHA256: / {s = $2}
        /^$/ && p && f != "" {print f, s; exit}')
    [ -n "${filename:-}" ] || die "Debian trixie has no docker-compose package"
    curl -fsSL "$DEBIAN_MIRROR/$filename" -o "$tmp/docker-compose.deb"
    echo "$sha  $tmp/docker-compose.deb" | sha256sum --check --quiet --status \
        || die "$filename does not match Debian's package index"
    dpkg-deb -x "$tmp/docker-compose.deb" "$tmp/root"
    plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    mkdir -p "$plugins"
    install -m 755 "$tmp/root/usr/libexec/docker/cli-plugins/docker-compose" "$plugins/docker-compose"
    rm -rf "$tmp"
    compose_v2 || die "docker compose does not answer after installing $filename"
    log "$(docker compose version)"
}

cmd_deps() {
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "no container engine answers (docker info)"
    compose_v2 || install_compose_v2
}

# ----- images -----

# debian:bookworm-slim, where the engine lacks it and cannot pull it: debootstrap's minimal Debian 12,
# made like Debian's own slim image (Debian's archive as its sources, no package lists or caches,
# documentation left out of the packages installed later), then `docker import`. Made once; every
# image of the platform starts from it.
cmd_base() {
    cmd_deps
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs="$WORK/base-rootfs"
    as_root rm -rf "$rootfs"
    mkdir -p "$WORK"
    log "making $BASE_IMAGE with debootstrap (minbase, bookworm, $DEBIAN_MIRROR)"
    as_root debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # Debian's archive as the image's sources (debootstrap wrote only the release's suite).
    as_root rm -f "$rootfs/etc/apt/sources.list"
    as_root tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    # Packages installed in the images later leave out their documentation, and apt keeps no
    # downloaded packages or caches.
    as_root tee "$rootfs/etc/dpkg/dpkg.cfg.d/docker" >/dev/null <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
    as_root tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    as_root find "$rootfs/var/cache/apt" "$rootfs/var/lib/apt/lists" -type f -delete
    as_root find "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/info" \
        -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    as_root find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    as_root find "$rootfs/var/log" -type f -delete
    as_root tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$rootfs"
    log "$BASE_IMAGE made ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
}

# Every image the default profile needs: the base, then PostgreSQL, Redis and nginx as the compose
# file builds them, and the services' image — the Dockerfile's runtime stage with the binaries of
# the host's release build (the same build `make up` makes) instead of its Rust build stage, which
# needs a Rust image no registry can give here. Then the compose test's Prometheus, from Debian's
# package (tests/compose/prometheus.Dockerfile).
cmd_images() {
    local step
    step="$(now)"
    cmd_base
    log "base ready in $(since "$step") s"
    step="$(now)"
    log "building the services (make build: the release build make up makes)"
    make -C "$ROOT" --no-print-directory --quiet build PROFILE=release >/dev/null
    log "release build done in $(since "$step") s"
    step="$(now)"
    log "building the PostgreSQL, Redis and nginx images (docker compose build)"
    compose_of_repo build --quiet postgres redis nginx
    log "building the services' image (the Dockerfile's runtime stage and the release binaries)"
    mkdir -p "$WORK/bin"
    for s in "${SERVICES[@]}"; do
        cp "$ROOT/target/release/$s" "$WORK/bin/$s"
    done
    docker build --quiet --target runtime -t checkout-platform-runtime:latest "$ROOT" >/dev/null
    docker build --quiet -t checkout-platform:latest \
        -f "$ROOT/tests/compose/services.Dockerfile" "$WORK/bin" >/dev/null
    docker build --quiet -t checkout-prometheus:latest \
        -f "$ROOT/tests/compose/prometheus.Dockerfile" "$ROOT/tests/compose" >/dev/null
    log "images built in $(since "$step") s:"
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
        | grep -E '^(checkout-|debian:bookworm-slim)' | sed 's/^/  /' >&2
}

# The repository's compose file as an operator runs it (images built, not pulled). Its .env is only
# read for the interpolation of ${...}: a scratch one stands in for an operator's.
compose_of_repo() {
    local env="$WORK/build.env"
    mkdir -p "$WORK"
    cp "$ROOT/.env.example" "$env"
    docker compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" --env-file "$env" "$@"
}

# ----- the compose test -----

# The test's .env, logs and result (COMPOSE_TEST_DIR: another, for a second project run beside).
TEST_DIR="${COMPOSE_TEST_DIR:-$WORK/test}"
# The operators' scenarios (restarts, crashes, a partition, down and up, scale, an upgrade).
# shellcheck source=tests/compose/scenarios.sh
. "$ROOT/tests/compose/scenarios.sh"

# COMPOSE_TEST_OVER: one more override file (the upgrade scenario's older images).
compose_test() {
    docker compose --project-name "$PROJECT" --project-directory "$ROOT" \
        -f "$ROOT/docker-compose.yml" -f "$ROOT/tests/compose/test.yml" \
        ${COMPOSE_TEST_OVER:+-f "$COMPOSE_TEST_OVER"} --env-file "$TEST_DIR/.env" "$@"
}

random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Sets NAME=value in the test's .env (an operator editing .env).
set_env() {
    local name=$1 value=$2 file="$TEST_DIR/.env"
    if grep -q "^$name=" "$file"; then
        sed -i "s|^$name=.*|$name=$value|" "$file"
    else
        echo "$name=$value" >>"$file"
    fi
}

get_env() { sed -n "s/^$1=//p" "$TEST_DIR/.env"; }

# An operator's .env: the example, with every secret generated; two service tokens (order's, and
# one the tests and the bench call with); nginx on the first free port from $1.
generate_env() {
    local order_token
    order_token="svc-$(random_secret)"
    cp "$ROOT/.env.example" "$TEST_DIR/.env"
    set_env POSTGRES_PASSWORD "$(random_secret)"
    set_env SERVICE_TOKENS "$order_token,svc-$(random_secret)"
    set_env ORDER_SERVICE_TOKEN "$order_token"
    set_env ADMIN_TOKENS "adm-$(random_secret)"
    set_env GRAFANA_ADMIN_PASSWORD "$(random_secret)"
    set_env NGINX_PORT "$(free_port "$1")"
}

require_images() {
    local image
    for image in checkout-postgres checkout-redis checkout-nginx checkout-platform; do
        docker image inspect "$image:latest" >/dev/null 2>&1 || die "$image:latest is missing: make compose-images"
    done
}

# What of the project is left on the engine (containers, networks, volumes), one line each.
leftovers() {
    local label="label=com.docker.compose.project=$PROJECT"
    docker ps -a --filter "$label" --format 'container {{.Names}}'
    docker network ls --filter "$label" --format 'network {{.Name}}'
    docker volume ls --filter "$label" --format 'volume {{.Name}}'
}

take_down() {
    # The observability profile's containers too (down leaves a profile's alone unless it is named):
    # Prometheus's, should check_prometheus fail before it removes it.
    compose_test --profile observability down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
    docker rm -f "$PROJECT-setup-check" >/dev/null 2>&1 || true
    docker volume rm "$PROJECT-setup-check" >/dev/null 2>&1 || true
    local left
    left="$(leftovers)"
    [ -z "$left" ] || die "the project left behind: $(echo "$left" | tr '\n' ' ')"
}

report_failure() {
    log "FAILED — docker compose ps:"
    compose_test ps --all >&2 || true
    local s
    for s in postgres redis stock payment order nginx; do
        log "last log lines of $s:"
        compose_test logs --no-color --tail 40 "$s" >&2 2>&1 || true
    done
}

on_exit() {
    local status=$?
    set +e
    [ -z "$LOAD_PID" ] || kill "$LOAD_PID" 2>/dev/null
    remove_upgrade_from
    [ "$status" = 0 ] || report_failure
    log "taking the project down (containers, network, volumes)"
    take_down
    exit "$status"
}

container_of() { compose_test ps --all --quiet "$1"; }
health_of() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(container_of "$1")" 2>/dev/null || echo missing; }
address_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container_of "$1")"; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
# Whether fewer than $2 seconds have passed since $1.
within() { awk -v a="$1" -v b="$(now)" -v limit="$2" 'BEGIN {exit !(b - a < limit)}'; }

postgres_server() {
    echo "postgres://checkout:$(get_env POSTGRES_PASSWORD)@127.0.0.1:$(compose_test port postgres 5432 | sed 's/.*://')"
}

# The PostgreSQL image's health check must not pass before the server serves what the services
# need over the network (the classic: a first start's setup server answering the health check):
# at the first moment it reports healthy, a connection over TCP with the password to each service's
# database must succeed.
check_postgres_healthy_means_serving() {
    local started=$1 up_pid=$2
    while [ "$(health_of postgres)" != healthy ]; do
        within "$started" 120 || die "postgres is not healthy after 120 s"
        kill -0 "$up_pid" 2>/dev/null || return 0 # up failed: it says why
        sleep 0.2
    done
    local server db
    server="$(postgres_server)"
    for db in order payment stock; do
        psql "$server/$db" -Atqc 'SELECT 1' >/dev/null 2>&1 \
            || die "postgres reported healthy, but $db does not answer over TCP yet"
    done
    log "postgres healthy after $(since "$started") s, and each database answers over TCP at once"
}

# The black-box tests and the invariant checker are built as `make test` builds them (the whole
# workspace: a build of the tests package alone unifies features otherwise, and compiles it again).
build_tests() {
    (cd "$ROOT" && cargo build --quiet --bins && cargo test --quiet --workspace --test api --no-run)
}

black_box() {
    local filter=$1 settings=$2
    shift 2
    local url tokens admin
    url="http://127.0.0.1:$(get_env NGINX_PORT)"
    tokens="$(get_env SERVICE_TOKENS)"
    admin="$(get_env ADMIN_TOKENS)"
    (cd "$ROOT" && TEST_STACK_URL="$url" TEST_SERVICE_TOKENS="$tokens" TEST_ADMIN_TOKEN="${admin%%,*}" \
        TEST_STACK_SETTINGS="$settings" cargo test --quiet --workspace --test api -- \
        --test-threads="${TEST_THREADS:-4}" "$filter" "$@")
}

invariants() {
    "${CARGO_TARGET_DIR:-$ROOT/target}/debug/invariants" --server "$(postgres_server)" "$@"
}

started_at() { docker inspect -f '{{.State.StartedAt}}' "$(container_of "$1")"; }

# Waits until nginx answers 200 for /$1/health/ready (at most 15 s).
until_reachable() {
    local service=$1 url
    url="http://127.0.0.1:$(get_env NGINX_PORT)/$service/health/ready"
    for _ in $(seq 75); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    die "nginx does not reach $service at its new address ($(address_of "$service")) within 15 s"
}

follow_new_addresses() {
    local settings=$1 setting nginx_started order_before payment_before order_after payment_after
    nginx_started="$(started_at nginx)"
    order_before="$(address_of order)"
    payment_before="$(address_of payment)"
    log "stopping order and payment (order $order_before, payment $payment_before)"
    compose_test stop --timeout 20 order payment >/dev/null 2>&1
    for setting in ${settings//,/ }; do set_env "${setting%%=*}" "${setting#*=}"; done
    compose_test up --detach --no-deps --no-build order >/dev/null 2>&1
    order_after="$(address_of order)"
    [ "$order_after" != "$order_before" ] \
        || die "order came back on its old address $order_before: nothing to follow"
    local back
    back="$(now)"
    until_reachable order
    [ "$(started_at nginx)" = "$nginx_started" ] || die "nginx was restarted: it did not follow by itself"
    log "order back on $order_after, reached through the same nginx $(since "$back") s after it started"
    # payment is still stopped (its last address is order's now): nginx answers for it.
    local answer
    answer="$(curl -sS -w ' %{http_code}' "http://127.0.0.1:$(get_env NGINX_PORT)/payment/health/ready")"
    case "$answer" in
        *'"code":"service_unavailable"'*' 503') ;;
        *) die "with payment stopped, nginx answered: $answer" ;;
    esac
    compose_test up --detach --wait --no-build >"$TEST_DIR/up-again.log" 2>&1 \
        || { cat "$TEST_DIR/up-again.log" >&2; die "docker compose up --wait (again) failed"; }
    payment_after="$(address_of payment)"
    until_reachable payment
    log "payment back on $payment_after with $settings"
    echo "order $order_before -> $order_after, payment $payment_before -> $payment_after" >"$TEST_DIR/addresses"
}

# A first start of PostgreSQL on an empty volume that is cut short while it sets up (here: an
# init script that fails the first time) leaves no mark: the next start sets up again and serves.
check_postgres_setup_finishes_after_a_cut() {
    local volume="$PROJECT-setup-check" container="$PROJECT-setup-check" script="$TEST_DIR/cut-once.sh"
    cat >"$script" <<'SCRIPT'
# Fails the first time it runs on a volume (compose test, scripts/compose.sh).
[ -e "$PGDATA/.cut-once" ] && exit 0
touch "$PGDATA/.cut-once"
exit 1
SCRIPT
    chmod 644 "$script"
    docker volume create --label "com.docker.compose.project=$PROJECT" "$volume" >/dev/null
    local run=(--name "$container" --label "com.docker.compose.project=$PROJECT"
        -v "$volume:/var/lib/postgresql/data"
        -v "$script:/docker-entrypoint-initdb.d/zz-cut-once.sh:ro"
        -e POSTGRES_USER=checkout -e POSTGRES_PASSWORD=setup-check checkout-postgres:latest)
    if docker run --rm "${run[@]}" >"$TEST_DIR/setup-cut.log" 2>&1; then
        die "PostgreSQL's first start did not stop when its setup failed"
    fi
    docker run -d "${run[@]}" >/dev/null
    local started
    started="$(now)"
    until [ "$(docker inspect -f '{{.State.Health.Status}}' "$container")" = healthy ]; do
        within "$started" 60 || die "PostgreSQL is not healthy after a cut setup: $(docker logs "$container" 2>&1 | tail -5)"
        sleep 0.2
    done
    docker exec "$container" psql -U checkout -d stock -Atqc 'SELECT 1' >/dev/null \
        || die "after a cut setup, PostgreSQL is healthy but the stock database is missing"
    docker rm -f "$container" >/dev/null
    docker volume rm "$volume" >/dev/null
    log "a first PostgreSQL start cut short during its setup is finished by the next"
}

# The services' logs are JSON lines (docs/operations.md: `docker compose logs order`). (Compose
# 2.26 begins every line it prints with an "erase line" sequence, even into a pipe: not the
# services'.)
check_logs_are_json_lines() {
    local s
    for s in order payment stock; do
        compose_test logs --no-color --no-log-prefix "$s" | python3 -c '
import json, sys
lines = [l.removeprefix("\x1b[2K") for l in sys.stdin if l.strip()]
assert lines, "no log lines"
for l in lines:
    json.loads(l)
' || die "docker compose logs $s: not JSON lines"
    done
}

# test: everything below, then the operators' scenarios; `test scenarios`: the stack and the
# scenarios alone (`make compose-scenarios`).
cmd_test() {
    local only=${1:-}
    cmd_deps
    command -v psql >/dev/null || apt_install postgresql-client
    require_images
    mkdir -p "$TEST_DIR"
    build_tests
    wanted upgrade && build_upgrade_from
    # From nothing: whatever an earlier run that was killed left goes first.
    take_down
    trap on_exit EXIT
    # Which command failed, when one does (the functions' too: set -E).
    set -E
    trap 'log "failed: $BASH_COMMAND (${FUNCNAME[0]:-main}, line $LINENO)"' ERR
    # Interrupted or terminated, it still takes the project down (the EXIT trap runs on exit).
    trap 'exit 130' INT
    trap 'exit 143' TERM

    generate_env 28080

    log "docker compose up --wait, from nothing (project $PROJECT)"
    local started up_pid
    started="$(now)"
    compose_test up --detach --wait --no-build >"$TEST_DIR/up.log" 2>&1 &
    up_pid=$!
    check_postgres_healthy_means_serving "$started" "$up_pid"
    wait "$up_pid" || { cat "$TEST_DIR/up.log" >&2; die "docker compose up --wait failed"; }
    local healthy_after
    healthy_after="$(since "$started")"
    log "every service healthy $healthy_after s after docker compose up"
    compose_test ps --format '  {{.Service}}: {{.Status}}' >&2
    check_logs_are_json_lines
    FRESH_ROWS="$(rows_in_use)"
    if [ "$only" = scenarios ]; then
        run_scenarios
        log "the scenarios passed in $(since "$started") s"
        return 0
    fi
    check_postgres_setup_finishes_after_a_cut
    check_prometheus

    # 1. Checkouts alone: order is the only caller of stock and payment, so every invariant of the
    #    chaos harness's checker must hold afterwards, those tying stock and payment to order's
    #    orders included.
    log "the checkout's black-box tests through compose's nginx"
    local tests_started
    tests_started="$(now)"
    black_box checkout::black_box:: ""
    log "the invariants on compose's databases, order the only caller of stock and payment"
    invariants

    # 2. Every other black-box test but the transfers', then schemathesis alone (it fuzzes item ids
    #    into other tests' items, whose stock those tests count). They call stock's and payment's
    #    service endpoints themselves.
    local schemathesis=conformance::black_box::schemathesis_finds_nothing_on_any_service
    log "the other black-box tests through compose's nginx"
    black_box black_box:: "" --skip checkout::black_box:: --skip transfers::black_box:: \
        --skip "$schemathesis"
    log "schemathesis through compose's nginx"
    black_box "$schemathesis" "" --exact

    # 3. nginx follows a service that comes back on another address: order and payment stopped,
    #    order started alone (it takes the first free address: payment's), payment reconfigured
    #    as an operator does it (.env edited, `up` again: recreated with the new settings).
    local settings="SPLIT_HOLD_SECS=0,SPLIT_RELEASE_INTERVAL_MS=100,TRANSFER_INTERVAL_MS=100"
    follow_new_addresses "$settings"

    # 4. The transfers' black-box tests, on those settings (money released at once).
    log "the transfers' black-box tests ($settings)"
    black_box transfers::black_box:: "$settings"
    local tests_s
    tests_s="$(since "$tests_started")"

    # 5. Everything the suite did, checked: every invariant that holds whoever calls stock and
    #    payment (the ledger's all among them).
    log "the invariants on compose's databases after the whole suite"
    invariants --other-callers

    # 6. What operators do to the running stack, each under load (tests/compose/scenarios.sh).
    run_scenarios

    cat >"$TEST_DIR/result.json" <<EOF
{"healthy_after_s": $healthy_after, "black_box_and_checks_s": $tests_s, "addresses": "$(cat "$TEST_DIR/addresses")"}
EOF
    log "compose test passed in $(since "$started") s: healthy $healthy_after s after up; result in $TEST_DIR/result.json"
}

# ----- the bench's project (scripts/bench.sh: `make bench BENCH_TARGET=compose`) -----

# bench-up [NAME=value...]: the bench's project from nothing, from the images, as an operator brings
# it up: a generated .env (nginx on the first free port from 19080), the settings given, up --wait.
cmd_bench_up() {
    cmd_deps
    command -v psql >/dev/null || apt_install postgresql-client
    require_images
    mkdir -p "$TEST_DIR"
    take_down
    generate_env 19080
    local setting
    for setting in "$@"; do set_env "${setting%%=*}" "${setting#*=}"; done
    log "docker compose up --wait (project $PROJECT)"
    compose_test up --detach --wait --no-build >"$TEST_DIR/up.log" 2>&1 \
        || { cat "$TEST_DIR/up.log" >&2; report_failure; die "docker compose up --wait failed"; }
}

# bench-set SERVICE NAME=value...: the settings written in .env and SERVICE recreated with them,
# alone (an operator's edit and `up`), until it is healthy and nginx reaches it.
cmd_bench_set() {
    local service=$1 setting
    shift
    for setting in "$@"; do set_env "${setting%%=*}" "${setting#*=}"; done
    compose_test up --detach --wait --no-deps --no-build "$service" >"$TEST_DIR/set.log" 2>&1 \
        || { cat "$TEST_DIR/set.log" >&2; die "docker compose up $service failed"; }
    until_reachable "$service"
}

case "${1:-}" in
    deps) cmd_deps ;;
    base) cmd_base ;;
    images) cmd_images ;;
    test) cmd_test "${@:2}" ;;
    bench-up | bench-set | bench-postgres-url | bench-down)
        # Only ever the bench's project (COMPOSE_BENCH_PROJECT), with its .env in COMPOSE_BENCH_DIR.
        PROJECT="${COMPOSE_BENCH_PROJECT:-checkout-bench}"
        TEST_DIR="${COMPOSE_BENCH_DIR:-$WORK/bench}"
        case "$1" in
            bench-up) cmd_bench_up "${@:2}" ;;
            bench-set) cmd_bench_set "${@:2}" ;;
            bench-postgres-url) postgres_server ;;
            bench-down) take_down ;;
        esac
        ;;
    *)
        echo "usage: $0 deps|base|images|test [scenarios]|bench-up [NAME=value...]|bench-set SERVICE NAME=value...|bench-postgres-url|bench-down" >&2
        exit 2
        ;;
esac
