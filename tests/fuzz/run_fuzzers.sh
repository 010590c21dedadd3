#!/bin/sh
# run_fuzzers.sh [SECONDS] [TARGET...]: builds the libFuzzer targets with clang in build-fuzz
# (-DSBX_FUZZ=ON: ASan + UBSan) and runs each for SECONDS (default 60), one at a time, one
# process each (the machine is shared). New corpus entries and crash/leak/timeout inputs go to
# a temp dir (printed at the end; the seed corpora in tests/fuzz/corpus are only read).
# Exits 1 when some target produced an artifact. Environment: SBX_FUZZ_BUILD (build dir),
# SBX_FUZZ_OUT (output dir instead of a new temp dir), SBX_FUZZ_ARGS (extra libFuzzer flags).
set -eu

secs=${1:-60}
[ $# -gt 0 ] && shift
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${SBX_FUZZ_BUILD:-$root/build-fuzz}
all="fuzz_auth fuzz_config fuzz_proto fuzz_wire fuzz_files fuzz_cli fuzz_store_keys fuzz_store_handlers"
targets=${*:-$all}

CC=clang cmake -S "$root" -B "$build" -DSBX_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
built=""
for t in $targets; do
    # a target whose library is not in the tree yet is not defined: skip it
    if cmake --build "$build" -j2 --target "$t" >"$build/fuzz-build-$t.log" 2>&1; then
        built="$built $t"
    else
        echo "run_fuzzers: $t: not built (see $build/fuzz-build-$t.log)" >&2
    fi
done

out=${SBX_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sbx-fuzz.XXXXXX")}
mkdir -p "$out"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=""
for t in $built; do
    bin=$(find "$build/tests/fuzz" -maxdepth 1 -name "$t" -type f | head -n 1)
    mkdir -p "$out/$t/corpus" "$out/$t/artifacts"
    echo "== $t: ${secs}s" >&2
    # the hard timeout bounds a hung target; libFuzzer stops itself at max_total_time
    set +e
    timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
        -max_len=8192 -print_final_stats=1 -artifact_prefix="$out/$t/artifacts/" \
        ${SBX_FUZZ_ARGS:-} "$out/$t/corpus" "$here/corpus/$t" >"$out/$t/log" 2>&1
    rc=$?
    set -e
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$out/$t/log" |
        sed "s/^/  $t /" >&2 || true
    if [ -n "$(ls -A "$out/$t/artifacts")" ] || [ $rc -ne 0 ]; then
        echo "  $t: FAILED (exit $rc): $(ls "$out/$t/artifacts" | tr '\n' ' ') log: $out/$t/log" >&2
        failed="$failed $t"
    fi
done
echo "run_fuzzers: output in $out" >&2
if [ -n "$failed" ]; then
    echo "run_fuzzers: failures:$failed" >&2
    exit 1
fi
