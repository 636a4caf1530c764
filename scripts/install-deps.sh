#!/bin/sh
# Installs the Debian 12 packages libdv365 needs to build, test, benchmark and
# run its main job. Idempotent: only missing packages are installed.
# Usage (as root): sh scripts/install-deps.sh
set -eu

PKGS="build-essential meson ninja-build pkg-config
libblis-pthread-dev libyaml-dev libxxhash-dev libcsv-dev libcmocka-dev liblmdb-dev lmdb-utils
abigail-tools clang libclang-rt-14-dev valgrind doxygen
python3 python3-numpy python3-torch python3-pytest
python3-dask python3-distributed"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages:$missing" >&2
        echo "install-deps: run this script as root (or install them yourself)" >&2
        exit 1
    fi
    echo "install-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
fi
echo "install-deps: all packages present"
