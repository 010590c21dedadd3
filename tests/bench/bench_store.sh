#!/usr/bin/env bash
# bench_store.sh [BUILD_DIR] [SECONDS]: sbx-store vs etcd 3.4 vs Redis 7, same machine, same run.
# sbx-bench drives sbx-store and etcd with the same request bytes (etcd's PutRequest/RangeRequest
# share the wire layout of KvSetRequest/KvGetRequest: key = 1, value = 2); redis-benchmark drives
# Redis at the same concurrency. Every server is started here on loopback with its own temp dir
# and durable settings (sbx --sync on, etcd's WAL fsync, Redis appendfsync always).
# Prints one table (with each server's CPU time per request, from /proc, warm-up included in both
# the time and the count), the ratios the store issue sets, and what bounds a durable Set here:
# an empty RPC, the same Set without fdatasync (a second store with --sync off) and an idle
# fdatasync's latency on the same file system.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
secs=${2:-5}
bench=$build/tests/bench/sbx-bench
store=$build/services/store/sbx-store
tmp=$(mktemp -d)
export SBX_SERVICE_DIR=$tmp
. "$here/../lib/service.sh"
pids=()
cleanup() {
  sbx_service_stop_all
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# --- servers
sbx_service_start sbx "$store" --sync on --log-level error
SBX=$SBX_SERVICE_ADDR
# the same binary without fdatasync (writes acknowledged from the page cache): not a shipped
# setting, only the ceiling a durable Set cannot pass here
sbx_service_start nosync "$store" --sync off --log-level error
NOSYNC=$SBX_SERVICE_ADDR

EP=$(freeport); EPP=$(freeport)
etcd --name bench --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
  --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$EPP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EPP" --initial-cluster "bench=http://127.0.0.1:$EPP" \
  --log-level error >"$tmp/etcd.log" 2>&1 &
pids+=($!)
ETCD_PID=$!
waitport "$EP"
ETCD=127.0.0.1:$EP
SBX_PID=$(sbx_service_pid sbx)

RP=$(freeport)
mkdir -p "$tmp/redis"
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
  --dir "$tmp/redis" --daemonize no --loglevel warning >"$tmp/redis.log" 2>&1 &
pids+=($!)
waitport "$RP"

field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
sb() { "$bench" --json --target "$1" --scenario "$2" -c "$3" -z "$secs" --warmup 1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_per_op PID TICKS_BEFORE JSON: the server's CPU microseconds per request of the run
cpu_per_op() {
  /usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[3]); n=d['rps']*(d['elapsed_s']+1)
print('%.1f' % ((int(sys.argv[2])-int(sys.argv[1]))*1e6/$(getconf CLK_TCK)/n if n else 0))" "$2" "$(ticks "$1")" "$3"
}
redis() { # redis TEST C -> rps
  local n=$(( $2 * 2000 )); [ "$n" -lt 20000 ] && n=20000
  redis-benchmark -h 127.0.0.1 -p "$RP" -t "$1" -c "$2" -n "$n" -d 100 -r 4096 --csv -q 2>/dev/null |
    tail -1 | cut -d, -f2 | tr -d '"'
}
ratio() { /usr/bin/python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2f' % (a/b) if b else 'n/a')" "$1" "$2"; }

# load the read sets first
"$bench" --target "$SBX" --scenario kv-set -n 8192 -c 16 >/dev/null
"$bench" --target "$ETCD" --scenario etcd-put -n 8192 -c 16 >/dev/null
"$bench" --target "$SBX" --scenario record -n 4096 -c 16 >/dev/null

declare -A R P C
printf '%-26s %4s | %10s %8s %7s | %10s %8s %7s | %10s | %s\n' op c "sbx rps" "p50 us" "cpu us" \
  "etcd rps" "p50 us" "cpu us" "redis rps" "sbx/etcd sbx/redis"
row() { # row LABEL SBXSCEN ETCDSCEN REDISTEST C
  local j t0; t0=$(ticks "$SBX_PID"); j=$(sb "$SBX" "$2" "$5")
  R[s.$1.$5]=$(field "$j" rps); P[s.$1.$5]=$(field "$j" p50_us); C[s.$1.$5]=$(cpu_per_op "$SBX_PID" "$t0" "$j")
  local er=0 ep=0 ec=0
  if [ -n "$3" ]; then
    t0=$(ticks "$ETCD_PID"); j=$(sb "$ETCD" "$3" "$5")
    er=$(field "$j" rps); ep=$(field "$j" p50_us); ec=$(cpu_per_op "$ETCD_PID" "$t0" "$j")
  fi
  local rr=0; [ -n "$4" ] && rr=$(redis "$4" "$5")
  R[e.$1.$5]=$er; R[r.$1.$5]=$rr; C[e.$1.$5]=$ec
  printf '%-26s %4s | %10.0f %8.0f %7s | %10.0f %8.0f %7s | %10.0f | %s %s\n' "$1" "$5" "${R[s.$1.$5]}" \
    "${P[s.$1.$5]}" "${C[s.$1.$5]}" "$er" "$ep" "$ec" "$rr" "$(ratio "${R[s.$1.$5]}" "$er")" \
    "$(ratio "${R[s.$1.$5]}" "$rr")"
}
for c in 1 16 64; do
  row "health (layer echo)" health "" "" $c
  row "Get / Range / GET" kv-get etcd-range get $c
  row "GetProject" get-project "" "" $c
  row "GetCachedResult" get-cached "" "" $c
  row "Set / Put / SET (durable)" kv-set etcd-put set $c
  row "AppendExecution (durable)" append "" "" $c
  row "RecordExecution (durable)" record "" "" $c
done
echo
echo "Goals (store issue):"
for op in "Get / Range / GET" GetProject GetCachedResult; do
  echo "  $op p50 at 1 in flight / health p50: $(ratio "${P[s.$op.1]}" "${P[s.health (layer echo).1]}") (<= 1.2)"
  echo "  $op rps at 64 / health rps at 64: $(ratio "${R[s.$op.64]}" "${R[s.health (layer echo).64]}") (>= 0.70)"
  echo "  $op rps at 64 / etcd Range rps at 64: $(ratio "${R[s.$op.64]}" "${R[e.Get / Range / GET.64]}") (>= 3)"
done
for op in "Set / Put / SET (durable)" "AppendExecution (durable)" "RecordExecution (durable)"; do
  for c in 16 64; do
    echo "  $op rps at $c / etcd Put at $c: $(ratio "${R[s.$op.$c]}" "${R[e.Set / Put / SET (durable).$c]}") (>= 2)"
    echo "  $op rps at $c / Redis SET appendfsync always at $c: $(ratio "${R[s.$op.$c]}" "${R[r.Set / Put / SET (durable).$c]}") (>= 0.6)"
  done
done
for c in 16 64; do
  echo "  RecordExecution rps at $c / Set rps at $c: $(ratio "${R[s.RecordExecution (durable).$c]}" "${R[s.Set / Put / SET (durable).$c]}") (>= 1)"
done
echo
echo "What bounds a durable Set here (same run):"
# an appending 200-byte write + fdatasync on the data dir's file system, idle machine: the least
# a durable write waits for after its bytes are written
FSYNC_P50=$(/usr/bin/python3 - "$tmp/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
t = []
for _ in range(400):
    os.write(fd, b"x" * 200)
    a = time.perf_counter()
    os.fdatasync(fd)
    t.append((time.perf_counter() - a) * 1e6)
os.close(fd)
t.sort()
print("%.0f" % t[len(t) // 2])
PY
)
for c in 16 64; do
  j=$(sb "$NOSYNC" kv-set $c); nr=$(field "$j" rps)
  er=${R[e.Set / Put / SET (durable).$c]}
  echo "  at $c in flight: an empty RPC (health) $(ratio "${R[s.health (layer echo).$c]}" "$er")x etcd Put, at ${C[s.health (layer echo).$c]} us of store CPU per call; Set ${C[s.Set / Put / SET (durable).$c]} us; etcd Put ${C[e.Set / Put / SET (durable).$c]} us"
  # each of c writers: the no-fsync cycle (c / rate) plus at least one whole fdatasync
  ceil=$(/usr/bin/python3 -c "import sys; c,r,f=map(float,sys.argv[1:]); print('%.0f' % (c / (c / r + f * 1e-6)))" "$c" "$nr" "$FSYNC_P50")
  echo "  at $c in flight: Set without fdatasync (--sync off) $(printf '%.0f' "$nr")/s = $(ratio "$nr" "$er")x etcd Put; plus one idle fdatasync (p50 $FSYNC_P50 us) per write: at most $ceil/s = $(ratio "$ceil" "$er")x; durable Set $(ratio "${R[s.Set / Put / SET (durable).$c]}" "$er")x"
done
