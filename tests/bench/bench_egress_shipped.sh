#!/bin/bash
# bench_egress_shipped.sh SBX SBX_STORE SBX_EXECUTOR [ROUNDS]: the egress proxies of the shipped
# executor (default flags apart from the listen address, the data dir and
# --egress-allow-private 127.0.0.2/32) against direct access from the host, in the same run, as
# ratios (never pass/fail). A host HTTP server on 127.0.0.2 serves a one-byte file and a 1 GiB
# sparse file with sendfile(2). curl measures itself (-w) so no Exec round trip is in the figures:
#  - time to first byte of a new connection: curl in a sandbox through the HTTP proxy
#    (absolute-URI request), through a CONNECT tunnel (curl -p) and through SOCKS5 (socks5h),
#    against curl on the host going direct; medians of ROUNDS (default 200) connections each;
#  - bulk: one 1 GiB download through the HTTP proxy vs direct (best of 3 each).
# Goals (issue 12): + <= 0.5 ms per connection, >= 1 GB/s bulk through the proxy.
# Needs root (sandboxes); exits 77 otherwise.
set -u
SBX=${1:?usage: bench_egress_shipped.sh SBX SBX_STORE SBX_EXECUTOR [ROUNDS]}
STORE_BIN=${2:?}
EXEC_BIN=${3:?}
ROUNDS=${4:-200}
PY=/usr/bin/python3
if [ "$(id -u)" != 0 ]; then echo "skip: sandboxes need root"; exit 77; fi

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-bench-egress.XXXXXX")
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

mkdir -p "$T/www"
printf x >"$T/www/one"
truncate -s 1G "$T/www/big"
cat >"$T/server.py" <<'EOF'
import http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def copyfile(self, src, dst):
        self.wfile.flush()
        self.connection.sendfile(src)
    def log_message(self, *a):
        pass
os.chdir(sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.2", int(sys.argv[1])), H).serve_forever()
EOF
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.2',0)); print(s.getsockname()[1])")
"$PY" "$T/server.py" "$PORT" "$T/www" >"$T/http.log" 2>&1 &
HTTP_PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.2:$PORT/one" && break; sleep 0.05; done

sbx_service_start store "$STORE_BIN" || exit 1
STORE=$SBX_SERVICE_ADDR
sbx_service_start executor "$EXEC_BIN" --store "$STORE" --egress-allow-private 127.0.0.2/32 || exit 1
export SBX_EXECUTOR=$SBX_SERVICE_ADDR SBX_STORE=$STORE
unset SBX_API_KEY
"$SBX" sandbox create -p bench --allow-out "127.0.0.2:$PORT" >/dev/null || exit 1

ONE="http://127.0.0.2:$PORT/one"
BIG="http://127.0.0.2:$PORT/big"
# loop N CURL-ARGS: one time_starttransfer (seconds) per line
LOOP='for i in $(seq 1 '"$ROUNDS"'); do curl -s -o /dev/null -w "%{time_starttransfer}\n" '
median_ms() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } printf "%.3f", v[int((NR + 1) / 2)] * 1000 }'; }

direct=$(bash -c "$LOOP --noproxy '*' $ONE; done" | median_ms)
http=$("$SBX" sh -p bench "$LOOP $ONE; done" | median_ms)
tunnel=$("$SBX" sh -p bench "$LOOP -p $ONE; done" | median_ms)
socks=$("$SBX" sh -p bench "$LOOP -x socks5h://127.0.0.1:1080 $ONE; done" | median_ms)
direct2=$(bash -c "$LOOP --noproxy '*' $ONE; done" | median_ms)

echo "== shipped executor: time to first byte of a new connection (median of $ROUNDS, ms)"
printf 'direct from the host      %8s ms (again after the proxied rounds: %s ms)\n' "$direct" "$direct2"
for row in "HTTP proxy:$http" "CONNECT tunnel:$tunnel" "SOCKS5 (socks5h):$socks"; do
    name=${row%%:*} v=${row#*:}
    awk -v n="$name" -v v="$v" -v d="$direct" 'BEGIN { printf "%-25s %8.3f ms  +%.3f ms  %.2fx direct (goal +<= 0.5 ms)\n", n, v, v - d, v / d }'
done

best() { sort -n | tail -1; }
bulk_d=$(for _ in 1 2 3; do curl -s -o /dev/null --noproxy '*' -w '%{speed_download}\n' "$BIG"; done | best)
bulk_p=$("$SBX" sh -p bench "for i in 1 2 3; do curl -s -o /dev/null -w '%{speed_download}\n' $BIG; done" | best)
echo "== shipped executor: bulk, one 1 GiB download (best of 3)"
awk -v d="$bulk_d" -v p="$bulk_p" 'BEGIN { printf "direct %.2f GB/s, through the HTTP proxy %.2f GB/s: %.2fx direct (goal >= 1 GB/s)\n", d / 1e9, p / 1e9, p / d }'
