#!/usr/bin/env bash
# Compare the ABI of the freshly built libpasha.so.0 with the committed
# baseline (abi/libpasha.so.0.abi, made by abidw): an incompatible change
# fails; a compatible one (an added function) is reported, and the baseline
# should then be regenerated with the command printed below.
set -uo pipefail
lib=build-test/libpasha.so
[ -e "$lib" ] || { meson setup build-test >/dev/null && ninja -C build-test >/dev/null; }
new=$(mktemp)
trap 'rm -f "$new"' EXIT
abidw --headers-dir include/pasha --no-corpus-path --drop-private-types "$lib" > "$new"
abidiff abi/libpasha.so.0.abi "$new"
rc=$?
if (( rc & 8 )); then echo "ABI: INCOMPATIBLE change against abi/libpasha.so.0.abi"; exit 1; fi
if (( rc & 3 )); then echo "ABI: abidiff failed (rc=$rc)"; exit 1; fi
if (( rc & 4 )); then
    echo "ABI: compatible additions. Regenerate the baseline with:"
    echo "  abidw --headers-dir include/pasha --no-corpus-path --drop-private-types $lib > abi/libpasha.so.0.abi"
else
    echo "ABI: identical to abi/libpasha.so.0.abi"
fi
