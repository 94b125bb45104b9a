#!/bin/sh
# The nginx image's entrypoint (deploy/nginx/Dockerfile): renders $NGINX_TEMPLATE (the repository's
# nginx.conf) with the environment into $NGINX_STATE_DIR, then runs nginx in the foreground.
#
# ORDER_SERVERS, PAYMENT_SERVERS and STOCK_SERVERS are `server` lines that may name hosts
# (`server order:3131 max_fails=0;`). nginx 1.22 (Debian's) looks a name up only when it loads its
# configuration, and refuses a configuration with a name that does not resolve. A container that is
# recreated or restarted may come back on another address, and while one is stopped its name does
# not resolve at all. So this script writes the addresses into the configuration itself — one
# `server` line per address a name has, with the line's parameters — and a watcher beside nginx
# looks the names up again every NGINX_RESOLVE_INTERVAL seconds (default 1): when an address
# changed, it renders the configuration again and reloads nginx (a graceful reload: requests in
# flight finish on the old workers). A name that does not resolve keeps its last addresses, and
# nginx answers 503 for that service until it is back (an old address may by then be another
# container's, but each service listens on a port of its own: the connection is refused).
set -eu

: "${NGINX_STATE_DIR:=/run/nginx}" "${NGINX_TEMPLATE:=/etc/checkout/nginx.conf}"
: "${NGINX_RESOLVE_INTERVAL:=1}"
CONF="$NGINX_STATE_DIR/nginx.conf"
KNOWN="$NGINX_STATE_DIR/addresses"
ORDER_SPEC="${ORDER_SERVERS:-}"
PAYMENT_SPEC="${PAYMENT_SERVERS:-}"
STOCK_SPEC="${STOCK_SERVERS:-}"

log() { echo "nginx-entrypoint: $*" >&2; }

is_address() { case "$1" in *[!0-9.]*) return 1 ;; *) return 0 ;; esac; }

# The addresses of a name, space-separated: looked up now, else the last known ones (none if the
# name never resolved).
addresses_of() {
    name=$1
    found="$(getent ahostsv4 "$name" | awk '{print $1}' | sort -u | tr '\n' ' ')"
    if [ -n "$found" ]; then
        printf '%s\n' "$found" >"$KNOWN/$name"
    elif [ -f "$KNOWN/$name" ]; then
        found="$(cat "$KNOWN/$name")"
    fi
    printf '%s' "$found"
}

# A spec's `server` lines with every host name replaced by its addresses; fails when a name has
# none yet.
render_servers() {
    printf '%s\n' "$1" | tr ';' '\n' | while read -r keyword target params; do
        [ "$keyword" = server ] || continue
        host="${target%:*}"
        port="${target##*:}"
        [ "$port" != "$target" ] || port=80
        if is_address "$host"; then
            printf 'server %s:%s %s; ' "$host" "$port" "$params"
            continue
        fi
        found="$(addresses_of "$host")"
        if [ -z "$found" ]; then
            log "$host does not resolve yet"
            return 1
        fi
        for address in $found; do
            printf 'server %s:%s %s; ' "$address" "$port" "$params"
        done
    done
}

# Renders the configuration into $1; fails while a name has no address yet.
render() {
    order="$(render_servers "$ORDER_SPEC")" || return 1
    payment="$(render_servers "$PAYMENT_SPEC")" || return 1
    stock="$(render_servers "$STOCK_SPEC")" || return 1
    # Only these are placeholders: nginx's own $variables stay as they are.
    # shellcheck disable=SC2016 # the names are envsubst's, not the shell's
    ORDER_SERVERS="$order" PAYMENT_SERVERS="$payment" STOCK_SERVERS="$stock" \
        envsubst '$NGINX_STATE_DIR $NGINX_PORT $ORDER_SERVERS $PAYMENT_SERVERS $STOCK_SERVERS' \
        <"$NGINX_TEMPLATE" >"$1"
}

follow() {
    while sleep "$NGINX_RESOLVE_INTERVAL"; do
        render "$CONF.next" 2>/dev/null || continue
        if ! cmp -s "$CONF.next" "$CONF"; then
            log "addresses changed, reloading: $(grep -o 'server [0-9.]*:[0-9]*' "$CONF.next" | tr '\n' ' ')"
            mv "$CONF.next" "$CONF"
            nginx -c "$CONF" -s reload || log "the reload failed; nginx keeps its configuration"
        fi
    done
}

mkdir -p "$NGINX_STATE_DIR" "$KNOWN"
# At start every name must have an address (a service being restarted: wait for it).
until render "$CONF"; do sleep 1; done
nginx -t -q -c "$CONF" -g 'daemon off;'
follow &
exec nginx -c "$CONF" -g 'daemon off;'
