#!/bin/sh
# Builds libdv365 and runs the main job (the README's first command).
# Installs missing Debian packages first.  usage (as root): sh scripts/main-job.sh [WORK_DIR]
#
# The pipeline on the built-in synthetic world (docs/world.md):
#   1. synth  — 400 users with a year of history each, labelled impressions
#   2. train  — the pooling tables and the encoder inside the DLRM backbone,
#               history cut 24 h before each label; checkpoint
#   3. eval   — held-out NE / AUC per task, MSE for watch time
#   4. embed  — every user into 4-bit blobs in a new LMDB store generation
#   5. demo   — one paper-scale user (40,000 events, N=200, D=256, K=58)
#               through pooling, the encoder and the 4-bit blob, timed
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
build=${BUILD_DIR:-build}
if [ -f "$build/build.ninja" ]; then
    meson setup --reconfigure "$build" >/dev/null
else
    meson setup "$build" >/dev/null
fi
ninja -C "$build"
dv365="$build/tools/dv365"
work=${1:-main-job-output}
rm -rf "$work"
mkdir -p "$work"
threads=$(nproc 2>/dev/null || echo 2)

echo "== 1. synth: the synthetic world (preset small)"
"$dv365" synth --preset small --seed 1 --out "$work/world"
cutoff=$(awk '/^embed_time:/ {print $2}' "$work/world/world.txt")

echo "== 2-3. train one epoch on train.dve, evaluate on eval.dve (configs/small.yaml)"
"$dv365" train --data "$work/world" --config configs/small.yaml --out "$work/checkpoints" \
    --threads "$threads"

echo "== 4. embed every user at the embedding day ($cutoff) into the store"
"$dv365" embed --model "$work/checkpoints" --timelines "$work/world/timelines.dvt" \
    --store "$work/store" --cutoff "$cutoff" --threads "$threads"
"$dv365" inspect store "$work/store"

echo "== 5. one paper-scale user: 40,000 events, 200 slices x 256 -> 58 tokens"
"$dv365" demo --config configs/default.yaml --events 40000 --seed 1 --threads "$threads"
echo "main job done: outputs in $work/"
