#!/bin/sh
# Builds libdv365 and runs the main job (the README's first command).
# Installs missing Debian packages first.  usage (as root): sh scripts/main-job.sh [WORK_DIR]
#
# The pipeline on the built-in synthetic world (docs/world.md):
#   1. synth  — 400 users with a year of history each, labelled impressions
#               (pretrain.dve for DV365, train.dve / eval.dve for downstream models)
#   2. train  — the pooling tables and the encoder inside the DLRM backbone,
#               history cut 24 h before each label; checkpoint
#   3. eval   — held-out NE / AUC per task, MSE for watch time
#   4. embed  — every user into 4-bit blobs in a new LMDB store generation
#   5. evaluate downstream — the paper's experiments (docs/experiments.md),
#               one seed each: ranking transfer (+ an untrained-DV365 control),
#               staleness, stability and retrieval; prints their tables
#               (scripts/results.sh runs them all with 3 seeds, plus the
#               ablations, into docs/results.md)
#   6. demo   — one paper-scale user (40,000 events, N=200, D=256, K=58)
#               through pooling, the encoder and the 4-bit blob, timed
set -eu
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
. scripts/build.sh
dv365="$build/tools/dv365"
work=${1:-main-job-output}
rm -rf "$work"
mkdir -p "$work"
threads=$(nproc 2>/dev/null || echo 2)

echo "== 1. synth: the synthetic world (preset small)"
"$dv365" synth --preset small --seed 1 --out "$work/world"
cutoff=$(awk '/^embed_time:/ {print $2}' "$work/world/world.txt")

echo "== 2-3. train one epoch on pretrain.dve (DV365's own 80,000 examples), evaluate on eval.dve (configs/small.yaml)"
"$dv365" train --data "$work/world" --config configs/small.yaml --out "$work/checkpoints" \
    --examples pretrain.dve --threads "$threads"

echo "== 4. embed every user at the embedding day ($cutoff) into the store"
"$dv365" embed --model "$work/checkpoints" --timelines "$work/world/timelines.dvt" \
    --store "$work/store" --cutoff "$cutoff" --threads "$threads"
"$dv365" inspect store "$work/store"

echo "== 5. evaluate downstream: the experiments on the same world and model"
#    (the staleness experiment's frozen arm reads its embeddings from the store)
for e in ranking staleness stability retrieval; do
    extra=""
    [ "$e" = staleness ] && extra="--store $work/store"
    [ "$e" = retrieval ] && extra="--epochs 3"
    "$dv365" experiment "$e" --data "$work/world" --dv365 "$work/checkpoints" \
        --threads "$threads" $extra | tee "$work/$e.md"
    echo
done

echo "== 6. one paper-scale user: 40,000 events, 200 slices x 256 -> 58 tokens"
"$dv365" demo --config configs/default.yaml --events 40000 --seed 1 --threads "$threads"
echo "main job done: outputs in $work/"
