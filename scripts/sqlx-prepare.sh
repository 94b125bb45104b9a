#!/usr/bin/env bash
# Regenerates each service's `.sqlx/` — the descriptions of its SQL statements that sqlx's
# `query!` macros check at compile time — from a fresh database migrated with the service's own
# migrations, in the test PostgreSQL server. Run it (`make sqlx-prepare [SERVICES="stock"]`) after
# changing a statement or a migration; a build with a statement that has no description fails, and
# `make test` checks every description against the migrated schema.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVICES=(${SERVICES:-stock payment order})
server="$(scripts/stack.sh test-postgres)"
export PGOPTIONS="--client-min-messages=warning"

for svc in "${SERVICES[@]}"; do
    db="sqlx_prepare_$svc"
    psql -q -v ON_ERROR_STOP=1 "$server/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    for migration in "$svc"/migrations/*.sql; do
        psql -q -v ON_ERROR_STOP=1 -1 "$server/$db" -f "$migration" >/dev/null
    done
    rm -rf "$svc/.sqlx"
    mkdir -p "$svc/.sqlx"
    # The macros expand again only if the crate is compiled again.
    touch "$svc/src/lib.rs"
    echo "sqlx-prepare: $svc" >&2
    SQLX_OFFLINE=false DATABASE_URL="$server/$db" SQLX_OFFLINE_DIR="$ROOT/$svc/.sqlx" \
        cargo check --quiet -p "$svc" --all-targets
    psql -q "$server/postgres" -c "DROP DATABASE $db" >/dev/null
    echo "sqlx-prepare: $svc: $(ls "$svc/.sqlx" | wc -l) statements" >&2
done
