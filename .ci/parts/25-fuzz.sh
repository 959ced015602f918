#!/usr/bin/env bash
# Build the libFuzzer target with clang (+ASan/UBSan) and fuzz the argument
# validation of alloc, functors and map for a short while (45 s by default,
# PASHA_FUZZ_SECONDS to change). Any crash, sanitizer report, leak or
# timeout fails; the reproducer is left in the build dir (crash-*, leak-*).
set -euo pipefail
cd "$(dirname "$0")/../.."
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
dir=${PASHA_CI_BUILD_PREFIX:-build}-fuzz
[ -d "$dir" ] || CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=enabled -Db_sanitize=address,undefined \
    -Db_lundef=false -Dtests=disabled -Dexamples=disabled >/dev/null
ninja -C "$dir" -j"${PASHA_CI_JOBS:-2}" fuzz/fuzz-api | tail -n 1
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
"$dir/fuzz/fuzz-api" -max_total_time="${PASHA_FUZZ_SECONDS:-45}" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$dir/" "$corpus" 2>&1 | tail -n 12
test "${PIPESTATUS[0]}" -eq 0
echo "fuzz: ok"
