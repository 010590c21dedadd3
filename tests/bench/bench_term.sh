#!/bin/bash
# bench_term.sh SBX SBX_STORE SBX_EXECUTOR SBX_BENCH_TERM [ROUNDS]: runs sbx-bench-term against the
# shipped sbx-store and sbx-executor (default flags apart from the listen address and the data
# dir): keystroke echo round trips through `sbx term`, a sandbox terminal, pipes, a local
# terminal and a unary call, and watch event latency against a WriteFile round trip, as ratios
# in the same run (never pass/fail). Needs root (sandboxes); exits 77 otherwise.
set -u
SBX=${1:?usage: bench_term.sh SBX SBX_STORE SBX_EXECUTOR SBX_BENCH_TERM [ROUNDS]}
STORE_BIN=${2:?}
EXEC_BIN=${3:?}
BENCH=${4:?}
ROUNDS=${5:-300}
if [ "$(id -u)" != 0 ]; then echo "skip: sandboxes need root"; exit 77; fi
T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-bench-term.XXXXXX")
chmod 711 "$T"
export SBX_SERVICE_DIR=$T/svc
. "$(dirname "$0")/../lib/service.sh"
cleanup() {
    sbx_service_stop_all 20
    rm -rf "$T"
}
trap cleanup EXIT
sbx_service_start store "$STORE_BIN" || exit 1
STORE=$SBX_SERVICE_ADDR
sbx_service_start executor "$EXEC_BIN" --store "$STORE" || exit 1
SBX_STORE=$STORE "$BENCH" --executor "$SBX_SERVICE_ADDR" --sbx "$SBX" --rounds "$ROUNDS"
