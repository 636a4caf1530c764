#!/bin/sh
# Runs the test suite under the sanitizers (docs/robustness.md).
#   asan      gcc -fsanitize=address,undefined (any UB aborts) in build-asan:
#             every test; LeakSanitizer on for the C tests.  Python tests load
#             the ASan-built library into /usr/bin/python3 through ctypes, so
#             they run with libasan preloaded and leak detection off (CPython
#             and PyTorch keep their allocations until exit).
#   tsan      gcc -fsanitize=thread in build-tsan: every C test.  The Python
#             tests are skipped: TSan must be the first library of a
#             process, and inside python3 it meets uninstrumented PyTorch /
#             OpenMP threads it cannot see synchronizing (reports would be
#             about them, not libdv365).
#   valgrind  memcheck (--leak-check=full, errors fail) on a representative
#             set of C tests of the plain build in build-valgrind, with
#             tests/valgrind.supp.
#   all       the three in turn (default).
# usage: sh scripts/sanitize.sh [asan|tsan|valgrind|all] [TEST...]
# Options: DV365_SAN_JOBS (meson test processes, default 2).
set -eu
cd "$(dirname "$0")/.."
mode=${1:-all}
[ $# -gt 0 ] && shift
jobs=${DV365_SAN_JOBS:-2}
src=$(pwd)

setup() { # setup DIR ARGS...
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >/dev/null # (setup --reconfigure drops c_args)
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" -j2 >/dev/null
}

# Names of the tests of DIR whose command is (not) python: split_tests DIR python|c
split_tests() {
    meson introspect --tests "$1" | /usr/bin/python3 -c '
import json, sys
want = sys.argv[1]
for t in json.load(sys.stdin):
    if t["name"] in ("fuzz-short", "abi", "install"):
        # fuzz-short has its own clang + ASan build; abi and install check
        # the packaging of the plain build (an instrumented library differs)
        continue
    py = t["cmd"][0].endswith("python3")
    if (want == "python") == py:
        print(t["name"])
' "$2"
}

run_asan() {
    echo "== ASan + UBSan (build-asan)"
    setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fno-sanitize-recover=undefined -Dbuildtype=debugoptimized
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if [ $# -gt 0 ]; then
        ASAN_OPTIONS=detect_leaks=1 meson test -C build-asan -q --print-errorlogs \
            --num-processes "$jobs" "$@"
        return
    fi
    st=0
    # shellcheck disable=SC2046
    ASAN_OPTIONS=detect_leaks=1 meson test -C build-asan -q --print-errorlogs \
        --num-processes "$jobs" $(split_tests build-asan c) || st=1
    preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    # shellcheck disable=SC2046
    LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 \
        meson test -C build-asan -q --print-errorlogs --num-processes 1 \
        $(split_tests build-asan python) || st=1
    return $st
}

run_tsan() {
    echo "== TSan (build-tsan); Python tests skipped (see the top of this script)"
    # DV365_NO_CLONES: the ifunc resolvers of target_clones run during
    # relocation, before the TSan runtime is up, and crash when instrumented.
    setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized \
        -Dc_args=-DDV365_NO_CLONES
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    if [ $# -gt 0 ]; then
        meson test -C build-tsan -q --print-errorlogs --num-processes "$jobs" "$@"
        return
    fi
    # shellcheck disable=SC2046
    meson test -C build-tsan -q --print-errorlogs --num-processes "$jobs" \
        $(split_tests build-tsan c)
}

# A representative subset: every format reader, the config, the encoder (through
# test_model: test_encoder alone takes >10 min under memcheck),
# pooling, the model bundle, the store, quantization and the fuzz corpora.
VALGRIND_TESTS="core config timeline pool model blob quant4 safetensors datafile adapter
store fuzz-corpus-blob fuzz-corpus-config fuzz-corpus-safetensors fuzz-corpus-timeline
fuzz-corpus-timeline_file fuzz-corpus-example_file fuzz-corpus-weights"

run_valgrind() {
    echo "== valgrind memcheck (build-valgrind)"
    setup build-valgrind -Dbuildtype=debugoptimized
    tests=${*:-$VALGRIND_TESTS}
    # shellcheck disable=SC2086
    meson test -C build-valgrind -q --print-errorlogs --num-processes "$jobs" \
        --timeout-multiplier 10 \
        --wrap="valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --suppressions=$src/tests/valgrind.supp --quiet" \
        $tests
}

case $mode in
asan) run_asan "$@" ;;
tsan) run_tsan "$@" ;;
valgrind) run_valgrind "$@" ;;
all)
    st=0
    run_asan || st=1
    run_tsan || st=1
    run_valgrind || st=1
    exit $st
    ;;
*)
    echo "usage: sh scripts/sanitize.sh [asan|tsan|valgrind|all] [TEST...]" >&2
    exit 2
    ;;
esac
