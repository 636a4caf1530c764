#!/bin/sh
# Compares the built library's ABI with the committed baseline (abi/).
# Fails on ANY change abidiff reports (added, removed or changed functions,
# variables or types), not only on incompatible ones: changing the public API
# means regenerating the baseline deliberately with scripts/update-abi.sh.
# usage: check-abi.sh LIBRARY BASELINE HEADERS_DIR
set -u
lib=$1 baseline=$2 headers=$3
if ! command -v abidw >/dev/null || ! command -v abidiff >/dev/null; then
    echo "check-abi: abidw/abidiff not found (install abigail-tools: sh scripts/install-deps.sh)"
    exit 1
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
if ! abidw --no-corpus-path --headers-dir "$headers" --out-file "$tmp" "$lib"; then
    echo "check-abi: abidw failed on $lib (is it built with debug info, -g?)"
    exit 1
fi
abidiff --headers-dir1 "$headers" --headers-dir2 "$headers" "$baseline" "$tmp"
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "check-abi: the ABI differs from $baseline (abidiff exit status $rc)."
    echo "check-abi: if the change is deliberate, run scripts/update-abi.sh and commit abi/."
    exit 1
fi
echo "check-abi: ABI identical to the baseline"
