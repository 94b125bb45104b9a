#!/bin/sh
# The PostgreSQL image's entrypoint (deploy/postgres/Dockerfile). `postgres [ARGS]` starts the server,
# listening on every address of the container; anything else is run as given.
#
# An empty data directory (a new volume) is first made into a cluster whose superuser is
# POSTGRES_USER with POSTGRES_PASSWORD. Then, until a start has finished them, the scripts of
# /docker-entrypoint-initdb.d run against a server that listens on its Unix socket only: the
# health check asks over TCP, so it cannot report a server that is still being set up. A start cut
# short while they run leaves no mark, and the next start runs them again (they may run twice).
set -eu

: "${POSTGRES_USER:=postgres}"
INITIALISED="$PGDATA/.initialised"

log() { echo "postgres-entrypoint: $*" >&2; }

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
shift

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        log "POSTGRES_PASSWORD must be set to make a new cluster"
        exit 1
    fi
    log "making a new cluster in $PGDATA"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    # Other containers connect over the compose network, with the password. (The Unix socket,
    # which trusts, is reachable only inside this container.)
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi

if [ ! -e "$INITIALISED" ]; then
    log "running /docker-entrypoint-initdb.d on a server that listens on its socket only"
    pg_ctl --pgdata="$PGDATA" --wait --silent --options="-c listen_addresses=''" start
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) psql --quiet --no-psqlrc -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres --file="$script" ;;
            *.sh) sh "$script" ;;
            *) ;;
        esac
    done
    pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
    touch "$INITIALISED"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
