/* libpasha benchmark: the same kernels and data through a plain loop, OpenMP,
 * raw fork()+waitpid(), and each libpasha kind and mode, interleaved round by
 * round in one process; medians of >= 7 rounds after a warm-up.
 *
 *   bench [--workers N] [--rounds R] [--quick] [--only a,b,...] [--json FILE|-]
 *
 * Workloads (see docs/performance.md):
 *   a  XFEL-like calibration: frames of 512x128 float32, out = (raw - offset) * gain
 *   b  per-map latency: a 100-item map with a trivial kernel
 *   c  per-item overhead: an empty kernel over a 10^8-item range
 *   d  imbalanced items (cost proportional to the index): schedules
 *   e  zero copy: memory of the process tree when processes fill a 1 GiB array
 *   b' per-map latency of (b) while a busy-loop process holds one core
 *   f  reduction: 64-bin histogram + sum of 1000 frames into per-worker rows
 */

#include <dirent.h>
#include <omp.h>
#include <pthread.h>
#include <pasha/pasha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_w4.h"

#ifdef HAVE_TBB
void w4_tbb(const float *frames, size_t n, float *sum, int64_t *hist, int workers, int static_part);
#endif

/* ---- options and results ---------------------------------------------- */

static int opt_workers = 2, opt_rounds = 7, opt_quick = 0;
static const char *opt_only = "a,b,b',c,d,e,f", *opt_json = NULL, *opt_omp_wait = NULL;

#define MAX_VARIANTS 16
#define MAX_ROUNDS 256

struct variant {
    const char *name;
    double (*run)(void *); /* seconds for one measurement */
    void *arg;
    double per;            /* divide the time by this (maps or items) */
    const char *unit;      /* "ms", "us", "ns/item" */
    double samples[MAX_ROUNDS];
    double median, min, max;
};

struct workload {
    const char *id, *title;
    int rounds; /* 0: --rounds */
    int nvar;
    struct variant v[MAX_VARIANTS];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Is task or process `stat_path` running (state R)? */
static int running(const char *stat_path)
{
    FILE *f = fopen(stat_path, "r");
    if (!f) return 0;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close = strrchr(buf, ')');
    return close && close[1] && close[2] == 'R';
}

/* Threads of this process other than the caller, and its children (the
 * pools' workers), that are running: spinning idle workers. */
static int spinners(void)
{
    int n = 0;
    pid_t self = (pid_t)syscall(SYS_gettid);
    DIR *tasks = opendir("/proc/self/task");
    struct dirent *t;
    while (tasks && (t = readdir(tasks))) {
        if (t->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", t->d_name);
        if (atoi(t->d_name) != self) n += running(path);
        snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp) continue;
        int child;
        while (fscanf(fp, "%d", &child) == 1) {
            snprintf(path, sizeof path, "/proc/%d/stat", child);
            n += running(path);
        }
        fclose(fp);
    }
    if (tasks) closedir(tasks);
    return n;
}

static void settle(void)
{
    /* Let spinning idle workers (OpenMP's and ours) go to sleep between
     * variants, so one variant's spinners do not slow the next: at least
     * 2 ms, then until none of our threads and children is running (a
     * loaded machine may keep a spinner waiting for a CPU for a while), at
     * most 100 ms (a hog child of (b') runs for ever). The first 22 ms
     * outlast libpasha's throttle window (kThrottleNs, 20 ms): a pool's
     * oversubscription would otherwise throttle the next variant's spin. */
    struct timespec first = {0, 22000000}, ts = {0, 1000000};
    nanosleep(&first, NULL);
    for (int k = 0; k < 100; ++k) {
        nanosleep(&ts, NULL);
        if (!spinners()) break;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double scale(const char *unit)
{
    return strcmp(unit, "ms") == 0 ? 1e3 : strcmp(unit, "us") == 0 ? 1e6 : 1e9;
}

static void measure(struct workload *w)
{
    int rounds = w->rounds ? w->rounds : opt_rounds;
    for (int i = 0; i < w->nvar; ++i) w->v[i].run(w->v[i].arg); /* warm-up */
    for (int r = 0; r < rounds; ++r)
        for (int i = 0; i < w->nvar; ++i) {
            settle();
            struct variant *v = &w->v[i];
            v->samples[r] = v->run(v->arg) / v->per * scale(v->unit);
        }
    for (int i = 0; i < w->nvar; ++i) {
        double s[MAX_ROUNDS];
        memcpy(s, w->v[i].samples, sizeof(double) * (size_t)rounds);
        qsort(s, (size_t)rounds, sizeof *s, cmp_double);
        w->v[i].median = s[rounds / 2];
    }
    printf("\n(%s) %s — median of %d rounds, %d workers\n", w->id, w->title, rounds, opt_workers);
    for (int i = 0; i < w->nvar; ++i) {
        double lo = w->v[i].samples[0], hi = lo;
        for (int r = 1; r < rounds; ++r) {
            if (w->v[i].samples[r] < lo) lo = w->v[i].samples[r];
            if (w->v[i].samples[r] > hi) hi = w->v[i].samples[r];
        }
        w->v[i].min = lo;
        w->v[i].max = hi;
        printf("  %-40s %10.3f %-8s (min %.3f, max %.3f)\n", w->v[i].name, w->v[i].median, w->v[i].unit, lo, hi);
    }
    fflush(stdout);
}

static struct variant *add(struct workload *w, const char *name, double (*run)(void *), void *arg, double per,
                           const char *unit)
{
    struct variant *v = &w->v[w->nvar++];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->run = run;
    v->arg = arg;
    v->per = per;
    v->unit = unit;
    return v;
}

static double median_of(struct workload *w, const char *name)
{
    for (int i = 0; i < w->nvar; ++i)
        if (strcmp(w->v[i].name, name) == 0) return w->v[i].median;
    return 0;
}

static double min_of(struct workload *w, const char *name)
{
    for (int i = 0; i < w->nvar; ++i)
        if (strcmp(w->v[i].name, name) == 0) return w->v[i].min;
    return 0;
}

static void check(int rc, const char *what)
{
    if (rc != PSH_OK) {
        fprintf(stderr, "%s: %s (%s)\n", what, psh_strerror(rc), psh_last_error());
        exit(1);
    }
}

/* Is workload `id` ("a", "b'", ...) in --only? A letter counts only when no
 * prime follows it, so "b'" selects (b') and not (b). */
static int selected(const char *id)
{
    size_t len = strlen(id);
    for (const char *p = opt_only; (p = strstr(p, id)) != NULL; ++p)
        if (p[len] != '\'') return 1;
    return 0;
}

/* ---- contexts ----------------------------------------------------------- */

static psh_context *ctx_serial, *ctx_threads, *ctx_fork, *ctx_pool;

static psh_context *make_ctx(psh_kind kind, int persistent, psh_schedule schedule, size_t chunk)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = kind;
    o.num_workers = kind == PSH_SERIAL ? 1 : opt_workers;
    o.persistent = persistent;
    o.schedule = schedule;
    o.chunk = chunk;
    psh_context *c;
    check(psh_context_create_ext(&c, &o), "psh_context_create_ext");
    return c;
}

static int map_ud(psh_context *ctx, psh_kernel k, void *ud, size_t size, psh_functor *f)
{
    psh_map_options o;
    psh_map_options_init(&o);
    o.user_data_size = size; /* the pool's workers cannot see the caller's stack */
    return psh_map_ext(ctx, k, ud, f, &o);
}

/* ---- (a) calibration ---------------------------------------------------- */

#define FRAME_PIXELS (512 * 128)

struct calib {
    size_t frames;
    const float *raw, *offset, *gain;
    float *out;
    psh_functor *f; /* over raw along axis 0 */
    psh_context *ctx;
};

static inline void calibrate_frame(const float *restrict raw, const float *restrict offset,
                                   const float *restrict gain, float *restrict out)
{
    for (size_t p = 0; p < FRAME_PIXELS; ++p) out[p] = (raw[p] - offset[p]) * gain[p];
}

static int calib_kernel(void *ud, int worker, size_t index, const void *value)
{
    const struct calib *c = ud;
    const psh_view *v = value;
    (void)worker;
    calibrate_frame(v->data, c->offset, c->gain, c->out + index * FRAME_PIXELS);
    return 0;
}

static double calib_loop(void *arg)
{
    struct calib *c = arg;
    double t0 = now();
    for (size_t i = 0; i < c->frames; ++i)
        calibrate_frame(c->raw + i * FRAME_PIXELS, c->offset, c->gain, c->out + i * FRAME_PIXELS);
    return now() - t0;
}

static double calib_omp(void *arg)
{
    struct calib *c = arg;
    double t0 = now();
#pragma omp parallel for schedule(static) num_threads(opt_workers)
    for (size_t i = 0; i < c->frames; ++i)
        calibrate_frame(c->raw + i * FRAME_PIXELS, c->offset, c->gain, c->out + i * FRAME_PIXELS);
    return now() - t0;
}

static double calib_psh(void *arg)
{
    struct calib *c = arg;
    double t0 = now();
    check(map_ud(c->ctx, calib_kernel, c, sizeof *c, c->f), "calibration map");
    return now() - t0;
}

static void workload_a(struct workload *w)
{
    static struct calib base, per[4];
    size_t frames = opt_quick ? 40 : 1000;
    size_t shape[3] = {frames, 512, 128}, fshape[2] = {512, 128};
    psh_array *raw, *out, *offset, *gain;
    check(psh_alloc(&raw, ctx_serial, PSH_FLOAT32, 3, shape, NULL), "alloc raw");
    check(psh_alloc(&out, ctx_serial, PSH_FLOAT32, 3, shape, NULL), "alloc out");
    check(psh_alloc(&offset, ctx_serial, PSH_FLOAT32, 2, fshape, NULL), "alloc offset");
    check(psh_alloc(&gain, ctx_serial, PSH_FLOAT32, 2, fshape, NULL), "alloc gain");
    float *r = psh_array_data(raw), *o = psh_array_data(offset), *g = psh_array_data(gain);
    for (size_t i = 0; i < frames * FRAME_PIXELS; ++i) r[i] = (float)(i % 4096);
    for (size_t p = 0; p < FRAME_PIXELS; ++p) {
        o[p] = (float)(p % 7);
        g[p] = 1.0f + (float)(p % 5) * 0.01f;
    }
    base = (struct calib){frames, r, o, g, psh_array_data(out), NULL, NULL};
    check(psh_functor_array(&base.f, raw, 0), "functor");
    psh_context *ctxs[4] = {ctx_serial, ctx_threads, ctx_fork, ctx_pool};
    static const char *names[4] = {"libpasha serial", "libpasha threads", "libpasha processes (fork/map)",
                                   "libpasha persistent pool"};
    w->id = "a";
    w->title = opt_quick ? "calibration, 40 frames of 512x128 float32, ms per map"
                         : "calibration, 1000 frames of 512x128 float32, ms per map";
    add(w, "plain loop", calib_loop, &base, 1, "ms");
    add(w, "OpenMP schedule(static)", calib_omp, &base, 1, "ms");
    for (int k = 0; k < 4; ++k) {
        per[k] = base;
        per[k].ctx = ctxs[k];
        add(w, names[k], calib_psh, &per[k], 1, "ms");
    }
    measure(w);
    /* Where fork per map loses its time: the children refault the shared
     * pages (Linux does not copy the page tables of shared mappings at fork). */
    struct rusage ru0, ru1;
    getrusage(RUSAGE_CHILDREN, &ru0);
    double t_fork = calib_psh(&per[2]);
    getrusage(RUSAGE_CHILDREN, &ru1);
    printf("  (one more fork-per-map run: %.3f ms, %ld minor page faults in its children)\n", t_fork * 1e3,
           ru1.ru_minflt - ru0.ru_minflt);
    /* Check the answer once, so that a fast wrong result cannot pass. */
    float *res = psh_array_data(out);
    for (size_t i = 0; i < frames * FRAME_PIXELS; i += 997) {
        size_t p = i % FRAME_PIXELS;
        float expect = (r[i] - o[p]) * g[p];
        if (res[i] != expect) {
            fprintf(stderr, "calibration result wrong at %zu\n", i);
            exit(1);
        }
    }
    /* Give the memory back, so that (e) starts from a small caller. */
    psh_functor_destroy(base.f);
    psh_array_free(raw);
    psh_array_free(out);
    psh_array_free(offset);
    psh_array_free(gain);
}

/* ---- (b) per-map latency ------------------------------------------------ */

#define LAT_ITEMS 100

struct latency {
    psh_context *ctx;
    psh_functor *f;
    int64_t *out; /* shared */
    int maps;
};

static int lat_kernel(void *ud, int worker, size_t index, const void *value)
{
    (void)worker;
    (void)value;
    ((int64_t *)ud)[index] = (int64_t)index;
    return 0;
}

/* Each round starts with one untimed map (or region): it wakes the workers
 * that settle() let fall asleep, so the timed maps measure the workers
 * awake, as in a program that maps back to back. */
static double lat_psh(void *arg)
{
    struct latency *l = arg;
    check(psh_map(l->ctx, lat_kernel, l->out, l->f), "latency map");
    double t0 = now();
    for (int m = 0; m < l->maps; ++m) check(psh_map(l->ctx, lat_kernel, l->out, l->f), "latency map");
    return now() - t0;
}

static double lat_omp(void *arg)
{
    struct latency *l = arg;
#pragma omp parallel for num_threads(opt_workers)
    for (int i = 0; i < LAT_ITEMS; ++i) lat_kernel(l->out, omp_get_thread_num(), (size_t)i, NULL);
    double t0 = now();
    for (int m = 0; m < l->maps; ++m) {
#pragma omp parallel for num_threads(opt_workers)
        for (int i = 0; i < LAT_ITEMS; ++i) lat_kernel(l->out, omp_get_thread_num(), (size_t)i, NULL);
    }
    return now() - t0;
}

static double lat_raw_fork(void *arg)
{
    struct latency *l = arg;
    pid_t pids[4096];
    double t0 = now();
    for (int m = 0; m < l->maps; ++m) {
        for (int w = 0; w < opt_workers; ++w) {
            pids[w] = fork();
            if (pids[w] == 0) {
                for (size_t i = (size_t)w * LAT_ITEMS / opt_workers; i < (size_t)(w + 1) * LAT_ITEMS / opt_workers; ++i)
                    lat_kernel(l->out, w, i, NULL);
                _exit(0);
            }
        }
        for (int w = 0; w < opt_workers; ++w) waitpid(pids[w], NULL, 0);
    }
    return now() - t0;
}

static void workload_b(struct workload *w)
{
    static struct latency l[6];
    psh_array *out;
    size_t n = LAT_ITEMS;
    check(psh_alloc(&out, ctx_serial, PSH_INT64, 1, &n, NULL), "alloc");
    psh_functor *f;
    check(psh_functor_range(&f, LAT_ITEMS), "functor");
    /* Many short rounds (at least 101, of 50 maps; fork: 10): on a loaded
     * machine a round of thousands of maps always contains preemptions,
     * while the best of many short ones is what the code costs, and the
     * median what this machine gave at the time. */
    int fast = opt_quick ? 200 : 50, slow = 10;
    w->id = "b";
    w->rounds = opt_quick || opt_rounds > 101 ? opt_rounds : 101;
    w->title = "per-map latency, 100 items, trivial kernel, us per map";
    l[0] = (struct latency){NULL, f, psh_array_data(out), fast};
    add(w, "OpenMP parallel for", lat_omp, &l[0], fast, "us");
    l[1] = (struct latency){ctx_threads, f, psh_array_data(out), fast};
    add(w, "libpasha threads", lat_psh, &l[1], fast, "us");
    l[2] = (struct latency){ctx_pool, f, psh_array_data(out), fast};
    add(w, "libpasha persistent pool", lat_psh, &l[2], fast, "us");
    l[5] = (struct latency){ctx_serial, f, psh_array_data(out), fast};
    add(w, "libpasha serial", lat_psh, &l[5], fast, "us");
    l[3] = (struct latency){NULL, f, psh_array_data(out), slow};
    add(w, "raw fork()+waitpid()", lat_raw_fork, &l[3], slow, "us");
    l[4] = (struct latency){ctx_fork, f, psh_array_data(out), slow};
    add(w, "libpasha processes (fork/map)", lat_psh, &l[4], slow, "us");
    measure(w);
    for (size_t i = 0; i < n; ++i)
        if (((int64_t *)psh_array_data(out))[i] != (int64_t)i) exit(1);
    psh_functor_destroy(f);
    psh_array_free(out);
}

/* ---- (b') latency with one core busy ------------------------------------ */

/* A CPU hog: a forked child in a busy loop, not pinned, nice 0, as another
 * user's job would be. Killed after the workload. */
static pid_t hog_start(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        volatile unsigned long x = 0;
        for (;;) ++x;
    }
    if (p < 0) {
        perror("fork");
        exit(1);
    }
    return p;
}

static void hog_stop(pid_t p)
{
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
}

static void workload_b_busy(struct workload *w)
{
    static struct latency l[3];
    psh_array *out;
    size_t n = LAT_ITEMS;
    check(psh_alloc(&out, ctx_serial, PSH_INT64, 1, &n, NULL), "alloc");
    psh_functor *f;
    check(psh_functor_range(&f, LAT_ITEMS), "functor");
    int maps = opt_quick ? 100 : 1000;
    w->id = "b'";
    w->title = "per-map latency with one core busy (a busy-loop process), 100 items, us per map";
    l[0] = (struct latency){NULL, f, psh_array_data(out), maps};
    add(w, "OpenMP parallel for", lat_omp, &l[0], maps, "us");
    l[1] = (struct latency){ctx_threads, f, psh_array_data(out), maps};
    add(w, "libpasha threads", lat_psh, &l[1], maps, "us");
    l[2] = (struct latency){ctx_pool, f, psh_array_data(out), maps};
    add(w, "libpasha persistent pool", lat_psh, &l[2], maps, "us");
    pid_t hog = hog_start();
    measure(w);
    hog_stop(hog);
    for (size_t i = 0; i < n; ++i)
        if (((int64_t *)psh_array_data(out))[i] != (int64_t)i) exit(1);
    psh_functor_destroy(f);
    psh_array_free(out);
}

/* ---- (c) per-item overhead ---------------------------------------------- */

struct overhead {
    psh_context *ctx;
    size_t n;
    psh_functor *f;
};

static int empty_kernel(void *ud, int worker, size_t index, const void *value)
{
    (void)ud;
    (void)worker;
    (void)index;
    (void)value;
    return 0;
}

static int empty_block(void *ud, int worker, size_t begin, size_t end)
{
    (void)ud;
    (void)worker;
    (void)begin;
    (void)end;
    return 0;
}

static double ovh_loop(void *arg)
{
    struct overhead *o = arg;
    psh_kernel volatile k = empty_kernel; /* an opaque call, as psh_map makes */
    double t0 = now();
    for (size_t i = 0; i < o->n; ++i)
        if (k(NULL, 0, i, NULL)) exit(1);
    return now() - t0;
}

static double ovh_map(void *arg)
{
    struct overhead *o = arg;
    double t0 = now();
    check(psh_map(o->ctx, empty_kernel, NULL, o->f), "overhead map");
    return now() - t0;
}

static double ovh_blocks(void *arg)
{
    struct overhead *o = arg;
    double t0 = now();
    check(psh_map_blocks(o->ctx, empty_block, NULL, o->n), "overhead blocks");
    return now() - t0;
}

static void workload_c(struct workload *w)
{
    static struct overhead o[4];
    size_t n = opt_quick ? 1000000 : 100000000;
    psh_functor *f;
    check(psh_functor_range(&f, n), "functor");
    w->id = "c";
    w->title = opt_quick ? "per-item overhead, empty kernel, 10^6 items, ns per item"
                         : "per-item overhead, empty kernel, 10^8 items, ns per item";
    o[0] = (struct overhead){NULL, n, f};
    add(w, "plain loop, indirect call", ovh_loop, &o[0], (double)n, "ns/item");
    o[1] = (struct overhead){ctx_serial, n, f};
    add(w, "libpasha serial psh_map", ovh_map, &o[1], (double)n, "ns/item");
    add(w, "libpasha serial psh_map_blocks", ovh_blocks, &o[1], (double)n, "ns/item");
    o[2] = (struct overhead){ctx_threads, n, f};
    add(w, "libpasha threads psh_map", ovh_map, &o[2], (double)n, "ns/item");
    add(w, "libpasha threads psh_map_blocks", ovh_blocks, &o[2], (double)n, "ns/item");
    o[3] = (struct overhead){ctx_pool, n, f};
    add(w, "libpasha persistent pool psh_map", ovh_map, &o[3], (double)n, "ns/item");
    measure(w);
    psh_functor_destroy(f);
}

/* ---- (d) imbalanced items ----------------------------------------------- */

struct imbalance {
    psh_context *ctx;
    psh_functor *f;
    size_t n;
    double *out;
};

static inline double spin_work(size_t index)
{
    /* Cost proportional to the index. */
    double x = 0;
    for (size_t k = 0; k < index * 40; ++k) x += (double)(k & 7) * 1e-9;
    return x;
}

static int imb_kernel(void *ud, int worker, size_t index, const void *value)
{
    (void)worker;
    (void)value;
    ((double *)ud)[index] = spin_work(index);
    return 0;
}

static double imb_psh(void *arg)
{
    struct imbalance *b = arg;
    double t0 = now();
    check(psh_map(b->ctx, imb_kernel, b->out, b->f), "imbalanced map");
    return now() - t0;
}

static double imb_omp_static(void *arg)
{
    struct imbalance *b = arg;
    double t0 = now();
#pragma omp parallel for schedule(static) num_threads(opt_workers)
    for (size_t i = 0; i < b->n; ++i) b->out[i] = spin_work(i);
    return now() - t0;
}

static double imb_omp_dynamic(void *arg)
{
    struct imbalance *b = arg;
    double t0 = now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(opt_workers)
    for (size_t i = 0; i < b->n; ++i) b->out[i] = spin_work(i);
    return now() - t0;
}

static void workload_d(struct workload *w, psh_context **extra)
{
    static struct imbalance b[8];
    size_t n = opt_quick ? 500 : 4000;
    psh_array *out;
    check(psh_alloc(&out, ctx_serial, PSH_FLOAT64, 1, &n, NULL), "alloc");
    psh_functor *f;
    check(psh_functor_range(&f, n), "functor");
    double *d = psh_array_data(out);
    w->id = "d";
    w->title = "imbalanced items (cost ~ index), ms per map";
    b[0] = (struct imbalance){NULL, f, n, d};
    add(w, "OpenMP schedule(static)", imb_omp_static, &b[0], 1, "ms");
    add(w, "OpenMP schedule(dynamic,1)", imb_omp_dynamic, &b[0], 1, "ms");
    static const char *names[] = {"libpasha threads static", "libpasha threads dynamic",
                                  "libpasha threads dynamic,1", "libpasha threads guided",
                                  "libpasha pool dynamic", "libpasha processes dynamic"};
    for (int k = 0; k < 6; ++k) {
        b[k + 1] = (struct imbalance){extra[k], f, n, d};
        add(w, names[k], imb_psh, &b[k + 1], 1, "ms");
    }
    measure(w);
    for (size_t i = 0; i < n; i += 7)
        if (d[i] != spin_work(i)) exit(1);
    psh_functor_destroy(f);
    psh_array_free(out);
}

/* ---- (f) reduction into per-worker rows ---------------------------------- */

struct w4 {
    const float *frames;
    size_t n;
    float *sum;       /* the result */
    int64_t *hist;
    float *rows;      /* libpasha: per_worker arrays, row r at rows + r * row_stride */
    int64_t *hrows;
    size_t row_stride, hrow_stride; /* in elements, from psh_array_strides */
    int tbb_static;
    int dynamic; /* libpasha: PSH_SCHEDULE_DYNAMIC for this map */
    int parallel_combine; /* libpasha: rows summed and cleared by a second map */
    psh_context *ctx;
    psh_functor *f;
};

static double w4_loop(void *arg)
{
    struct w4 *w = arg;
    double t0 = now();
    memset(w->sum, 0, sizeof(float) * W4_PIXELS);
    memset(w->hist, 0, sizeof(int64_t) * W4_BINS);
    for (size_t i = 0; i < w->n; ++i) w4_frame(w->frames + i * W4_PIXELS, w->sum, w->hist);
    return now() - t0;
}

static double w4_omp(void *arg)
{
    struct w4 *w = arg;
    double t0 = now();
    float *sum = w->sum;
    int64_t *hist = w->hist;
    const float *frames = w->frames;
    memset(sum, 0, sizeof(float) * W4_PIXELS);
    memset(hist, 0, sizeof(int64_t) * W4_BINS);
#pragma omp parallel for schedule(static) num_threads(opt_workers) reduction(+ : sum[:W4_PIXELS], hist[:W4_BINS])
    for (size_t i = 0; i < w->n; ++i) w4_frame(frames + i * W4_PIXELS, sum, hist);
    return now() - t0;
}

#ifdef HAVE_TBB
static double w4_run_tbb(void *arg)
{
    struct w4 *w = arg;
    double t0 = now();
    w4_tbb(w->frames, w->n, w->sum, w->hist, opt_workers, w->tbb_static);
    return now() - t0;
}
#endif

static int w4_kernel(void *ud, int worker, size_t index, const void *value)
{
    const struct w4 *w = ud;
    const psh_view *v = value;
    (void)index;
    w4_frame(v->data, w->rows + (size_t)worker * w->row_stride, w->hrows + (size_t)worker * w->hrow_stride);
    return 0;
}

/* Pixels [begin, end) of every worker's sum row added into w->sum, and
 * cleared for the next map: the combination split over the workers. */
static int w4_combine(void *ud, int worker, size_t begin, size_t end)
{
    const struct w4 *w = ud;
    (void)worker;
    float *__restrict sum = w->sum;
    for (size_t p = begin; p < end; ++p) sum[p] = 0;
    for (int r = 0; r < opt_workers; ++r) {
        float *__restrict row = w->rows + (size_t)r * w->row_stride;
        for (size_t p = begin; p < end; ++p) {
            sum[p] += row[p];
            row[p] = 0;
        }
    }
    return 0;
}

static double w4_psh(void *arg)
{
    struct w4 *w = arg;
    double t0 = now();
    psh_map_options mo;
    psh_map_options_init(&mo);
    if (w->dynamic) mo.schedule = PSH_SCHEDULE_DYNAMIC;
    if (w->parallel_combine) {
        /* The rows are zero (from allocation, then from the last combine):
         * map, then sum and clear the rows in a second, parallel map, as
         * OpenMP's runtime and TBB's joins combine in parallel too. */
        check(psh_map_ext(w->ctx, w4_kernel, w, w->f, &mo), "reduction map");
        psh_map_options co;
        psh_map_options_init(&co);
        co.schedule = PSH_SCHEDULE_STATIC;
        check(psh_map_blocks_ext(w->ctx, w4_combine, w, W4_PIXELS, &co), "combine map");
        memset(w->hist, 0, sizeof(int64_t) * W4_BINS);
        for (int r = 0; r < opt_workers; ++r) {
            int64_t *h = w->hrows + (size_t)r * w->hrow_stride;
            for (size_t b = 0; b < W4_BINS; ++b) {
                w->hist[b] += h[b];
                h[b] = 0;
            }
        }
        return now() - t0;
    }
    /* Zero every worker's rows, map, then add the rows up: all timed, as
     * OpenMP's private copies and their combination are. */
    for (int r = 0; r < opt_workers; ++r) {
        memset(w->rows + (size_t)r * w->row_stride, 0, sizeof(float) * W4_PIXELS);
        memset(w->hrows + (size_t)r * w->hrow_stride, 0, sizeof(int64_t) * W4_BINS);
    }
    check(psh_map_ext(w->ctx, w4_kernel, w, w->f, &mo), "reduction map");
    memcpy(w->sum, w->rows, sizeof(float) * W4_PIXELS);
    memcpy(w->hist, w->hrows, sizeof(int64_t) * W4_BINS);
    for (int r = 1; r < opt_workers; ++r)
        w4_add_rows(w->sum, w->hist, w->rows + (size_t)r * w->row_stride, w->hrows + (size_t)r * w->hrow_stride);
    return now() - t0;
}

static void w4_check(const struct w4 *ref, const struct w4 *got, const char *name)
{
    for (size_t b = 0; b < W4_BINS; ++b)
        if (ref->hist[b] != got->hist[b]) {
            fprintf(stderr, "reduction (%s): histogram bin %zu is %lld, not %lld\n", name, b, (long long)got->hist[b],
                    (long long)ref->hist[b]);
            exit(1);
        }
    for (size_t p = 0; p < W4_PIXELS; ++p) {
        float d = ref->sum[p] - got->sum[p];
        if (d < 0) d = -d;
        if (d > 1e-4f * (ref->sum[p] > 1 ? ref->sum[p] : 1)) {
            fprintf(stderr, "reduction (%s): sum at pixel %zu is %g, not %g\n", name, p, got->sum[p], ref->sum[p]);
            exit(1);
        }
    }
}

static void workload_f(struct workload *w)
{
    static struct w4 v[8];
    static float sums[8][W4_PIXELS];
    static int64_t hists[8][W4_BINS];
    size_t frames = opt_quick ? 40 : 1000;
    size_t shape[3] = {frames, 512, 128}, row[2] = {512, 128}, bins = W4_BINS;
    psh_array *raw, *rows, *hrows, *prows, *phrows, *crows, *chrows;
    check(psh_alloc(&raw, ctx_serial, PSH_FLOAT32, 3, shape, NULL), "alloc frames");
    psh_alloc_options pw;
    psh_alloc_options_init(&pw);
    pw.per_worker = 1;
    check(psh_alloc(&rows, ctx_threads, PSH_FLOAT32, 2, row, &pw), "alloc per-worker sums");
    check(psh_alloc(&hrows, ctx_threads, PSH_INT64, 1, &bins, &pw), "alloc per-worker histograms");
    /* The same with the rows apart (PSH_PER_WORKER_PADDED, the layout the
     * header recommends for small rows that workers update often). */
    pw.per_worker = PSH_PER_WORKER_PADDED;
    check(psh_alloc(&prows, ctx_threads, PSH_FLOAT32, 2, row, &pw), "alloc padded per-worker sums");
    check(psh_alloc(&phrows, ctx_threads, PSH_INT64, 1, &bins, &pw), "alloc padded per-worker histograms");
    /* Its own padded rows for the parallel combine, which keeps them zero
     * between maps (the other rows are left full by their variants). */
    check(psh_alloc(&crows, ctx_threads, PSH_FLOAT32, 2, row, &pw), "alloc padded per-worker sums (combine)");
    check(psh_alloc(&chrows, ctx_threads, PSH_INT64, 1, &bins, &pw), "alloc padded per-worker histograms (combine)");
    for (int k = 0; k < opt_workers; ++k) {
        memset((char *)psh_array_data(crows) + (size_t)k * (size_t)psh_array_strides(crows)[0], 0,
               sizeof(float) * W4_PIXELS);
        memset((char *)psh_array_data(chrows) + (size_t)k * (size_t)psh_array_strides(chrows)[0], 0,
               sizeof(int64_t) * W4_BINS);
    }
    float *r = psh_array_data(raw);
    uint32_t x = 12345;
    for (size_t i = 0; i < frames * W4_PIXELS; ++i) {
        x = x * 1664525u + 1013904223u; /* detector-like noise over [0, 4096) */
        r[i] = (float)(x >> 8) * (4096.0f / 16777216.0f);
    }
    psh_functor *f;
    check(psh_functor_array(&f, raw, 0), "functor");
    for (int k = 0; k < 5; ++k)
        v[k] = (struct w4){r, frames, sums[k], hists[k], psh_array_data(rows), psh_array_data(hrows),
                           (size_t)psh_array_strides(rows)[0] / sizeof(float),
                           (size_t)psh_array_strides(hrows)[0] / sizeof(int64_t), 0, 0, 0, ctx_threads, f};
    v[4].tbb_static = 1;
    v[5] = v[2];
    v[5].sum = sums[5];
    v[5].hist = hists[5];
    v[5].rows = psh_array_data(prows);
    v[5].hrows = psh_array_data(phrows);
    v[5].row_stride = (size_t)psh_array_strides(prows)[0] / sizeof(float);
    v[5].hrow_stride = (size_t)psh_array_strides(phrows)[0] / sizeof(int64_t);
    v[6] = v[5];
    v[6].sum = sums[6];
    v[6].hist = hists[6];
    v[6].dynamic = 1;
    v[7] = v[6];
    v[7].sum = sums[7];
    v[7].hist = hists[7];
    v[7].rows = psh_array_data(crows);
    v[7].hrows = psh_array_data(chrows);
    v[7].parallel_combine = 1;
    w->id = "f";
    w->title = opt_quick ? "reduction: 64-bin histogram + sum of 40 frames of 512x128 float32, ms per map"
                         : "reduction: 64-bin histogram + sum of 1000 frames of 512x128 float32, ms per map";
    add(w, "plain loop", w4_loop, &v[0], 1, "ms");
    add(w, "OpenMP reduction(+: array sections)", w4_omp, &v[1], 1, "ms");
    add(w, "libpasha threads, per_worker rows", w4_psh, &v[2], 1, "ms");
    add(w, "libpasha threads, padded per_worker rows", w4_psh, &v[5], 1, "ms");
    add(w, "libpasha threads, padded rows, dynamic", w4_psh, &v[6], 1, "ms");
    add(w, "libpasha padded+dynamic, parallel combine", w4_psh, &v[7], 1, "ms");
#ifdef HAVE_TBB
    add(w, "oneTBB parallel_reduce", w4_run_tbb, &v[3], 1, "ms");
    add(w, "oneTBB parallel_reduce, static", w4_run_tbb, &v[4], 1, "ms");
#else
    printf("\n(oneTBB not found at build time: no TBB rows in (f))\n");
#endif
    measure(w);
    for (int k = 1; k < w->nvar; ++k) w4_check(&v[0], &v[k], w->v[k].name);
    psh_functor_destroy(f);
    psh_array_free(raw);
    psh_array_free(rows);
    psh_array_free(hrows);
    psh_array_free(prows);
    psh_array_free(phrows);
    psh_array_free(crows);
    psh_array_free(chrows);
}

/* ---- (e) zero copy ------------------------------------------------------- */

/* A field of /proc/<pid>/smaps_rollup ("Pss", "Rss") in kB, or -1. */
static long smaps_kb(pid_t pid, const char *field)
{
    char path[64], line[256], fmt[32];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    snprintf(fmt, sizeof fmt, "%s: %%ld kB", field);
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, fmt, &kb) == 1) break;
    fclose(fp);
    return kb;
}

static long pss_kb(pid_t pid) { return smaps_kb(pid, "Pss"); }
static long rss_kb(pid_t pid) { return smaps_kb(pid, "Rss"); }

struct fill {
    uint8_t *data;
    size_t bytes;
    int64_t *pss; /* per worker, kB, measured at the end of its share */
    int64_t *rss;
    int64_t *sync; /* [0]: workers done with their share, [1]: the monitor has seen them all */
    int workers;
};

static int fill_block(void *ud, int worker, size_t begin, size_t end)
{
    struct fill *f = ud;
    for (size_t i = begin; i < end; ++i) memset(f->data + i * 4096, (int)(i & 0xff) | 1, 4096);
    f->pss[worker] = pss_kb(getpid());
    f->rss[worker] = rss_kb(getpid());
    /* Stay alive, with every page mapped, until the monitor has sampled the
     * tree once after all workers finished (at most 2 s: never a hang). */
    __atomic_add_fetch(&f->sync[0], 1, __ATOMIC_ACQ_REL);
    struct timespec ts = {0, 100000};
    for (int k = 0; k < 20000 && !__atomic_load_n(&f->sync[1], __ATOMIC_ACQUIRE); ++k) nanosleep(&ts, NULL);
    return 0;
}

/* The process tree: this process and its children (the map's workers, the
 * pools' workers), found through /proc/self/task/<tid>/children. */
static long tree_pss_kb(int *nproc)
{
    long total = pss_kb(getpid());
    int count = 1;
    DIR *tasks = opendir("/proc/self/task");
    struct dirent *t;
    while (tasks && (t = readdir(tasks))) {
        if (t->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp) continue;
        int child;
        while (fscanf(fp, "%d", &child) == 1) {
            long kb = pss_kb(child);
            if (kb > 0) {
                total += kb;
                ++count;
            }
        }
        fclose(fp);
    }
    if (tasks) closedir(tasks);
    if (nproc) *nproc = count;
    return total;
}

struct monitor {
    volatile int run;
    long peak_kb;
    int peak_nproc, samples;
    struct fill *fill;
    long all_done_kb; /* the tree once every worker has finished its share; -1: not seen */
};

static void *monitor_main(void *arg)
{
    struct monitor *m = arg;
    struct timespec ts = {0, 1000000};
    while (__atomic_load_n(&m->run, __ATOMIC_ACQUIRE)) {
        int np;
        int all_done = __atomic_load_n(&m->fill->sync[0], __ATOMIC_ACQUIRE) >= m->fill->workers;
        long kb = tree_pss_kb(&np);
        if (all_done && m->all_done_kb < 0) {
            m->all_done_kb = kb;
            __atomic_store_n(&m->fill->sync[1], 1, __ATOMIC_RELEASE);
        }
        if (kb > m->peak_kb) {
            m->peak_kb = kb;
            m->peak_nproc = np;
        }
        ++m->samples;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void workload_e(FILE *json)
{
    size_t bytes = opt_quick ? ((size_t)64 << 20) : ((size_t)1 << 30);
    psh_array *a, *pss, *rss;
    check(psh_alloc(&a, ctx_fork, PSH_UINT8, 1, &bytes, NULL), "alloc 1 GiB");
    psh_alloc_options pw;
    psh_alloc_options_init(&pw);
    pw.per_worker = 1;
    check(psh_alloc(&pss, ctx_fork, PSH_INT64, 0, NULL, &pw), "alloc");
    check(psh_alloc(&rss, ctx_fork, PSH_INT64, 0, NULL, &pw), "alloc");
    size_t two = 2;
    psh_array *sync;
    check(psh_alloc(&sync, ctx_fork, PSH_INT64, 1, &two, NULL), "alloc");
    struct fill f = {psh_array_data(a), bytes, psh_array_data(pss), psh_array_data(rss), psh_array_data(sync),
                     opt_workers};
    int np_before;
    long tree_before = tree_pss_kb(&np_before), caller_before = pss_kb(getpid());
    /* A monitor thread samples the whole tree's PSS every millisecond while
     * the processes fill the array. */
    struct monitor m = {1, tree_before, np_before, 0, &f, -1};
    pthread_t mon;
    if (pthread_create(&mon, NULL, monitor_main, &m) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
    check(psh_map_blocks(ctx_fork, fill_block, &f, bytes / 4096), "fill");
    __atomic_store_n(&m.run, 0, __ATOMIC_RELEASE);
    pthread_join(mon, NULL);
    /* The caller reads every page: it maps the same memory, no copy. */
    for (size_t i = 0; i < bytes / 4096; ++i)
        if (f.data[i * 4096] != ((i & 0xff) | 1) || f.data[i * 4096 + 4095] != ((i & 0xff) | 1)) {
            fprintf(stderr, "fill result wrong at page %zu\n", i);
            exit(1);
        }
    long tree_after = tree_pss_kb(NULL), caller_rss = rss_kb(getpid());
    long workers_pss = 0, workers_rss = 0;
    for (int w = 0; w < opt_workers; ++w) {
        workers_pss += (long)f.pss[w];
        workers_rss += (long)f.rss[w];
    }
    double kib = 1024.0 * 1024.0, gib = (double)bytes / (1 << 30);
    printf("\n(e) zero copy: %d worker processes (fork per map) fill a %.2f GiB psh array\n", opt_workers, gib);
    printf("  array size                                   %8.3f GiB\n", gib);
    printf("  tree PSS before the map (caller + children)  %8.3f GiB\n", (double)tree_before / kib);
    printf("  tree PSS peak during the map (%4d samples)   %8.3f GiB, %d processes\n", m.samples,
           (double)m.peak_kb / kib, m.peak_nproc);
    printf("  tree PSS growth: peak - before               %8.3f GiB  (%.2fx the array; 2x if copied)\n",
           (double)(m.peak_kb - tree_before) / kib, (double)(m.peak_kb - tree_before) / kib / gib);
    printf("  tree PSS once all workers finished (alive)   %8.3f GiB\n", (double)m.all_done_kb / kib);
    printf("  workers' PSS at the end of their share (sum) %8.3f GiB\n", (double)workers_pss / kib);
    printf("  workers' RSS at the end of their share (sum) %8.3f GiB\n", (double)workers_rss / kib);
    printf("  caller's PSS before the map                  %8.3f GiB\n", (double)caller_before / kib);
    printf("  caller's RSS after reading it all            %8.3f GiB\n", (double)caller_rss / kib);
    printf("  tree PSS after the caller read it all        %8.3f GiB\n", (double)tree_after / kib);
    if (json)
        fprintf(json,
                "  \"e\": {\"array_gib\": %.4f, \"tree_pss_before_gib\": %.4f, \"tree_pss_peak_gib\": %.4f, "
                "\"tree_pss_growth_gib\": %.4f, \"monitor_samples\": %d, \"workers_pss_gib\": %.4f, "
                "\"tree_pss_all_done_gib\": %.4f, \"workers_rss_gib\": %.4f, \"caller_pss_before_gib\": %.4f, \"caller_rss_after_gib\": %.4f, "
                "\"tree_pss_after_gib\": %.4f},\n",
                gib, (double)tree_before / kib, (double)m.peak_kb / kib, (double)(m.peak_kb - tree_before) / kib,
                m.samples, (double)workers_pss / kib, (double)m.all_done_kb / kib, (double)workers_rss / kib, (double)caller_before / kib,
                (double)caller_rss / kib, (double)tree_after / kib);
    psh_array_free(a);
    psh_array_free(pss);
    psh_array_free(rss);
    psh_array_free(sync);
}

/* ---- targets ------------------------------------------------------------ */

struct target {
    const char *what;
    double value, limit;
    const char *unit;
    double best; /* the same ratio from the fastest rounds: what a quiet machine gives */
};

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) opt_workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) opt_rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0) opt_quick = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) opt_only = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) opt_json = argv[++i];
        else if (strcmp(argv[i], "--omp-wait") == 0 && i + 1 < argc) opt_omp_wait = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--workers N] [--rounds R] [--quick] [--only a,b,b',c,d,e,f] [--json FILE|-]\n"
                            "          [--omp-wait active|passive]\n", argv[0]);
            return 2;
        }
    }
    if (opt_workers < 1 || opt_workers > 4096) {
        fprintf(stderr, "--workers must be in 1..4096\n");
        return 2;
    }
    if (opt_rounds < 7 && !opt_quick) {
        fprintf(stderr, "--rounds: at least 7 for a reported table (use --quick for a smoke run)\n");
        return 2;
    }
    if (opt_rounds < 1 || opt_rounds > MAX_ROUNDS) opt_rounds = 7;

    /* OpenMP and fork in one process: libgomp reads OMP_WAIT_POLICY at its
     * first parallel region, so set it (if asked) before any. The default
     * (unset) spins a while then sleeps, as libpasha's pool does; settle()
     * between variants lets idle OpenMP threads fall asleep before a
     * process mode runs, and every context is made before the first
     * OpenMP region, so the pools' workers are forked from a process with
     * no libgomp team. Forked children run only our kernels, never OpenMP. */
    if (opt_omp_wait) {
        if (strcmp(opt_omp_wait, "active") != 0 && strcmp(opt_omp_wait, "passive") != 0) {
            fprintf(stderr, "--omp-wait: active or passive\n");
            return 2;
        }
        setenv("OMP_WAIT_POLICY", opt_omp_wait, 1);
    }
    FILE *json = NULL;
    if (opt_json && strcmp(opt_json, "-") == 0) {
        /* JSON alone on stdout; the human-readable table goes to stderr. */
        fflush(stdout);
        int fd = dup(STDOUT_FILENO);
        json = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (json) dup2(STDERR_FILENO, STDOUT_FILENO);
    } else if (opt_json) {
        json = fopen(opt_json, "w");
    }
    if (opt_json && !json) {
        perror(opt_json);
        return 2;
    }
    /* Line buffered even into a pipe or file: forked workers flush the stdio
     * buffers they inherit (a core issue, reported as patch bench-01), so pending output
     * at a fork would be written once per worker. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *wait_policy = getenv("OMP_WAIT_POLICY");
    printf("libpasha %s benchmark: %d workers, %d rounds, %ld CPUs online, OMP_WAIT_POLICY=%s%s\n", psh_version(),
           opt_workers, opt_rounds, sysconf(_SC_NPROCESSORS_ONLN), wait_policy ? wait_policy : "(unset)",
           opt_quick ? " (quick)" : "");
    ctx_serial = make_ctx(PSH_SERIAL, 0, PSH_SCHEDULE_STATIC, 0);
    ctx_threads = make_ctx(PSH_THREADS, 0, PSH_SCHEDULE_STATIC, 0);
    ctx_fork = make_ctx(PSH_PROCESSES, 0, PSH_SCHEDULE_STATIC, 0);
    ctx_pool = make_ctx(PSH_PROCESSES, 1, PSH_SCHEDULE_STATIC, 0);
    psh_context *extra[6] = {ctx_threads, make_ctx(PSH_THREADS, 0, PSH_SCHEDULE_DYNAMIC, 0),
                             make_ctx(PSH_THREADS, 0, PSH_SCHEDULE_DYNAMIC, 1),
                             make_ctx(PSH_THREADS, 0, PSH_SCHEDULE_GUIDED, 0),
                             make_ctx(PSH_PROCESSES, 1, PSH_SCHEDULE_DYNAMIC, 0),
                             make_ctx(PSH_PROCESSES, 0, PSH_SCHEDULE_DYNAMIC, 0)};

    static struct workload wa, wb, wc, wd, wb2, wf;
    struct target t[16];
    int nt = 0;
    if (selected("a")) {
        workload_a(&wa);
        double th = median_of(&wa, "libpasha threads");
        double thm = min_of(&wa, "libpasha threads");
        t[nt++] = (struct target){"threads vs OpenMP static, (a)", th / median_of(&wa, "OpenMP schedule(static)"), 1.05,
                                  "x", thm / min_of(&wa, "OpenMP schedule(static)")};
        t[nt++] = (struct target){"persistent pool vs threads, (a)", median_of(&wa, "libpasha persistent pool") / th, 1.10,
                                  "x", min_of(&wa, "libpasha persistent pool") / thm};
    }
    if (selected("b")) {
        workload_b(&wb);
        double th = median_of(&wb, "libpasha threads");
        double thm = min_of(&wb, "libpasha threads");
        t[nt++] = (struct target){"threads vs OpenMP parallel for, (b)", th / median_of(&wb, "OpenMP parallel for"), 2.0,
                                  "x", thm / min_of(&wb, "OpenMP parallel for")};
        t[nt++] = (struct target){"processes vs raw fork+waitpid, (b)",
                                  median_of(&wb, "libpasha processes (fork/map)") / median_of(&wb, "raw fork()+waitpid()"), 1.2,
                                  "x", min_of(&wb, "libpasha processes (fork/map)") / min_of(&wb, "raw fork()+waitpid()")};
        t[nt++] = (struct target){"persistent pool vs threads, (b)", median_of(&wb, "libpasha persistent pool") / th, 3.0,
                                  "x", min_of(&wb, "libpasha persistent pool") / thm};
    }
    if (selected("c")) {
        workload_c(&wc);
        t[nt++] = (struct target){"serial psh_map per-item overhead, (c)", median_of(&wc, "libpasha serial psh_map"), 2.0,
                                  "ns", min_of(&wc, "libpasha serial psh_map")};
    }
    if (selected("d")) {
        workload_d(&wd, extra);
        t[nt++] = (struct target){"dynamic vs OpenMP dynamic,1, (d)",
                                  median_of(&wd, "libpasha threads dynamic") / median_of(&wd, "OpenMP schedule(dynamic,1)"), 1.10,
                                  "x", min_of(&wd, "libpasha threads dynamic") / min_of(&wd, "OpenMP schedule(dynamic,1)")};
    }
    if (selected("b'")) {
        workload_b_busy(&wb2);
        t[nt++] = (struct target){"threads vs OpenMP, one core busy, (b')",
                                  median_of(&wb2, "libpasha threads") / median_of(&wb2, "OpenMP parallel for"), 1.5,
                                  "x", min_of(&wb2, "libpasha threads") / min_of(&wb2, "OpenMP parallel for")};
    }
    if (selected("f")) {
        workload_f(&wf);
        double best = median_of(&wf, "OpenMP reduction(+: array sections)"),
               bestm = min_of(&wf, "OpenMP reduction(+: array sections)");
#ifdef HAVE_TBB
        if (median_of(&wf, "oneTBB parallel_reduce") < best) best = median_of(&wf, "oneTBB parallel_reduce");
        if (median_of(&wf, "oneTBB parallel_reduce, static") < best) best = median_of(&wf, "oneTBB parallel_reduce, static");
        if (min_of(&wf, "oneTBB parallel_reduce") < bestm) bestm = min_of(&wf, "oneTBB parallel_reduce");
        if (min_of(&wf, "oneTBB parallel_reduce, static") < bestm) bestm = min_of(&wf, "oneTBB parallel_reduce, static");
#endif
        t[nt++] = (struct target){"threads vs best of OpenMP/TBB, (f)",
                                  median_of(&wf, "libpasha threads, per_worker rows") / best, 1.05, "x",
                                  min_of(&wf, "libpasha threads, per_worker rows") / bestm};
        t[nt++] = (struct target){"threads, padded rows vs best, (f)",
                                  median_of(&wf, "libpasha threads, padded per_worker rows") / best, 1.05, "x",
                                  min_of(&wf, "libpasha threads, padded per_worker rows") / bestm};
        t[nt++] = (struct target){"threads, padded, dynamic vs best, (f)",
                                  median_of(&wf, "libpasha threads, padded rows, dynamic") / best, 1.05, "x",
                                  min_of(&wf, "libpasha threads, padded rows, dynamic") / bestm};
        t[nt++] = (struct target){"padded, dyn, parallel combine vs best, (f)",
                                  median_of(&wf, "libpasha padded+dynamic, parallel combine") / best, 1.05,
                                  "x", min_of(&wf, "libpasha padded+dynamic, parallel combine") / bestm};
    }
    if (json) fprintf(json, "{\n  \"workers\": %d, \"rounds\": %d, \"quick\": %s,\n", opt_workers, opt_rounds, opt_quick ? "true" : "false");
    if (json) fflush(json); /* nothing pending when (e) forks */
    if (selected("e")) workload_e(json);

    printf("\nTargets (ratios of medians from this run, %d workers)\n", opt_workers);
    for (int i = 0; i < nt; ++i)
        printf("  %-40s %7.3f%-2s  target <= %5.2f%-2s  %-7s  (fastest rounds: %.3f%s)\n", t[i].what, t[i].value,
               t[i].unit, t[i].limit, t[i].unit, t[i].value <= t[i].limit ? "met" : "NOT met", t[i].best, t[i].unit);
    if (json) {
        struct workload *all[6] = {&wa, &wb, &wb2, &wc, &wd, &wf};
        fprintf(json, "  \"workloads\": {");
        int first = 1;
        for (int k = 0; k < 6; ++k) {
            if (!all[k]->nvar) continue;
            fprintf(json, "%s\n    \"%s\": {", first ? "" : ",", all[k]->id);
            first = 0;
            for (int i = 0; i < all[k]->nvar; ++i)
                fprintf(json, "%s\"%s\": {\"median\": %.6g, \"min\": %.6g, \"max\": %.6g, \"unit\": \"%s\"}",
                        i ? ", " : "", all[k]->v[i].name, all[k]->v[i].median, all[k]->v[i].min, all[k]->v[i].max,
                        all[k]->v[i].unit);
            fprintf(json, "}");
        }
        fprintf(json, "\n  },\n  \"targets\": [");
        for (int i = 0; i < nt; ++i)
            fprintf(json, "%s\n    {\"what\": \"%s\", \"value\": %.4f, \"limit\": %.2f, \"met\": %s, \"best\": %.4f}",
                    i ? "," : "", t[i].what, t[i].value, t[i].limit, t[i].value <= t[i].limit ? "true" : "false", t[i].best);
        fprintf(json, "\n  ]\n}\n");
        fclose(json);
    }
    for (int k = 1; k < 6; ++k) psh_context_destroy(extra[k]);
    psh_context_destroy(ctx_pool);
    psh_context_destroy(ctx_fork);
    psh_context_destroy(ctx_threads);
    psh_context_destroy(ctx_serial);
    return 0;
}
