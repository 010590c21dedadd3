#!/bin/bash
# bench_egress.sh [BUILD_DIR]: the egress proxies against direct access in the same run, as
# ratios (never pass/fail): sbx-bench-egress (time to first byte of a new connection and bulk
# throughput through the proxies vs direct loopback; goals +<= 0.5 ms, >= 1 GB/s), the same
# through the shipped executor's proxies from inside a sandbox (bench_egress_shipped.sh), then
# `npm install` of a two-package project from a local Verdaccio through a sandbox's proxy vs
# from the host (tests/integration/egress_registries.sh, which needs root and the npm registry
# once to install Verdaccio).
set -u
B=${1:-build}
cd "$(dirname "$0")/../.."
echo "== proxies vs direct (in-process, loopback)"
"$B/tests/bench/sbx-bench-egress" 2>/dev/null
tests/bench/bench_egress_shipped.sh "$B/client/sbx" "$B/services/store/sbx-store" \
    "$B/services/executor/sbx-executor"
echo "== npm install through a sandbox's proxy vs from the host"
out=$(tests/integration/egress_registries.sh "$B/client/sbx" "$B/services/store/sbx-store" \
    "$B/services/executor/sbx-executor" 2>&1)
line=$(printf '%s\n' "$out" | grep '^npm install of')
if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -20
    exit 1
fi
echo "$line"
s=$(echo "$line" | sed -n 's/.*via proxy \([0-9]*\) ms.*/\1/p')
h=$(echo "$line" | sed -n 's/.*host direct \([0-9]*\) ms.*/\1/p')
awk -v s="$s" -v h="$h" 'BEGIN { printf "ratio sandbox/host: %.2fx (the sandbox run includes an Exec round trip)\n", s / h }'
