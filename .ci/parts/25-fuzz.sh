#!/usr/bin/env bash
# Build the libFuzzer target with clang (+ASan/UBSan) and fuzz the argument
# validation of alloc, functors and map for a short while.
set -euo pipefail
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
dir=build-fuzz
[ -d "$dir" ] || CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=enabled -Db_sanitize=address,undefined \
    -Db_lundef=false -Dtests=disabled -Dexamples=disabled >/dev/null
ninja -C "$dir" fuzz/fuzz-api >/dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
"$dir/fuzz/fuzz-api" -max_total_time="${PASHA_FUZZ_SECONDS:-45}" -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$corpus" 2>&1 | tail -n 12
