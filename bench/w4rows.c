/* The kernel of bench (f) (bench_w4.h) through psh_map on a threads context
 * of 2 workers, with the per-worker sum and histogram rows laid out in
 * different ways, to show what the layout costs: each worker's CPU time
 * (CLOCK_THREAD_CPUTIME_ID from its first to its last frame), so time
 * spent waiting for a CPU does not count. The variants are alternated
 * round by round; a round in which other processes used more than
 * --quiet-ms of CPU (from /proc/stat, steal included) is discarded and
 * run again (at most 20 passes), so the figures come from quiet rounds.
 *
 *   build-bench/bench/w4rows [--rounds N] [--frames N] [--quiet-ms X]
 *
 * Variants:
 *   per_worker           psh_alloc per_worker = 1: rows back to back
 *   PSH_PER_WORKER_PADDED  rows 128-byte aligned, >= 128 bytes apart
 *   hist gap G           sums as per_worker, the two histogram rows in
 *                        malloc'd memory at the same page offset as
 *                        per_worker's, G bytes apart (G = 0: back to back)
 *   one worker alone     per_worker rows, worker 1 skips its frames: the
 *                        speed of a worker that nobody disturbs
 *   OpenMP reduction     bench.c's OpenMP variant (private copies on each
 *                        thread's stack), each thread's CPU time around
 *                        its share of the loop
 */
#include <omp.h>
#include <pasha/pasha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_w4.h"

#define NVAR 8
#define MAX_ROUNDS 200

static double ms(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* CPU used by the whole machine (steal included) in ms, from /proc/stat. */
static double machine_busy_ms(void)
{
    FILE *f = fopen("/proc/stat", "r");
    long long u = 0, n = 0, s = 0, i = 0, io = 0, irq = 0, si = 0, st = 0;
    if (!f || fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &u, &n, &s, &i, &io, &irq, &si, &st) != 8) {
        if (f) fclose(f);
        return 0;
    }
    fclose(f);
    return (double)(u + n + s + irq + si + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

struct rows {
    float *sum[2];
    int64_t *hist[2];
    int alone; /* worker 1 skips its frames */
};

struct probe {
    const struct rows *r;
    struct {
        _Alignas(256) double first, last; /* each worker's clock 256 bytes from the other's */
    } w[2];
};

static int kernel(void *ud, int worker, size_t index, const void *value)
{
    struct probe *p = ud;
    const psh_view *v = value;
    (void)index;
    if (worker == 1 && p->r->alone) return 0;
    double t = ms(CLOCK_THREAD_CPUTIME_ID);
    if (p->w[worker].first < 0) p->w[worker].first = t;
    w4_frame(v->data, p->r->sum[worker], p->r->hist[worker]);
    p->w[worker].last = ms(CLOCK_THREAD_CPUTIME_ID);
    return 0;
}

/* bench.c's w4_omp, timing each thread's share; returns the larger CPU time. */
static double omp_variant(const float *frames, size_t n, float *sum, int64_t *hist)
{
    double cpu[2] = {0, 0};
    memset(sum, 0, sizeof(float) * W4_PIXELS);
    memset(hist, 0, sizeof(int64_t) * W4_BINS);
#pragma omp parallel num_threads(2) reduction(+ : sum[:W4_PIXELS], hist[:W4_BINS])
    {
        double c = ms(CLOCK_THREAD_CPUTIME_ID);
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; ++i) w4_frame(frames + i * W4_PIXELS, sum, hist);
        cpu[omp_get_thread_num() & 1] = ms(CLOCK_THREAD_CPUTIME_ID) - c;
    }
    return cpu[0] > cpu[1] ? cpu[0] : cpu[1];
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void check(int rc, const char *what)
{
    if (rc != PSH_OK) {
        fprintf(stderr, "w4rows: %s: %s\n", what, psh_last_error());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int rounds = 11;
    size_t frames = 1000;
    double quiet_ms = 10;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames") && i + 1 < argc) frames = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--quiet-ms") && i + 1 < argc) quiet_ms = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--rounds N (1..%d)] [--frames N (>= 2)] [--quiet-ms X (< 0: keep every round)]\n",
                    argv[0], MAX_ROUNDS);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || frames < 2) {
        fprintf(stderr, "w4rows: --rounds must be 1..%d and --frames at least 2\n", MAX_ROUNDS);
        return 2;
    }
    psh_context *ctx;
    check(psh_context_create(&ctx, PSH_THREADS, 2), "context");
    size_t shape[3] = {frames, 512, 128}, row[2] = {512, 128}, bins = W4_BINS;
    psh_array *raw, *sums, *hists, *psums, *phists;
    check(psh_alloc(&raw, ctx, PSH_FLOAT32, 3, shape, NULL), "alloc frames");
    float *d = psh_array_data(raw);
    uint32_t x = 12345;
    for (size_t i = 0; i < frames * W4_PIXELS; ++i) { /* bench.c's frames */
        x = x * 1664525u + 1013904223u;
        d[i] = (float)(x >> 8) * (4096.0f / 16777216.0f);
    }
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    check(psh_alloc(&sums, ctx, PSH_FLOAT32, 2, row, &o), "alloc sums");
    check(psh_alloc(&hists, ctx, PSH_INT64, 1, &bins, &o), "alloc histograms");
    o.per_worker = PSH_PER_WORKER_PADDED;
    check(psh_alloc(&psums, ctx, PSH_FLOAT32, 2, row, &o), "alloc padded sums");
    check(psh_alloc(&phists, ctx, PSH_INT64, 1, &bins, &o), "alloc padded histograms");

    const char *name[NVAR] = {"per_worker", "PSH_PER_WORKER_PADDED", "hist gap 0", "hist gap 64",
                              "hist gap 128", "hist gap 256", "one worker alone", "OpenMP reduction"};
    struct rows r[NVAR];
    char *s0 = psh_array_data(sums), *h0 = psh_array_data(hists);
    size_t srow = (size_t)psh_array_strides(sums)[0], hrow = (size_t)psh_array_strides(hists)[0];
    size_t hoff = (size_t)((uintptr_t)h0 % 4096);
    for (int v = 0; v < NVAR; ++v) {
        r[v].alone = v == 6;
        for (int w = 0; w < 2; ++w) {
            r[v].sum[w] = (float *)(s0 + w * srow);
            r[v].hist[w] = (int64_t *)(h0 + w * hrow);
        }
    }
    for (int w = 0; w < 2; ++w) {
        r[1].sum[w] = (float *)((char *)psh_array_data(psums) + w * psh_array_strides(psums)[0]);
        r[1].hist[w] = (int64_t *)((char *)psh_array_data(phists) + w * psh_array_strides(phists)[0]);
    }
    const size_t gap[4] = {0, 64, 128, 256};
    char *gapmem[4];
    for (int g = 0; g < 4; ++g) {
        gapmem[g] = aligned_alloc(4096, 8192);
        if (!gapmem[g]) return 1;
        memset(gapmem[g], 0, 8192);
        for (int w = 0; w < 2; ++w) r[2 + g].hist[w] = (int64_t *)(gapmem[g] + hoff + w * (hrow + gap[g]));
    }

    psh_functor *f;
    check(psh_functor_array(&f, raw, 0), "functor");
    static double wall[NVAR][MAX_ROUNDS], cpu[NVAR][MAX_ROUNDS];
    int kept[NVAR] = {0}, passes = 0, discarded = 0;
    for (; passes < 20 * rounds; ++passes) {
        int done = 1;
        for (int v = 0; v < NVAR; ++v) done &= kept[v] >= rounds;
        if (done) break;
        for (int v = 0; v < NVAR; ++v) {
            if (kept[v] >= rounds) continue;
            struct probe p = {&r[v], {{-1, -1}, {-1, -1}}};
            if (v == 7) {
                static float osum[W4_PIXELS];
                static int64_t ohist[W4_BINS];
                double busy0 = machine_busy_ms(), own0 = ms(CLOCK_PROCESS_CPUTIME_ID), t0 = ms(CLOCK_MONOTONIC);
                double c = omp_variant(d, frames, osum, ohist);
                double t = ms(CLOCK_MONOTONIC) - t0;
                double others = machine_busy_ms() - busy0 - (ms(CLOCK_PROCESS_CPUTIME_ID) - own0);
                int64_t total = 0;
                for (int b = 0; b < W4_BINS; ++b) total += ohist[b];
                if (total != (int64_t)(frames * W4_PIXELS)) {
                    fprintf(stderr, "w4rows: OpenMP's histogram counts %lld pixels\n", (long long)total);
                    return 1;
                }
                if (quiet_ms >= 0 && others > quiet_ms) {
                    ++discarded;
                    continue;
                }
                wall[v][kept[v]] = t;
                cpu[v][kept[v]] = c;
                ++kept[v];
                continue;
            }
            for (int w = 0; w < 2; ++w) {
                memset(r[v].sum[w], 0, sizeof(float) * W4_PIXELS);
                memset(r[v].hist[w], 0, sizeof(int64_t) * W4_BINS);
            }
            double busy0 = machine_busy_ms(), own0 = ms(CLOCK_PROCESS_CPUTIME_ID), t0 = ms(CLOCK_MONOTONIC);
            check(psh_map(ctx, kernel, &p, f), "map");
            double t = ms(CLOCK_MONOTONIC) - t0;
            double others = machine_busy_ms() - busy0 - (ms(CLOCK_PROCESS_CPUTIME_ID) - own0);
            if (quiet_ms >= 0 && others > quiet_ms) {
                ++discarded;
                continue;
            }
            double c = 0;
            for (int w = 0; w < 2; ++w)
                if (p.w[w].first >= 0 && p.w[w].last - p.w[w].first > c) c = p.w[w].last - p.w[w].first;
            wall[v][kept[v]] = t;
            cpu[v][kept[v]] = c;
            ++kept[v];
        }
    }
    /* the answer: every variant's rows add up to the same histogram */
    int64_t total = 0;
    for (int w = 0; w < 2; ++w)
        for (int b = 0; b < W4_BINS; ++b) total += r[1].hist[w][b];
    if (total != (int64_t)(frames * W4_PIXELS)) {
        fprintf(stderr, "w4rows: the padded histograms count %lld pixels, not %zu\n", (long long)total,
                frames * W4_PIXELS);
        return 1;
    }
    printf("w4rows: %zu frames of 512x128 float32, 2 workers, %d passes, %d rounds discarded (others > %g ms CPU)\n",
           frames, passes, discarded, quiet_ms);
    printf("  %-24s %6s  %-22s  %-22s\n", "rows", "rounds", "wall ms median (min)", "max worker CPU ms median (min)");
    for (int v = 0; v < NVAR; ++v) {
        int n = kept[v];
        if (!n) {
            printf("  %-24s %6d  (no quiet round)\n", name[v], 0);
            continue;
        }
        qsort(wall[v], (size_t)n, sizeof(double), cmp);
        qsort(cpu[v], (size_t)n, sizeof(double), cmp);
        printf("  %-24s %6d  %8.1f (%6.1f)        %8.1f (%6.1f)\n", name[v], n, wall[v][n / 2], wall[v][0], cpu[v][n / 2],
               cpu[v][0]);
    }
    for (int g = 0; g < 4; ++g) free(gapmem[g]);
    psh_functor_destroy(f);
    psh_array_free(raw);
    psh_array_free(sums);
    psh_array_free(hists);
    psh_array_free(psums);
    psh_array_free(phists);
    psh_context_destroy(ctx);
    return 0;
}
