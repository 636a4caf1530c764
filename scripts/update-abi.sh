#!/bin/sh
# Regenerates the committed ABI baseline from a fresh build.  Run it only when
# the public API changed on purpose, and commit abi/ with that change.
# usage: sh scripts/update-abi.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build-abi}
[ -d "$build" ] || meson setup "$build" --buildtype=debugoptimized >/dev/null
ninja -C "$build" >/dev/null
abidw --no-corpus-path --headers-dir include --out-file abi/libdv365.abi "$build/lib/libdv365.so"
echo "update-abi: wrote abi/libdv365.abi"
