#!/usr/bin/env bash
# ABI check: the public ABI of a fresh libpasha.so.0 against the committed
# baseline abi/libpasha.so.0.abi (how it is made: abi/README.md).
#
# abidiff's exit status is a bit field: 1 tool error, 2 usage error, 4 ABI
# change, 8 removed symbols. libabigail sets only 4 (not 8) for a changed
# struct layout or parameter type, so failing on 8 alone would let those
# through. The verdict is therefore taken with --no-added-syms, and ANY
# change left fails; added functions (compatible) are shown and pass.
# Checked by hand on a scratch copy: psh_map_options.user_data_size changed
# from size_t to int -> status 4 -> fails; a new exported function ->
# status 0 with --no-added-syms -> passes, reported as added.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${PASHA_CI_BUILD_PREFIX:-build}-abi
rm -rf "$dir"
meson setup "$dir" -Dbuildtype=debugoptimized -Dtests=disabled -Dexamples=disabled >/dev/null
meson compile -C "$dir" -j"${PASHA_CI_JOBS:-2}" pasha:shared_library | tail -n 1
lib=$(readlink -f "$dir/libpasha.so.0")
new="$dir/libpasha.so.0.abi"
abidw --no-corpus-path --drop-private-types --headers-dir include/pasha --type-id-style hash \
      --out-file "$new" "$lib"
# abi/libpasha.so.0.abignore: option structs may grow at the end (reviewed
# growth; libabigail would also hide a member retyped in the same change, so
# tests/test-worker-hooks.c pins the old members' types and offsets).
supp=(--suppressions abi/libpasha.so.0.abignore)
set +e
abidiff "${supp[@]}" abi/libpasha.so.0.abi "$new"              # the full report, additions included
abidiff "${supp[@]}" --no-added-syms abi/libpasha.so.0.abi "$new" >/dev/null
rc=$?                                             # the verdict: anything but additions
set -e
if (( rc & 3 )); then
    echo "abi: abidiff failed to run (status $rc)"
    exit 1
elif (( rc & 12 )); then
    echo "abi: INCOMPATIBLE change against abi/libpasha.so.0.abi (report above): a removed or"
    echo "abi: changed function or public type. Revert it, or bump the SONAME and regenerate the"
    echo "abi: baseline with the command in abi/README.md."
    exit 1
fi
# Only psh_ symbols are exported (the version script src/libpasha.map).
if nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^psh_'; then
    echo "abi: symbols other than psh_* are exported"
    exit 1
fi
echo "abi: ok ($(nm -D --defined-only "$lib" | wc -l) psh_ symbols exported, no incompatible change)"
