#!/usr/bin/env bash
# test-compose.sh: the compose stack end to end, on a private dockerd that leaves the host alone.
#   1. debian:bookworm-slim: made by scripts/base-image.sh (debootstrap from the configured Debian
#      mirror, tarball cached under $SBX_CACHE_DIR) because no registry is reachable here;
#   2. a private dockerd: data root, exec root, socket and pidfile in a temp dir, its own
#      containerd namespace, --bridge=none --iptables=false (host networking only);
#   3. docker-compose build, up -d, both services healthy; `sbx demo` inside the stack; isolation
#      inside a sandbox through `sbx exec` (uid 1000, CapEff 0, NoNewPrivs 1, Seccomp 2, only lo);
#      a KV key written, down/up, read back;
#   4. the same with docker-compose.keys.yml (a keys file, the executor's @service key): calls
#      without a key are refused, the executor's record reaches the store's history;
#   5. down -v, dockerd stopped by its pid; no container, volume, mount, process or cgroup of
#      the run left behind (checked). A trap does the teardown on every exit path.
# Prints the build time, image sizes, time to healthy and the demo transcripts. Fails (never
# skips) when something is missing, dockerd cannot start (with its log), or a check fails.
# Needs root and scripts/install-deps.sh (docker.io, docker-compose, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Debian's docker.io client (20.10) before any other docker on PATH
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

say() { printf '[test-compose %s] %s\n' "$(date +%T)" "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die "needs root (a private dockerd)"
for t in dockerd docker docker-compose debootstrap; do
    command -v "$t" >/dev/null || die "$t is not installed: run scripts/install-deps.sh"
done

WORK=$(mktemp -d /tmp/sbx-compose.XXXXXX)
NS=sbxci$$
PROJECT=sbxci$$
export DOCKER_HOST=unix://$WORK/docker.sock
export COMPOSE_PROJECT_NAME=$PROJECT COMPOSE_INTERACTIVE_NO_CLI=1
unset SBX_STORE_API_KEY SBX_KEYS_FILE SBX_API_KEY
DOCKERD_PID=""
CIDS="" # ids of every container the run started
FILES=(-f docker-compose.yml)
CLI_ENV=()
CG_BEFORE=$(find /sys/fs/cgroup -maxdepth 2 -name docker -type d 2>/dev/null | sort || true)

dc() { docker-compose "${FILES[@]}" "$@"; }
# the image's sbx CLI inside the executor container (host networking: the same addresses)
sbxc() { dc exec -T -w /tmp "${CLI_ENV[@]}" executor sbx "$@"; }

# ---- teardown (every exit path) ---------------------------------------------------------------
leftovers=()
teardown() {
    local rc=$?
    set +e
    if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        if [ "$rc" != 0 ]; then
            say "logs of the stack (failure):"
            timeout 30 docker-compose "${FILES[@]}" logs --no-color --tail 40 2>&1 | sed 's/^/    /'
        fi
        SBX_STORE_API_KEY=${SBX_STORE_API_KEY:-unused} timeout 120 \
            docker-compose "${FILES[@]}" down -v --remove-orphans >/dev/null 2>&1
        local ids
        ids=$(docker ps -aq 2>/dev/null)
        [ -z "$ids" ] || { leftovers+=("containers $ids"); docker rm -f $ids >/dev/null 2>&1; }
        ids=$(docker volume ls -q 2>/dev/null)
        [ -z "$ids" ] || { leftovers+=("volumes $ids"); docker volume rm -f $ids >/dev/null 2>&1; }
        kill -TERM "$DOCKERD_PID"
        for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            leftovers+=("dockerd $DOCKERD_PID did not stop on SIGTERM")
            kill -KILL "$DOCKERD_PID"
        fi
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    # processes that still name the run (containerd, shims), mounts under the temp dir
    local p
    p=$(ps -eo pid=,args= | grep -F -- "$WORK" | grep -v -F -e grep -e "$$ " | awk '{print $1}')
    for pid in $p; do
        [ "$pid" = "$$" ] && continue
        leftovers+=("process $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-120)")
        kill -KILL "$pid" 2>/dev/null
    done
    # mounts under the temp dir; dockerd itself leaves exec-root/netns/default bound (expected)
    local m
    m=$(awk -v w="$WORK" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    for mp in $m; do
        [ "$mp" = "$WORK/exec/netns/default" ] || leftovers+=("mount $mp")
        umount -l "$mp" 2>/dev/null
    done
    # cgroups of the run's containers (sandbox groups the executor would have left inside)
    for id in $(sort -u <<<"$CIDS"); do
        for d in $(find /sys/fs/cgroup -maxdepth 4 -type d -name "$id" 2>/dev/null); do
            leftovers+=("cgroup $d")
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    # cgroup dirs dockerd made for this run (none existed before it)
    for d in $(find /sys/fs/cgroup -maxdepth 2 -name docker -type d 2>/dev/null | sort); do
        grep -qx -- "$d" <<<"$CG_BEFORE" && continue
        local sub
        sub=$(find "$d" -mindepth 1 -type d 2>/dev/null | sort -r)
        [ -z "$sub" ] || leftovers+=("cgroups under $d: $(wc -l <<<"$sub")")
        for s in $sub; do rmdir "$s" 2>/dev/null; done
        rmdir "$d" 2>/dev/null
    done
    rm -rf "$WORK"
    if ((${#leftovers[@]})); then
        say "FAIL: left behind (now removed):"
        printf '    %s\n' "${leftovers[@]}"
        [ "$rc" != 0 ] || rc=1
    fi
    if [ "$rc" = 0 ]; then say "PASS (nothing left behind)"; else say "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- a private dockerd --------------------------------------------------------------------------
say "starting a private dockerd in $WORK"
t0=$(now)
# its own session: a Ctrl-C of this script reaches the teardown, not dockerd, which stops last
setsid dockerd --data-root "$WORK/root" --exec-root "$WORK/exec" -H "$DOCKER_HOST" \
    --pidfile "$WORK/dockerd.pid" --containerd-namespace "$NS" \
    --containerd-plugins-namespace "$NS-plugins" --bridge=none --iptables=false \
    >"$WORK/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
for _ in $(seq 1 150); do
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    docker version >/dev/null 2>&1 && break
    sleep 0.2
done
if ! docker version >/dev/null 2>&1; then
    tail -n 25 "$WORK/dockerd.log" >&2
    die "dockerd did not start (its log above)"
fi
[ "$(cat "$WORK/dockerd.pid")" = "$DOCKERD_PID" ] || die "dockerd's pidfile names another pid"
say "dockerd $(docker version -f '{{.Server.Version}}') up in $(since "$t0") s (pid $DOCKERD_PID)"

# ---- base image and the build ------------------------------------------------------------------
t0=$(now)
DOCKER=$(command -v docker) scripts/base-image.sh
T_BASE=$(since "$t0")
say "building both images (docker-compose build)"
t0=$(now)
if ! dc build >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    die "docker-compose build failed"
fi
T_BUILD=$(since "$t0")
SIZES=$(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
    grep -E '^(sbx-store|sbx-executor|debian):' | tr '\n' ',' | sed 's/,$//; s/,/, /g')
say "built in $T_BUILD s (base image $T_BASE s); sizes: $SIZES"

# ---- the stack ------------------------------------------------------------------------------------
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
    "$(dc ps -q "$1")" 2>/dev/null || echo missing; }
# up -d, then both services healthy within 180 s; UP_T = the seconds it took
up_healthy() {
    local t0 s e
    t0=$(now)
    dc up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; die "docker-compose up -d failed"; }
    for _ in $(seq 1 360); do
        s=$(health store)
        e=$(health executor)
        if [ "$s" = healthy ] && [ "$e" = healthy ]; then
            CIDS+=$'\n'$(docker ps -q --no-trunc)
            UP_T=$(since "$t0")
            return 0
        fi
        case "$s $e" in *unhealthy* | *exited* | *dead*) break ;; esac
        sleep 0.5
    done
    die "services not healthy: store=$s executor=$e"
}

demo() { # label
    local t0 out
    t0=$(now)
    if ! out=$(sbxc demo 2>&1); then
        printf '%s\n' "$out" | sed 's/^/    | /'
        die "sbx demo failed ($1)"
    fi
    say "sbx demo ($1) passed in $(since "$t0") s; transcript:"
    printf '%s\n' "$out" | sed 's/^/    | /'
}

isolation() { # project
    local out
    out=$(sbxc exec -p "$1" -- /bin/sh -c 'echo "uid $(id -u)";
        grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status;
        echo "ifaces $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\n" " ")"' 2>&1) ||
        die "sbx exec in a sandbox failed: $out"
    printf '%s\n' "$out" | sed 's/^/    /'
    grep -qx 'uid 1000' <<<"$out" || die "sandbox uid is not 1000"
    grep -qE '^CapEff:[[:space:]]+0+$' <<<"$out" || die "sandbox has capabilities"
    grep -qE '^NoNewPrivs:[[:space:]]+1$' <<<"$out" || die "sandbox lacks no_new_privs"
    grep -qE '^Seccomp:[[:space:]]+2$' <<<"$out" || die "sandbox has no seccomp filter"
    grep -qx 'ifaces lo ' <<<"$out" || die "sandbox has interfaces other than lo"
}

# The checks of one configuration: healthy, demo, isolation, a KV key across down/up.
round() { # label
    local label=$1 value got
    say "[$label] up -d"
    up_healthy
    say "[$label] both services healthy $UP_T s after up -d"
    TIMINGS+=("time to healthy ($label, fresh volumes): $UP_T s")
    demo "$label"
    say "[$label] isolation inside a sandbox (sbx exec)"
    isolation "iso-$label"
    value="kept-$label-$RANDOM"
    sbxc kv set "compose-$label" "$value" >/dev/null || die "kv set failed ($label)"
    say "[$label] kv compose-$label=$value written; down, up -d"
    dc down >/dev/null 2>&1 || die "docker-compose down failed ($label)"
    up_healthy
    TIMINGS+=("time to healthy ($label, after down/up): $UP_T s")
    got=$(sbxc kv get "compose-$label") || die "kv get failed after down/up ($label)"
    [ "$got" = "$value" ] || die "kv compose-$label after down/up is '$got', expected '$value'"
    say "[$label] healthy again in $UP_T s; kv compose-$label read back: $got"
}

TIMINGS=()
round open

# ---- with the keys override --------------------------------------------------------------------
say "[keys] making a keys file (sbx keygen in the image) and the executor's @service key"
tenant=$(docker run --rm --network none sbx-executor:latest sbx keygen --tenant ci)
service=$(docker run --rm --network none sbx-executor:latest sbx keygen --tenant executor)
{
    echo "# made by scripts/test-compose.sh"
    sed -n 2p <<<"$tenant"
    sed -n 2p <<<"$service" | sed 's/^[^:]*:/@service:/'
} >"$WORK/keys"
chmod 644 "$WORK/keys"
export SBX_KEYS_FILE=$WORK/keys
SBX_STORE_API_KEY=$(sed -n 1p <<<"$service")
export SBX_STORE_API_KEY
dc down >/dev/null 2>&1 || die "docker-compose down failed"
FILES+=(-f docker-compose.keys.yml)
CLI_ENV=(-e "SBX_API_KEY=$(sed -n 1p <<<"$tenant")")
round keys
if out=$(dc exec -T executor sbx kv get compose-keys 2>&1); then
    die "a call without an API key was accepted: $out"
fi
grep -q UNAUTHENTICATED <<<"$out" || die "a call without a key failed otherwise: $out"
say "[keys] a call without a key: $out"
sbxc exec -p recorded -- echo recorded-by-the-executor >/dev/null || die "exec failed (keys)"
for i in $(seq 1 60); do
    hist=$(sbxc history -p recorded --json 2>&1) || die "history failed: $hist"
    grep -q 'recorded-by-the-executor' <<<"$hist" && break
    ((i < 60)) || die "the executor's record never reached the store's history: $hist"
    sleep 0.5
done
say "[keys] the store's history has the executor's record: $hist"

say "down -v"
dc down -v >/dev/null 2>&1 || die "docker-compose down -v failed"
[ -z "$(docker ps -aq)" ] || die "containers remain after down -v"
[ -z "$(docker volume ls -q)" ] || die "volumes remain after down -v"

say "summary:"
printf '    %s\n' "base image (import or debootstrap): $T_BASE s" "build (both images): $T_BUILD s" \
    "image sizes: $SIZES" "${TIMINGS[@]}"
