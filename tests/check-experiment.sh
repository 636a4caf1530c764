#!/bin/sh
# `dv365 experiment ranking` on the tiny world: help and usage errors, the
# leak check, the results table, and that a rerun on the filled store gives
# the same table (same seed, same examples, same order).
# usage: check-experiment.sh PATH/TO/dv365 SOURCE_ROOT
set -u
dv365=$1 src=$2
. "$src/tests/cli-check.sh"

expect 0 "help" -- "$dv365" experiment --help
contains "usage: dv365 experiment ranking" "help"
expect 2 "no experiment" -- "$dv365" experiment
expect 2 "unknown experiment" -- "$dv365" experiment retrieval2 --data x
contains "unknown experiment 'retrieval2'" "unknown experiment"
expect 2 "missing --store" -- "$dv365" experiment ranking --data x --dv365 y
expect 2 "bad --extra" -- "$dv365" experiment ranking --data x --dv365 y --store z --extra 0
expect 2 "bad --adapter-lr" -- "$dv365" experiment ranking --data x --dv365 y --store z \
    --adapter-lr fast

expect 0 "synth" -- "$dv365" synth --preset tiny --out "$work/world"
expect 0 "init the DV365 model" -- "$dv365" init --config configs/small.yaml --out "$work/dv"
run() { # run STORE [options]: the experiment on the tiny world
    store=$1
    shift
    "$dv365" experiment ranking --data "$work/world" --dv365 "$work/dv" --store "$store" \
        --steps 6 --batch 32 "$@"
}
expect 0 "ranking" -- run "$work/store"
contains "embedded 50 users" "ranking embeds into the empty store"
contains "0 of 50 users without an embedding" "every user has an embedding"
contains "trained 6 steps of 32" "ranking trains"
for task in like comment share complete skip; do
    contains "^  $task  *NE  *[0-9.]*  *[0-9.]*  *[-+][0-9.]*  *[0-9.]*  *[0-9.]*\$" "NE row $task"
done
contains "^  watch_time  *MSE  *[0-9.]*  *[0-9.]*  *[-+][0-9.]*  *-  *-\$" "MSE row"
grep '^  ' "$work/out" >"$work/table1"
expect 0 "ranking again" -- run "$work/store"
grep '^  ' "$work/out" >"$work/table2"
if cmp -s "$work/table1" "$work/table2" && [ -s "$work/table1" ]; then pass=$((pass + 1)); else
    echo "FAIL: a rerun on the filled store gives another table"; failures=$((failures + 1)); fi
if grep -q "embedded" "$work/out"; then
    echo "FAIL: the rerun embedded again"; failures=$((failures + 1)); else pass=$((pass + 1)); fi

# an embedding made after the first train label would leak: refused
cutoff=$(awk '/^embed_time:/ {print $2}' "$work/world/world.txt")
expect 0 "embed at embed_time" -- "$dv365" embed --model "$work/dv" \
    --timelines "$work/world/timelines.dvt" --store "$work/late" --cutoff "$cutoff"
expect 1 "late store" -- run "$work/late"
contains "would leak" "late store"

# a config without the baseline's extra_tokens: 0
expect 1 "config without extra_tokens" -- run "$work/store2" --config configs/small.yaml
contains "extra_tokens: 0" "config without extra_tokens"

echo "$pass checks passed, $failures failed"
[ "$failures" -eq 0 ]
