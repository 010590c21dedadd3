#!/bin/bash
# cli_term.sh SBX SBX_STORE SBX_EXECUTOR: `sbx term` under a real terminal emulator (tmux) against
# the shipped sbx-store and sbx-executor (ephemeral ports, temp data dirs): `sbx term` runs in a
# tmux pane of a private tmux server; keys are typed with send-keys and the screen read with
# capture-pane. Checks: the prompt of the default shell, `tty` prints a /dev/pts path, `stty size`
# shows the pane's size and follows resize-window, Ctrl-C interrupts `sleep 100` (the shell
# reports 130 and answers at once), the exit status of the remote shell becomes ours, our
# terminal is raw during the session and its settings are restored after exit and after SIGTERM
# and SIGHUP to sbx. Then, without tmux: `exec --pty` (a terminal inside, its size, --stdin typed
# then EOF), `term` with piped stdin, a tagged terminal in ps --json and `attach --from-offset`.
# Every check asserts; exits 1 if any failed. Needs root (sandboxes) and tmux; exits 77 otherwise.
set -u
SBX=${1:?usage: cli_term.sh SBX SBX_STORE SBX_EXECUTOR}
STORE_BIN=${2:?usage: cli_term.sh SBX SBX_STORE SBX_EXECUTOR}
EXEC_BIN=${3:?usage: cli_term.sh SBX SBX_STORE SBX_EXECUTOR}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ "$(id -u)" != 0 ]; then
    echo "skip: sandboxes need root (user namespaces, cgroups, uid ranges)"; exit 77
fi
command -v tmux >/dev/null || { echo "skip: tmux is not installed (apt-get install tmux)"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-cli-term.XXXXXX")
chmod 711 "$T"
SBX_SERVICE_DIR=$T
. "$(cd "$(dirname "$0")" && pwd)/../lib/service.sh"
# a tmux server of our own (its socket in $T), without the user's configuration
TMUX_SOCK=$T/tmux.sock
tm() { tmux -S "$TMUX_SOCK" -f /dev/null "$@"; }
cleanup() {
    tm kill-server 2>/dev/null
    sbx_service_stop_all
    rm -rf "$T"
}
trap cleanup EXIT
unset TMUX SBX_API_KEY

sbx_service_start store "$STORE_BIN" || exit 1
export SBX_STORE=$SBX_SERVICE_ADDR
# shellcheck disable=SC2086
sbx_service_start executor "$EXEC_BIN" --store "$SBX_STORE" ${SBX_TEST_EXECUTOR_ARGS:-} || exit 1
export SBX_EXECUTOR=$SBX_SERVICE_ADDR
echo "store on $SBX_STORE, executor on $SBX_EXECUTOR"

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
screen() { tm capture-pane -p -t "$1"; }
# wait_screen PANE REGEX [SECONDS]: until the pane's screen matches (grep -E); 1 on timeout
wait_screen() {
    local i
    for ((i = 0; i < ${3:-20} * 10; i++)); do
        screen "$1" | grep -Eq -- "$2" && return 0
        sleep 0.1
    done
    return 1
}
# wait_file FILE [SECONDS]
wait_file() {
    local i
    for ((i = 0; i < ${2:-20} * 10; i++)); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
expect_screen() { # expect_screen PANE REGEX WHAT
    if wait_screen "$1" "$2"; then ok "$3"; else
        fail "$3: the screen never matched /$2/"; screen "$1" | sed 's/^/  | /'; fi
}

# pane NAME: a tmux window running `stty -g` (before), `sbx term -p termproj`, then its status and
# `stty -g` (after) into $T/NAME.*; the shell then sleeps so the screen stays readable
pane() {
    local name=$1
    cat >"$T/$name.sh" <<SH
#!/bin/bash
stty -g > "$T/$name.before"
"$SBX" term -p termproj
echo "\$?" > "$T/$name.rc"
stty -g > "$T/$name.after"
exec sleep 600
SH
    chmod +x "$T/$name.sh"
    if tm list-sessions >/dev/null 2>&1; then
        tm new-window -d -n "$name" -t main "$T/$name.sh"
    else
        tm new-session -d -s main -n "$name" -x 100 -y 30 "$T/$name.sh"
        tm set-option -g status off >/dev/null
    fi
}
term_pid() { pgrep -P "$(tm display-message -p -t "main:$1" '#{pane_pid}')" -x sbx | head -n1; }
pane_tty() { tm display-message -p -t "main:$1" '#{pane_tty}'; }
running_ptys() {
    "$SBX" --json ps -p termproj |
        "$PY" -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p["running"] and p["pty"]))'
}
PROMPT='user@[^ ]*:~\$ *$'

# ---- an interactive session
pane s1
P=main:s1
expect_screen $P "$PROMPT" "term: the default shell shows its prompt"
raw_now=$(stty -g -F "$(pane_tty s1)" 2>/dev/null)
if [ -n "$raw_now" ] && [ "$raw_now" != "$(cat "$T/s1.before")" ] && stty -a -F "$(pane_tty s1)" | grep -q -- '-icanon'; then
    ok "term: our terminal is in raw mode during the session"
else
    fail "term: our terminal is not raw during the session"
fi
tm send-keys -t $P 'tty' Enter
expect_screen $P '^/dev/pts/[0-9]+ *$' "term: tty prints a /dev/pts path"
want="$(tm display-message -p -t $P '#{pane_height} #{pane_width}')"
tm send-keys -t $P 'clear; stty size' Enter
expect_screen $P "^$want *\$" "term: stty size is the pane's size ($want)"
tm resize-window -t main:s1 -x 83 -y 21
want="$(tm display-message -p -t $P '#{pane_height} #{pane_width}')"
[ "$want" = "21 83" ] || fail "tmux did not resize the window (pane is $want)"
sleep 0.3
tm send-keys -t $P 'clear; stty size' Enter
expect_screen $P "^21 83 *\$" "term: stty size follows resize-window (21 83)"
tm send-keys -t $P 'clear; sleep 100' Enter
wait_screen $P 'sleep 100' 5
sleep 0.5
tm send-keys -t $P C-c
tm send-keys -t $P 'echo "after-$((6*7)) $?"' Enter
if wait_screen $P '^after-42 130 *$' 10; then
    ok "term: Ctrl-C interrupts sleep 100 (status 130, the shell answers)"
else
    fail "term: Ctrl-C did not interrupt sleep 100"; screen $P | sed 's/^/  | /'
fi
tm send-keys -t $P 'exit 3' Enter
if wait_file "$T/s1.rc" && [ "$(cat "$T/s1.rc")" = 3 ]; then
    ok "term: exit status of the remote shell (3)"
else
    fail "term: exit status $(cat "$T/s1.rc" 2>/dev/null), want 3"
fi
if wait_file "$T/s1.after" 5 && cmp -s "$T/s1.before" "$T/s1.after"; then
    ok "term: our terminal settings restored after exit"
else
    fail "term: terminal settings differ after exit"
fi

# ---- killed from outside: SIGTERM and SIGHUP restore the terminal too
for sig in TERM HUP; do
    name=k$sig
    pane $name
    if wait_screen "main:$name" "$PROMPT"; then
        n=$(running_ptys)
        [ "$n" = 1 ] || fail "term: ps shows $n running terminals during the session, want 1"
        pid=$(term_pid $name)
        kill -s $sig "$pid"
        if wait_file "$T/$name.after" 10 && cmp -s "$T/$name.before" "$T/$name.after"; then
            ok "term: settings restored after SIG$sig (exit $(cat "$T/$name.rc"))"
        else
            fail "term: settings not restored after SIG$sig"
        fi
    else
        fail "term: no prompt in pane $name"
    fi
done
# a hung-up terminal's shell is gone in the sandbox (no bash left behind)
sleep 1
left=$(running_ptys)
if [ "$left" = 0 ]; then ok "term: no terminal process left after the clients were killed"; else
    fail "term: $left terminal processes still running"; fi
tm kill-server 2>/dev/null

# ---- without tmux
out=$("$SBX" exec -p termproj --pty -- sh -c 'tty; stty size; test -t 0 && test -t 1 && echo isatty' </dev/null 2>"$T/e")
rc=$?
if [ $rc = 0 ] && [[ "$out" =~ /dev/pts/[0-9]+ ]] && [[ "$out" == *"24 80"* ]] && [[ "$out" == *isatty* ]]; then
    ok "exec --pty: a terminal of 80x24 without one here"
else
    fail "exec --pty: rc=$rc out=$out err=$(cat "$T/e")"
fi
out=$(printf 'hello\n' | "$SBX" exec -p termproj --pty --stdin -- sh -c 'read l; echo "got:$l"; cat; echo "eof-seen"' 2>"$T/e")
if [[ "$out" == *"got:hello"* ]] && [[ "$out" == *eof-seen* ]]; then
    ok "exec --pty --stdin: typed, then EOF"
else
    fail "exec --pty --stdin: out=$out err=$(cat "$T/e")"
fi
"$SBX" exec -p termproj --pty -- sh -c 'echo out; echo err >&2; exit 5' >"$T/o" 2>"$T/e" </dev/null
rc=$?
if [ $rc = 5 ] && grep -q out "$T/o" && grep -q err "$T/o" && [ ! -s "$T/e" ]; then
    ok "exec --pty: stdout carries the terminal (stderr too), status 5"
else
    fail "exec --pty: rc=$rc stdout=$(cat "$T/o") stderr=$(cat "$T/e")"
fi
out=$(printf 'echo piped-$((2+3))\nexit 4\n' | "$SBX" term -p termproj -- /bin/sh 2>"$T/e")
rc=$?
if [ $rc = 4 ] && [[ "$out" == *piped-5* ]]; then
    ok "term with piped stdin (no raw mode): input typed, status 4"
else
    fail "term piped: rc=$rc out=$out err=$(cat "$T/e")"
fi
# a tagged terminal: ps shows it as a terminal process; attach replays its output from an offset
printf 'echo tagged-out\nsleep 30\n' | "$SBX" term -p termproj --tag tt -- /bin/sh >"$T/tt.out" 2>&1 &
tpid=$!
for ((i = 0; i < 100; i++)); do grep -q '^tagged-out' "$T/tt.out" 2>/dev/null && break; sleep 0.1; done
js=$("$SBX" --json ps -p termproj)
if printf '%s' "$js" | "$PY" -c 'import json,sys; sys.exit(0 if any(p["tag"]=="tt" and p["pty"] and p["running"] for p in json.load(sys.stdin)) else 1)'; then
    ok "ps --json: the tagged terminal is a running pty process"
else
    fail "ps --json: $js"
fi
"$SBX" attach -p termproj --tag tt --from-offset 0 --no-follow >"$T/a0" 2>"$T/e"
all=$(wc -c <"$T/a0")
"$SBX" attach -p termproj --tag tt --from-offset 5 --no-follow >"$T/a5" 2>>"$T/e"
if grep -q tagged-out "$T/a0" && [ "$all" -gt 5 ] && [ "$(wc -c <"$T/a5")" = $((all - 5)) ] &&
    cmp -s <(tail -c +6 "$T/a0") "$T/a5"; then
    ok "attach --from-offset to a terminal process (0: $all bytes; 5: the rest)"
else
    fail "attach: $(cat "$T/a0") / $(cat "$T/a5") / $(cat "$T/e")"
fi
"$SBX" kill -p termproj --tag tt --signal KILL >/dev/null 2>&1
wait $tpid
rc=$?
[ $rc = 137 ] && ok "term: a killed terminal process exits 137" || fail "term after kill: exit $rc, want 137"

echo "$FAILS failed"
[ "$FAILS" = 0 ]
