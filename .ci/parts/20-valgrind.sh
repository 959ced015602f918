#!/usr/bin/env bash
# The core and fault suites once under valgrind memcheck: no invalid access,
# no use of uninitialised memory, no definite leak (--error-exitcode=1 makes
# any of them fail the test). Forked workers run under valgrind too (fork
# copies the tool), so kernels running in child processes are checked.
#
# PASHA_ARENA_SIZE is left unset on purpose: valgrind refuses the default
# multi-GiB MAP_NORESERVE reservation, and the library must halve it until
# the mapping works (the tests pass only if it does).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${PASHA_CI_BUILD_PREFIX:-build}-valgrind
rm -rf "$dir"
meson setup "$dir" -Dbuildtype=debug >/dev/null
ninja -C "$dir" -j"${PASHA_CI_JOBS:-2}" | tail -n 1
vg="valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"
vg="$vg --track-origins=yes --child-silent-after-fork=no"
# fault-shm-full runs its scenarios in a private mount namespace and is about
# /dev/shm sizes, not memory errors; fault-exports runs nm, not our code.
meson test -C "$dir" --print-errorlogs --num-processes "${PASHA_CI_JOBS:-2}" --timeout-multiplier 10 \
    --wrap="$vg" --suite core --suite fault --no-suite fault-exports 2>&1 | tail -n 25
test "${PIPESTATUS[0]}" -eq 0
echo "valgrind: ok"
