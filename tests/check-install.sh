#!/bin/sh
# Installs the build into a temporary DESTDIR, then compiles and runs an
# example using nothing but `pkg-config --cflags --libs dv365`, as a user
# of the installed library would.
# usage: check-install.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1 src=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --destdir "$dest" >"$dest/install.log" 2>&1 || {
    cat "$dest/install.log"; echo "check-install: meson install failed"; exit 1; }
pc=$(find "$dest" -name dv365.pc | head -n 1)
[ -n "$pc" ] || { echo "check-install: dv365.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$dest"
cflags=$(pkg-config --cflags dv365)
libs=$(pkg-config --libs dv365)
echo "check-install: pkg-config --cflags --libs dv365 -> $cflags $libs"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror $cflags "$src/examples/embed_user.c" $libs -o "$dest/embed_user"
libdir=$(dirname "$(find "$dest" -name 'libdv365.so.1' | head -n 1)")
readelf -d "$libdir/libdv365.so.1" | grep -q 'SONAME.*libdv365.so.1' || {
    echo "check-install: SONAME is not libdv365.so.1"; exit 1; }
LD_LIBRARY_PATH="$libdir" "$dest/embed_user" --config "$src/configs/small.yaml"
# The ranking-service example: batch generation into a store, then
# read-only lookups + decode + adapter + scoring.
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror $cflags "$src/examples/ranking_service.c" $libs -o "$dest/ranking_service"
mkdir -p "$dest/work"
LD_LIBRARY_PATH="$libdir" "$dest/ranking_service" --demo "$src/configs/small.yaml" "$dest/work"
echo "check-install: OK"
