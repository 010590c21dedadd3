#!/bin/bash
# cli_store.sh SBX SBX_STORE: end-to-end test of the `sbx` CLI against a real sbx-store on an
# ephemeral port with a temp data dir: kv, project, history, cache, keygen and health commands,
# their exit statuses (0 / 1 request error / 2 usage / 69 unreachable), the one-line error
# format, --help, and the --json documents of CLI.md. Every check asserts; the script exits 1
# if any failed.
set -u
SBX=${1:?usage: cli_store.sh SBX SBX_STORE}
STORE_BIN=${2:?usage: cli_store.sh SBX SBX_STORE}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-cli-store.XXXXXX")
SBX_SERVICE_DIR=$T # the store's log in $T/store.{out,err}, its data in $T/store
. "$(cd "$(dirname "$0")" && pwd)/../lib/service.sh"
cleanup() {
    sbx_service_stop_all
    [ -n "${FOLLOW_PID:-}" ] && kill "$FOLLOW_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

sbx_service_start store "$STORE_BIN" || exit 1
ADDR=$SBX_SERVICE_ADDR
export SBX_STORE=$ADDR
export SBX_EXECUTOR=127.0.0.1:1   # nothing listens there: "unreachable"
unset SBX_API_KEY
echo "sbx-store on $ADDR"

FAILS=0
OUT= ERR= RC=
# run ARGS...: runs sbx, capturing stdout/stderr/status in $OUT/$ERR/$RC
run() {
    "$SBX" "$@" >"$T/o" 2>"$T/e" </dev/null
    RC=$?
    OUT=$(cat "$T/o")
    ERR=$(cat "$T/e")
}
fail() { echo "FAIL: $*"; echo "  stdout: $OUT"; echo "  stderr: $ERR"; echo "  status: $RC"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
expect_rc() { # expect_rc N WHAT
    if [ "$RC" = "$1" ]; then ok "$2 (exit $1)"; else fail "$2: want exit $1"; fi
}
expect_out() { # expect_out TEXT WHAT
    if [ "$OUT" = "$1" ] && [ "$RC" = 0 ]; then ok "$2"; else fail "$2: want stdout '$1'"; fi
}
expect_err_re() { # expect_err_re REGEX WHAT
    if [[ "$ERR" =~ $1 ]]; then ok "$2"; else fail "$2: stderr does not match /$1/"; fi
}
# json_check PYEXPR WHAT: evaluates PYEXPR with d = the parsed stdout
json_check() {
    if printf '%s' "$OUT" | "$PY" -c "import json,sys; d=json.loads(sys.stdin.buffer.read().decode('utf-8','surrogatepass')); sys.exit(0 if ($1) else 1)" 2>"$T/pyerr"; then
        ok "$2"
    else
        fail "$2: JSON check failed: $1 $(cat "$T/pyerr")"
    fi
}
RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$'

# ---------------------------------------------------------------- usage, health, unreachable
run; expect_rc 2 "no command is a usage error"
run frobnicate; expect_rc 2 "unknown command"
run kv; expect_rc 2 "kv without subcommand"
run kv get; expect_rc 2 "kv get without KEY"
run exec -p x; expect_rc 2 "exec without a command"
run --deadline nope health; expect_rc 2 "bad --deadline"
[ "$(printf '%s' "$ERR" | wc -l)" -le 1 ] && ok "usage error is one line" || fail "usage error is not one line"
run ls -p x --bogus; expect_rc 2 "an unknown option"
[ "$ERR" = "sbx: ls: unknown option --bogus (try: sbx ls --help)" ] && ok "unknown option: one line naming command, option and help" || fail "unknown option line"
run kv set k v --ttl; expect_rc 2 "an option without its value"
[ "$ERR" = "sbx: kv set: --ttl needs a value (try: sbx kv --help)" ] && ok "missing value: one line" || fail "missing value line"
run kv list --limit 0; expect_rc 2 "a value out of range"
expect_err_re '^sbx: kv list: --limit: want 1\.\.1000000 \(got "0"\)$' "out of range: names the limit"
run kv --help; expect_rc 0 "kv --help"
[[ "$OUT" == "usage: sbx kv set KEY VALUE"* && "$OUT" == *"--keys-only"* && -z "$ERR" ]] && ok "kv --help prints kv's usage on stdout" || fail "kv --help output"
KV_HELP=$OUT
run help kv; [ "$OUT" = "$KV_HELP" ] && [ "$RC" = 0 ] && ok "help kv is kv --help" || fail "help kv"
run kv get k --help; [ "$OUT" = "$KV_HELP" ] && [ "$RC" = 0 ] && ok "--help after the arguments" || fail "kv get k --help"
run --help; expect_rc 0 "--help"
[[ "$OUT" == "usage: sbx "* && "$OUT" == *$'\n  kv '* && "$OUT" == *$'\n  exec '* ]] && ok "--help lists the commands" || fail "--help output"
run --version; [[ "$RC" = 0 && "$OUT" =~ ^sbx\ [0-9]+\.[0-9]+ ]] && ok "--version" || fail "--version"

run health --service store; expect_rc 0 "health --service store"
[ "$OUT" = "store $ADDR SERVING" ] && ok "health prints SERVING" || fail "health output"
run --json health --service store; expect_rc 0 "health --json"
json_check "d == [{'service':'store','address':'$ADDR','status':'SERVING'}]" "health --json document"
run health --service executor; expect_rc 69 "health of an unreachable executor"
expect_err_re '^sbx: health executor 127\.0\.0\.1:1: UNAVAILABLE: ' "unreachable error line"
run --store 127.0.0.1:1 kv get k; expect_rc 69 "kv get with the store unreachable"
expect_err_re '^sbx: kv get k: UNAVAILABLE: .+' "unreachable kv error line"
run health; expect_rc 69 "health of both with the executor down"

# ---------------------------------------------------------------- keygen
run keygen --tenant acme; expect_rc 0 "keygen"
KEY=$(printf '%s\n' "$OUT" | sed -n 1p)
LINE=$(printf '%s\n' "$OUT" | sed -n 2p)
[ "$(printf '%s\n' "$OUT" | wc -l)" = 2 ] && ok "keygen prints two lines" || fail "keygen line count"
[[ "$KEY" =~ ^sbx_[A-Za-z0-9_-]{43}$ ]] && ok "keygen key format" || fail "keygen key format: $KEY"
WANT="acme:$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)"
[ "$LINE" = "$WANT" ] && ok "keygen keys-file line is TENANT:SHA256HEX(key)" || fail "keygen line: $LINE != $WANT"
run keygen --tenant acme; [ "$(printf '%s\n' "$OUT" | sed -n 1p)" != "$KEY" ] && ok "keygen keys differ" || fail "keygen repeated a key"
run keygen --tenant 'bad tenant'; expect_rc 2 "keygen with a bad tenant"
run keygen; expect_rc 2 "keygen without --tenant"

# ---------------------------------------------------------------- kv
run kv set greeting hello
expect_rc 0 "kv set"
run kv get greeting; expect_out "hello" "kv get prints the value alone"
run --json kv get greeting; expect_rc 0 "kv get --json"
json_check "sorted(d) == ['expires_at','key','value','version'] and d['key']=='greeting' and d['value']=='hello' and d['version']>=1 and d['expires_at'] is None" "kv get --json keys"
VER=$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["version"])')
run kv get missing-key; expect_rc 1 "kv get of a missing key"
expect_err_re '^sbx: kv get missing-key: NOT_FOUND: ' "missing key error line"
run kv set greeting bye --expect-version 999999; expect_rc 1 "kv set with a wrong --expect-version"
expect_err_re 'FAILED_PRECONDITION: .*current' "CAS mismatch names the current version"
run kv set greeting bye --expect-version "$VER"; expect_rc 0 "kv set with the right --expect-version"
run kv get greeting; expect_out "bye" "CAS write landed"
run kv set shortlived x --ttl 1; expect_rc 0 "kv set --ttl 1"
run --json kv get shortlived; json_check "d['expires_at'] is not None and __import__('re').match(r'$RFC3339', d['expires_at'])" "kv get --json expires_at is RFC 3339"
sleep 2.2
run kv get shortlived; expect_rc 1 "expired key exits 1"
run kv incr counter; expect_out "1" "kv incr without DELTA adds 1"
run kv incr counter 5; expect_out "6" "kv incr 5"
run kv incr counter -10; expect_out "-4" "kv incr -10"
run kv get counter; expect_out "-4" "kv get of a counter"
run kv incr greeting; expect_rc 1 "kv incr of a non-integer"
expect_err_re 'FAILED_PRECONDITION' "kv incr non-integer status"
run kv set user:1 ann; run kv set user:2 bob
run kv list user:; expect_out "$(printf 'user:1\tann\nuser:2\tbob')" "kv list PREFIX prints KEY<TAB>VALUE"
run kv list user: --keys-only; expect_out "$(printf 'user:1\nuser:2')" "kv list --keys-only"
run kv list user: --limit 1; expect_out "$(printf 'user:1\tann')" "kv list --limit 1"
run --json kv list user:; json_check "[e['key'] for e in d] == ['user:1','user:2'] and d[1]['value']=='bob'" "kv list --json"
"$SBX" kv set binary "$(printf 'ok\377')" >/dev/null 2>&1
run --json kv get binary; json_check "d['value'] == 'ok\udcff'" "non-UTF-8 bytes are escaped in --json"
run kv del user:1; expect_rc 0 "kv del"
run kv get user:1; expect_rc 1 "deleted key is gone"
run kv flush; expect_rc 0 "kv flush"
run kv list; expect_out "" "kv list after flush is empty"

# ---------------------------------------------------------------- projects
run project set -p p1 owner=ann team=core
expect_out "1" "project set prints the new version"
run --json project get -p p1; expect_rc 0 "project get --json"
json_check "sorted(d) == ['created_at','fields','project_id','updated_at','version'] and d['project_id']=='p1' and d['version']==1 and d['fields']=={'owner':'ann','team':'core'}" "project get --json keys"
json_check "__import__('re').match(r'$RFC3339', d['created_at']) and __import__('re').match(r'$RFC3339', d['updated_at'])" "project times are RFC 3339"
run project set -p p1 team=infra --expect-version 1; expect_out "2" "project set --expect-version (match)"
run project set -p p1 team=x --expect-version 1; expect_rc 1 "project set --expect-version (mismatch)"
expect_err_re '^sbx: project set p1: FAILED_PRECONDITION: .*current 2' "mismatch says the current version"
run project set -p p1 --unset owner; expect_out "3" "project set --unset"
run --json project get -p p1; json_check "d['fields']=={'team':'infra'}" "field removed"
run project set -p p2 a=1
run project list; expect_rc 0 "project list"
printf '%s\n' "$OUT" | grep -qx p1 && printf '%s\n' "$OUT" | grep -qx p2 && ok "project list names both" || fail "project list content"
run project get -p nope; expect_rc 1 "project get of an unknown project"
expect_err_re '^sbx: project get nope: NOT_FOUND: ' "unknown project error line"
run project set -p 'bad id!' a=1; expect_rc 1 "invalid project id"
expect_err_re 'INVALID_ARGUMENT' "invalid project id status"
run project delete -p p2; expect_rc 0 "project delete"
run project get -p p2; expect_rc 1 "deleted project is gone"

# ---------------------------------------------------------------- history
run history add -p h1 --exit-code 0 --duration-ms 5 --stdout one -- echo one
expect_out "1" "history add assigns seq 1"
run history add -p h1 --exit-code 3 --duration-ms 7 -- sh -c 'exit 3'; expect_out "2" "second record is seq 2"
run history add -p h1 --record-id rid-1 -- echo three; expect_out "3" "record with an id"
run history add -p h1 --record-id rid-1 -- echo three; expect_out "3" "replayed record id returns the first seq"
run history -p h1
expect_rc 0 "history"
[ "$(printf '%s\n' "$OUT" | wc -l)" = 3 ] && ok "history lists 3 records" || fail "history line count"
[[ "$(printf '%s\n' "$OUT" | head -n1)" == 3$'\t'* ]] && ok "history is newest first" || fail "history order"
run --json history -p h1; expect_rc 0 "history --json"
json_check "[r['seq'] for r in d]==[3,2,1] and all(sorted(r)==['cached','command','duration_ms','exit_code','seq','started_at'] for r in d)" "history --json keys, newest first"
json_check "d[1]['command']==\"sh -c 'exit 3'\" and d[1]['exit_code']==3 and d[1]['duration_ms']==7 and d[2]['cached'] is False" "history --json values"
json_check "all(__import__('re').match(r'$RFC3339', r['started_at']) for r in d)" "history started_at is RFC 3339"
run --json history -p h1 --limit 1; json_check "[r['seq'] for r in d]==[3]" "history --limit 1"
run --json history -p never-used; json_check "d == []" "history of an unknown project is empty"
run --json project get -p h1
json_check "d['project_id']=='h1'" "a project created by its history can be read" || true

# --follow: existing records first, then a new one as it is appended
"$SBX" --json history -p h1 --limit 1 --follow >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW_PID=$!
sleep 0.5
"$SBX" history add -p h1 -- echo live >/dev/null 2>&1
for _ in $(seq 1 60); do
    [ "$(wc -l <"$T/follow.out")" -ge 2 ] && break
    sleep 0.1
done
kill "$FOLLOW_PID" 2>/dev/null; wait "$FOLLOW_PID" 2>/dev/null; FOLLOW_PID=
OUT=$(cat "$T/follow.out"); ERR=$(cat "$T/follow.err"); RC=0
if [ "$(sed -n 1p "$T/follow.out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seq"])' 2>/dev/null)" = 3 ] &&
   [ "$(sed -n 2p "$T/follow.out" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["seq"], d["command"])' 2>/dev/null)" = "4 echo live" ]; then
    ok "history --follow streams the new record"
else
    fail "history --follow output"
fi

# ---------------------------------------------------------------- cache
run history add -p c1 --cache-ttl 600 --stdout cached-out -- make test
expect_rc 0 "history add --cache-ttl fills the cache"
run cache get -p c1 -- make test
expect_out "cached-out" "cache get finds the result"
run --json cache get -p c1 -- make test; json_check "d['stdout']=='cached-out' and d['exit_code']==0" "cache get --json"
run cache clear -p c1 -- make test
expect_rc 0 "cache clear -- CMD"
[[ "$OUT" =~ ^cleared\ [1-9] ]] && ok "cache clear reports what it cleared" || fail "cache clear output"
run cache get -p c1 -- make test; expect_rc 1 "cleared command is a miss"
run history add -p c1 --cache-ttl 600 --stdout a -- make a
run history add -p c1 --cache-ttl 600 --stdout b -- make b
run cache get -p c1 -- make b; expect_out "b" "second entry cached"
run --json cache clear -p c1; json_check "d['whole_project'] is True" "cache clear of the whole project"
run cache get -p c1 -- make a; expect_rc 1 "whole-project clear removed make a"
run cache get -p c1 -- make b; expect_rc 1 "whole-project clear removed make b"

# ---------------------------------------------------------------- summary
echo
if [ "$FAILS" -gt 0 ]; then
    echo "cli_store: $FAILS check(s) failed"
    exit 1
fi
echo "cli_store: all checks passed"
exit 0
