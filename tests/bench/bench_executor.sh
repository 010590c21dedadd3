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
chmod 711 "$tmp"
# start runs in $(...) subshells: remember the pids in a file, not in a variable
cleanup() {
  for p in $(cat "$tmp"/*.pid 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
  for p in $(cat "$tmp"/*.pid 2>/dev/null); do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

start() { # start NAME CMD... -> prints address
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  echo $! >"$tmp/$name.pid"
  for _ in $(seq 200); do
    grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null && break
    sleep 0.05
  done
  sed -n 's/^listening on //p' "$tmp/$name.out"
}

st=$(start store "$store" --listen 127.0.0.1:0 --data-dir "$tmp/store" --log-level error)
ex=$(start executor "$exe" --listen 127.0.0.1:0 --data-dir "$tmp/ex" --store "$st" --log-level warn \
     --max-sandboxes 200 ${SBX_BENCH_EXECUTOR_ARGS:-})
[ -n "$ex" ] || { echo "executor did not start:"; cat "$tmp/executor.err"; exit 1; }
echo "executor $ex, store $st, $(nproc) cores, kernel $(uname -r)"
"$bench" --target "$ex" --iters "$iters" --live 100
