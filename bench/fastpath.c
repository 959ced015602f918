/* The threads fast path, for system-call counting: N back-to-back 100-item
 * maps on a 2-worker threads context (trivial kernel), then the time per map.
 *
 *   perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_sched_yield,\
 *       syscalls:sys_enter_futex,context-switches build-bench/bench/fastpath 100000
 *
 * A map whose workers are awake should make no system call. */
#include <pasha/pasha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int kernel(void *ud, int worker, size_t index, const void *value)
{
    (void)worker;
    (void)value;
    ((int64_t *)ud)[index] = (int64_t)index;
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = PSH_THREADS;
    o.num_workers = 2;
    psh_context *ctx;
    psh_functor *f;
    int64_t out[100];
    if (n < 1 || psh_context_create_ext(&ctx, &o) || psh_functor_range(&f, 100)) {
        fprintf(stderr, "usage: %s [maps >= 1] (%s)\n", argv[0], psh_last_error());
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long m = 0; m < n; ++m)
        if (psh_map(ctx, kernel, out, f)) {
            fprintf(stderr, "map: %s\n", psh_last_error());
            return 1;
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int i = 0; i < 100; ++i)
        if (out[i] != i) return 1;
    printf("%ld maps, %.3f us per map\n", n,
           ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / (double)n);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
    return 0;
}
