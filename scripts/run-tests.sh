#!/bin/sh
# Builds libdv365 and runs its whole test suite (the README's test command).
# Installs missing Debian packages first, so a fresh Debian 12 machine needs
# nothing else.  usage (as root): sh scripts/run-tests.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
. scripts/build.sh
meson test -C "$build" --print-errorlogs --num-processes 2
