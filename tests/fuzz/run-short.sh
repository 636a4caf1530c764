#!/bin/sh
# A short libFuzzer run of every fuzz target, part of the default test
# suite.  Configures (once) and builds a clang + ASan + UBSan + libFuzzer
# build of the library in FUZZ_BUILD, then fuzzes each target for
# DV365_FUZZ_SECONDS (default 5) seconds from its committed corpus.
# Exits 77 (meson: skipped) when clang or libFuzzer is missing.
# usage: run-short.sh SOURCE_ROOT FUZZ_BUILD [TARGET...]
set -eu
src=$1
build=$2
shift 2
seconds=${DV365_FUZZ_SECONDS:-5}
targets=${*:-"blob config example_file safetensors timeline timeline_file weights"}

cc=${DV365_FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "SKIP: $cc not found (apt-get install clang libclang-rt-dev for fuzzing)"
    exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    echo "SKIP: $cc cannot link -fsanitize=fuzzer,address,undefined (install libclang-rt-dev)"
    exit 77
fi

if [ ! -f "$build/build.ninja" ]; then
    echo "configuring the fuzz build in $build"
    CC=$cc meson setup "$build" "$src" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized >"$probe/setup.log" 2>&1 ||
        { cat "$probe/setup.log"; exit 1; }
fi
ninja_targets=
for t in $targets; do ninja_targets="$ninja_targets tests/fuzz/fuzz_$t"; done
# shellcheck disable=SC2086
ninja -C "$build" -j2 $ninja_targets >"$probe/build.log" 2>&1 || { cat "$probe/build.log"; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
work="$build/fuzz-work"
status=0
total=0
for t in $targets; do
    rm -rf "$work/$t"
    mkdir -p "$work/$t" "$work/artifacts"
    log="$work/$t.log"
    # New inputs go to the scratch corpus (first dir); the committed one is read only.
    if "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/artifacts/$t-" \
        "$work/$t" "$src/tests/fuzz/corpus/$t" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        echo "fuzz_$t: ${runs:-?} executions in ${seconds}s, corpus $(ls "$work/$t" | wc -l) new inputs"
        total=$((total + ${runs:-0}))
    else
        status=1
        echo "FAIL fuzz_$t (log: $log):"
        grep -E 'ERROR|FUZZ_CHECK|runtime error|Test unit written' "$log" | head -n 20
        echo "reproduce: $build/tests/fuzz/fuzz_$t $work/artifacts/$t-<crash file>"
        echo "then copy the input into $src/tests/fuzz/corpus/$t/ as a regression case."
    fi
done
echo "total: $total executions"
exit $status
