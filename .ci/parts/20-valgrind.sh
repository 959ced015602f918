#!/usr/bin/env bash
# The core suite, and the fault tests that check memory rather than timing,
# once under valgrind memcheck: no invalid access,
# no use of uninitialised memory, no definite leak (--error-exitcode=1 makes
# any of them fail the test). Forked workers run under valgrind too (fork
# copies the tool), so kernels running in child processes are checked.
#
# PASHA_ARENA_SIZE=64M: memcheck's leak check scans every readable mapping
# for pointers, the shm arena included, and tmpfs allocates a real page for
# every page of a shared mapping that is read. With the default arena (64 GiB
# here, halved to 32 GiB because valgrind refuses 64) one test process
# filled 15 GiB of /dev/shm at exit and the OOM killer stepped in. Every
# forked worker scans it again when it exits: test-array took 29 s with a
# 1 GiB arena, 11 s with 256 MiB, 3.6 s with 64 MiB (the tests' arrays fit).
# The halving itself is checked first, without leak checking (no scan).
# Not under valgrind: fault-death, fault-stuck (they assert sub-second
# worker-death times; a worker dying under valgrind takes seconds to run
# its exit-time checks: 5.1 s measured), fault-concurrency (many threads,
# which valgrind runs one at a time: minutes), fault-containers and
# fault-exports (about mounts, cgroups and nm, not memory errors).
# PASHA_SPIN_US=0: valgrind runs one thread at a time, so spin-waits only
# burn time slices; futex sleeps behave the same and keep the run short.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${PASHA_CI_BUILD_PREFIX:-build}-valgrind
rm -rf "$dir"
meson setup "$dir" -Dbuildtype=debug >/dev/null
ninja -C "$dir" -j"${PASHA_CI_JOBS:-2}" | tail -n 1
export PASHA_SPIN_US=0
# The arena's halving under valgrind: ask for 64 GiB, which valgrind refuses;
# the library must halve until the mapping works, and serve an array from it.
# (Without PASHA_ARENA_SIZE the library picks 1 GiB under valgrind itself.)
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
    /* The arena's mappings (madvise splits them around arrays), summed. */
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512], name[128] = "";
    unsigned long lo, hi, total = 0;
    while (fgets(line, sizeof line, f)) {
        /* The arena is a memfd named pasha; its inode tells it from others. */
        char *p = strstr(line, "/memfd:pasha");
        unsigned long inode;
        char dev[16];
        if (!p || sscanf(line, "%lx-%lx %*s %*s %15s %lu", &lo, &hi, dev, &inode) != 4) continue;
        char id[128];
        snprintf(id, sizeof id, "%s %lu", dev, inode);
        if (!name[0]) snprintf(name, sizeof name, "%s", id);
        if (strcmp(id, name) == 0) total += hi - lo;
    }
    printf("arena under valgrind, 64 GiB asked: %lu GiB mapped\n", total >> 30);
    psh_array_free(a);
    return total >= (1ul << 30) && total < (64ul << 30) ? 0 : 1;
}
PROBE
cc -Iinclude "$dir/arena-probe.c" -L"$dir" -lpasha -Wl,-rpath,"$(pwd)/$dir" -o "$dir/arena-probe"
PASHA_ARENA_SIZE=64G valgrind --quiet --error-exitcode=1 --leak-check=no "$dir/arena-probe"
export PASHA_ARENA_SIZE=64M
vg="valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"
vg="$vg --child-silent-after-fork=no"
# fault-containers runs its scenarios in mount namespaces and cgroups, not
# about memory errors; fault-exports runs nm, not our code.
meson test -C "$dir" --print-errorlogs --num-processes "${PASHA_CI_JOBS:-2}" --timeout-multiplier 10 \
    --wrap="$vg" context array functor map fault-bad-input fault-shm-security 2>&1 | tail -n 25
test "${PIPESTATUS[0]}" -eq 0
echo "valgrind: ok"
