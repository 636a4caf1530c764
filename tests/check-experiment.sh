#!/bin/sh
# `dv365 experiment` on the tiny world: help and usage errors, every
# experiment's table, that a rerun gives the same table (same seed, same
# examples, same order), and the behaviour the tables must show.
# usage: check-experiment.sh PATH/TO/dv365 SOURCE_ROOT
set -u
dv365=$1 src=$2
. "$src/tests/cli-check.sh"
num='[-+]*[0-9][0-9.]*'

expect 0 "help" -- "$dv365" experiment --help
contains "usage: dv365 experiment ranking" "help"
for e in staleness stability retrieval ablations; do contains "dv365 experiment $e" "help $e"; done
expect 2 "no experiment" -- "$dv365" experiment
expect 2 "unknown experiment" -- "$dv365" experiment retrieval2 --data x
contains "unknown experiment 'retrieval2'" "unknown experiment"
expect 2 "missing --dv365" -- "$dv365" experiment ranking --data x
expect 2 "missing --data" -- "$dv365" experiment ablations
expect 2 "bad --extra" -- "$dv365" experiment ranking --data x --dv365 y --extra 0
expect 2 "bad --seeds" -- "$dv365" experiment ranking --data x --dv365 y --seeds 0
expect 2 "bad --adapter-lr" -- "$dv365" experiment ranking --data x --dv365 y --adapter-lr fast
expect 1 "missing world" -- "$dv365" experiment ranking --data "$work/nothing" --dv365 y
contains "train.dve" "missing world names the file"

expect 0 "synth" -- "$dv365" synth --preset tiny --out "$work/world"
expect 0 "DV365 model" -- "$dv365" train --data "$work/world" --config configs/small.yaml \
    --out "$work/dv" --steps 20
run() { # run EXPERIMENT [options]: on the tiny world, small batches
    e=$1
    shift
    "$dv365" experiment "$e" --data "$work/world" --dv365 "$work/dv" --batch 32 "$@"
}

# ranking: four arms on two splits, a row per task, the same tables twice
expect 0 "ranking" -- run ranking --seeds 2
contains "^## Ranking transfer" "ranking heading"
contains "^### Same users" "ranking same-users table"
contains "^### Held-out users" "ranking held-out table"
head='| task | metric | baseline | +DV365 | Δ % vs baseline | +untrained DV365 | Δ % vs baseline | +user id | Δ % vs baseline |'
n=$(grep -c -F "$head" "$work/out")
if [ "$n" -eq 2 ]; then pass=$((pass + 1)); else
    echo "FAIL: ranking: $n table headers, expected 2"; failures=$((failures + 1)); fi
cell=" $num | $num ± $num |"
for task in like comment share complete skip; do
    n=$(grep -c "^| $task | NE | $num |$cell$cell$cell\$" "$work/out")
    if [ "$n" -eq 2 ]; then pass=$((pass + 1)); else
        echo "FAIL: ranking: $n NE rows for $task, expected 2"; failures=$((failures + 1)); fi
done
contains "^| watch_time | MSE | $num |$cell$cell$cell\$" "MSE row"
contains "^| \*\*mean over binary tasks\*\* | NE | | | \*\*$num ± $num\*\* |" "mean row"
grep '^|' "$work/out" >"$work/table1"
expect 0 "ranking again" -- run ranking --seeds 2 --threads 2
grep '^|' "$work/out" >"$work/table2"
if cmp -s "$work/table1" "$work/table2" && [ -s "$work/table1" ]; then pass=$((pass + 1)); else
    echo "FAIL: a rerun (2 threads) gives other ranking tables"
    diff "$work/table1" "$work/table2" | head; failures=$((failures + 1)); fi

# a config without the baseline's extra_tokens: 0
expect 1 "config without extra_tokens" -- run ranking --config configs/small.yaml
contains "extra_tokens: 0" "config without extra_tokens"

# staleness: a row per eval day (the tiny world has 7)
expect 0 "staleness" -- run staleness
for d in 0 1 2 3 4 5 6; do
    contains "^| $d | $d | $num | $num |\$" "staleness day $d"
done
contains "^| \*\*all\*\* | | \*\*$num\*\* | \*\*$num\*\* |\$" "staleness total"
# on day 0 the frozen embedding is the daily one: the same gain
day0=$(grep '^| 0 | 0 |' "$work/out" | awk -F'|' '{print $4 "|" $5}')
a=$(echo "$day0" | cut -d'|' -f1 | tr -d ' ') b=$(echo "$day0" | cut -d'|' -f2 | tr -d ' ')
if [ -n "$a" ] && [ "$a" = "$b" ]; then pass=$((pass + 1)); else
    echo "FAIL: staleness day 0: daily $a and frozen $b differ"; failures=$((failures + 1)); fi

# the frozen arm read from a store made at the first eval midnight: the same
# bytes as the in-memory embedding, so the same table; another day is refused
grep '^|' "$work/out" >"$work/stale1"
cutoff=$(awk '/^embed_time:/ {print $2}' "$work/world/world.txt")
expect 0 "embed at embed_time" -- "$dv365" embed --model "$work/dv" \
    --timelines "$work/world/timelines.dvt" --store "$work/store" --cutoff "$cutoff"
expect 0 "staleness from the store" -- run staleness --store "$work/store"
contains "read from the store .* (0 of 50 users missing)" "staleness reads the store"
grep '^|' "$work/out" >"$work/stale2"
if cmp -s "$work/stale1" "$work/stale2"; then pass=$((pass + 1)); else
    echo "FAIL: staleness from the store gives another table"; failures=$((failures + 1)); fi
expect 0 "embed a day early" -- "$dv365" embed --model "$work/dv" \
    --timelines "$work/world/timelines.dvt" --store "$work/early" --cutoff $((cutoff - 86400))
expect 1 "staleness, store of another day" -- run staleness --store "$work/early"
contains "wants the one made at the first eval midnight" "store of another day"

# stability: the same user a week apart is closer than two different users
expect 0 "stability" -- run stability
contains "^| same user, 7 days apart | 50 |" "stability same-user row"
same=$(grep '^| same user' "$work/out" | awk -F'|' '{print $7}')
diff_=$(grep '^| different users' "$work/out" | awk -F'|' '{print $7}')
if awk -v s="$same" -v d="$diff_" 'BEGIN { exit !(s > d && s <= 1.0) }'; then
    pass=$((pass + 1)); else
    echo "FAIL: stability: median cosine same user $same vs different users $diff_"
    failures=$((failures + 1)); fi

# retrieval: both splits, every arm, HitRates in [0, 1]
expect 0 "retrieval" -- run retrieval
contains "^## Retrieval" "retrieval heading"
for arm in "without DV365" "+DV365 plain" "+DV365 GateNet" "+untrained DV365 plain" \
    "+untrained DV365 GateNet" "+user id plain (identity control)"; do
    n=$(grep -c -F "| $arm | " "$work/out")
    if [ "$n" -eq 2 ]; then pass=$((pass + 1)); else
        echo "FAIL: retrieval: $n rows for '$arm', expected 2"; failures=$((failures + 1)); fi
done
if awk -F'|' '$3 ~ /^ *[0-9]+\.[0-9]+ *$/ { n++; if ($3 + 0 > 1 || $4 + 0 < $3 + 0 || $4 + 0 > 1) bad = 1 }
    END { exit bad || n != 12 }
' "$work/out"; then pass=$((pass + 1)); else
    echo "FAIL: retrieval: a HitRate outside [0, 1] or HR@10 < HR@1"; failures=$((failures + 1)); fi

# ablations: every variant trained and compared (tiny world, few steps)
expect 0 "ablations" -- "$dv365" experiment ablations --data "$work/world" --batch 32
for v in "FSA (base)" "gap 0" "mean pooling" "LCE only" "vanilla Transformer" \
    "FSA (base), float"; do
    contains "^| $v | 16 | $num | $num | $num | $num |\$" "ablation row $v"
done
contains "^| FSA (base) | 16 | $num | $num | +0.00 |" "the base is the reference"
expect 1 "ablations of a missing config" -- "$dv365" experiment ablations --data "$work/world" \
    --base "$work/none.yaml"
contains "cannot open '$work/none.yaml'" "ablations of a missing config"

echo "$pass checks passed, $failures failed"
[ "$failures" -eq 0 ]
