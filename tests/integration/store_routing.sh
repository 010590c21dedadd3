#!/bin/bash
# store_routing.sh SBX SBX_STORE SBX_EXECUTOR: an executor with several stores, as deployed:
# three shipped sbx-store and one sbx-executor --store A,B,C (ephemeral ports, temp data dirs,
# default flags otherwise). Each project's history lands on exactly one store, the one the
# client reads it from (libsbx and the executor route alike); with one store killed (-9), the
# other projects' records still arrive at once, the dead store's projects keep running
# commands, its backlog shows in the executor's metrics, and after the store restarts every
# record arrives exactly once. A bad --store / --listen entry exits 2 naming the flag. Needs
# root (sandboxes); exits 77 otherwise.
set -u
SBX=${1:?usage: store_routing.sh SBX SBX_STORE SBX_EXECUTOR}
STORE_BIN=${2:?}
EXEC_BIN=${3:?}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
[ "$(id -u)" = 0 ] || { echo "skip: sandboxes need root"; exit 77; }
command -v curl >/dev/null || { echo "skip: curl is not installed"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-routing.XXXXXX")
chmod 711 "$T"
SBX_SERVICE_DIR=$T
. "$(cd "$(dirname "$0")" && pwd)/../lib/service.sh"
trap 'sbx_service_stop_all; rm -rf "$T"' EXIT
FAILS=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# ---------------------------------------------------------------- bad address flags
"$EXEC_BIN" --listen 127.0.0.1:0 --data-dir "$T/bad" --store '127.0.0.1:1,,127.0.0.1:2' \
    >/dev/null 2>"$T/bad.err"
rc=$?
[ "$rc" = 2 ] && grep -q -- '--store: empty item' "$T/bad.err" &&
    ok "--store with an empty item exits 2 naming the flag" ||
    fail "--store with an empty item: exit $rc, $(cat "$T/bad.err")"
"$EXEC_BIN" --listen 127.0.0.1:0 --data-dir "$T/bad" --store '127.0.0.1:1,nohost' \
    >/dev/null 2>"$T/bad.err"
rc=$?
[ "$rc" = 2 ] && grep -q -- '--store: bad address "nohost"' "$T/bad.err" &&
    ok "--store with a bad entry exits 2 naming it" || fail "--store bad entry: exit $rc, $(cat "$T/bad.err")"
"$EXEC_BIN" --listen 127.0.0.1:99999 --data-dir "$T/bad" >/dev/null 2>"$T/bad.err"
rc=$?
[ "$rc" = 2 ] && grep -q -- '--listen: bad address' "$T/bad.err" &&
    ok "--listen with a port past 65535 exits 2" || fail "--listen bad port: exit $rc, $(cat "$T/bad.err")"
"$STORE_BIN" --listen localhost --data-dir "$T/bad" >/dev/null 2>"$T/bad.err"
rc=$?
[ "$rc" = 2 ] && grep -q -- '--listen: bad address' "$T/bad.err" &&
    ok "sbx-store --listen without a port exits 2" || fail "sbx-store --listen: exit $rc, $(cat "$T/bad.err")"

# ---------------------------------------------------------------- three stores, one executor
S=()
for i in 1 2 3; do
    sbx_service_start "s$i" "$STORE_BIN" || exit 1
    S+=("$SBX_SERVICE_ADDR")
done
LIST=$(IFS=,; echo "${S[*]}")
sbx_service_start ex "$EXEC_BIN" --store "$LIST" --metrics-listen 127.0.0.1:0 || exit 1
export SBX_EXECUTOR=$SBX_SERVICE_ADDR SBX_STORE=$LIST
METRICS=$(sed -n 's/.*metrics on \(http:[^ "]*\).*/\1/p' "$T/ex.err" | head -n1)
echo "stores $LIST, executor $SBX_EXECUTOR, metrics $METRICS"

P=12
records() { # records STORE PROJECT: how many history records that one store has
    SBX_STORE=$1 "$SBX" --json history -p "$2" --limit 1000 2>/dev/null |
        "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?"
}
for ((p = 0; p < P; p++)); do
    "$SBX" sh -p "rt-$p" "echo one-$p" >/dev/null || fail "exec in rt-$p"
done
declare -A OWNER
spread_ok=1
for ((p = 0; p < P; p++)); do
    owner= n_owners=0
    for ((i = 0; i < 3; i++)); do
        for ((w = 0; w < 50; w++)); do # the record may still be on its way
            n=$(records "${S[$i]}" "rt-$p")
            [ "$n" = 0 ] || break
            [ -n "$owner" ] && break # another store has it: no need to wait here
            sleep 0.1
        done
        if [ "$n" = 1 ]; then owner=$i; n_owners=$((n_owners + 1)); fi
        [ "$n" = 0 ] || [ "$n" = 1 ] || { fail "rt-$p: store $i has $n records"; spread_ok=0; }
    done
    [ "$n_owners" = 1 ] || { fail "rt-$p: its record is on $n_owners stores"; spread_ok=0; continue; }
    OWNER[$p]=$owner
    got=$("$SBX" --json history -p "rt-$p" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$got" = 1 ] || { fail "rt-$p: the client (all stores) reads $got records"; spread_ok=0; }
done
[ "$spread_ok" = 1 ] && ok "each project's record is on exactly one store, the one libsbx reads"
used=$(printf '%s\n' "${OWNER[@]}" | sort -u | wc -l)
[ "$used" -ge 2 ] && ok "$P projects spread over $used stores" || fail "all projects on one store"

# ---------------------------------------------------------------- one store down
DEAD=${OWNER[0]}
DEAD_NAME=s$((DEAD + 1))
sbx_service_kill9 "$DEAD_NAME"
for ((p = 0; p < P; p++)); do
    "$SBX" sh -p "rt-$p" "echo two-$p" >/dev/null || fail "exec in rt-$p with store ${S[$DEAD]} down"
done
ok "commands ran in every project with store ${S[$DEAD]} down"
live_ok=1
for ((p = 0; p < P; p++)); do
    [ "${OWNER[$p]}" = "$DEAD" ] && continue
    for ((w = 0; w < 30; w++)); do
        n=$(records "${S[${OWNER[$p]}]}" "rt-$p")
        [ "$n" = 2 ] && break
        sleep 0.1
    done
    [ "$n" = 2 ] || { fail "rt-$p (a live store): $n records 3 s after the run"; live_ok=0; }
done
[ "$live_ok" = 1 ] && ok "the live stores' projects got their records at once"
m=$(curl -s "$METRICS" | grep "^sbx_outbox_pending_records{store=\"${S[$DEAD]}\"}" | awk '{print $2}')
[ -n "$m" ] && [ "$m" -ge 1 ] && ok "metrics: $m records pending for the dead store" ||
    fail "metrics: pending for the dead store is '$m'"
curl -s "$METRICS" | grep -q "^sbx_outbox_oldest_record_seconds{store=\"${S[$DEAD]}\"}" &&
    ok "metrics: the oldest record's age per store" || fail "metrics: no oldest_record_seconds"

# ---------------------------------------------------------------- restart: exactly once
sbx_service_run "$DEAD_NAME.2" "$STORE_BIN" --listen "${S[$DEAD]}" --data-dir "$T/$DEAD_NAME" ||
    exit 1
back_ok=1
for ((p = 0; p < P; p++)); do
    [ "${OWNER[$p]}" = "$DEAD" ] || continue
    for ((w = 0; w < 150; w++)); do # the outbox backs off up to 10 s
        n=$(records "${S[$DEAD]}" "rt-$p")
        [ "$n" = 2 ] && break
        sleep 0.1
    done
    [ "$n" = 2 ] || { fail "rt-$p (restarted store): $n records"; back_ok=0; }
done
sleep 1
for ((p = 0; p < P; p++)); do
    n=$(records "${S[${OWNER[$p]}]}" "rt-$p")
    [ "$n" = 2 ] || { fail "rt-$p: $n records after the backlog (want exactly 2)"; back_ok=0; }
done
[ "$back_ok" = 1 ] && ok "after the restart every record arrived exactly once"
m=$(curl -s "$METRICS" | grep "^sbx_outbox_pending_records{store=\"${S[$DEAD]}\"}" | awk '{print $2}')
[ "$m" = 0 ] && ok "metrics: nothing pending after the restart" || fail "metrics: pending '$m'"

echo "$FAILS failure(s)"
exit $((FAILS > 0))
