#!/usr/bin/env bash
# The whole test suite (core, fault and every other registered suite) under
# ASan+UBSan, then under TSan. Any report fails the run: UBSan is made fatal,
# ASan and TSan are fatal by default (exitcode 66 / 66).
#
# PASHA_ARENA_SIZE=4G: the shm arena normally reserves 2x RAM (>= 64 GiB) of
# address space with MAP_NORESERVE; TSan's shadow layout refuses such a
# mapping (the library halves until it fits, but a small arena keeps the
# shadow memory small and the run quick). ASan copes either way.
# The fork-with-live-threads test is skipped under TSan by the test itself
# (TSan cannot follow a child forked while other threads run); no other
# suppression is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${PASHA_CI_JOBS:-2}

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export PASHA_ARENA_SIZE=${PASHA_ARENA_SIZE:-4G}

run() {
    local dir=$1 sanitize=$2
    echo "--- $dir: -Db_sanitize=$sanitize"
    meson setup "$dir" --wipe -Db_sanitize="$sanitize" -Db_lundef=false -Dbuildtype=debug \
        -Dexamples=enabled >/dev/null 2>&1 ||
        meson setup "$dir" -Db_sanitize="$sanitize" -Db_lundef=false -Dbuildtype=debug -Dexamples=enabled
    ninja -C "$dir" -j"$jobs" >/dev/null
    meson test -C "$dir" --print-errorlogs --num-processes "$jobs" --timeout-multiplier 4 \
        --suite core --suite fault
}

run build-asan address,undefined
run build-tsan thread
echo "sanitizers: ok"
