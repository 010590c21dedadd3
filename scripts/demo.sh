#!/usr/bin/env bash
# demo.sh: the main job on a fresh Debian 12 machine. Installs the packages, builds, starts
# sbx-store (RocksDB embedded) and sbx-executor on localhost, runs `sbx demo` against them
# (project, upload, commands, cached rerun, history, a dev server answering HTTP), then stops
# both services. Data lives in ./.demo (kept, so a second run shows history growing).
#   SBX_DEMO_KEEP=1  leave the services running afterwards (their pids are printed)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build

data=$PWD/.demo
mkdir -p "$data"
pids=()
stop() {
  if [ "${SBX_DEMO_KEEP:-0}" = 1 ]; then
    echo "services left running: pids ${pids[*]}"; return
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT

start() { # start NAME BINARY ARGS... -> sets ADDR
  local name=$1; shift
  "$@" >"$data/$name.out" 2>"$data/$name.log" &
  pids+=($!)
  for _ in $(seq 200); do
    if grep -q '^listening on ' "$data/$name.out" 2>/dev/null; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "$name failed to start:"; cat "$data/$name.log"; exit 1; fi
    sleep 0.05
  done
  ADDR=$(sed -n 's/^listening on //p' "$data/$name.out")
  echo "$name listening on $ADDR (log: $data/$name.log)"
}

start store build/services/store/sbx-store --listen 127.0.0.1:0 --data-dir "$data/store"
STORE=$ADDR
start executor build/services/executor/sbx-executor --listen 127.0.0.1:0 --data-dir "$data/executor" --store "$STORE"
EXECUTOR=$ADDR

export SBX_STORE=$STORE SBX_EXECUTOR=$EXECUTOR
build/client/sbx health --service store
build/client/sbx health --service executor
build/client/sbx demo
