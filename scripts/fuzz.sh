#!/bin/sh
# Long libFuzzer runs (opt-in; the default test suite fuzzes each target for
# a few seconds only).  Builds the clang + ASan + UBSan + libFuzzer tree in
# build-fuzz, then fuzzes TARGET for SECONDS with a corpus kept across runs
# in build-fuzz/corpus/TARGET (seeded from tests/fuzz/corpus/TARGET).
# Crashes land in build-fuzz/artifacts/; reproduce one with
#     build-fuzz/tests/fuzz/fuzz_TARGET build-fuzz/artifacts/TARGET-crash-...
# and, once fixed, copy it into tests/fuzz/corpus/TARGET/ (it then runs in
# every test run, fuzz-corpus-TARGET).
# usage: sh scripts/fuzz.sh TARGET|all [SECONDS=600] [JOBS=1]
# targets: blob config example_file safetensors timeline timeline_file weights
set -eu
cd "$(dirname "$0")/.."
all="blob config example_file safetensors timeline timeline_file weights"
target=${1:?usage: sh scripts/fuzz.sh TARGET|all [SECONDS] [JOBS]}
seconds=${2:-600}
jobs=${3:-1}
[ "$target" = all ] && target=$all
build=build-fuzz
if [ ! -f "$build/build.ninja" ]; then
    CC=${CC:-clang} meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized
fi
for t in $target; do
    ninja -C "$build" -j2 "tests/fuzz/fuzz_$t"
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/artifacts"
# -jobs writes fuzz-<n>.log files into the current directory: only when asked
parallel=
[ "$jobs" -gt 1 ] && parallel="-jobs=$jobs -workers=$jobs"
status=0
for t in $target; do
    mkdir -p "$build/corpus/$t"
    echo "== fuzz_$t for ${seconds}s ($jobs jobs)"
    # shellcheck disable=SC2086
    "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 $parallel \
        -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" "tests/fuzz/corpus/$t" \
        2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==ERROR|.*FUZZ_CHECK|.*runtime error|SUMMARY|Done)' ||
        true
    [ -n "$(ls "$build/artifacts" | grep "^$t-" || true)" ] && status=1
done
exit $status
