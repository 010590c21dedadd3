#!/usr/bin/env bash
# install_test.sh BUILD_DIR: `cmake --install` into a temp prefix, then both services started from
# there with default flags (no --init-path: the executor finds sbx-init at ../libexec/sbx/
# relative to itself), and a command run in a sandbox through the installed CLI. Needs root.
set -euo pipefail
build=${1:?usage: install_test.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/service.sh"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (sandboxes: namespaces, cgroups, uid ranges)"
    exit 77
fi
prefix=$(mktemp -d /tmp/sbx-install.XXXXXX)
trap 'sbx_service_stop_all; rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
test -x "$prefix/libexec/sbx/sbx-init" || { echo "FAIL: no libexec/sbx/sbx-init"; exit 1; }
test -f "$prefix/share/sbx/sbx.protoset" || { echo "FAIL: no share/sbx/sbx.protoset"; exit 1; }
export SBX_SERVICE_DIR=$prefix/run # (a 0700 parent of the data dir is issue 9's data-dir case)
chmod 755 "$prefix"
sbx_service_start store "$prefix/bin/sbx-store"
store=$SBX_SERVICE_ADDR
sbx_service_start executor "$prefix/bin/sbx-executor" --store "$store"
exe=$SBX_SERVICE_ADDR
grep -q "init=$prefix/bin/../libexec/sbx/sbx-init" "$SBX_SERVICE_DIR/executor.err" || {
    echo "FAIL: the installed executor did not pick its installed sbx-init:"
    grep 'msg="serving"' "$SBX_SERVICE_DIR/executor.err" || cat "$SBX_SERVICE_DIR/executor.err"
    exit 1
}
grep -q 'self-test passed' "$SBX_SERVICE_DIR/executor.err" || { echo "FAIL: no self-test pass"; exit 1; }
sbx=("$prefix/bin/sbx" --executor "$exe" --store "$store")
"${sbx[@]}" health --service executor
out=$("${sbx[@]}" exec -p installed -- /bin/sh -c 'echo hello from $(id -u)')
[ "$out" = "hello from 1000" ] || { echo "FAIL: exec printed '$out'"; exit 1; }
echo "PASS: installed under $prefix, sbx-init found at libexec/sbx, a sandbox ran as uid 1000"
