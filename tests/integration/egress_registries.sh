#!/bin/bash
# egress_registries.sh SBX SBX_STORE SBX_EXECUTOR: real package managers through the egress
# proxies, loopback only. npm: Verdaccio 6.8.0 is installed with npm from the npm registry into
# this test's temp dir (the npm cache under $SBX_CI_CACHE, default /var/cache/sbx-ci, makes
# reruns fast; a fresh machine just downloads), runs on 127.0.0.2, two packages are published to
# it (one depends on the other), and `npm install` in a sandbox whose policy allows only that
# registry installs them (`node -e "require(...)"` works); with the policy removed the same
# install fails with the proxy's refusal. pip: a simple index (a directory with a wheel built
# here) served over HTTP on 127.0.0.2, the same both ways.
# Needs root (sandboxes), node, npm, pip. Exit 77 only when there is no network at all (the npm
# registry unreachable and nothing cached); a Verdaccio that cannot be installed otherwise fails.
# Prints the install times through the proxy and from the host (tests/bench/bench_egress.sh
# reports them as ratios).
set -u
SBX=${1:?usage: egress_registries.sh SBX SBX_STORE SBX_EXECUTOR}
STORE_BIN=${2:?}
EXEC_BIN=${3:?}
PY=/usr/bin/python3
VERDACCIO=6.8.0
CACHE=${SBX_CI_CACHE:-/var/cache/sbx-ci}
if [ "$(id -u)" != 0 ]; then echo "skip: sandboxes need root"; exit 77; fi
for t in node npm curl; do
    command -v $t >/dev/null || { echo "FAIL: $t is not installed (scripts/install-deps.sh installs it)"; exit 1; }
done
"$PY" -m pip --version >/dev/null 2>&1 || { echo "FAIL: pip is not installed (python3-pip; scripts/install-deps.sh)"; exit 1; }
# the host's own npm/pip calls below go straight to the registry, never through a proxy
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy NO_PROXY no_proxy

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-egress-reg.XXXXXX")
chmod 711 "$T"
export SBX_SERVICE_DIR=$T/svc
. "$(dirname "$0")/../lib/service.sh"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    sbx_service_stop_all 20
    rm -rf "$T"
}
trap cleanup EXIT

FAILS=0
OUT= ERR= RC=
run() { "$SBX" "$@" >"$T/o" 2>"$T/e" </dev/null; RC=$?; OUT=$(cat "$T/o"); ERR=$(cat "$T/e"); }
fail() { echo "FAIL: $*"; echo "  stdout: $(printf '%s' "$OUT" | tail -c 2500)"; echo "  stderr: $(printf '%s' "$ERR" | tail -c 2500)"; echo "  status: $RC"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
ms() { date +%s%3N; }
free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.2',0)); print(s.getsockname()[1])"; }

# ---------------------------------------------------------------- Verdaccio
mkdir -p "$CACHE/npm" 2>/dev/null || CACHE=$T/cache
NPMC=(--cache "$CACHE/npm" --no-audit --no-fund --no-update-notifier --loglevel=error)
echo "installing verdaccio@$VERDACCIO into $T/verdaccio (npm cache $CACHE/npm)"
t0=$(ms)
if ! npm install --prefix "$T/verdaccio" "verdaccio@$VERDACCIO" --omit=dev --prefer-offline \
        "${NPMC[@]}" >"$T/vinstall.log" 2>&1; then
    if grep -Eq 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ENETUNREACH|ETIMEDOUT|network' "$T/vinstall.log" &&
        ! npm ping "${NPMC[@]}" >/dev/null 2>&1; then
        echo "skip: no network: the npm registry cannot be reached and verdaccio@$VERDACCIO is not cached"
        tail -5 "$T/vinstall.log"
        exit 77
    fi
    echo "FAIL: cannot install verdaccio@$VERDACCIO with npm:"
    tail -30 "$T/vinstall.log"
    exit 1
fi
echo "verdaccio installed in $(( $(ms) - t0 )) ms"
VPORT=$(free_port)
REG="http://127.0.0.2:$VPORT/"
cat >"$T/verdaccio.yaml" <<EOF
storage: $T/vstorage
auth:
  htpasswd:
    file: $T/htpasswd
    max_users: 10
uplinks: {}
packages:
  '**':
    access: \$all
    publish: \$authenticated
    unpublish: \$authenticated
log: { type: stdout, format: pretty, level: warn }
EOF
"$T/verdaccio/node_modules/.bin/verdaccio" --config "$T/verdaccio.yaml" --listen "127.0.0.2:$VPORT" \
    >"$T/verdaccio.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -s -o /dev/null "$REG-/ping" && break; sleep 0.1; done
curl -sf -o /dev/null "$REG-/ping" || { echo "FAIL: verdaccio did not start"; cat "$T/verdaccio.log"; exit 1; }
TOKEN=$(curl -sf -X PUT "${REG}-/user/org.couchdb.user:sbxtest" -H 'Content-Type: application/json' \
    -d '{"name":"sbxtest","password":"sbx-test-password-1"}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
[ -n "$TOKEN" ] || { echo "FAIL: cannot create a verdaccio user"; cat "$T/verdaccio.log"; exit 1; }
printf '//127.0.0.2:%s/:_authToken=%s\n' "$VPORT" "$TOKEN" >"$T/npmrc"
for pkg in dep thepkg; do
    d=$T/pkgs/$pkg
    mkdir -p "$d"
    if [ $pkg = dep ]; then
        printf '{"name":"sbx-egress-dep","version":"1.0.0","main":"index.js"}\n' >"$d/package.json"
        printf 'module.exports = (who) => "hello, " + who;\n' >"$d/index.js"
    else
        printf '{"name":"sbx-egress-thepkg","version":"1.2.0","main":"index.js","dependencies":{"sbx-egress-dep":"^1.0.0"}}\n' >"$d/package.json"
        printf 'module.exports = require("sbx-egress-dep")("sandbox") + " (thepkg 1.2.0)";\n' >"$d/index.js"
    fi
    (cd "$d" && npm publish --registry "$REG" --userconfig "$T/npmrc" "${NPMC[@]}" >"$T/publish-$pkg.log" 2>&1) ||
        { echo "FAIL: npm publish $pkg"; cat "$T/publish-$pkg.log"; exit 1; }
done
ok "verdaccio $VERDACCIO on 127.0.0.2:$VPORT with two published packages"

# ---------------------------------------------------------------- a simple index for pip
PPORT=$(free_port)
mkdir -p "$T/pypi/simple/sbx-egress-pypkg" "$T/pypi/files"
"$PY" - "$T/pypi/files" <<'EOF'
import base64, hashlib, sys, zipfile
name, ver = "sbx_egress_pypkg", "1.0"
files = {
    name + "/__init__.py": b"GREETING = 'hello from a wheel served on 127.0.0.2'\n",
    name + "-" + ver + ".dist-info/METADATA": b"Metadata-Version: 2.1\nName: sbx-egress-pypkg\nVersion: 1.0\n",
    name + "-" + ver + ".dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: sbx-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
rec = name + "-" + ver + ".dist-info/RECORD"
lines = []
for p, d in files.items():
    h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
    lines.append("%s,sha256=%s,%d" % (p, h, len(d)))
lines.append(rec + ",,")
files[rec] = ("\n".join(lines) + "\n").encode()
with zipfile.ZipFile(sys.argv[1] + "/" + name + "-" + ver + "-py3-none-any.whl", "w") as z:
    for p, d in files.items():
        z.writestr(p, d)
EOF
printf '<!doctype html><a href="../../files/sbx_egress_pypkg-1.0-py3-none-any.whl">sbx_egress_pypkg-1.0-py3-none-any.whl</a>\n' \
    >"$T/pypi/simple/sbx-egress-pypkg/index.html"
(cd "$T/pypi" && exec "$PY" -m http.server "$PPORT" --bind 127.0.0.2) >"$T/pypi.log" 2>&1 &
PIDS+=($!)
INDEX="http://127.0.0.2:$PPORT/simple/"
for _ in $(seq 1 100); do curl -s -o /dev/null "$INDEX" && break; sleep 0.05; done

# ---------------------------------------------------------------- the services
sbx_service_start store "$STORE_BIN" || exit 1
STORE=$SBX_SERVICE_ADDR
# shellcheck disable=SC2086
sbx_service_start executor "$EXEC_BIN" --store "$STORE" --egress-allow-private 127.0.0.2/32 \
    ${SBX_TEST_EXECUTOR_ARGS:-} || exit 1
export SBX_EXECUTOR=$SBX_SERVICE_ADDR SBX_STORE=$STORE
unset SBX_API_KEY

NPM_INSTALL="mkdir -p app && cd app && rm -rf node_modules package.json package-lock.json ~/.npm && npm init -y >/dev/null && npm install --registry $REG --no-audit --no-fund --no-update-notifier --fetch-retries 0 sbx-egress-thepkg"
REQUIRE="cd app && node -e 'console.log(require(\"sbx-egress-thepkg\"))'"

# ---------------------------------------------------------------- npm through the policy
run sandbox create -p npm --allow-out "127.0.0.2:$VPORT"
[ "$RC" = 0 ] && ok "sandbox allowing only the registry" || fail "sandbox create"
t0=$(ms)
run sh -p npm "$NPM_INSTALL"
NPM_SANDBOX_MS=$(( $(ms) - t0 ))
[ "$RC" = 0 ] && ok "npm install in the sandbox through the proxy (${NPM_SANDBOX_MS} ms)" || fail "npm install through the proxy"
run sh -p npm "$REQUIRE"
[ "$OUT" = "hello, sandbox (thepkg 1.2.0)" ] && ok "node -e \"require('sbx-egress-thepkg')\" works" || fail "require after install"
# the same install from the host, for the bench's ratio
mkdir -p "$T/hostapp"
t0=$(ms)
(cd "$T/hostapp" && npm init -y >/dev/null && npm install --registry "$REG" --cache "$T/hostnpm" --no-audit --no-fund --no-update-notifier sbx-egress-thepkg >/dev/null 2>&1)
NPM_HOST_MS=$(( $(ms) - t0 ))
echo "npm install of sbx-egress-thepkg (2 packages, cold cache): sandbox via proxy ${NPM_SANDBOX_MS} ms, host direct ${NPM_HOST_MS} ms"

run sandbox net -p npm --none
[ "$RC" = 0 ] && ok "policy removed (sandbox net --none)" || fail "sandbox net --none"
run sh -p npm "$NPM_INSTALL"
if [ "$RC" != 0 ] && [[ "$OUT$ERR" == *"403 Forbidden - sbx egress: 127.0.0.2:$VPORT denied (allow_out is empty)"* ]]; then
    ok "without the policy npm install fails with the proxy's refusal"
else
    fail "npm install without a policy: want a failure naming the proxy's refusal"
fi
run sandbox net -p npm --allow-out "127.0.0.3:$VPORT"
run sh -p npm "$NPM_INSTALL"
[ "$RC" != 0 ] && [[ "$OUT$ERR" == *"denied (not in allow_out)"* ]] && ok "a policy for another registry refuses this one" || fail "npm with another registry allowed"

# ---------------------------------------------------------------- pip through the policy
PIP="rm -rf pylib && python3 -m pip install --disable-pip-version-check --no-cache-dir --retries 0 --timeout 15 --index-url $INDEX --target pylib sbx-egress-pypkg"
run sandbox create -p pip --allow-out "127.0.0.2:$PPORT"
run sh -p pip "$PIP && PYTHONPATH=pylib python3 -c 'import sbx_egress_pypkg as m; print(m.GREETING)'"
[ "$RC" = 0 ] && [[ "$OUT" == *"hello from a wheel served on 127.0.0.2"* ]] && ok "pip install from a simple index through the proxy" || fail "pip through the proxy"
run sandbox net -p pip --none
run sh -p pip "$PIP -vvv"
# pip reports "no matching distribution"; -vvv shows the index answered 403 from the proxy
if [ "$RC" != 0 ] && [[ "$OUT$ERR" == *"403 Client Error: Forbidden - sbx egress: 127.0.0.2:$PPORT denied (allow_out is empty)"* ]]; then
    ok "without the policy pip install fails with the proxy's refusal"
else
    fail "pip without a policy"
fi

run --json sandbox get -p npm
if printf '%s' "$OUT" | "$PY" -c "import json,sys; n=json.load(sys.stdin)['network']; sys.exit(0 if n['allowed']>=2 and n['denied']>=2 and n['bytes_in']>1000 else 1)"; then
    ok "the sandbox's counters saw the installs and the refusals"
else
    fail "counters"
fi
sbx_service_stop executor 30 || fail "executor exit status"
grep -E "level=error|AddressSanitizer|runtime error" "$SBX_SERVICE_DIR/executor.err" && fail "the executor logged errors"
echo "egress_registries.sh: $FAILS failure(s)"
[ "$FAILS" = 0 ]
