#!/usr/bin/env bash
# bench_executor.sh [BUILD_DIR] [ITERS]: sbx-executor figures of the executor issue, each with
# the baseline measured in the same run (posix_spawn+wait of /bin/true, Debian's bwrap), printed
# with ratios; nothing is asserted. SBX_BENCH_EXECUTOR_ARGS adds executor flags (e.g.
# "--outbox-sync off" to see the cost of the per-command fdatasync). Starts sbx-store and
# sbx-executor on ephemeral ports (root: sandboxes need user namespaces and cgroups), then runs
# bench-executor against them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
iters=${2:-300}
bench=$build/tests/bench/bench-executor
exe=$build/services/executor/sbx-executor
store=$build/services/store/sbx-store
tmp=$(mktemp -d)
chmod 711 "$tmp" # sandbox roots (unprivileged uids) traverse to their homes
export SBX_SERVICE_DIR=$tmp
. "$here/../lib/service.sh"
cleanup() { sbx_service_stop_all; rm -rf "$tmp"; }
trap cleanup EXIT

sbx_service_start store "$store" --log-level error
st=$SBX_SERVICE_ADDR
# shellcheck disable=SC2086
sbx_service_start executor "$exe" --store "$st" --log-level warn --max-sandboxes 200 \
  ${SBX_BENCH_EXECUTOR_ARGS:-}
ex=$SBX_SERVICE_ADDR
echo "executor $ex, store $st, $(nproc) cores, kernel $(uname -r)"
"$bench" --target "$ex" --iters "$iters" --live 100
