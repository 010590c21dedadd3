#!/bin/bash
# cli_watch.sh SBX SBX_STORE SBX_EXECUTOR: `sbx watch` against the shipped sbx-store and
# sbx-executor (ephemeral ports, temp data dirs). Checks: "KIND PATH" lines for files and
# directories created, modified, renamed and deleted (with --recursive, including the contents of
# a subdirectory created after the watch began), --json objects, a non-recursive watch ignoring
# subdirectories, a bulk creation of 10,000 files where every file is reported or an OVERFLOW
# line says events were lost, refusals (a kernel pseudo filesystem, a link out of the root, a
# missing path, a file; exit 1 naming the status), ".." clamped at the root, usage errors (2),
# an unreachable executor (69), the watch ending with exit 0 when its directory is deleted, and
# a reconnect after the executor is killed and restarted on the same address (the new READY
# then OVERFLOW, events after it). Exits 1 if any check failed; 77 without root.
set -u
SBX=${1:?usage: cli_watch.sh SBX SBX_STORE SBX_EXECUTOR}
STORE_BIN=${2:?usage: cli_watch.sh SBX SBX_STORE SBX_EXECUTOR}
EXEC_BIN=${3:?usage: cli_watch.sh SBX SBX_STORE SBX_EXECUTOR}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ "$(id -u)" != 0 ]; then
    echo "skip: sandboxes need root (user namespaces, cgroups, uid ranges)"; exit 77
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-cli-watch.XXXXXX")
chmod 711 "$T"
SBX_SERVICE_DIR=$T
. "$(cd "$(dirname "$0")" && pwd)/../lib/service.sh"
WATCHERS=()
cleanup() {
    local p
    for p in "${WATCHERS[@]}"; do kill "$p" 2>/dev/null; done
    sbx_service_stop_all
    rm -rf "$T"
}
trap cleanup EXIT
unset SBX_API_KEY

sbx_service_start store "$STORE_BIN" || exit 1
export SBX_STORE=$SBX_SERVICE_ADDR
# shellcheck disable=SC2086
sbx_service_start executor "$EXEC_BIN" --store "$SBX_STORE" ${SBX_TEST_EXECUTOR_ARGS:-} || exit 1
export SBX_EXECUTOR=$SBX_SERVICE_ADDR
echo "store on $SBX_STORE, executor on $SBX_EXECUTOR"

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
sh_in() { "$SBX" sh -p wproj "$1" >/dev/null 2>"$T/sh.err" || fail "sh '$1': $(cat "$T/sh.err")"; }
# start_watch NAME ARGS...: `sbx watch -p wproj ARGS` in the background, stdout in $T/NAME.out,
# stderr in $T/NAME.err; waits for its "watching" line (the watch is in place)
start_watch() {
    local name=$1 i
    shift
    "$SBX" watch -p wproj "$@" >"$T/$name.out" 2>"$T/$name.err" &
    WPID=$!
    WATCHERS+=("$WPID")
    for ((i = 0; i < 200; i++)); do
        grep -q '^sbx: watching ' "$T/$name.err" 2>/dev/null && return 0
        kill -0 "$WPID" 2>/dev/null || break
        sleep 0.05
    done
    fail "watch $*: not ready: $(cat "$T/$name.err")"
    return 1
}
# wait_line FILE REGEX [SECONDS]
wait_line() {
    local i
    for ((i = 0; i < ${3:-10} * 20; i++)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
expect_line() { # expect_line NAME LINE
    if wait_line "$T/$1.out" "^$2\$"; then ok "watch $1: $2"; else
        fail "watch $1: no line '$2'"; sed 's/^/  | /' "$T/$1.out" | tail -20; fi
}

sh_in 'mkdir -p w/old && echo x > w/old/keep'

# ---- text lines, recursive
start_watch rec w --recursive
H=/home/user/w
sh_in 'echo one > w/a.txt'
expect_line rec "CREATE $H/a.txt"
sh_in 'echo two >> w/a.txt'
expect_line rec "MODIFY $H/a.txt"
sh_in 'mkdir w/sub && echo deep > w/sub/inner.txt && mkdir w/sub/deeper && touch w/sub/deeper/z'
expect_line rec "CREATE $H/sub"
expect_line rec "CREATE $H/sub/inner.txt"
expect_line rec "CREATE $H/sub/deeper/z"
sh_in 'echo more >> w/old/keep'
expect_line rec "MODIFY $H/old/keep"
sh_in 'mv w/a.txt w/b.txt'
expect_line rec "RENAME_FROM $H/a.txt"
expect_line rec "RENAME_TO $H/b.txt"
sh_in 'mv w/sub w/sub2'
expect_line rec "RENAME_TO $H/sub2"
sh_in 'touch w/sub2/after-rename'
expect_line rec "CREATE $H/sub2/after-rename"
sh_in 'rm w/b.txt'
expect_line rec "DELETE $H/b.txt"
sh_in 'rm -r w/sub2'
expect_line rec "DELETE $H/sub2"
if grep -Evq '^(CREATE|MODIFY|DELETE|RENAME_FROM|RENAME_TO|OVERFLOW) /' "$T/rec.out"; then
    fail "watch: a line is not 'KIND PATH'"; grep -Ev '^(CREATE|MODIFY|DELETE|RENAME_FROM|RENAME_TO|OVERFLOW) /' "$T/rec.out"
else
    ok "watch: every line is 'KIND PATH' ($(wc -l <"$T/rec.out") lines)"
fi

# ---- --json and a non-recursive watch (together, on the same changes)
start_watch json w --json
start_watch flat w
sh_in 'mkdir w/jd && touch w/jd/nested && echo j > w/j.txt'
wait_line "$T/json.out" 'j\.txt' && wait_line "$T/flat.out" 'j\.txt'
if "$PY" - "$T/json.out" <<'PYEOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
assert all(set(e) == {"kind", "path", "is_dir"} for e in evs), evs
kinds = {(e["kind"], e["path"], e["is_dir"]) for e in evs}
assert ("CREATE", "/home/user/w/jd", True) in kinds, kinds
assert ("CREATE", "/home/user/w/j.txt", False) in kinds, kinds
assert not any(e["path"].endswith("/nested") for e in evs), evs
PYEOF
then ok "watch --json: {kind, path, is_dir} objects, is_dir true for a directory"; else
    fail "watch --json"; cat "$T/json.out"; fi
if grep -q "CREATE $H/jd" "$T/flat.out" && ! grep -q nested "$T/flat.out"; then
    ok "watch without --recursive: the subdirectory itself, not its contents"
else
    fail "watch flat"; cat "$T/flat.out"
fi

# ---- 10,000 files at once (an npm install's worth): each reported, or an OVERFLOW line
sh_in 'mkdir w/bulk && cd w/bulk && i=0; while [ $i -lt 10000 ]; do : > f$i; i=$((i+1)); done'
sh_in 'touch w/bulk-done'
wait_line "$T/rec.out" "CREATE $H/bulk-done" 60
n=$(grep -c "^CREATE $H/bulk/f[0-9]*\$" "$T/rec.out")
if grep -q '^OVERFLOW ' "$T/rec.out"; then
    ok "watch: 10,000 files: $n reported and an OVERFLOW line for the rest"
elif [ "$(grep "^CREATE $H/bulk/f" "$T/rec.out" | sort -u | wc -l)" = 10000 ]; then
    ok "watch: 10,000 files: every one reported"
else
    fail "watch: 10,000 files: $n reported, no OVERFLOW"
fi

# ---- refusals and clamping
refused() { # refused WHAT CODE-REGEX ARGS...
    local what=$1 re=$2
    shift 2
    timeout 20 "$SBX" watch -p wproj "$@" >"$T/r.out" 2>"$T/r.err"
    local rc=$?
    if [ $rc = 1 ] && grep -Eq "^sbx: watch .*: ($re): " "$T/r.err" && [ "$(wc -l <"$T/r.err")" = 1 ]; then
        ok "watch $what refused: $(cat "$T/r.err")"
    else
        fail "watch $what: exit $rc, stderr $(cat "$T/r.err")"
    fi
}
sh_in 'ln -sfn /proc/1/root w/escape'
refused "/proc" PERMISSION_DENIED /proc
refused "a link to the init's root" "PERMISSION_DENIED|NOT_FOUND|FAILED_PRECONDITION" w/escape
refused "a missing path" NOT_FOUND w/missing
refused "a file" FAILED_PRECONDITION w/old/keep
start_watch clamp /../../../tmp
grep -q '^sbx: watching /tmp$' "$T/clamp.err" && ok "watch: /../../../tmp is the sandbox's /tmp" ||
    fail "watch clamp: $(cat "$T/clamp.err")"
kill "$WPID" 2>/dev/null
"$SBX" watch -p wproj >/dev/null 2>"$T/u.err"
[ $? = 2 ] && ok "watch without PATH: usage error (2)" || fail "watch without PATH: $(cat "$T/u.err")"
"$SBX" watch -p wproj w --coalesce-ms 0 >/dev/null 2>"$T/u.err"
[ $? = 2 ] && grep -q 'coalesce-ms' "$T/u.err" && ok "watch --coalesce-ms 0: usage error naming it" ||
    fail "watch --coalesce-ms 0: $(cat "$T/u.err")"
"$SBX" --executor 127.0.0.1:1 watch -p wproj w >/dev/null 2>"$T/u.err"
[ $? = 69 ] && ok "watch: unreachable executor exits 69" || fail "watch unreachable: $(cat "$T/u.err")"

# ---- the end of a watch: its directory deleted
sh_in 'mkdir -p gone'
start_watch gone gone
gpid=$WPID
sh_in 'rm -r gone'
for ((i = 0; i < 100; i++)); do kill -0 $gpid 2>/dev/null || break; sleep 0.1; done
if kill -0 $gpid 2>/dev/null; then fail "watch: still running after its directory was deleted"; else
    wait $gpid; rc=$?
    [ $rc = 0 ] && ok "watch: ends with exit 0 when its directory is deleted" || fail "watch gone: exit $rc"
fi

# ---- a reconnect: the executor killed (no clean end of the stream) and started again at the same
# address; the sandbox is new, so the watch says READY again, then OVERFLOW (changes were missed)
start_watch again /tmp
apid=$WPID
EXEC_PID=$(sbx_service_pid executor)
kill -KILL "$EXEC_PID"
wait "$EXEC_PID" 2>/dev/null
# shellcheck disable=SC2086
sbx_service_run executor2 "$EXEC_BIN" --listen "$SBX_EXECUTOR" --data-dir "$T/executor" \
    --store "$SBX_STORE" ${SBX_TEST_EXECUTOR_ARGS:-} || exit 1
for ((i = 0; i < 600; i++)); do
    [ "$(grep -c '^sbx: watching /tmp$' "$T/again.err")" -ge 2 ] && break
    sleep 0.05
done
if [ "$(grep -c '^sbx: watching /tmp$' "$T/again.err")" = 2 ]; then
    if wait_line "$T/again.out" '^OVERFLOW /tmp$' 5; then
        ok "watch: reconnected after the executor restarted (READY again, then OVERFLOW)"
    else
        fail "watch reconnect: no OVERFLOW line"; cat "$T/again.out"
    fi
    sh_in 'touch /tmp/after-restart'
    expect_line again "CREATE /tmp/after-restart"
else
    fail "watch reconnect: $(cat "$T/again.err")"
fi
kill $apid 2>/dev/null

echo "$FAILS failed"
[ "$FAILS" = 0 ]
