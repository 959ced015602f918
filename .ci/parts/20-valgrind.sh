#!/usr/bin/env bash
# The core and fault suites once under valgrind memcheck: no invalid access,
# no use of uninitialised memory, no definite leak (--error-exitcode=1 makes
# any of them fail the test). Forked workers run under valgrind too (fork
# copies the tool), so kernels running in child processes are checked.
#
# PASHA_ARENA_SIZE=1G: memcheck's leak check scans every readable mapping
# for pointers, the shm arena included, and tmpfs allocates a real page for
# every page of a shared mapping that is read. With the default arena (64 GiB
# here, halved to 32 GiB because valgrind refuses 64) one test process
# filled 15 GiB of /dev/shm at exit and the OOM killer stepped in. The
# halving itself is checked first, without leak checking (no scan).
# PASHA_SPIN_US=0: valgrind runs one thread at a time, so spin-waits only
# burn time slices; futex sleeps behave the same and keep the run short.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${PASHA_CI_BUILD_PREFIX:-build}-valgrind
rm -rf "$dir"
meson setup "$dir" -Dbuildtype=debug >/dev/null
ninja -C "$dir" -j"${PASHA_CI_JOBS:-2}" | tail -n 1
export PASHA_SPIN_US=0
# The default arena under valgrind: mmap of the full size fails, the library
# halves it until it works, and arrays are still served from it.
cat > "$dir/arena-probe.c" <<'PROBE'
#include <pasha/pasha.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    size_t n = 1 << 20;
    psh_array *a;
    if (psh_alloc(&a, NULL, PSH_UINT8, 1, &n, NULL) != PSH_OK) return 1;
    memset(psh_array_data(a), 7, n);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long lo, hi, big = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "/dev/shm/psh-") && sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi - lo > big) big = hi - lo;
    printf("arena under valgrind: %lu GiB\n", big >> 30);
    psh_array_free(a);
    return big >= (1ul << 30) ? 0 : 1;
}
PROBE
cc -Iinclude "$dir/arena-probe.c" -L"$dir" -lpasha -Wl,-rpath,"$(pwd)/$dir" -o "$dir/arena-probe"
env -u PASHA_ARENA_SIZE valgrind --quiet --error-exitcode=1 --leak-check=no "$dir/arena-probe"
export PASHA_ARENA_SIZE=1G
vg="valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"
vg="$vg --child-silent-after-fork=no"
# fault-shm-full runs its scenarios in a private mount namespace and is about
# /dev/shm sizes, not memory errors; fault-exports runs nm, not our code.
meson test -C "$dir" --print-errorlogs --num-processes "${PASHA_CI_JOBS:-2}" --timeout-multiplier 10 \
    --wrap="$vg" --suite core --suite fault --no-suite fault-exports 2>&1 | tail -n 25
test "${PIPESTATUS[0]}" -eq 0
echo "valgrind: ok"
