#!/usr/bin/env bash
# bench_layer.sh [BUILD_DIR] [SECONDS]: the gRPC layer against the bare gRPC C core echo, same
# machine, same run, same load tool (sbx-bench). Prints each figure and the ratios the
# foundation issue sets: health Check at 16 in flight >= 80% of the echo rps; p50 at 1 in
# flight; and the server polling-thread count (1 vs 2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
secs=${2:-5}
bench=$build/tests/bench/sbx-bench
store=$build/services/store/sbx-store
tmp=$(mktemp -d)
export SBX_SERVICE_DIR=$tmp
. "$here/../lib/service.sh"
cleanup() { sbx_service_stop_all; rm -rf "$tmp"; }
trap cleanup EXIT

sbx_service_run echo "$bench" --serve-echo 127.0.0.1:0
echo_addr=$SBX_SERVICE_ADDR
sbx_service_start store1 "$store" --log-level error --poll-threads 1
s1=$SBX_SERVICE_ADDR
sbx_service_start store2 "$store" --log-level error --poll-threads 2
s2=$SBX_SERVICE_ADDR

run() { # run LABEL TARGET SCENARIO C -> json line
  "$bench" --json --name "$1" --target "$2" --scenario "$3" -c "$4" -z "$secs" --warmup 1
}
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

printf '%-34s %10s %9s %9s %9s\n' "case" "rps" "p50 us" "p99 us" "max us"
declare -A R P
for c in 1 16 64; do
  for t in "echo:$echo_addr:echo" "health-1thr:$s1:health" "health-2thr:$s2:health"; do
    IFS=: read -r label host port scen <<<"$t"
    j=$(run "$label c=$c" "$host:$port" "$scen" "$c")
    R[$label.$c]=$(field "$j" rps); P[$label.$c]=$(field "$j" p50_us)
    printf '%-34s %10.0f %9.0f %9.0f %9.0f\n' "$label c=$c" "${R[$label.$c]}" "${P[$label.$c]}" \
      "$(field "$j" p99_us)" "$(field "$j" max_us)"
  done
done
ratio() { /usr/bin/python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
echo
echo "health/echo rps at 16 in flight (1 polling thread): $(ratio "${R[health-1thr.16]}" "${R[echo.16]}")  (goal >= 0.80)"
echo "health/echo rps at 64 in flight (1 polling thread): $(ratio "${R[health-1thr.64]}" "${R[echo.64]}")"
echo "health p50 at 1 in flight: ${P[health-1thr.1]} us (goal <= 100 us; echo p50 ${P[echo.1]} us, ratio $(ratio "${P[health-1thr.1]}" "${P[echo.1]}"))"
echo "2 vs 1 polling threads, health rps at 16 in flight: $(ratio "${R[health-2thr.16]}" "${R[health-1thr.16]}")"
