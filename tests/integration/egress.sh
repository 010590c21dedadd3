#!/bin/bash
# egress.sh SBX SBX_STORE SBX_EXECUTOR: network egress of sandboxes end to end through the CLI,
# loopback only. A host HTTP server on 127.0.0.2 opened with --egress-allow-private 127.0.0.2/32;
# the executor runs in a private mount namespace whose /etc/hosts maps test names to loopback and
# metadata addresses (a name that resolves to a blocked address). Checks: curl in a sandbox
# reaches the server only with a matching allow_out, deny_out wins, `sandbox net` changes apply to
# new connections and --none removes egress (the proxy still answers why), a program ignoring
# the proxy gets nothing, --egress-default for a sandbox made by a first exec, SOCKS5 by name,
# SSRF refusals (allow_out '*' cannot reach 127.0.0.1, the store's and the executor's ports,
# 169.254.169.254, [::1], names resolving to loopback / metadata, 127.0.0.2 unless named), the
# 403 bodies, `sandbox get --json` network object and its counters, validation errors naming the
# field, bad --egress-* flags exiting 2, the Prometheus metrics and the decision log lines.
# Needs root (sandboxes, a mount namespace); exits 77 otherwise.
set -u
SBX=${1:?usage: egress.sh SBX SBX_STORE SBX_EXECUTOR}
STORE_BIN=${2:?}
EXEC_BIN=${3:?}
PY=/usr/bin/python3
if [ "$(id -u)" != 0 ]; then echo "skip: sandboxes need root"; exit 77; fi
command -v curl >/dev/null || { echo "FAIL: curl is not installed (scripts/install-deps.sh installs it)"; exit 1; }
command -v unshare >/dev/null || { echo "FAIL: unshare (util-linux) is missing"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-egress.XXXXXX")
chmod 711 "$T"
export SBX_SERVICE_DIR=$T/svc
. "$(dirname "$0")/../lib/service.sh"
HTTP_PID=
cleanup() {
    [ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null && wait "$HTTP_PID" 2>/dev/null
    sbx_service_stop_all 20
    rm -rf "$T"
}
trap cleanup EXIT

FAILS=0
OUT= ERR= RC=
run() { "$SBX" "$@" >"$T/o" 2>"$T/e" </dev/null; RC=$?; OUT=$(cat "$T/o"); ERR=$(cat "$T/e"); }
fail() { echo "FAIL: $*"; echo "  stdout: ${OUT:0:1500}"; echo "  stderr: ${ERR:0:1500}"; echo "  status: $RC"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
expect_rc() { if [ "$RC" = "$1" ]; then ok "$2 (exit $1)"; else fail "$2: want exit $1"; fi; }
has() { if [[ "$OUT$ERR" == *"$1"* ]]; then ok "$2"; else fail "$2: want '$1'"; fi; }
json_check() {
    if printf '%s' "$OUT" | "$PY" -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if ($1) else 1)" 2>"$T/pyerr"; then
        ok "$2"
    else
        fail "$2: JSON check failed: $1 $(cat "$T/pyerr")"
    fi
}
# sh_in PROJ 'SHELL': runs a shell string in the project's sandbox
sh_in() { local p=$1; shift; run sh -p "$p" "$1"; }

# ---------------------------------------------------------------- the host side
mkdir -p "$T/www"
echo "hello from the host" >"$T/www/index.html"
"$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.2',0)); print(s.getsockname()[1])" >"$T/port"
PORT=$(cat "$T/port")
(cd "$T/www" && exec "$PY" -m http.server "$PORT" --bind 127.0.0.2) >"$T/http.log" 2>&1 &
HTTP_PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.2:$PORT/" && break; sleep 0.05; done
curl -s "http://127.0.0.2:$PORT/" | grep -q hello || { echo "FAIL: host server on 127.0.0.2:$PORT did not start"; cat "$T/http.log"; exit 1; }

cat >"$T/hosts" <<EOF
127.0.0.1 localhost
::1 localhost ip6-localhost
127.0.0.1 loop.sbx-test
169.254.169.254 meta.sbx-test
127.0.0.2 host2.sbx-test
EOF

sbx_service_start store "$STORE_BIN" || exit 1
STORE=$SBX_SERVICE_ADDR
STORE_PORT=${STORE##*:}
# the executor in a mount namespace of its own with the test's /etc/hosts
# shellcheck disable=SC2086
sbx_service_run executor unshare --mount --propagation private -- /bin/sh -c \
    'mount --bind "$0" /etc/hosts && exec "$@"' "$T/hosts" \
    "$EXEC_BIN" --listen 127.0.0.1:0 --data-dir "$T/executor" --store "$STORE" \
    --egress-allow-private 127.0.0.2/32 --egress-deny '*.blocked-globally.test' \
    --egress-default "127.0.0.2:$PORT" --metrics-listen 127.0.0.1:0 ${SBX_TEST_EXECUTOR_ARGS:-} || exit 1
EXEC=$SBX_SERVICE_ADDR
EXEC_PORT=${EXEC##*:}
export SBX_EXECUTOR=$EXEC SBX_STORE=$STORE
unset SBX_API_KEY
URL="http://127.0.0.2:$PORT/index.html"

# ---------------------------------------------------------------- allow_out needed
run sandbox create -p none; expect_rc 0 "create a sandbox (the --egress-default policy)"
run sandbox net -p none --none; expect_rc 0 "sandbox net --none"
sh_in none "curl -sS --max-time 10 $URL"
has "sbx egress: 127.0.0.2:$PORT denied (allow_out is empty)" "no policy: the proxy refuses and says why"
sh_in none "curl -sS --max-time 5 --noproxy '*' $URL"
[ "$RC" != 0 ] && ok "a program that ignores the proxy gets no network (fail closed)" || fail "direct connection worked"

run sandbox create -p web --allow-out "127.0.0.2:$PORT"; expect_rc 0 "create --allow-out 127.0.0.2:PORT"
sh_in web "env | grep -c _PROXY= ; curl -sS --max-time 10 $URL"
[ "$RC" = 0 ] && has "hello from the host" "an allowed destination is reached through the proxy" || fail "allowed curl failed"
sh_in web "curl -sS --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.2:1/"
has "403" "another port of the same host is refused (403)"
sh_in web "curl -sS --max-time 10 http://127.0.0.2:1/"
has "sbx egress: 127.0.0.2:1 denied (not in allow_out)" "the 403 body names the destination and the rule"
run sandbox create -p other --allow-out 127.0.0.3
sh_in other "curl -sS --max-time 10 $URL"
has "denied (not in allow_out)" "a non-matching allow_out refuses"

# deny wins; SOCKS5 with names resolved by the executor; https through CONNECT
run sandbox net -p web --allow-out 127.0.0.2 --deny-out "127.0.0.2:$PORT"; expect_rc 0 "sandbox net with a deny_out"
sh_in web "curl -sS --max-time 10 $URL"
has "denied (deny_out 127.0.0.2:$PORT)" "deny_out wins over allow_out"
run sandbox net -p web --allow-out host2.sbx-test --allow-out "127.0.0.2:$PORT"; expect_rc 0 "sandbox net: a name and an address"
sh_in web "curl -sS --max-time 10 http://host2.sbx-test:$PORT/index.html && curl -sS --max-time 10 -x socks5h://127.0.0.1:1080 http://host2.sbx-test:$PORT/index.html"
[ "$RC" = 0 ] && [ "$(printf '%s\n' "$OUT" | grep -c hello)" = 2 ] && ok "allowed by name, through HTTP and SOCKS5 (socks5h)" || fail "name through HTTP/SOCKS"
sh_in web "curl -sS --max-time 10 -p http://host2.sbx-test:$PORT/index.html"
[ "$RC" = 0 ] && has "hello" "CONNECT tunnel (curl -p)" || fail "CONNECT tunnel"
# a change applies to new connections
run sandbox net -p web --none; expect_rc 0 "sandbox net --none on a running sandbox"
sh_in web "curl -sS --max-time 10 $URL"
has "denied (allow_out is empty)" "after net --none new connections are refused"
run sandbox net -p web --allow-out "127.0.0.2:$PORT"
sh_in web "curl -sS --max-time 10 $URL"
has "hello from the host" "after net --allow-out they pass again"

# --egress-default: a sandbox created by a first exec
sh_in implicit "curl -sS --max-time 10 $URL"
[ "$RC" = 0 ] && has "hello from the host" "--egress-default applies to a sandbox made by exec" || fail "--egress-default"

# ---------------------------------------------------------------- SSRF
run sandbox create -p ssrf --allow-out '*' --allow-out '*.sbx-test'; expect_rc 0 "create --allow-out '*'"
ssrf() { # ssrf WHAT CURL-ARGS... : refused by the proxy
    sh_in ssrf "curl -sS --max-time 10 --noproxy '' $2"
    if [ "$RC" != 0 ] || [[ "$OUT" == *"sbx egress:"*denied* ]]; then
        if [[ "$OUT$ERR" == *"denied ("* ]] || [[ "$ERR" == *"not allowed"* ]] || [[ "$ERR" == *"(97)"* ]]; then
            ok "SSRF refused: $1"
        else
            fail "SSRF $1: refused, but not by the proxy"
        fi
    else
        fail "SSRF $1 reached: $OUT"
    fi
}
ssrf "127.0.0.1 (the store's port)" "http://127.0.0.1:$STORE_PORT/"
has "127.0.0.1:$STORE_PORT is an sbx service address" "the refusal names the store's address"
ssrf "127.0.0.1 (another port)" "http://127.0.0.1:22/"
has "127.0.0.1 is loopback" "the refusal says loopback"
ssrf "the executor's port" "http://127.0.0.1:$EXEC_PORT/"
ssrf "localhost by name" "http://localhost:$STORE_PORT/"
ssrf "[::1]" "http://[::1]:$STORE_PORT/"
ssrf "169.254.169.254 (cloud metadata)" "http://169.254.169.254/latest/meta-data/"
has "link-local" "the refusal says link-local"
ssrf "a name resolving to loopback" "http://loop.sbx-test:$STORE_PORT/"
ssrf "a name resolving to the metadata address" "http://meta.sbx-test/latest/"
ssrf "0.0.0.0" "http://0.0.0.0:$STORE_PORT/"
ssrf "127.0.0.2 opened by the operator but not named" "$URL"
has "internal" "'*' covers public destinations only"
ssrf "a name resolving to loopback through SOCKS5" "-x socks5h://127.0.0.1:1080 http://loop.sbx-test:$STORE_PORT/"
ssrf "the global --egress-deny" "http://x.blocked-globally.test/"
has "--egress-deny *.blocked-globally.test" "the global deny names its rule"

# ---------------------------------------------------------------- GetSandbox, validation
run --json sandbox get -p web; expect_rc 0 "sandbox get --json"
json_check "d['network']['allow_out']==['127.0.0.2:$PORT'] and d['network']['deny_out']==[] and d['network']['allowed']>=5 and d['network']['denied']>=3 and d['network']['http_proxy']=='http://127.0.0.1:3128'" "the network object: policy and counters"
run sandbox get -p web; has "allow_out: 127.0.0.2:$PORT" "sandbox get shows the policy"
run sandbox net -p web --allow-out 'bad pattern'
expect_rc 1 "a bad pattern is a request error"
has "INVALID_ARGUMENT" "INVALID_ARGUMENT"
has "network.allow_out[0]" "the error names the list and index"
run sandbox net -p web --allow-out ok.example --deny-out '*.'
has "network.deny_out[0]" "the error names deny_out"
run sandbox net -p nosuch --allow-out x.example; expect_rc 1 "net on a project without a sandbox"
has "NOT_FOUND" "NOT_FOUND"
run sandbox create -p web --allow-out other.example; expect_rc 0 "create on a running sandbox with another policy"
run --json sandbox get -p web
json_check "d['network']['allow_out']==['other.example']" "create --allow-out gives the running sandbox that policy"

# ---------------------------------------------------------------- flags, metrics, logs
for bad in "--egress-deny=a,,b" "--egress-allow-private=example.com" "--egress-default=*." "--egress-max-conns=0"; do
    "$EXEC_BIN" --listen 127.0.0.1:0 --data-dir "$T/bad" --store "$STORE" "$bad" >"$T/o" 2>"$T/e" </dev/null
    RC=$?; OUT=$(cat "$T/o"); ERR=$(cat "$T/e")
    flag=${bad%%=*}
    if [ "$RC" = 2 ] && [[ "$ERR" == *"$flag"* ]]; then ok "executor $bad exits 2 naming the flag"; else fail "executor $bad"; fi
done
MURL=$(sed -n 's/.*metrics on \(http:[^ "]*\).*/\1/p' "$SBX_SERVICE_DIR/executor.err" | head -n1)
if [ -n "$MURL" ] && curl -s "$MURL" >"$T/metrics"; then
    grep -q '^sbx_egress_connections_total{decision="allowed"} [1-9]' "$T/metrics" &&
        grep -q '^sbx_egress_connections_total{decision="denied"} [1-9]' "$T/metrics" &&
        grep -q '^sbx_egress_bytes_total{direction="in"} [1-9]' "$T/metrics" &&
        ok "Prometheus metrics count allowed/denied connections and bytes" || { OUT=$(grep egress "$T/metrics"); fail "egress metrics"; }
else
    fail "no metrics endpoint in the executor log"
fi
LOG=$SBX_SERVICE_DIR/executor.err
grep -q "comp=egress msg=\"connection\" .*dest=127.0.0.2 port=$PORT decision=allowed rule=\"allow_out 127.0.0.2:$PORT\" addr=127.0.0.2 bytes_out=[1-9][0-9]* bytes_in=[1-9]" "$LOG" &&
    ok "allowed connections are logged with rule and bytes each way" || fail "log of an allowed connection"
grep -q "level=info comp=egress .*decision=denied rule=\"127.0.0.1 is loopback\"" "$LOG" &&
    ok "denied connections are logged with the rule" || fail "log of a denied connection"

sbx_service_stop executor 30; RC=$?
expect_rc 0 "the executor stops cleanly"
if grep -E "level=error|AddressSanitizer|runtime error" "$LOG"; then fail "the executor logged errors"; fi

echo "egress.sh: $FAILS failure(s)"
[ "$FAILS" = 0 ]
