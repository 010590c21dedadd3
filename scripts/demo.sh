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

# services: tests/lib/service.sh (ephemeral ports, data in ./.demo/{store,executor})
export SBX_SERVICE_DIR=$PWD/.demo
. tests/lib/service.sh
stop() {
  if [ "${SBX_DEMO_KEEP:-0}" = 1 ]; then
    echo "services left running: pids $(sbx_service_pid store) $(sbx_service_pid executor)"; return
  fi
  sbx_service_stop_all
}
trap stop EXIT

sbx_service_start store build/services/store/sbx-store
STORE=$SBX_SERVICE_ADDR
echo "store listening on $STORE (log: $SBX_SERVICE_DIR/store.err)"
sbx_service_start executor build/services/executor/sbx-executor --store "$STORE"
EXECUTOR=$SBX_SERVICE_ADDR
echo "executor listening on $EXECUTOR (log: $SBX_SERVICE_DIR/executor.err)"

export SBX_STORE=$STORE SBX_EXECUTOR=$EXECUTOR
build/client/sbx health --service store
build/client/sbx health --service executor
build/client/sbx demo
