#!/usr/bin/env bash
# bench_mixed.sh [BUILD_DIR]: `sbx-bench --scenario mixed` against the shipped binaries in two
# layouts of the same run: 1 store + 2 executors, then 3 stores + 2 executors (ephemeral ports,
# temp data dirs, default flags apart from addresses). Prints each run's per-operation p50/p99
# and the throughput ratio 3 stores / 1 store. Needs root (sandboxes).
#   SBX_BENCH_SECONDS (default 15), SBX_BENCH_PROJECTS (default 64), SBX_BENCH_CONCURRENCY (16)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-$ROOT/build}
SECS=${SBX_BENCH_SECONDS:-15}
PROJECTS=${SBX_BENCH_PROJECTS:-64}
CONC=${SBX_BENCH_CONCURRENCY:-16}
[ "$(id -u)" = 0 ] || { echo "bench_mixed: needs root (sandboxes)" >&2; exit 1; }

run_layout() { # run_layout N_STORES: prints the bench's JSON on stdout
    local n=$1 i T
    T=$(mktemp -d /tmp/sbx-bench-mixed.XXXXXX)
    chmod 711 "$T"
    (
        SBX_SERVICE_DIR=$T
        . "$ROOT/tests/lib/service.sh"
        trap 'sbx_service_stop_all 15 >&2' EXIT
        local stores=() execs=()
        for ((i = 1; i <= n; i++)); do
            sbx_service_start "s$i" "$B/services/store/sbx-store" >&2 || exit 1
            stores+=("$SBX_SERVICE_ADDR")
        done
        local sl
        sl=$(IFS=,; echo "${stores[*]}")
        for i in 1 2; do
            sbx_service_start "e$i" "$B/services/executor/sbx-executor" --store "$sl" >&2 || exit 1
            execs+=("$SBX_SERVICE_ADDR")
        done
        "$B/tests/bench/sbx-bench" --scenario mixed --executor "$(IFS=,; echo "${execs[*]}")" \
            --store "$sl" --projects "$PROJECTS" -c "$CONC" -z "$SECS" --prefix "mix$n" --json
    )
    local rc=$?
    rm -rf "$T"
    return $rc
}

echo "bench_mixed: $PROJECTS projects, $CONC workers, $SECS s per layout, $(nproc) cores"
ONE=$(run_layout 1)
THREE=$(run_layout 3)
/usr/bin/python3 - "$ONE" "$THREE" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("%-12s %28s   %28s" % ("", "1 store + 2 executors", "3 stores + 2 executors"))
print("%-12s %9s %9s %9s   %9s %9s %9s" % ("operation", "ok", "p50 ms", "p99 ms", "ok", "p50 ms", "p99 ms"))
for op in a["ops"]:
    x, y = a["ops"][op], b["ops"][op]
    print("%-12s %9d %9.3f %9.3f   %9d %9.3f %9.3f" % (op, x["ok"], x["p50_ms"], x["p99_ms"], y["ok"], y["p50_ms"], y["p99_ms"]))
print("calls/s      %9.1f %29.1f" % (a["rps"], b["rps"]))
print("errors       %s / %s" % (a["errors_by_target"] or "none", b["errors_by_target"] or "none"))
print("ratio 3 stores / 1 store: %.2fx" % (b["rps"] / a["rps"]))
PY
