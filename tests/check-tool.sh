#!/bin/sh
# The dv365 tool as a user runs it: every command's --help, usage errors,
# and the whole pipeline on the tiny world (synth -> train -> resume -> eval
# -> embed -> inspect -> encode -> bench), checking exit codes and output.
# usage: check-tool.sh PATH/TO/dv365 SOURCE_ROOT
set -u
dv365=$1 src=$2
. "$src/tests/cli-check.sh"

expect 0 "top-level help" -- "$dv365" --help
contains "commands:" "top-level help"
for c in bench demo embed encode eval experiment init inspect synth train; do
    expect 0 "$c --help" -- "$dv365" "$c" --help
    contains "usage: dv365 $c" "$c --help"
done
expect 2 "no command" -- "$dv365"
expect 2 "unknown command" -- "$dv365" frobnicate
contains "unknown command 'frobnicate'" "unknown command"
expect 2 "train without --data" -- "$dv365" train --out "$work/x"
expect 2 "bad number" -- "$dv365" demo --events many
contains "needs a whole number" "bad number"
expect 1 "missing config" -- "$dv365" inspect config /nonexistent.yaml
contains "/nonexistent.yaml" "missing config"
expect 0 "version" -- "$dv365" version

# the pipeline on the tiny world
expect 0 "synth" -- "$dv365" synth --preset tiny --out "$work/world"
cutoff=$(awk '/^embed_time:/ {print $2}' "$work/world/world.txt")
expect 0 "train" -- "$dv365" train --data "$work/world" --config configs/small.yaml \
    --out "$work/ckpt" --steps 4 --threads 2
contains "trained 4 steps" "train"
contains "like         binary" "train prints the metrics table"
expect 0 "train --resume" -- "$dv365" train --data "$work/world" --out "$work/ckpt" --resume --steps 2
contains "resumed" "train --resume"
contains "step 6 in all" "train --resume continues the step count"
expect 0 "eval" -- "$dv365" eval --model "$work/ckpt" --data "$work/world"
contains "mean loss" "eval"
expect 0 "embed" -- "$dv365" embed --model "$work/ckpt" --timelines "$work/world/timelines.dvt" \
    --store "$work/store" --cutoff "$cutoff" --threads 2
contains "generation 1" "embed"
expect 0 "inspect store" -- "$dv365" inspect store "$work/store"
contains "users            50" "inspect store"
expect 0 "inspect model" -- "$dv365" inspect model "$work/ckpt"
contains "tokens K         16" "inspect model"
expect 1 "inspect a missing store" -- "$dv365" inspect store "$work/nostore"
expect 0 "init" -- "$dv365" init --config configs/small.yaml --out "$work/fresh" --seed 2
expect 0 "bench" -- "$dv365" bench --config configs/small.yaml --users 4 --events 500 --batch 2
contains "pool + encode + blob" "bench"
expect 0 "demo" -- "$dv365" demo --config configs/small.yaml --events 2000
contains "4-bit blob" "demo"

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
