#!/usr/bin/env bash
# selftest_health.sh SBX SBX_EXECUTOR: the executor's health means "can run sandboxes". In a
# private mount namespace /bin/sh (dash) is hidden behind /dev/null, so sandboxes cannot run
# a shell: the start-up self-test fails, health answers NOT_SERVING and the log says why. Then
# the mask is removed from that namespace, the retry (every 10 s) passes and health turns
# SERVING. Needs root.
set -euo pipefail
sbx=${1:?usage: selftest_health.sh SBX SBX_EXECUTOR}
exe=${2:?usage: selftest_health.sh SBX SBX_EXECUTOR}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/service.sh"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (mount namespaces, sandboxes)"
    exit 77
fi
SBX_SERVICE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sbx-selftest.XXXXXX")
trap 'sbx_service_stop_all; rm -rf "$SBX_SERVICE_DIR"' EXIT
sh_real=$(readlink -f /bin/sh)
sbx_service_run executor unshare --mount --propagation private -- /bin/bash -c \
    "mount --bind /dev/null '$sh_real' && exec '$exe' --listen 127.0.0.1:0 \
     --data-dir \"\$0\" --store 127.0.0.1:1" "$SBX_SERVICE_DIR/executor"
addr=$SBX_SERVICE_ADDR pid=$SBX_SERVICE_PID
log=$SBX_SERVICE_DIR/executor.err
if "$sbx" --executor "$addr" health --service executor; then
    echo "FAIL: health SERVING although no sandbox can run a shell"; exit 1
fi
grep -q 'level=error.*self-test failed' "$log" || { echo "FAIL: no self-test error line"; cat "$log"; exit 1; }
grep 'self-test failed' "$log"
# lift the mask inside the executor's mount namespace: the next retry passes
nsenter --mount="/proc/$pid/ns/mnt" umount "$sh_real"
for _ in $(seq 1 60); do
    if "$sbx" --executor "$addr" health --service executor >/dev/null 2>&1; then
        grep 'self-test passed on retry' "$log"
        echo "PASS: NOT_SERVING while sandboxes cannot run, SERVING after the retry passed"
        exit 0
    fi
    sleep 0.5
done
echo "FAIL: health never turned SERVING after the mask was removed"; cat "$log"; exit 1
