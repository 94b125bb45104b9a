# shellcheck shell=bash
# What operators do to a running compose stack, each under load (docs/testing.md#operators-scenarios):
# restarts, crashes, a partition and a hang, down and up, scale, an upgrade. Sourced by
# scripts/compose.sh, whose helpers it uses (compose_test, container_of, get_env, invariants, ...);
# `run_scenarios` runs them all on the test's project, which must be up.
#
# Each scenario runs the scenario load (tests/src/bin/scenario-load.rs: keyed checkouts and partial
# refunds, every key retried until its final answer, then sent again), disrupts the stack a few
# seconds in, ends the load a few seconds after the stack is whole again, and checks that every key
# got one final answer the checkout documents, that every order is terminal and that every
# invariant of the chaos harness holds on compose's databases (the ledger's included). Its figures
# go to $TEST_DIR/scenarios/NAME.json, and one line each to $TEST_DIR/scenarios/summary.txt.

# Where the figures go (set by run_scenarios: $TEST_DIR/scenarios).
SCENARIO_DIR=""
# The older commit the upgrade starts from: before the attempts' and the rules' migrations (payment
# 0007 and 0008, stock 0003, order 0004), with the compose stack of the time.
UPGRADE_FROM="${UPGRADE_FROM:-ed6901f}"
LOAD_PID=""
LOAD_NAME=""

scenario_load() { "${CARGO_TARGET_DIR:-$ROOT/target}/debug/scenario-load" "$@"; }
nginx_url() { echo "http://127.0.0.1:$(get_env NGINX_PORT)"; }

# Starts the load in the background, and waits until its setup is done and it has run a few seconds.
load_begin() {
    LOAD_NAME=$1
    local tokens admin started log="$SCENARIO_DIR/$1.log"
    tokens="$(get_env SERVICE_TOKENS)"
    admin="$(get_env ADMIN_TOKENS)"
    rm -f "$SCENARIO_DIR/$1.stop" "$SCENARIO_DIR/$1.json"
    scenario_load --url "$(nginx_url)" --admin-token "${admin%%,*}" --service-token "${tokens##*,}" \
        --clients "${SCENARIO_CLIENTS:-8}" --stop-file "$SCENARIO_DIR/$1.stop" \
        --out "$SCENARIO_DIR/$1.json" --name "$1" >"$log" 2>&1 &
    LOAD_PID=$!
    started="$(now)"
    until grep -q 'clients on items' "$log" 2>/dev/null; do
        kill -0 "$LOAD_PID" 2>/dev/null || { cat "$log" >&2; die "$1: the load stopped during its setup"; }
        within "$started" 60 || die "$1: the load's setup did not finish within 60 s"
        sleep 0.2
    done
    sleep "${SCENARIO_WARM_SECS:-3}"
}

# Ends the load a few seconds after the disruption ($1 to $2, seconds since the epoch) and waits for
# every key's final answer and replay; fails when the load found a problem.
load_end() {
    local from=$1 to=$2 stop="$SCENARIO_DIR/$LOAD_NAME.stop"
    sleep "${SCENARIO_AFTER_SECS:-3}"
    printf '{"from": %s, "to": %s}\n' "$from" "$to" >"$stop.tmp"
    mv "$stop.tmp" "$stop"
    if ! wait "$LOAD_PID"; then
        tail -20 "$SCENARIO_DIR/$LOAD_NAME.log" >&2
        die "$LOAD_NAME: $(json_field "$LOAD_NAME" problems)"
    fi
    LOAD_PID=""
}

# A field of a scenario's figures (a Python expression over `r`, the figures).
json_field() {
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$SCENARIO_DIR/$1.json" "r[\"$2\"]" 2>/dev/null || echo "?"
}
json_eval() {
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$SCENARIO_DIR/$1.json" "$2"
}

# Every order terminal, every refund settled, every invariant (order the only caller of stock and
# payment), and no saga step of order's still retrying; then the scenario's line in the summary
# ($2: what the scenario itself measured, e.g. how long its container took to stop).
scenario_checks() {
    local name=$1 extra=${2:-}
    invariants --quiet-timeout 90 >"$SCENARIO_DIR/$name.invariants" 2>&1 \
        || { cat "$SCENARIO_DIR/$name.invariants" >&2; die "$name: the invariants do not hold"; }
    local id retrying
    for id in $(container_of order); do
        retrying="$(curl -fsS "http://$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id"):3131/metrics" \
            | awk '/^saga_steps_retrying/ {s += $NF} END {print s + 0}')"
        [ "$retrying" = 0 ] || die "$name: order still retries $retrying saga steps once quiet"
    done
    local line
    line="$(json_eval "$name" '
"%-22s %5.1f s disrupted; gap %s; %d keys: %d completed (%s during, %s after), refused %s; %d refunds; answers %s" % (
    r["name"], r["disruption_s"] or 0,
    "none" if r["unavailable_answers"] == 0 else "%.1f s (%d answers, last %.1f s after the start)" % (
        r["unavailable_span_s"], r["unavailable_answers"], r["unavailable_last_s"]),
    r["keys"], r["completed"], r["completed_during_disruption"], r["completed_after_disruption"],
    dict(r["refused"]) or "none", sum(r["refunds"].values()),
    ", ".join("%s: %d" % kv for kv in r["answers"].items()))')"
    echo "$line${extra:+; $extra}" | tee -a "$SCENARIO_DIR/summary.txt" >&2
}

# The gap of a restart lasts no longer than the restart itself (up to the moment the service is
# reached again through nginx), give or take nginx's one-second look-up of new addresses.
check_gap_within_disruption() {
    local name=$1
    json_eval "$name" 'r["unavailable_last_s"] is None or r["unavailable_last_s"] <= r["disruption_s"] + 1.5' \
        | grep -qx True || die "$name: answers said unavailable until $(json_field "$name" unavailable_last_s) s, after the restart ($(json_field "$name" disruption_s) s)"
}

# How the container $1 stopped between $2 and now (docker's events): "stopped in N s, exit C";
# fails when it had to be killed (SIGKILL at the end of the stop grace period).
how_it_stopped() {
    local id=$1 from=$2 until kills dies
    until="$(date +%s.%N)"
    kills="$(docker events --since "$from" --until "$until" --filter "container=$id" --filter event=kill \
        --format '{{.TimeNano}} {{index .Actor.Attributes "signal"}}')"
    dies="$(docker events --since "$from" --until "$until" --filter "container=$id" --filter event=die \
        --format '{{.TimeNano}} {{index .Actor.Attributes "exitCode"}}')"
    echo "$kills" | awk '$2 == "9" {bad = 1} END {exit bad}' \
        || die "the container was killed at the end of its stop grace period: $kills"
    awk -v k="$(echo "$kills" | head -1)" -v d="$(echo "$dies" | head -1)" 'BEGIN {
        split(k, kill, " "); split(d, died, " ")
        printf "stopped in %.1f s (signal %s), exit %s", (died[1] - kill[1]) / 1e9, kill[2], died[2] }'
}

healthy_all() {
    local id
    for id in $(container_of "$1"); do
        [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")" \
            = healthy ] || [ "$(docker inspect -f '{{.State.Health}}' "$id")" = "<nil>" ] || return 1
    done
}

until_healthy() {
    local service=$1 started
    started="$(now)"
    until healthy_all "$service"; do
        within "$started" 120 || die "$service is not healthy within 120 s"
        sleep 0.2
    done
}

# Until nginx answers at all (its own restart).
until_nginx_answers() {
    local started
    started="$(now)"
    until curl -sS -o /dev/null "$(nginx_url)/" 2>/dev/null; do
        within "$started" 60 || die "nginx does not answer within 60 s"
        sleep 0.1
    done
}

# 1. `docker compose restart` of each service and of nginx.
scenario_restart() {
    local service=$1 name="restart-$1" id from to
    id="$(container_of "$service")"
    load_begin "$name"
    from="$(now)"
    compose_test restart "$service" >/dev/null 2>&1
    if [ "$service" = nginx ]; then until_nginx_answers; else until_reachable "$service"; fi
    to="$(now)"
    local stopped
    stopped="$(how_it_stopped "$id" "$from")"
    load_end "$from" "$to"
    check_gap_within_disruption "$name"
    scenario_checks "$name" "$stopped"
}

main_pid() { docker inspect -f '{{.State.Pid}}' "$1"; }
restarts_of() { docker inspect -f '{{.RestartCount}}' "$1"; }

# Waits until the container $1, killed with $2 restarts before, has been restarted by its policy.
until_restarted() {
    local id=$1 before=$2 started
    started="$(now)"
    until [ "$(restarts_of "$id")" -gt "$before" ] && [ "$(docker inspect -f '{{.State.Running}}' "$id")" = true ]; do
        within "$started" 60 || die "the restart policy did not restart $id within 60 s"
        sleep 0.1
    done
}

# 2. The service's process killed from the host: the restart policy brings it back, recovery finishes
#    the orders.
scenario_kill() {
    local service=$1 name="kill-$1" id before from to
    id="$(container_of "$service")"
    load_begin "$name"
    before="$(restarts_of "$id")"
    from="$(now)"
    kill -9 "$(main_pid "$id")"
    until_restarted "$id" "$before"
    until_healthy "$service"
    until_reachable "$service"
    to="$(now)"
    load_end "$from" "$to"
    scenario_checks "$name" "restarted by its policy"
}

redis_keys() { docker exec "$(container_of redis)" redis-cli DBSIZE 2>/dev/null | tr -d '\r'; }

# 2. Redis killed with its data lost (the append-only file gone with it): it comes back empty; no
#    checkout is charged twice (the idempotency records lost, order's own record of the key answers).
scenario_redis_lost() {
    local name=redis-data-lost id before from to keys_before keys_after
    id="$(container_of redis)"
    load_begin "$name"
    before="$(restarts_of "$id")"
    keys_before="$(redis_keys)"
    from="$(now)"
    docker exec "$id" sh -c 'rm -rf /data/* /data/.[!.]*' >/dev/null 2>&1 || true
    kill -9 "$(main_pid "$id")"
    until_restarted "$id" "$before"
    keys_after="$(redis_keys)"
    until_healthy redis
    to="$(now)"
    load_end "$from" "$to"
    [ "${keys_after:-0}" -lt "${keys_before:-0}" ] \
        || die "$name: Redis came back with $keys_after keys of $keys_before: its data was not lost"
    scenario_checks "$name" "Redis keys $keys_before before, $keys_after after its restart"
}

services_started() {
    local s
    for s in order payment stock; do started_at "$s"; done | tr '\n' ' '
}

# 2. PostgreSQL's server killed (SIGKILL to its postmaster): its restart policy brings it back
#    through crash recovery; the services recover without being restarted, answering 503 with
#    Retry-After meanwhile.
scenario_postgres_crash() {
    local name=postgres-crash id before from to services
    id="$(container_of postgres)"
    services="$(services_started)"
    load_begin "$name"
    before="$(restarts_of "$id")"
    from="$(now)"
    kill -9 "$(main_pid "$id")"
    until_restarted "$id" "$before"
    until_healthy postgres
    until_reachable order
    to="$(now)"
    load_end "$from" "$to"
    [ "$(services_started)" = "$services" ] || die "$name: a service was restarted"
    [ "$(json_field "$name" unavailable_without_retry_after)" = 0 ] \
        || die "$name: $(json_field "$name" unavailable_without_retry_after) answers 503 without Retry-After"
    scenario_checks "$name" "no service restarted; every 503 with Retry-After"
}

# 3. payment cut off from the network for several seconds, then connected again (under its names).
scenario_partition() {
    local name=partition-payment id network aliases from to
    id="$(container_of payment)"
    network="$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$id")"
    aliases="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{join .Aliases " "}}{{end}}' "$id")"
    local alias_args=() a
    for a in $aliases; do alias_args+=(--alias "$a"); done
    load_begin "$name"
    from="$(now)"
    docker network disconnect "$network" "$id"
    sleep "${SCENARIO_CUT_SECS:-6}"
    docker network connect "${alias_args[@]}" "$network" "$id"
    until_reachable payment
    to="$(now)"
    load_end "$from" "$to"
    scenario_checks "$name" "cut ${SCENARIO_CUT_SECS:-6} s"
}

# 3. payment paused (a hang: it holds its connections and answers nothing) for several seconds.
scenario_pause() {
    local name=pause-payment id from to
    id="$(container_of payment)"
    load_begin "$name"
    from="$(now)"
    docker pause "$id" >/dev/null
    sleep "${SCENARIO_CUT_SECS:-6}"
    docker unpause "$id" >/dev/null
    until_reachable payment
    to="$(now)"
    load_end "$from" "$to"
    scenario_checks "$name" "paused ${SCENARIO_CUT_SECS:-6} s"
}

# Every row of the tables that hold orders, stock, payments, the ledger and balances, as one digest
# per database (the rows in a fixed order): equal digests, equal data.
data_digest() {
    local server db tables query
    server="$(postgres_server)"
    for db in order stock payment; do
        case $db in
            order) tables="orders order_lines order_events" ;;
            stock) tables="items reservations reservation_lines restocks" ;;
            payment) tables="payments refunds allocations ledger_entries ledger_legs balances recipients split_rules" ;;
        esac
        query=""
        for t in $tables; do
            query="$query${query:+ UNION ALL }SELECT '$t', count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM $t t"
        done
        psql "$server/$db" -Atqc "SELECT * FROM ($query) d ORDER BY 1" | tr '\n' ' '
    done
}

rows_of() { psql "$(postgres_server)/$1" -Atqc "SELECT count(*) FROM $2"; }

# 4. `docker compose down` then `up --wait`: every row is still there, and the tokens of .env still
#    work (the load after it makes its items, recipients and rule with them, and checks out).
scenario_down_up() {
    local name=down-up before after from to
    before="$(data_digest)"
    [ "$before" = "$(data_digest)" ] || die "$name: the data still changes once quiet"
    from="$(now)"
    compose_test down --timeout 20 >/dev/null 2>&1
    compose_test up --detach --wait --no-build >"$SCENARIO_DIR/$name-up.log" 2>&1 \
        || { cat "$SCENARIO_DIR/$name-up.log" >&2; die "$name: up --wait failed"; }
    to="$(now)"
    after="$(data_digest)"
    [ "$after" = "$before" ] || die "$name: the data differs after down and up: $before / $after"
    load_begin "$name"
    load_end "$from" "$to"
    scenario_checks "$name" "$(rows_of order orders) orders, $(rows_of payment ledger_entries) ledger entries kept"
}

# Rows of the tables a stack's use fills: orders, items, reservations, payments, ledger entries,
# recipients. A new stack holds only what the migrations seed (a sample catalogue, the platform's
# recipient): cmd_test records these counts right after its first `up` (FRESH_ROWS).
rows_in_use() {
    echo "orders $(rows_of order orders), items $(rows_of stock items), reservations $(rows_of stock reservations)," \
        "payments $(rows_of payment payments), ledger entries $(rows_of payment ledger_entries)," \
        "recipients $(rows_of payment recipients)"
}
FRESH_ROWS=""

# 4. `down -v` starts empty (and `up --wait` then serves).
scenario_down_volumes() {
    local before rows
    before="$(rows_in_use)"
    compose_test down --volumes --timeout 20 >/dev/null 2>&1
    compose_test up --detach --wait --no-build >"$SCENARIO_DIR/down-volumes-up.log" 2>&1 \
        || { cat "$SCENARIO_DIR/down-volumes-up.log" >&2; die "up --wait after down -v failed"; }
    rows="$(rows_in_use)"
    [ "$rows" = "$FRESH_ROWS" ] || die "after down -v: $rows; a new stack: $FRESH_ROWS"
    log "down -v then up: as new ($rows; before: $before)"
    printf '%-22s as new after down -v: %s (before: %s)\n' down-volumes "$rows" "$before" >>"$SCENARIO_DIR/summary.txt"
}

# The requests of route $3 an instance of a service ($1, listening on $2) has answered (its own
# /metrics).
answered() {
    local id=$1 port=$2 route=$3
    curl -fsS "http://$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id"):$port/metrics" \
        | awk -v route="route=\"$route\"" 'index($0, "http_requests_total{") == 1 && index($0, route) {s += $NF} END {print s + 0}'
}

# 5. Two instances of each service: nginx and order reach every one of them, and checkouts keep
#    completing while one instance of each is killed.
scenario_scale() {
    local name=scale-2 from to service port route id served=""
    compose_test up --detach --wait --no-build --scale stock=2 --scale payment=2 --scale order=2 \
        >"$SCENARIO_DIR/$name-up.log" 2>&1 || { cat "$SCENARIO_DIR/$name-up.log" >&2; die "$name: up --scale failed"; }
    for service in order payment stock; do
        [ "$(container_of "$service" | wc -l)" = 2 ] || die "$name: $service does not run two instances"
    done
    load_begin "$name"
    sleep 3
    # Only nginx calls order's /checkout, and only order payment's /charge and stock's /reserve.
    for service in order:3131:/checkout payment:3132:/charge stock:3133:/reserve; do
        IFS=: read -r service port route <<<"$service"
        for id in $(container_of "$service"); do
            local n
            n="$(answered "$id" "$port" "$route")"
            [ "$n" -gt 0 ] || die "$name: an instance of $service answered no $route: it is not reached"
            served="$served${served:+, }$service $route $n"
        done
    done
    from="$(now)"
    for service in payment order stock; do
        id="$(container_of "$service" | sed -n 1p)"
        kill -9 "$(main_pid "$id")"
        sleep 2
    done
    until_healthy order
    until_healthy payment
    until_healthy stock
    to="$(now)"
    load_end "$from" "$to"
    [ "$(json_field "$name" completed_during_disruption)" -gt 0 ] \
        || die "$name: no checkout completed while instances were killed"
    scenario_checks "$name" "answered per instance before the kills: $served"
    compose_test up --detach --wait --no-build --scale stock=1 --scale payment=1 --scale order=1 \
        >/dev/null 2>&1 || die "$name: scaling back to one instance failed"
}

# The services' image of $UPGRADE_FROM (UPGRADE_IMAGE, a tag of this project's): the commit's code
# built in a worktree, on the same runtime image. A debug build in this tree's target directory, so
# that the dependencies already built are reused (the profile changes nothing of what an upgrade
# tests). Cargo names a workspace crate's artifacts by its path relative to the workspace, the same
# in both trees: the older crates are built with another codegen-units to be named apart (else they
# would replace this tree's, and look fresh to its next build); the binaries cargo then copies to
# target/debug are this tree's again after its next build.
UPGRADE_IMAGE=""
build_upgrade_from() {
    local src="$TEST_DIR/upgrade-from" bin="$TEST_DIR/upgrade-from-bin" s target="${CARGO_TARGET_DIR:-$ROOT/target}"
    UPGRADE_IMAGE="checkout-platform:upgrade-from-$PROJECT"
    git -C "$ROOT" rev-parse --verify --quiet "$UPGRADE_FROM^{commit}" >/dev/null \
        || die "the upgrade's older commit $UPGRADE_FROM is not in this clone's history"
    git -C "$ROOT" worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"
    git -C "$ROOT" worktree prune
    git -C "$ROOT" worktree add --detach --quiet "$src" "$UPGRADE_FROM"
    log "building $UPGRADE_FROM's services (the upgrade's older images)"
    local apart=()
    for s in shared stock payment order tests; do apart+=(--config "profile.dev.package.$s.codegen-units=255"); done
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --quiet --bins "${apart[@]}") \
        || die "$UPGRADE_FROM does not build"
    mkdir -p "$bin"
    for s in order payment stock; do cp "$target/debug/$s" "$bin/$s"; done
    git -C "$ROOT" worktree remove --force "$src"
    (cd "$ROOT" && cargo build --quiet --bins)
    docker build --quiet -t "$UPGRADE_IMAGE" -f "$ROOT/tests/compose/services.Dockerfile" "$bin" >/dev/null
    rm -rf "$bin"
}

# The older image gone (and the layers only it used), once the test ends.
remove_upgrade_from() {
    [ -z "$UPGRADE_IMAGE" ] || docker rmi "$UPGRADE_IMAGE" >/dev/null 2>&1 || true
}

migrations() {
    local db
    for db in order stock payment; do
        printf '%s %s ' "$db" "$(psql "$(postgres_server)/$db" -Atqc 'SELECT max(version) FROM _sqlx_migrations')"
    done
}

# 4. An upgrade: the stack from nothing on $UPGRADE_FROM's images (an override file naming them),
#    data written, then up again with this commit's: it migrates, and keeps every row.
scenario_upgrade() {
    local name=upgrade before after old_migrations from to
    compose_test down --volumes --timeout 20 >/dev/null 2>&1
    COMPOSE_TEST_OVER="$TEST_DIR/upgrade-from.yml"
    printf 'services:\n  order: {image: "%s"}\n  payment: {image: "%s"}\n  stock: {image: "%s"}\n' \
        "$UPGRADE_IMAGE" "$UPGRADE_IMAGE" "$UPGRADE_IMAGE" >"$COMPOSE_TEST_OVER"
    compose_test up --detach --wait --no-build >"$SCENARIO_DIR/$name-old-up.log" 2>&1 \
        || { cat "$SCENARIO_DIR/$name-old-up.log" >&2; die "$name: $UPGRADE_FROM's stack did not come up"; }
    old_migrations="$(migrations)"
    # Data written by the old code: checkouts, splits, refunds.
    load_begin "$name-old"
    load_end "$(now)" "$(now)"
    # (This tree's invariant checker reads this tree's schema: it runs after the upgrade.)
    until [ "$(psql "$(postgres_server)/order" -Atqc "SELECT count(*) FROM orders WHERE status NOT IN ('completed', 'failed')")" = 0 ]; do
        sleep 0.2
    done
    before="$(data_digest)"
    COMPOSE_TEST_OVER=""
    from="$(now)"
    compose_test up --detach --wait --no-build >"$SCENARIO_DIR/$name-up.log" 2>&1 \
        || { cat "$SCENARIO_DIR/$name-up.log" >&2; die "$name: this commit's stack did not come up on $UPGRADE_FROM's data"; }
    to="$(now)"
    local migrated
    migrated="$(migrations)"
    [ "$migrated" != "$old_migrations" ] || die "$name: nothing was migrated ($migrated)"
    # The old rows are all there (their text aside: the migrations added columns): the counts.
    after="$(data_digest)"
    local counts_before counts_after
    counts_before="$(echo "$before" | tr ' ' '\n' | awk -F'|' 'NF == 3 {print $1, $2}')"
    counts_after="$(echo "$after" | tr ' ' '\n' | awk -F'|' 'NF == 3 {print $1, $2}')"
    [ "$counts_before" = "$counts_after" ] || die "$name: rows differ after the upgrade: $counts_before / $counts_after"
    load_begin "$name"
    load_end "$from" "$to"
    scenario_checks "$name" "migrated $old_migrations-> $migrated; $(rows_of order orders) orders kept"
}

# Whether the scenario $1 runs: all of them, or those COMPOSE_SCENARIOS names (space-separated).
wanted() { [ -z "${COMPOSE_SCENARIOS:-}" ] || [[ " $COMPOSE_SCENARIOS " == *" $1 "* ]]; }

run_scenarios() {
    SCENARIO_DIR="$TEST_DIR/scenarios"
    mkdir -p "$SCENARIO_DIR"
    : >"$SCENARIO_DIR/summary.txt"
    local started
    started="$(now)"
    # Empty databases first: the scenarios' invariants are those that hold while order is the only
    # caller of stock and payment, which the black-box suite before them was not.
    wanted down-volumes && scenario_down_volumes
    local s
    for s in stock payment order nginx; do wanted "restart-$s" && scenario_restart "$s"; done
    for s in stock payment order; do wanted "kill-$s" && scenario_kill "$s"; done
    wanted redis-data-lost && scenario_redis_lost
    wanted postgres-crash && scenario_postgres_crash
    wanted partition-payment && scenario_partition
    wanted pause-payment && scenario_pause
    wanted down-up && scenario_down_up
    wanted scale-2 && scenario_scale
    wanted upgrade && scenario_upgrade
    log "every scenario passed in $(since "$started") s:"
    cat "$SCENARIO_DIR/summary.txt" >&2
}
