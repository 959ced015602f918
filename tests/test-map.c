/* psh_map, psh_map_blocks and psh_map_ext in every context kind. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

struct marks {
    int32_t *count;  /* per index: how often the kernel saw it */
    int32_t *worker; /* per index: which worker */
    int64_t *acc;    /* per worker: sum of indices (a per_worker array) */
    int num_workers;
    size_t fail_at;  /* index where the kernel fails, or SIZE_MAX */
    int fail_code;
    int bad_ids;
};

static int mark(void *ud, int worker_id, size_t index, const void *value)
{
    struct marks *m = ud;
    (void)value;
    if (worker_id < 0 || worker_id >= m->num_workers) {
        m->bad_ids = 1; /* seen by the caller only in-process; the count check catches the rest */
        return 99;
    }
    if (index == m->fail_at) return m->fail_code;
    m->count[index] += 1;
    m->worker[index] = worker_id;
    m->acc[worker_id] += (int64_t)index;
    return 0;
}

struct arrays {
    psh_array *count, *worker, *acc;
};

static struct marks make_marks(psh_context *ctx, size_t n, struct arrays *a)
{
    psh_alloc_options pw;
    psh_alloc_options_init(&pw);
    pw.per_worker = 1;
    assert_int_equal(psh_alloc(&a->count, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&a->worker, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&a->acc, ctx, PSH_INT64, 0, NULL, &pw), PSH_OK);
    struct marks m = {psh_array_data(a->count), psh_array_data(a->worker), psh_array_data(a->acc),
                      psh_context_num_workers(ctx), SIZE_MAX, 0, 0};
    return m;
}

static void free_arrays(struct arrays *a)
{
    psh_array_free(a->count);
    psh_array_free(a->worker);
    psh_array_free(a->acc);
}

static void test_map_visits_every_index_once_in_every_context(void **state)
{
    (void)state;
    const size_t n = 10007;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct arrays a;
        struct marks m = make_marks(ctx, n, &a);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        for (int round = 0; round < 3; ++round) /* the pools are reused */
            if (map_copy(ctx, mark, &m, sizeof m, f) != PSH_OK) fail_msg("%s: %s", cfg->name, psh_last_error());
        int64_t total = 0;
        for (size_t i = 0; i < n; ++i) {
            if (m.count[i] != 3) fail_msg("%s: index %zu seen %d times", cfg->name, i, m.count[i]);
            total += (int64_t)i;
        }
        int64_t sum = 0;
        for (int w = 0; w < m.num_workers; ++w) sum += m.acc[w];
        assert_int_equal(sum, 3 * total);
        assert_false(m.bad_ids);
        if (cfg->schedule == PSH_SCHEDULE_STATIC) {
            /* The original's split: worker w gets [w*n/W, (w+1)*n/W). */
            size_t W = (size_t)m.num_workers;
            for (size_t w = 0; w < W; ++w)
                for (size_t i = w * n / W; i < (w + 1) * n / W; ++i)
                    if (m.worker[i] != (int)w) fail_msg("%s: index %zu ran in worker %d, not %zu", cfg->name, i, m.worker[i], w);
        }
        psh_functor_destroy(f);
        free_arrays(&a);
        psh_context_destroy(ctx);
    }
}

/* Dynamic and guided schedules with a chunk of 2^63 or SIZE_MAX (regression:
 * the shared counter wrapped around and items ran several times): every
 * index exactly once, in threads, fork-per-map and pool contexts. */
static void test_map_huge_chunks_run_each_index_once(void **state)
{
    (void)state;
    const size_t n = 1000;
    const size_t chunks[3] = {(size_t)1 << 63, SIZE_MAX, SIZE_MAX - 1};
    const psh_schedule schedules[2] = {PSH_SCHEDULE_DYNAMIC, PSH_SCHEDULE_GUIDED};
    const size_t configs[3] = {2, 5, 7}; /* threads-2, processes-2, pool-2 */
    for (size_t k = 0; k < 3; ++k) {
        const struct ctx_config *cfg = &all_configs[configs[k]];
        psh_context *ctx = make_context(cfg);
        struct arrays a;
        struct marks m = make_marks(ctx, n, &a);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        int rounds = 0;
        for (int s = 0; s < 2; ++s)
            for (int c = 0; c < 3; ++c) {
                psh_map_options o;
                psh_map_options_init(&o);
                o.schedule = schedules[s];
                o.chunk = chunks[c];
                o.user_data_size = sizeof m;
                if (psh_map_ext(ctx, mark, &m, f, &o) != PSH_OK) fail_msg("%s: %s", cfg->name, psh_last_error());
                ++rounds;
            }
        for (size_t i = 0; i < n; ++i)
            if (m.count[i] != rounds) fail_msg("%s: index %zu seen %d times, not %d", cfg->name, i, m.count[i], rounds);
        psh_functor_destroy(f);
        free_arrays(&a);
        psh_context_destroy(ctx);
    }
}

static void test_map_kernel_error_stops_early(void **state)
{
    (void)state;
    const size_t n = 4000;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct arrays a;
        struct marks m = make_marks(ctx, n, &a);
        m.fail_at = 10; /* in worker 0's share */
        m.fail_code = 7;
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        assert_error(map_copy(ctx, mark, &m, sizeof m, f), PSH_EKERNEL, "returned 7 at index 10");
        assert_int_equal(m.count[10], 0);
        if (cfg->schedule == PSH_SCHEDULE_STATIC)
            assert_int_equal(m.count[11], 0); /* the failing worker went no further */
        /* The context stays usable. */
        m.fail_at = SIZE_MAX;
        memset(m.count, 0, n * sizeof *m.count);
        assert_int_equal(map_copy(ctx, mark, &m, sizeof m, f), PSH_OK);
        for (size_t i = 0; i < n; ++i) assert_int_equal(m.count[i], 1);
        psh_functor_destroy(f);
        free_arrays(&a);
        psh_context_destroy(ctx);
    }
}

struct death {
    size_t at;
    int how; /* 0: SIGKILL, 1: SIGSEGV, 2: _exit(3), 3: abort */
    int32_t *out;
};

static int die_at(void *ud, int worker_id, size_t index, const void *value)
{
    struct death *d = ud;
    (void)worker_id;
    (void)value;
    if (index == d->at) {
        switch (d->how) {
        case 0: raise(SIGKILL); break;
        case 1: raise(SIGSEGV); break;
        case 2: _exit(3);
        default: abort();
        }
    }
    d->out[index] = (int32_t)index + 1;
    return 0;
}

static void test_map_worker_death_is_reported_and_context_recovers(void **state)
{
    (void)state;
    static const char *expect[] = {"signal 9", "signal 11", "exited with status 3", "signal 6"};
    const size_t n = 300;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        if (cfg->kind != PSH_PROCESSES) continue;
        psh_context *ctx = make_context(cfg);
        psh_array *out;
        assert_int_equal(psh_alloc(&out, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        for (int how = 0; how < 4; ++how) {
            struct death d = {123, how, psh_array_data(out)};
            char needle[64];
            assert_error(map_copy(ctx, die_at, &d, sizeof d, f), PSH_EWORKER, expect[how]);
            snprintf(needle, sizeof needle, "at index %zu", d.at);
            if (!strstr(psh_last_error(), needle)) fail_msg("%s: \"%s\"", cfg->name, psh_last_error());
            /* The next map works in full. */
            d.at = SIZE_MAX;
            memset(d.out, 0, n * sizeof *d.out);
            if (map_copy(ctx, die_at, &d, sizeof d, f) != PSH_OK) fail_msg("%s: %s", cfg->name, psh_last_error());
            for (size_t i = 0; i < n; ++i) assert_int_equal(d.out[i], (int32_t)i + 1);
        }
        psh_functor_destroy(f);
        psh_array_free(out);
        psh_context_destroy(ctx);
    }
}

struct nested {
    psh_context *ctx;
    int64_t *out; /* n x 3 */
    int mismatch;
};

struct inner_args {
    struct nested *outer;
    size_t outer_index;
    int outer_worker;
};

static int inner_kernel(void *ud, int worker_id, size_t index, const void *value)
{
    struct inner_args *a = ud;
    (void)value;
    if (worker_id != a->outer_worker) return 5;
    a->outer->out[a->outer_index * 3 + index] = (int64_t)(a->outer_index * 10 + index);
    return 0;
}

static int outer_kernel(void *ud, int worker_id, size_t index, const void *value)
{
    struct nested *n = ud;
    (void)value;
    struct inner_args a = {n, index, worker_id};
    psh_functor *f;
    if (psh_functor_range(&f, 3) != PSH_OK) return 1;
    int rc = psh_map(n->ctx, inner_kernel, &a, f);
    psh_functor_destroy(f);
    return rc == PSH_OK ? 0 : 100 - rc;
}

static void test_map_nested_runs_inline_in_the_worker(void **state)
{
    (void)state;
    const size_t n = 50, shape[2] = {50, 3};
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *ctx = make_context(&all_configs[k]);
        psh_array *out;
        assert_int_equal(psh_alloc(&out, ctx, PSH_INT64, 2, shape, NULL), PSH_OK);
        struct nested nd = {ctx, psh_array_data(out), 0};
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        if (map_copy(ctx, outer_kernel, &nd, sizeof nd, f) != PSH_OK) fail_msg("%s: %s", all_configs[k].name, psh_last_error());
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < 3; ++j) assert_int_equal(nd.out[i * 3 + j], (int64_t)(i * 10 + j));
        psh_functor_destroy(f);
        psh_array_free(out);
        psh_context_destroy(ctx);
    }
}

struct blocks {
    int32_t *owner;
    int32_t *calls; /* per worker */
};

static int mark_block(void *ud, int worker_id, size_t begin, size_t end)
{
    struct blocks *b = ud;
    for (size_t i = begin; i < end; ++i) b->owner[i] += worker_id + 1;
    b->calls[worker_id] += 1;
    return 0;
}

static void test_map_blocks_cover_the_range_once(void **state)
{
    (void)state;
    const size_t n = 1001;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        psh_array *owner, *calls;
        psh_alloc_options pw;
        psh_alloc_options_init(&pw);
        pw.per_worker = 1;
        assert_int_equal(psh_alloc(&owner, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
        assert_int_equal(psh_alloc(&calls, ctx, PSH_INT32, 0, NULL, &pw), PSH_OK);
        struct blocks b = {psh_array_data(owner), psh_array_data(calls)};
        if (map_blocks_copy(ctx, mark_block, &b, sizeof b, n) != PSH_OK) fail_msg("%s: %s", cfg->name, psh_last_error());
        int W = psh_context_num_workers(ctx);
        for (size_t i = 0; i < n; ++i) {
            assert_true(b.owner[i] >= 1 && b.owner[i] <= W);
            if (cfg->schedule == PSH_SCHEDULE_STATIC) {
                int w = 0; /* the worker whose share [w*n/W, (w+1)*n/W) holds i */
                while (!((size_t)(w + 1) * n / W > i)) ++w;
                assert_int_equal(b.owner[i] - 1, w);
            }
        }
        if (cfg->schedule == PSH_SCHEDULE_STATIC)
            for (int w = 0; w < W; ++w) assert_int_equal(b.calls[w], 1); /* one call per share */
        psh_array_free(owner);
        psh_array_free(calls);
        psh_context_destroy(ctx);
    }
}

struct progress {
    int calls;
    size_t last_done, total;
    int monotonic;
};

static void on_progress(void *ud, size_t done, size_t total)
{
    struct progress *p = ud;
    if (done < p->last_done) p->monotonic = 0;
    p->calls += 1;
    p->last_done = done;
    p->total = total;
}

static int slow_kernel(void *ud, int worker_id, size_t index, const void *value)
{
    (void)ud;
    (void)worker_id;
    (void)index;
    (void)value;
    struct timespec ts = {0, 1000000}; /* 1 ms */
    nanosleep(&ts, NULL);
    return 0;
}

static void test_map_ext_reports_progress_from_the_caller(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *ctx = make_context(&all_configs[k]);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, 400), PSH_OK);
        struct progress p = {0, 0, 0, 1};
        psh_map_options o;
        psh_map_options_init(&o);
        o.progress = on_progress;
        o.progress_data = &p;
        assert_int_equal(psh_map_ext(ctx, slow_kernel, NULL, f, &o), PSH_OK);
        assert_true(p.calls >= 1);
        assert_true(p.monotonic);
        assert_int_equal(p.last_done, 400); /* the final call */
        assert_int_equal(p.total, 400);
        psh_functor_destroy(f);
        psh_context_destroy(ctx);
    }
}

static volatile int cancel_flag;

static void *cancel_soon(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 50000000}; /* 50 ms */
    nanosleep(&ts, NULL);
    __atomic_store_n(&cancel_flag, 1, __ATOMIC_RELAXED);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_map_ext_cancel_flag_ends_the_map(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *ctx = make_context(&all_configs[k]);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, 100000), PSH_OK); /* 100 s of work */
        psh_map_options o;
        psh_map_options_init(&o);
        o.cancel = &cancel_flag;
        cancel_flag = 0;
        pthread_t t;
        pthread_create(&t, NULL, cancel_soon, NULL);
        double t0 = now_s();
        assert_error(psh_map_ext(ctx, slow_kernel, NULL, f, &o), PSH_ECANCELED, "cancel");
        double took = now_s() - t0;
        pthread_join(t, NULL);
        /* The whole map takes 50 s; a generous bound that still proves the
         * cancel (it also holds under valgrind). */
        if (took > 20.0) fail_msg("%s: cancel took %.2f s", all_configs[k].name, took);
        /* Still usable. */
        cancel_flag = 0;
        psh_functor_destroy(f);
        assert_int_equal(psh_functor_range(&f, 10), PSH_OK);
        assert_int_equal(psh_map_ext(ctx, slow_kernel, NULL, f, &o), PSH_OK);
        psh_functor_destroy(f);
        psh_context_destroy(ctx);
    }
}

static int parent_global = 0;
static int private_scribble = 0;

static int read_global(void *ud, int worker_id, size_t index, const void *value)
{
    int32_t *out = ud;
    (void)worker_id;
    (void)value;
    out[index] = parent_global;
    private_scribble = (int)index + 1; /* must not reach the caller in processes */
    return 0;
}

static void test_map_processes_see_the_callers_memory_at_the_call(void **state)
{
    (void)state;
    const size_t n = 10;
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_PROCESSES, 2), PSH_OK);
    psh_array *out;
    assert_int_equal(psh_alloc(&out, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, n), PSH_OK);
    for (int v = 1; v <= 3; ++v) {
        parent_global = v * 11;
        assert_int_equal(psh_map(ctx, read_global, psh_array_data(out), f), PSH_OK);
        for (size_t i = 0; i < n; ++i) assert_int_equal(((int32_t *)psh_array_data(out))[i], v * 11);
        assert_int_equal(private_scribble, 0);
    }
    psh_functor_destroy(f);
    psh_array_free(out);
    psh_context_destroy(ctx);
}

static int write_index(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((double *)ud)[index] = (double)index * 0.5;
    return 0;
}

static void test_pool_sees_arrays_made_after_it_started(void **state)
{
    (void)state;
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = PSH_PROCESSES;
    o.num_workers = 2;
    o.persistent = 1;
    psh_context *pool;
    assert_int_equal(psh_context_create_ext(&pool, &o), PSH_OK);
    for (size_t n = 1000; n <= 1000000; n *= 10) {
        psh_array *a; /* allocated after the workers were forked */
        assert_int_equal(psh_alloc(&a, NULL, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        assert_int_equal(psh_map(pool, write_index, psh_array_data(a), f), PSH_OK);
        const double *d = psh_array_data(a);
        for (size_t i = 0; i < n; ++i) assert_true(d[i] == (double)i * 0.5);
        psh_functor_destroy(f);
        psh_array_free(a);
    }
    psh_context_destroy(pool);
}

static int never_called(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)index;
    (void)value;
    *(int *)ud = 1;
    return 1;
}

static void test_map_bad_arguments_are_rejected(void **state)
{
    (void)state;
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 2), PSH_OK);
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, 5), PSH_OK);
    int called = 0;
    assert_error(psh_map(ctx, NULL, NULL, f), PSH_EINVAL, "kernel is NULL");
    assert_error(psh_map(ctx, never_called, &called, NULL), PSH_EINVAL, "functor is NULL");
    assert_error(psh_map_blocks(ctx, NULL, NULL, 5), PSH_EINVAL, "kernel is NULL");
    psh_map_options o;
    psh_map_options_init(&o);
    o.schedule = (psh_schedule)9;
    assert_error(psh_map_ext(ctx, never_called, &called, f, &o), PSH_EINVAL, "schedule 9");
    psh_map_options_init(&o);
    o.struct_size = 0;
    assert_error(psh_map_ext(ctx, never_called, &called, f, &o), PSH_EINVAL, "psh_map_options_init");
    assert_int_equal(called, 0);
    /* An empty functor never calls the kernel. */
    psh_functor *empty;
    assert_int_equal(psh_functor_range(&empty, 0), PSH_OK);
    assert_int_equal(psh_map(ctx, never_called, &called, empty), PSH_OK);
    assert_int_equal(called, 0);
    psh_functor_destroy(empty);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
}

static void test_map_on_the_default_context(void **state)
{
    (void)state;
    const size_t n = 100;
    psh_array *a;
    assert_int_equal(psh_alloc(&a, NULL, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, n), PSH_OK);
    assert_int_equal(psh_context_kind(psh_get_default_context()), PSH_PROCESSES);
    assert_int_equal(psh_map(NULL, write_index, psh_array_data(a), f), PSH_OK);
    assert_true(((double *)psh_array_data(a))[99] == 49.5);
    assert_int_equal(psh_set_default_kind(PSH_THREADS, 3), PSH_OK);
    assert_int_equal(psh_context_kind(psh_get_default_context()), PSH_THREADS);
    assert_int_equal(psh_context_num_workers(psh_get_default_context()), 3);
    memset(psh_array_data(a), 0, psh_array_nbytes(a));
    assert_int_equal(psh_map(NULL, write_index, psh_array_data(a), f), PSH_OK);
    assert_true(((double *)psh_array_data(a))[99] == 49.5);
    assert_int_equal(psh_set_default_kind(PSH_PROCESSES, 0), PSH_OK);
    psh_functor_destroy(f);
    psh_array_free(a);
}

static int record_pid(void *ud, int worker_id, size_t index, const void *value)
{
    (void)index;
    (void)value;
    ((int32_t *)ud)[worker_id] = (int32_t)getpid();
    return 0;
}

/* A pool worker killed while idle (OOM killer, kill -9) is replaced before
 * the next map, which then runs in full. */
static void test_pool_replaces_a_worker_killed_between_maps(void **state)
{
    (void)state;
    psh_context *pool = make_context(&all_configs[7]); /* pool-2 */
    psh_alloc_options pw;
    psh_alloc_options_init(&pw);
    pw.per_worker = 1;
    psh_array *pids;
    assert_int_equal(psh_alloc(&pids, pool, PSH_INT32, 0, NULL, &pw), PSH_OK);
    int32_t *p = psh_array_data(pids);
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, 2), PSH_OK);
    assert_int_equal(psh_map(pool, record_pid, p, f), PSH_OK);
    int32_t before = p[1];
    assert_true(before > 0 && before != (int32_t)getpid());
    assert_int_equal(kill(before, SIGKILL), 0);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    const size_t n = 500;
    psh_array *out;
    assert_int_equal(psh_alloc(&out, pool, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
    psh_functor *g;
    assert_int_equal(psh_functor_range(&g, n), PSH_OK);
    if (psh_map(pool, write_index, psh_array_data(out), g) != PSH_OK) fail_msg("%s", psh_last_error());
    for (size_t i = 0; i < n; ++i) assert_true(((double *)psh_array_data(out))[i] == (double)i * 0.5);
    assert_int_equal(psh_map(pool, record_pid, p, f), PSH_OK);
    assert_true(p[1] > 0 && p[1] != before); /* a new process */
    psh_functor_destroy(f);
    psh_functor_destroy(g);
    psh_array_free(out);
    psh_array_free(pids);
    psh_context_destroy(pool);
}

static int record_affinity(void *ud, int worker_id, size_t index, const void *value)
{
    (void)index;
    (void)value;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int32_t *out = ud; /* per worker: the only CPU allowed, or -count */
    int cpu = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpu = c;
    out[worker_id] = CPU_COUNT(&set) == 1 ? cpu : -CPU_COUNT(&set);
    return 0;
}

/* pin_cpus: worker w runs on the w-th CPU of the affinity mask (wrapping);
 * the caller's own thread (worker 0 of a threads context) is left alone. */
static void test_pin_cpus_pins_each_worker_to_its_cpu(void **state)
{
    (void)state;
    cpu_set_t mask;
    assert_int_equal(sched_getaffinity(0, sizeof mask, &mask), 0);
    int cpus[CPU_SETSIZE], ncpu = 0;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &mask)) cpus[ncpu++] = c;
    static const psh_kind kinds[] = {PSH_THREADS, PSH_PROCESSES, PSH_PROCESSES};
    for (int k = 0; k < 3; ++k) {
        psh_context_options o;
        psh_context_options_init(&o);
        o.kind = kinds[k];
        o.num_workers = 3;
        o.persistent = k == 2;
        o.pin_cpus = 1;
        psh_context *ctx;
        assert_int_equal(psh_context_create_ext(&ctx, &o), PSH_OK);
        psh_alloc_options pw;
        psh_alloc_options_init(&pw);
        pw.per_worker = 1;
        psh_array *a;
        assert_int_equal(psh_alloc(&a, ctx, PSH_INT32, 0, NULL, &pw), PSH_OK);
        int32_t *got = psh_array_data(a);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, 3), PSH_OK);
        assert_int_equal(psh_map(ctx, record_affinity, got, f), PSH_OK);
        for (int w = 0; w < 3; ++w) {
            if (kinds[k] == PSH_THREADS && w == 0)
                assert_int_equal(got[w], ncpu == 1 ? cpus[0] : -ncpu); /* the caller: unpinned */
            else
                assert_int_equal(got[w], cpus[w % ncpu]);
        }
        psh_functor_destroy(f);
        psh_array_free(a);
        psh_context_destroy(ctx);
    }
}

static int print_k(void *ud, int worker_id, size_t index, const void *value)
{
    (void)ud;
    (void)worker_id;
    (void)index;
    (void)value;
    fputs("k", stdout); /* buffered in the worker; must come out once */
    return 0;
}

/* Output the caller has buffered when workers are forked comes out once,
 * not once per worker; what kernels print comes out too. */
static void test_workers_do_not_repeat_the_callers_buffered_output(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        setvbuf(stdout, NULL, _IOFBF, 1 << 16);
        fputs("pending;", stdout); /* not flushed when the workers fork */
        psh_context *ctx[2] = {make_context(&all_configs[7]), make_context(&all_configs[5])}; /* pool, fork */
        psh_functor *f;
        psh_functor_range(&f, 4);
        int bad = 0;
        for (int k = 0; k < 2; ++k) bad |= psh_map(ctx[k], print_k, NULL, f) != PSH_OK;
        for (int k = 0; k < 2; ++k) psh_context_destroy(ctx[k]);
        psh_functor_destroy(f);
        fflush(stdout);
        _exit(bad);
    }
    close(fds[1]);
    char buf[4096];
    size_t got = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int pending = 0, ks = 0;
    for (const char *p = buf; (p = strstr(p, "pending;")); p += 8) ++pending;
    for (const char *p = buf; *p; ++p) ks += *p == 'k';
    if (pending != 1 || ks != 8) fail_msg("output \"%s\": 'pending;' %d times, 'k' %d times", buf, pending, ks);
}

/* While a persistent pool is alive, an array the shm arena cannot hold is
 * PSH_ENOMEM (its workers could not see it), not a segfault in a worker.
 * And a forked program gets an arena of its own (regression: it used to be
 * refused every allocation once it made a pool, "blaming an almost empty
 * arena"): in a child whose arena is 1 MiB (PASHA_ARENA_SIZE is read when
 * the child's arena is made), a pool maps into a small array, a 2 MiB array
 * is PSH_ENOMEM naming the pool, and without the pool it is standalone. */
static void test_alloc_fails_clearly_when_a_pool_could_not_see_the_array(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        setenv("PASHA_ARENA_SIZE", "1M", 1);
        size_t n = 1000, big = 2 << 20;
        psh_context *pool = make_context(&all_configs[7]);
        psh_array *a = NULL, *b = NULL;
        bad |= (psh_alloc(&a, NULL, PSH_FLOAT64, 1, &n, NULL) != PSH_OK) << 1;
        psh_functor *f = NULL;
        bad |= (psh_functor_range(&f, n) != PSH_OK) << 2;
        if (a && f) {
            bad |= (psh_map(pool, write_index, psh_array_data(a), f) != PSH_OK) << 3;
            for (size_t i = 0; i < n; ++i) bad |= (((double *)psh_array_data(a))[i] != (double)i * 0.5) << 4;
        }
        bad |= (psh_alloc(&b, NULL, PSH_UINT8, 1, &big, NULL) != PSH_ENOMEM) << 5;
        bad |= (strstr(psh_last_error(), "persistent pool") == NULL) << 6;
        bad |= (b != NULL) << 7;
        psh_context_destroy(pool);
        bad |= (psh_alloc(&b, NULL, PSH_UINT8, 1, &big, NULL) != PSH_OK) << 8;
        psh_array_free(b);
        psh_array_free(a);
        psh_functor_destroy(f);
        _exit(bad ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A program that forks while it holds contexts: the child can map on them
 * (it gets its own workers) and destroy them without harming the parent's. */
static void test_forked_program_keeps_contexts_working_on_both_sides(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer cannot start threads in the child of a multi-threaded
     * fork (it dies by design), and that is exactly what this test does. */
    skip();
#endif
    const size_t n = 1000;
    psh_context *ctx[2];
    ctx[0] = make_context(&all_configs[2]); /* threads-2 */
    ctx[1] = make_context(&all_configs[7]); /* pool-2 */
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, n), PSH_OK);
    psh_array *a;
    assert_int_equal(psh_alloc(&a, NULL, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
    double *d = psh_array_data(a);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        for (int k = 0; k < 2; ++k) {
            memset(d, 0, n * sizeof *d);
            bad |= psh_map(ctx[k], write_index, d, f) != PSH_OK;
            for (size_t i = 0; i < n; ++i) bad |= d[i] != (double)i * 0.5;
            psh_context_destroy(ctx[k]);
        }
        _exit(bad ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int k = 0; k < 2; ++k) {
        memset(d, 0, n * sizeof *d);
        assert_int_equal(psh_map(ctx[k], write_index, d, f), PSH_OK);
        for (size_t i = 0; i < n; ++i) assert_true(d[i] == (double)i * 0.5);
        psh_context_destroy(ctx[k]);
    }
    psh_array_free(a);
    psh_functor_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_visits_every_index_once_in_every_context),
        cmocka_unit_test(test_map_huge_chunks_run_each_index_once),
        cmocka_unit_test(test_map_kernel_error_stops_early),
        cmocka_unit_test(test_map_worker_death_is_reported_and_context_recovers),
        cmocka_unit_test(test_map_nested_runs_inline_in_the_worker),
        cmocka_unit_test(test_map_blocks_cover_the_range_once),
        cmocka_unit_test(test_map_ext_reports_progress_from_the_caller),
        cmocka_unit_test(test_map_ext_cancel_flag_ends_the_map),
        cmocka_unit_test(test_map_processes_see_the_callers_memory_at_the_call),
        cmocka_unit_test(test_pool_sees_arrays_made_after_it_started),
        cmocka_unit_test(test_map_bad_arguments_are_rejected),
        cmocka_unit_test(test_map_on_the_default_context),
        cmocka_unit_test(test_forked_program_keeps_contexts_working_on_both_sides),
        cmocka_unit_test(test_pool_replaces_a_worker_killed_between_maps),
        cmocka_unit_test(test_pin_cpus_pins_each_worker_to_its_cpu),
        cmocka_unit_test(test_workers_do_not_repeat_the_callers_buffered_output),
        cmocka_unit_test(test_alloc_fails_clearly_when_a_pool_could_not_see_the_array),
    };
    return cmocka_run_group_tests_name("map", tests, NULL, NULL);
}
