# service.sh: start and stop sbx services from bash scripts (tests, benchmarks, the demo) the
# way tests/lib/sbx_harness.py does for Python: an ephemeral port, a data directory of its own,
# and the address read from the one "listening on HOST:PORT" line the service prints on stdout.
# Source it (bash only):
#
#   . tests/lib/service.sh
#   sbx_service_start NAME BINARY [FLAG...]
#       Runs BINARY --listen 127.0.0.1:0 --data-dir "$SBX_SERVICE_DIR/NAME" FLAG... in the
#       background, stdout in $SBX_SERVICE_DIR/NAME.out and stderr in NAME.err, and waits for
#       its "listening on" line. Sets and exports SBX_SERVICE_ADDR (HOST:PORT) and
#       SBX_SERVICE_PID. Returns 1, printing the service's stderr, when it exits first or prints
#       no such line within $SBX_SERVICE_START_S seconds (default 30).
#   sbx_service_run NAME CMD...
#       The same for a command that takes its address its own way (no flags are added).
#   sbx_service_addr NAME / sbx_service_pid NAME
#       Print the address / pid of a service started here.
#   sbx_service_stop NAME [SECONDS]
#       SIGTERM, wait up to SECONDS (default 10), then SIGKILL; returns the service's exit status.
#   sbx_service_kill9 NAME
#       SIGKILL (a crash, no clean stop), reaped; the service counts as stopped.
#   sbx_service_stop_all [SECONDS]
#       Stops every service still running, newest first (for an EXIT trap); then removes
#       $SBX_SERVICE_DIR if service.sh created it.
#
# SBX_SERVICE_DIR: where the logs and data directories go. Set it before the first start to
# keep them (the demo) or to share a directory the caller cleans; unset, the first start makes
# one with mktemp -d.

declare -gA _SBX_SVC_PID=() _SBX_SVC_ADDR=()
declare -ga _SBX_SVC_ORDER=()
_SBX_SVC_OWN_DIR=

_sbx_service_dir() {
    if [ -z "${SBX_SERVICE_DIR:-}" ]; then
        SBX_SERVICE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sbx-service.XXXXXX") || return 1
        _SBX_SVC_OWN_DIR=$SBX_SERVICE_DIR
    fi
    mkdir -p "$SBX_SERVICE_DIR"
}

sbx_service_run() {
    local name=${1:?usage: sbx_service_run NAME CMD...}
    shift
    _sbx_service_dir || return 1
    local out=$SBX_SERVICE_DIR/$name.out err=$SBX_SERVICE_DIR/$name.err
    "$@" >"$out" 2>"$err" &
    local pid=$! addr= i
    _SBX_SVC_PID[$name]=$pid
    _SBX_SVC_ORDER+=("$name")
    for ((i = 0; i < ${SBX_SERVICE_START_S:-30} * 20; i++)); do
        addr=$(sed -n 's/^listening on //p' "$out" 2>/dev/null | head -n1)
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$addr" ]; then
        addr=$(sed -n 's/^listening on //p' "$out" 2>/dev/null | head -n1)
    fi
    if [ -z "$addr" ]; then
        echo "service.sh: $name (pid $pid) printed no 'listening on HOST:PORT' line; stderr:" >&2
        cat "$err" >&2
        return 1
    fi
    _SBX_SVC_ADDR[$name]=$addr
    export SBX_SERVICE_ADDR=$addr SBX_SERVICE_PID=$pid
}

sbx_service_start() {
    local name=${1:?usage: sbx_service_start NAME BINARY [FLAG...]}
    local bin=${2:?usage: sbx_service_start NAME BINARY [FLAG...]}
    shift 2
    _sbx_service_dir || return 1
    sbx_service_run "$name" "$bin" --listen 127.0.0.1:0 --data-dir "$SBX_SERVICE_DIR/$name" "$@"
}

sbx_service_addr() {
    echo "${_SBX_SVC_ADDR[${1:?usage: sbx_service_addr NAME}]:-}"
}

sbx_service_pid() {
    echo "${_SBX_SVC_PID[${1:?usage: sbx_service_pid NAME}]:-}"
}

sbx_service_stop() {
    local name=${1:?usage: sbx_service_stop NAME [SECONDS]} bound=${2:-10}
    local pid=${_SBX_SVC_PID[$name]:-} i rc=0
    [ -n "$pid" ] || return 0
    unset "_SBX_SVC_PID[$name]"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < bound * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "service.sh: $name (pid $pid) still running ${bound} s after SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}

sbx_service_kill9() {
    local name=${1:?usage: sbx_service_kill9 NAME}
    local pid=${_SBX_SVC_PID[$name]:-}
    [ -n "$pid" ] || return 0
    unset "_SBX_SVC_PID[$name]"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

sbx_service_stop_all() {
    local i
    for ((i = ${#_SBX_SVC_ORDER[@]} - 1; i >= 0; i--)); do
        sbx_service_stop "${_SBX_SVC_ORDER[$i]}" "${1:-10}" || true
    done
    _SBX_SVC_ORDER=()
    if [ -n "$_SBX_SVC_OWN_DIR" ]; then
        rm -rf "$_SBX_SVC_OWN_DIR"
        _SBX_SVC_OWN_DIR=
        unset SBX_SERVICE_DIR
    fi
}
