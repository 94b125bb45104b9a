# shellcheck shell=bash
# What the scripts share (sourced by stack.sh, compose.sh and validate-kubernetes.sh, each of which
# defines its own `log` and `die`).

# Runs a command as root: directly when root already, else through sudo.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs Debian packages (apt-get), or names them when this machine has no apt-get.
apt_install() {
    command -v apt-get >/dev/null || die "please install: $*"
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The first port from $1 up that nothing on 127.0.0.1 listens on.
free_port() {
    local port=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}
