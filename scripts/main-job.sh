#!/bin/sh
# Builds libdv365 and runs the main job (the README's first command).
# Installs missing Debian packages first.  usage (as root): sh scripts/main-job.sh
#
# Today the main job is the most complete path that exists: one synthetic
# user with a year of history (40,000 events) is sliced and pooled with the
# default 200-slice config, encoded by the Funnel Transformer || LCE into 58
# tokens, and quantized into a 4-bit blob and decoded again.
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
"$build/tools/dv365" demo --config configs/default.yaml --events 40000 --seed 1 --threads 2
