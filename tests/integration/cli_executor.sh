#!/bin/bash
# cli_executor.sh SBX SBX_STORE SBX_EXECUTOR: end-to-end test of the `sbx` CLI against a real
# sbx-store and sbx-executor on ephemeral ports (temp data dirs): exec (live streaming of stdout
# and stderr, exit status passthrough, 128+N on a signal, 124 on --timeout-ms, --stdin, the
# --json document of CLI.md, --cache answered from the cache), sh, write/read (binary-safe, file
# and stdin), ls/stat/mkdir/rm/mv, setup (a directory, --install), background processes (ps,
# kill, attach by --tag), sandbox create/get/list/timeout/kill, history after the runs, serve
# (URL printed, curl it, --json, a failing server, the port closed by sandbox kill), and the
# error exits (1 + `sbx: WHAT: CODE: message`, 2 usage, 69 unreachable). Every check asserts;
# the script exits 1 if any failed. Needs root (sandboxes); exits 77 (skip) otherwise.
set -u
SBX=${1:?usage: cli_executor.sh SBX SBX_STORE SBX_EXECUTOR}
STORE_BIN=${2:?usage: cli_executor.sh SBX SBX_STORE SBX_EXECUTOR}
EXEC_BIN=${3:?usage: cli_executor.sh SBX SBX_STORE SBX_EXECUTOR}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ "$(id -u)" != 0 ]; then
    echo "skip: sandboxes need root (user namespaces, cgroups, uid ranges)"; exit 77
fi
command -v curl >/dev/null || { echo "skip: curl is not installed"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-cli-exec.XXXXXX")
chmod 711 "$T"   # sandbox roots (unprivileged uids) traverse to their homes
# the services' logs and data dirs go to $T/NAME.{out,err} and $T/NAME
SBX_SERVICE_DIR=$T
. "$(cd "$(dirname "$0")" && pwd)/../lib/service.sh"
cleanup() {
    sbx_service_stop_all
    rm -rf "$T"
}
trap cleanup EXIT

sbx_service_start store "$STORE_BIN" || exit 1
export SBX_STORE=$SBX_SERVICE_ADDR
echo "store on $SBX_STORE"
# $SBX_TEST_EXECUTOR_ARGS: more executor flags (e.g. --init-path of an uninstrumented sbx-init
# when the executor is a sanitizer build)
# shellcheck disable=SC2086
sbx_service_start executor "$EXEC_BIN" --store "$SBX_STORE" ${SBX_TEST_EXECUTOR_ARGS:-} || exit 1
export SBX_EXECUTOR=$SBX_SERVICE_ADDR
echo "executor on $SBX_EXECUTOR"
unset SBX_API_KEY

FAILS=0
OUT= ERR= RC=
# run ARGS...: runs sbx (stdin from /dev/null), capturing stdout/stderr/status in $OUT/$ERR/$RC
run() {
    "$SBX" "$@" >"$T/o" 2>"$T/e" </dev/null
    RC=$?
    OUT=$(cat "$T/o")
    ERR=$(cat "$T/e")
}
# run_in FILE ARGS...: the same with stdin from FILE
run_in() {
    local f=$1; shift
    "$SBX" "$@" >"$T/o" 2>"$T/e" <"$f"
    RC=$?
    OUT=$(cat "$T/o")
    ERR=$(cat "$T/e")
}
fail() { echo "FAIL: $*"; echo "  stdout: ${OUT:0:2000}"; echo "  stderr: ${ERR:0:2000}"; echo "  status: $RC"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
check() { # check CONDITION-STATUS WHAT  (use: [ ... ]; check $? "what")
    if [ "$1" = 0 ]; then ok "$2"; else fail "$2"; fi
}
expect_rc() { # expect_rc N WHAT
    if [ "$RC" = "$1" ]; then ok "$2 (exit $1)"; else fail "$2: want exit $1"; fi
}
expect_out() { # expect_out TEXT WHAT (and exit 0)
    if [ "$OUT" = "$1" ] && [ "$RC" = 0 ]; then ok "$2"; else fail "$2: want stdout '$1'"; fi
}
expect_err_re() { # expect_err_re REGEX WHAT
    if [[ "$ERR" =~ $1 ]]; then ok "$2"; else fail "$2: stderr does not match /$1/"; fi
}
one_line_err() { # the error is exactly one line
    [ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] && ok "$1: one error line" || fail "$1: error is not one line"
}
# json_check PYEXPR WHAT: evaluates PYEXPR with d = the parsed stdout
json_check() {
    if printf '%s' "$OUT" | "$PY" -c "import json,sys; d=json.loads(sys.stdin.buffer.read().decode('utf-8','surrogatepass')); sys.exit(0 if ($1) else 1)" 2>"$T/pyerr"; then
        ok "$2"
    else
        fail "$2: JSON check failed: $1 $(cat "$T/pyerr")"
    fi
}
EXEC_KEYS="['exit_code','signal','timed_out','cached','stdout','stderr','duration_ms','output_truncated','sandbox_id']"

# ---------------------------------------------------------------- health, usage
run health; expect_rc 0 "health of both services"
run exec -p p1; expect_rc 2 "exec without a command is a usage error"
run serve -p p1 -- true; expect_rc 2 "serve without --port is a usage error"

# ---------------------------------------------------------------- exec
run exec -p p1 -- sh -c 'echo to-out; echo to-err >&2; exit 7'
expect_rc 7 "exec: the command's exit status passes through"
[ "$OUT" = "to-out" ] && ok "exec: stdout on stdout" || fail "exec: stdout"
[ "$ERR" = "to-err" ] && ok "exec: stderr on stderr" || fail "exec: stderr"
run exec -p p1 -- sh -c 'kill -KILL $$'; expect_rc 137 "exec: SIGKILL -> 128+9"
run exec -p p1 -- sh -c 'kill -TERM $$'; expect_rc 143 "exec: SIGTERM -> 128+15"
T0=$(date +%s%N)
run exec -p p1 --timeout-ms 500 -- sleep 30; expect_rc 124 "exec: --timeout-ms -> 124"
T1=$(date +%s%N)
[ $(( (T1 - T0) / 1000000 )) -lt 10000 ] && ok "exec: the timeout killed it promptly" || fail "exec: timeout took $(( (T1 - T0) / 1000000 )) ms"
run exec -p p1 -- /no/such/program; expect_rc 127 "exec: a missing program -> 127"
printf 'line one\nline two\n' >"$T/in.txt"
run_in "$T/in.txt" exec -p p1 --stdin -- wc -l; expect_out "2" "exec --stdin feeds the command"
run exec -p p1 --cwd /tmp --env FOO=bar -- sh -c 'echo "$PWD $FOO"'; expect_out "/tmp bar" "exec --cwd --env"
# live streaming: the first line arrives while the command still runs
"$SBX" exec -p p1 -- sh -c 'echo first; echo first-err >&2; sleep 3; echo second' >"$T/live.out" 2>"$T/live.err" &
LIVE=$!
for _ in $(seq 1 40); do grep -q first "$T/live.out" && break; sleep 0.05; done
sleep 0.2
if grep -q '^first$' "$T/live.out" && grep -q '^first-err$' "$T/live.err" && ! grep -q second "$T/live.out"; then
    ok "exec streams stdout and stderr live"
else
    OUT=$(cat "$T/live.out"); ERR=$(cat "$T/live.err"); RC=running; fail "exec did not stream live"
fi
wait "$LIVE"; RC=$?
[ "$RC" = 0 ] && [ "$(cat "$T/live.out")" = "$(printf 'first\nsecond')" ] && ok "streamed exec completes" || fail "streamed exec result"

run --json exec -p p1 -- sh -c 'printf "a\tb\n"; printf "\377" >&2; exit 3'
expect_rc 3 "exec --json keeps the exit status"
json_check "list(d) == $EXEC_KEYS" "exec --json has exactly the keys of CLI.md, in order"
json_check "d['exit_code']==3 and d['signal']==0 and d['timed_out'] is False and d['cached'] is False and d['stdout']=='a\\tb\\n' and len(d['stderr'])>0 and d['output_truncated'] is False and d['sandbox_id'].startswith('sb-') and isinstance(d['duration_ms'], (int, float))" "exec --json values"
run --json exec -p p1 -- sh -c 'kill -KILL $$'
expect_rc 137 "exec --json of a killed command"
json_check "d['signal']==9" "exec --json reports the signal"
run --json exec -p p1 --timeout-ms 300 -- sleep 10
expect_rc 124 "exec --json of a timed-out command"
json_check "d['timed_out'] is True" "exec --json timed_out"
SANDBOX=$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["sandbox_id"])')

# --cache: the second run is answered from the cache (the executor records the first run in the
# store through its outbox: allow it a moment)
run --json exec -p p1 --cache -- sh -c 'date +%s%N; echo cache-me'
json_check "d['cached'] is False and d['exit_code']==0" "exec --cache: the first run runs"
FIRST=$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stdout"])')
CACHED=no
for _ in $(seq 1 50); do
    run --json exec -p p1 --cache -- sh -c 'date +%s%N; echo cache-me'
    if printf '%s' "$OUT" | "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["cached"] else 1)'; then CACHED=yes; break; fi
    sleep 0.1
done
[ "$CACHED" = yes ] && ok "exec --cache: a rerun is answered from the cache" || fail "exec --cache never answered from the cache"
json_check "list(d) == $EXEC_KEYS and d['cached'] is True and d['exit_code']==0" "exec --cache --json document"
SECOND=$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stdout"])')
[ "$FIRST" = "$SECOND" ] && ok "the cached answer is the first run's output" || fail "cached output differs: $FIRST vs $SECOND"
run exec -p p1 --cache -- sh -c 'date +%s%N; echo cache-me'
[ "$RC" = 0 ] && [ "$OUT" = "$FIRST" ] && ok "exec --cache (text) prints the cached output" || fail "exec --cache text output"

# the command's own flags: after its first word, or after "--"
run exec -p p1 echo -p x --json; expect_out "-p x --json" "exec: words after the command are its own"
run exec -p p1 -- printf '%s\n' --help; expect_out "--help" "exec: --help after -- is the command's"

# ---------------------------------------------------------------- sh
run sh -p p1 'echo $((6 * 7)) && echo shell-err >&2 && exit 5'
expect_rc 5 "sh: exit status"
[ "$OUT" = 42 ] && [ "$ERR" = shell-err ] && ok "sh: /bin/sh -c semantics" || fail "sh output"
run sh 'echo after' -p p1 --timeout-ms 5000; expect_out "after" "sh: options after the shell string"

# ---------------------------------------------------------------- files
head -c 1048576 /dev/urandom >"$T/rand.bin"
"$PY" -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 64)' >>"$T/rand.bin"
run write -p p1 data/deep/rand.bin "$T/rand.bin"; expect_rc 0 "write LOCAL_FILE creates parents"
"$SBX" read -p p1 data/deep/rand.bin >"$T/back.bin" 2>"$T/e"; RC=$?
[ "$RC" = 0 ] && cmp -s "$T/rand.bin" "$T/back.bin" && ok "read returns the bytes written (binary-safe, 1 MiB)" || fail "read round trip"
printf 'nul\000and\377bytes\n' >"$T/small.bin"
run_in "$T/small.bin" write -p p1 /home/user/small.bin; expect_rc 0 "write from stdin"
"$SBX" read -p p1 small.bin >"$T/small.back" 2>/dev/null
cmp -s "$T/small.bin" "$T/small.back" && ok "stdin write round trip (NUL, 0xff)" || fail "stdin write round trip"
run exec -p p1 -- sha256sum data/deep/rand.bin
[ "${OUT%% *}" = "$(sha256sum "$T/rand.bin" | cut -d' ' -f1)" ] && ok "the sandbox sees the same bytes" || fail "sha256 in the sandbox"
run mkdir -p p1 made/a/b; expect_rc 0 "mkdir (with parents)"
run stat -p p1 made/a/b; expect_rc 0 "stat a directory"
[[ "$OUT" == *"type: directory"* ]] && ok "stat says directory" || fail "stat type"
run --json stat -p p1 data/deep/rand.bin
json_check "d['type']=='file' and d['size']==$(stat -c %s "$T/rand.bin") and d['path']=='/home/user/data/deep/rand.bin' and d['uid']==1000" "stat --json"
run ls -p p1 data --depth 3; expect_rc 0 "ls --depth"
[[ "$OUT" == *"/home/user/data/deep/rand.bin"* ]] && ok "ls lists nested entries" || fail "ls output"
run --json ls -p p1 data --depth 3
json_check "sorted(e['name'] for e in d) == ['deep', 'rand.bin']" "ls --json"
run mv -p p1 data/deep/rand.bin made/a/b/moved.bin; expect_rc 0 "mv"
run stat -p p1 data/deep/rand.bin; expect_rc 1 "mv removed the source"
expect_err_re '^sbx: .*: NOT_FOUND: ' "stat of a missing path: NOT_FOUND line"
run stat -p p1 made/a/b/moved.bin; expect_rc 0 "mv created the destination"
run rm -p p1 made; expect_rc 1 "rm of a non-empty directory without -r"
expect_err_re '^sbx: .*: FAILED_PRECONDITION: ' "rm without -r: FAILED_PRECONDITION"
run rm -p p1 -r made; expect_rc 0 "rm -r"
run stat -p p1 made; expect_rc 1 "rm -r removed it"
run write -p p1 /usr/evil "$T/small.bin"; expect_rc 1 "write to read-only /usr fails"
expect_err_re '^sbx: .*: PERMISSION_DENIED: ' "write to /usr: PERMISSION_DENIED"

# ---------------------------------------------------------------- setup
mkdir -p "$T/proj/src/lib"
echo 'print("hello from setup")' >"$T/proj/src/main.py"
echo 'X = 1' >"$T/proj/src/lib/x.py"
printf '#!/bin/sh\necho installing; echo ok > .installed\n' >"$T/proj/install.sh"
run setup -p p2 "$T/proj" --to app --install 'sh install.sh'
expect_rc 0 "setup DIR --to --install"
[[ "$OUT" == *"uploaded 3 files"* && "$OUT" == *installing* ]] && ok "setup reports the upload and the install output" || fail "setup output"
run exec -p p2 --cwd app -- python3 src/main.py; expect_out "hello from setup" "uploaded files run"
run read -p p2 app/.installed; expect_out "ok" "the install command ran in the uploaded dir"
run setup -p p2 "$T/proj" --to app2 --install 'exit 9'; expect_rc 9 "setup --install passes the install status through"
run setup -p p2 "$T/nonexistent"; [ "$RC" != 0 ] && ok "setup of a missing local dir fails (exit $RC)" || fail "setup of a missing dir"

# ---------------------------------------------------------------- background processes
run exec -p p3 --background --tag worker -- sh -c 'for i in 1 2 3; do echo tick$i; sleep 0.1; done; echo done-ticking >&2; exec sleep 300'
expect_rc 0 "exec --background returns at once"
[[ "$OUT" =~ ^[0-9]+$ ]] && ok "exec --background prints the pid" || fail "background pid"
BGPID=$OUT
run exec -p p3 --background --tag worker -- sleep 1; expect_rc 1 "a running tag cannot be reused"
expect_err_re '^sbx: .*: ALREADY_EXISTS: ' "tag in use: ALREADY_EXISTS"
sleep 0.6
run ps -p p3; expect_rc 0 "ps"
[[ "$OUT" == *worker*running* ]] && ok "ps shows the tagged process" || fail "ps output"
run --json ps -p p3
json_check "d == [{'pid': $BGPID, 'tag': 'worker', 'command': d[0]['command'], 'running': True, 'pty': False}] and d[0]['command'].startswith('sh -c')" "ps --json keys and values"
run attach -p p3 --tag worker --no-follow; expect_rc 0 "attach --no-follow of a running process"
[ "$OUT" = "$(printf 'tick1\ntick2\ntick3')" ] && [ "$ERR" = done-ticking ] && ok "attach replays stdout and stderr" || fail "attach output"
run attach -p p3 "$BGPID" --from-offset 6 --no-follow
[ "$OUT" = "$(printf 'tick2\ntick3')" ] && ok "attach PID --from-offset" || fail "attach --from-offset"
"$SBX" attach -p p3 --tag worker >"$T/att.out" 2>"$T/att.err" &
ATT=$!
sleep 0.5
run kill -p p3 --tag worker --signal 15; expect_rc 0 "kill --tag --signal 15"
wait "$ATT"; RC=$?
[ "$RC" = 143 ] && ok "a following attach ends with the process (128+15)" || { OUT=$(cat "$T/att.out"); ERR=$(cat "$T/att.err"); fail "attach exit status"; }
run --json ps -p p3; json_check "d == []" "ps shows no running process after kill"
run kill -p p3 --tag nosuch; expect_rc 1 "kill of an unknown tag"
expect_err_re '^sbx: .*: NOT_FOUND: ' "kill of an unknown tag: NOT_FOUND"
run exec -p p3 --background -- sh -c 'sleep 300'; BG2=$OUT
run kill -p p3 "$BG2"; expect_rc 0 "kill PID (default signal)"
sleep 0.3
run --json ps -p p3; json_check "d == []" "killed by pid"

# ---------------------------------------------------------------- sandbox lifecycle
run sandbox create -p p4; expect_rc 0 "sandbox create"
SB4=$OUT
[[ "$SB4" =~ ^sb- ]] && ok "sandbox create prints the id" || fail "sandbox create output"
run sandbox create -p p4; expect_out "$SB4" "sandbox create is idempotent per project"
run --json sandbox get -p p4
json_check "d['sandbox_id']=='$SB4' and d['project_id']=='p4' and d['state']=='running' and d['init_pid']>0" "sandbox get --json"
json_check "d['disk']['mechanism']=='ext4-image-loop' and d['disk']['limit_bytes']>=d['limits']['disk_bytes'] and d['limits']['disk_inodes']>0 and 'disk:ext4-image-loop' in d['enforced']" "sandbox get --json: the home's disk limits and use"
run sandbox get -p p4; [[ "$OUT" == *"disk: "*" bytes, "*" inodes (ext4-image-loop)"* ]] && ok "sandbox get: disk line" || fail "sandbox get: no disk line: $OUT"
run sandbox list; expect_rc 0 "sandbox list"
[[ "$OUT" == *"$SB4"*p4*running* && "$OUT" == *"$SANDBOX"*p1* ]] && ok "sandbox list shows the sandboxes" || fail "sandbox list output"
run sandbox timeout -p p4 120; expect_rc 0 "sandbox timeout"
run --json sandbox get -p p4; json_check "d['idle_timeout_ms']==120000" "the new idle timeout is in force"
run sandbox kill -p p4; expect_rc 0 "sandbox kill"
run sandbox get -p p4; expect_rc 1 "sandbox get after kill"
expect_err_re '^sbx: .*: NOT_FOUND: ' "no live sandbox: NOT_FOUND"
run sandbox kill -p p4; expect_rc 1 "sandbox kill of a project without a sandbox"

# ---------------------------------------------------------------- history
run --json history -p p1 --limit 50; expect_rc 0 "history --json"
json_check "len(d) >= 10 and [r['seq'] for r in d] == sorted((r['seq'] for r in d), reverse=True)" "history is newest first"
json_check "all(sorted(r) == sorted(['seq','command','exit_code','duration_ms','started_at','cached']) for r in d)" "history --json keys"
json_check "any(r['command']==\"sh -c 'echo to-out; echo to-err >&2; exit 7'\" and r['exit_code']==7 for r in d)" "history has the exec with its exit code"
json_check "any(r['cached'] for r in d) and any(r['command']=='sleep 30' and r['exit_code']==137 for r in d)" "history has the cached answer and the timed-out run (128+SIGKILL)"
run history -p p1 --limit 50; expect_rc 0 "history (text)"
printf '%s\n' "$OUT" | grep -qP '\ttimeout\t[0-9.]+ms\tsleep 30$' && ok "history (text) says timeout" || fail "history text: no timeout line"
printf '%s\n' "$OUT" | grep -qP '\tsignal 15\t[0-9.]+ms\tsh -c .kill -TERM' && ok "history (text) says signal 15" || fail "history text: no signal line"
printf '%s\n' "$OUT" | grep -qF "[cached] sh -c 'date" && ok "history (text) marks the cached answer" || fail "history text: no [cached]"
run history -p p1 --limit 2; expect_rc 0 "history --limit"
[ "$(printf '%s\n' "$OUT" | wc -l)" = 2 ] && ok "history --limit 2 prints 2 lines" || fail "history --limit 2 lines"

# ---------------------------------------------------------------- serve
run write -p p5 site/index.html "$T/small.bin"
printf '<h1>served from the sandbox</h1>\n' >"$T/index.html"
run write -p p5 site/index.html "$T/index.html"; expect_rc 0 "write the page"
run serve -p p5 --port 8000 --tag web --cwd site -- python3 -m http.server 8000 --bind 127.0.0.1
expect_rc 0 "serve"
[[ "$OUT" =~ ^http://127\.0\.0\.1:[0-9]+/$ ]] && ok "serve prints http://HOST:PORT/" || fail "serve output"
URL=$OUT
BODY=$(curl -sS --noproxy '*' -m 10 "${URL}index.html" 2>&1)
[ "$BODY" = "<h1>served from the sandbox</h1>" ] && ok "curl of the served URL" || { RC=curl; fail "curl ${URL}index.html: $BODY"; }
run --json serve -p p5 --port 8000 --tag web -- python3 -m http.server 8000 --bind 127.0.0.1
json_check "list(d)==['url','pid'] and d['url']=='$URL' and isinstance(d['pid'], int) and d['pid']>0" "serve --json (same tag: the same server)"
run --json ps -p p5; json_check "[p['tag'] for p in d] == ['web']" "the dev server is a tagged background process"
run serve -p p5 --port 8001 -- sh -c 'echo dying-marker >&2; exit 4'
expect_rc 1 "serve of a server that exits"
expect_err_re '^sbx: serve: FAILED_PRECONDITION: .*code 4.*dying-marker' "serve: exited before ready, with its output"
one_line_err "serve failure"
T0=$(date +%s%N)
run serve -p p5 --port 8002 --ready-timeout 1 -- sh -c 'echo waiting-marker; exec sleep 100'
T1=$(date +%s%N)
expect_rc 1 "serve of a server that never listens"
expect_err_re '^sbx: serve: DEADLINE_EXCEEDED: .*8002.*waiting-marker' "serve: not ready in time, with its output"
[ $(( (T1 - T0) / 1000000 )) -lt 6000 ] && ok "serve gave up within the ready timeout" || fail "serve took $(( (T1 - T0) / 1000000 )) ms"
run sandbox kill -p p5; expect_rc 0 "sandbox kill of the serving sandbox"
curl -sS --noproxy '*' -m 5 "$URL" >/dev/null 2>"$T/curl.err"; CRC=$?
[ "$CRC" = 7 ] && ok "the killed sandbox's URL refuses connections" || { RC=$CRC; ERR=$(cat "$T/curl.err"); fail "curl after kill"; }

# ---------------------------------------------------------------- errors
run read -p nosuch-project missing.txt; expect_rc 1 "read of a missing file"
expect_err_re '^sbx: read missing\.txt: NOT_FOUND: .+' "missing file: 'sbx: WHAT: NOT_FOUND: message'"
one_line_err "missing file"
run exec -p 'bad project' -- true; expect_rc 1 "a bad project id"
expect_err_re '^sbx: .*: INVALID_ARGUMENT: .*project' "bad project id: INVALID_ARGUMENT naming the field"
run --executor 127.0.0.1:1 exec -p p1 -- true; expect_rc 69 "exec with the executor down"
expect_err_re '^sbx: exec: UNAVAILABLE: ' "executor down: UNAVAILABLE line"
one_line_err "executor down"
run --executor 127.0.0.1:1 serve -p p1 --port 80 -- true; expect_rc 69 "serve with the executor down"
run --executor 127.0.0.1:1 read -p p1 x; expect_rc 69 "read with the executor down"

# ---------------------------------------------------------------- the services are healthy
run health; expect_rc 0 "both services still SERVING"
if grep -E 'level=error|AddressSanitizer|runtime error' "$T/executor.err" "$T/store.err"; then
    RC=- OUT= ERR=; fail "a service logged errors"
else
    ok "no errors in the service logs"
fi
sbx_service_stop executor; RC=$?
[ "$RC" = 0 ] && ok "the executor stops cleanly on SIGTERM" || { OUT= ERR=$(tail -5 "$T/executor.err"); fail "executor exit status"; }

echo
if [ "$FAILS" -gt 0 ]; then
    echo "cli_executor: $FAILS check(s) failed"
    exit 1
fi
echo "cli_executor: all checks passed"
exit 0
