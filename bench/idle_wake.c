/* How long the CPUs may sit idle before a benchmark round (a program, not a
 * test). For each pause, runs: sleep(pause), then a two-worker psh_map_blocks
 * on a threads context whose two halves each take a few ms, and prints the
 * map's times: on a VM whose idle vCPUs the host takes back, a pause past
 * some length makes the next map lose a CPU for milliseconds (up to 2x the
 * map's time), whichever library runs it. bench/rust and bench/cpp pause
 * between variants (to let idle spinners sleep); this is how their pause was
 * chosen.
 *
 *   idle_wake [--runs R] [--pauses MS,MS,...] [--n ITEMS]
 *
 * Runs each pause's maps back to back, in two blocks (the pauses in turn,
 * twice). Prints per pause: the median and fastest map (ms), and in how
 * many runs the map took more than 1.5x the fastest map of all pauses. */
#include <pasha/pasha.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile double sink;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int halves(void *ud, int worker_id, size_t begin, size_t end)
{
    (void)ud, (void)worker_id;
    double s = 0;
    for (size_t i = begin; i < end; ++i) s += (double)i * 1e-9;
    sink = s;
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int runs = 15;
    size_t n = 10000000;
    char pauses_arg[256] = "1,5,10,20";
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--pauses") && i + 1 < argc)
            snprintf(pauses_arg, sizeof pauses_arg, "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: idle_wake [--runs R] [--pauses MS,MS,...] [--n ITEMS]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 1000 || n < 2) {
        fprintf(stderr, "idle_wake: --runs must be 1..1000 and --n at least 2\n");
        return 2;
    }
    int pauses[16], np = 0;
    for (char *tok = strtok(pauses_arg, ","); tok && np < 16; tok = strtok(NULL, ",")) {
        pauses[np] = atoi(tok);
        if (pauses[np] < 0 || pauses[np] > 1000) {
            fprintf(stderr, "idle_wake: a pause must be 0..1000 ms\n");
            return 2;
        }
        ++np;
    }
    psh_context *ctx;
    if (psh_context_create(&ctx, PSH_THREADS, 2) != PSH_OK) {
        fprintf(stderr, "idle_wake: %s\n", psh_last_error());
        return 1;
    }
    double *t = calloc((size_t)(np * runs), sizeof *t), fastest = 1e30;
    if (!t) return 1;
    /* In blocks: the runs of one pause back to back, as a benchmark that
     * always pauses as long runs them (the host's view of an idle vCPU
     * depends on its recent history: runs that alternate short and long
     * pauses did not show the effect, 2026-12-08), the pauses in turn, the
     * whole sequence twice. */
    for (int half = 0; half < 2; ++half)
        for (int p = 0; p < np; ++p)
            for (int r = half * ((runs + 1) / 2); r < (half ? runs : (runs + 1) / 2); ++r) {
                struct timespec ts = {pauses[p] / 1000, (long)(pauses[p] % 1000) * 1000000L};
                nanosleep(&ts, NULL);
                double t0 = now_ms();
                if (psh_map_blocks(ctx, halves, NULL, n) != PSH_OK) {
                    fprintf(stderr, "idle_wake: %s\n", psh_last_error());
                    return 1;
                }
                t[p * runs + r] = now_ms() - t0;
                if (t[p * runs + r] < fastest) fastest = t[p * runs + r];
            }
    printf("two-worker map of %zu items after a pause, %d runs per pause (two blocks each)\n", n, runs);
    printf("  %8s %10s %10s %s\n", "pause ms", "median ms", "fastest ms", "runs > 1.5x the fastest of all");
    for (int p = 0; p < np; ++p) {
        double *row = t + p * runs;
        int slow = 0;
        for (int r = 0; r < runs; ++r) slow += row[r] > 1.5 * fastest;
        qsort(row, (size_t)runs, sizeof *row, by_value);
        printf("  %8d %10.2f %10.2f %d of %d\n", pauses[p], row[runs / 2], row[0], slow, runs);
    }
    free(t);
    psh_context_destroy(ctx);
    return 0;
}
