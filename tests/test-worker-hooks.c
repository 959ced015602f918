/* psh_map_options.worker_begin / worker_end (issue 22): once per worker per
 * map, in the worker itself, in every kind and schedule, also for workers
 * that get no items and for block maps; begin before the worker's first
 * item and end after its last (checked with sequence numbers); the order
 * against the functor's own worker_begin / worker_end; failures from each;
 * and callers built against the 0.2 struct, which has neither field. */
#include <unistd.h>

#include "common.h"

/* The 0.2 layout of psh_map_options, frozen: growing the struct must leave
 * every old member where it was, with its type (the ABI gate's suppression
 * of end-growth would not notice a retyped member by itself). */
struct map_options_0_2 {
    size_t struct_size;
    psh_schedule schedule;
    size_t chunk;
    psh_progress_fn progress;
    void *progress_data;
    const volatile int *cancel;
    size_t user_data_size;
};
#define SAME_MEMBER(m, type)                                                                     \
    _Static_assert(offsetof(psh_map_options, m) == offsetof(struct map_options_0_2, m) &&        \
                       _Generic(((psh_map_options *)0)->m, type: 1, default: 0),                 \
                   "psh_map_options." #m " moved or changed type")
SAME_MEMBER(struct_size, size_t);
SAME_MEMBER(schedule, psh_schedule);
SAME_MEMBER(chunk, size_t);
SAME_MEMBER(progress, psh_progress_fn);
SAME_MEMBER(progress_data, void *);
SAME_MEMBER(cancel, const volatile int *);
SAME_MEMBER(user_data_size, size_t);
_Static_assert(offsetof(psh_map_options, worker_begin) == sizeof(struct map_options_0_2), "appended at the end");

enum { BEGINS, ENDS, BEGIN_SEQ, END_SEQ, FBEGIN_SEQ, FEND_SEQ, NFIELDS };

/* Lives on the caller's stack: a persistent pool hands the hooks and the
 * kernels its shared copy (user_data_size), the other kinds the pointer. */
struct hooks {
    int magic;
    int num_workers;
    int64_t *per_worker; /* [worker][NFIELDS], a per_worker psh array */
    int64_t *seq;        /* the shared sequence counter */
    int64_t *item_seq;   /* per index */
    int32_t *ran_by;     /* per index: worker + 1 */
    int fail_begin_of;   /* worker whose worker_begin fails, or -1 */
    int fail_end_of;     /* worker whose worker_end fails, or -1 */
    size_t kernel_fails_at;
};

static int64_t next_seq(struct hooks *h) { return __atomic_add_fetch(h->seq, 1, __ATOMIC_SEQ_CST); }

static int64_t *row(struct hooks *h, int w) { return h->per_worker + (size_t)w * NFIELDS; }

static int on_begin(void *ud, int worker_id)
{
    struct hooks *h = ud;
    if (h->magic != 0x600d || worker_id < 0 || worker_id >= h->num_workers) return 99;
    row(h, worker_id)[BEGINS] += 1;
    row(h, worker_id)[BEGIN_SEQ] = next_seq(h);
    return worker_id == h->fail_begin_of ? 41 : 0;
}

static int on_end(void *ud, int worker_id)
{
    struct hooks *h = ud;
    if (h->magic != 0x600d || worker_id < 0 || worker_id >= h->num_workers) return 99;
    row(h, worker_id)[ENDS] += 1;
    row(h, worker_id)[END_SEQ] = next_seq(h);
    return worker_id == h->fail_end_of ? 42 : 0;
}

static int item(void *ud, int worker_id, size_t index, const void *value)
{
    struct hooks *h = ud;
    (void)value;
    h->ran_by[index] = worker_id + 1;
    h->item_seq[index] = next_seq(h);
    return index == h->kernel_fails_at ? 7 : 0;
}

static int block(void *ud, int worker_id, size_t begin, size_t end)
{
    for (size_t i = begin; i < end; ++i) item(ud, worker_id, i, NULL);
    return 0;
}

struct fixture {
    psh_array *pw, *seq, *item_seq, *ran_by;
    struct hooks h;
};

static void setup_hooks(struct fixture *fx, psh_context *ctx, size_t n)
{
    psh_alloc_options pw;
    psh_alloc_options_init(&pw);
    pw.per_worker = 1;
    size_t nf = NFIELDS, one = 1;
    assert_int_equal(psh_alloc(&fx->pw, ctx, PSH_INT64, 1, &nf, &pw), PSH_OK);
    assert_int_equal(psh_alloc(&fx->seq, ctx, PSH_INT64, 1, &one, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&fx->item_seq, ctx, PSH_INT64, 1, &n, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&fx->ran_by, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
    struct hooks h = {0x600d, psh_context_num_workers(ctx), psh_array_data(fx->pw), psh_array_data(fx->seq),
                      psh_array_data(fx->item_seq), psh_array_data(fx->ran_by), -1, -1, SIZE_MAX};
    fx->h = h;
}

static void reset(struct fixture *fx, size_t n)
{
    memset(fx->h.per_worker, 0, (size_t)fx->h.num_workers * NFIELDS * sizeof(int64_t));
    memset(fx->h.item_seq, 0, n * sizeof(int64_t));
    memset(fx->h.ran_by, 0, n * sizeof(int32_t));
    fx->h.fail_begin_of = fx->h.fail_end_of = -1;
    fx->h.kernel_fails_at = SIZE_MAX;
}

static void teardown(struct fixture *fx)
{
    psh_array_free(fx->pw);
    psh_array_free(fx->seq);
    psh_array_free(fx->item_seq);
    psh_array_free(fx->ran_by);
}

static psh_map_options hook_options(struct fixture *fx, psh_schedule schedule, size_t chunk)
{
    psh_map_options o;
    psh_map_options_init(&o);
    o.schedule = schedule;
    o.chunk = chunk;
    o.user_data_size = sizeof fx->h;
    o.worker_begin = on_begin;
    o.worker_end = on_end;
    return o;
}

/* Every worker ran begin and end once, every index ran once, and each
 * worker's items lie between its begin and its end. */
static void check_some_pairs(const char *name, struct fixture *fx, size_t n, int all_items)
{
    struct hooks *h = &fx->h;
    for (int w = 0; w < h->num_workers; ++w) {
        int64_t *r = row(h, w);
        if (r[BEGINS] != 1 || r[ENDS] != 1)
            fail_msg("%s: worker %d ran worker_begin %lld and worker_end %lld times", name, w, (long long)r[BEGINS],
                     (long long)r[ENDS]);
        if (r[BEGIN_SEQ] >= r[END_SEQ]) fail_msg("%s: worker %d ended before it began", name, w);
    }
    for (size_t i = 0; i < n; ++i) {
        int w = h->ran_by[i] - 1;
        if (w < 0 && !all_items) continue;
        if (w < 0 || w >= h->num_workers) fail_msg("%s: index %zu ran by worker %d", name, i, w);
        int64_t *r = row(h, w);
        if (!(r[BEGIN_SEQ] < h->item_seq[i] && h->item_seq[i] < r[END_SEQ]))
            fail_msg("%s: index %zu (seq %lld) outside worker %d's begin %lld .. end %lld", name, i,
                     (long long)h->item_seq[i], w, (long long)r[BEGIN_SEQ], (long long)r[END_SEQ]);
    }
}

static void check_pairs(const char *name, struct fixture *fx, size_t n) { check_some_pairs(name, fx, n, 1); }

static const struct {
    const char *name;
    psh_schedule schedule;
    size_t chunk;
} schedules[] = {
    {"static", PSH_SCHEDULE_STATIC, 0},
    {"dynamic-1", PSH_SCHEDULE_DYNAMIC, 1},
    {"guided", PSH_SCHEDULE_GUIDED, 0},
};

static void test_worker_hooks_run_once_per_worker_around_its_items(void **state)
{
    (void)state;
    const size_t sizes[] = {1000, 2}; /* with 2 items, some workers get none */
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        for (size_t z = 0; z < 2; ++z) {
            size_t n = sizes[z];
            struct fixture fx;
            setup_hooks(&fx, ctx, n);
            psh_functor *f;
            assert_int_equal(psh_functor_range(&f, n), PSH_OK);
            for (size_t s = 0; s < sizeof schedules / sizeof schedules[0]; ++s) {
                char name[128];
                snprintf(name, sizeof name, "%s, %s, %zu items", cfg->name, schedules[s].name, n);
                for (int blocks = 0; blocks < 2; ++blocks) {
                    for (int round = 0; round < 2; ++round) { /* twice: pools reuse their workers */
                        reset(&fx, n);
                        psh_map_options o = hook_options(&fx, schedules[s].schedule, schedules[s].chunk);
                        int rc = blocks ? psh_map_blocks_ext(ctx, block, &fx.h, n, &o)
                                        : psh_map_ext(ctx, item, &fx.h, f, &o);
                        if (rc != PSH_OK) fail_msg("%s%s: %s", name, blocks ? ", blocks" : "", psh_last_error());
                        check_pairs(name, &fx, n);
                    }
                }
            }
            psh_functor_destroy(f);
            teardown(&fx);
        }
        psh_context_destroy(ctx);
    }
}

/* The functor's own pair nests inside the map's. */
struct src {
    struct hooks *h; /* in a psh array: every kind reads it live */
    int64_t *per_worker;
    int64_t *seq;
};
static size_t src_length(void *self)
{
    (void)self;
    return 64;
}
static int src_get(void *self, size_t index, const void **value)
{
    (void)self;
    (void)index;
    *value = NULL;
    return 0;
}
static int src_begin(void *self, int w)
{
    struct src *s = self;
    s->per_worker[(size_t)w * NFIELDS + FBEGIN_SEQ] = __atomic_add_fetch(s->seq, 1, __ATOMIC_SEQ_CST);
    return 0;
}
static void src_end(void *self, int w)
{
    struct src *s = self;
    s->per_worker[(size_t)w * NFIELDS + FEND_SEQ] = __atomic_add_fetch(s->seq, 1, __ATOMIC_SEQ_CST);
}

static void test_worker_hooks_wrap_the_functor_hooks(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct fixture fx;
        setup_hooks(&fx, ctx, 64);
        reset(&fx, 64);
        psh_array *src_mem;
        size_t size = sizeof(struct src);
        assert_int_equal(psh_alloc(&src_mem, ctx, PSH_UINT8, 1, &size, NULL), PSH_OK);
        struct src *s = psh_array_data(src_mem);
        s->per_worker = fx.h.per_worker;
        s->seq = fx.h.seq;
        psh_functor_vtable vt = {sizeof vt, src_length, src_get, src_begin, src_end};
        psh_functor *f;
        assert_int_equal(psh_functor_custom(&f, &vt, s), PSH_OK);
        psh_map_options o = hook_options(&fx, PSH_SCHEDULE_CONTEXT, 0);
        if (psh_map_ext(ctx, item, &fx.h, f, &o) != PSH_OK) fail_msg("%s: %s", cfg->name, psh_last_error());
        check_pairs(cfg->name, &fx, 64);
        for (int w = 0; w < fx.h.num_workers; ++w) {
            int64_t *r = row(&fx.h, w);
            if (!(r[BEGIN_SEQ] < r[FBEGIN_SEQ] && r[FBEGIN_SEQ] < r[FEND_SEQ] && r[FEND_SEQ] < r[END_SEQ]))
                fail_msg("%s: worker %d: map begin %lld, functor begin %lld, functor end %lld, map end %lld", cfg->name,
                         w, (long long)r[BEGIN_SEQ], (long long)r[FBEGIN_SEQ], (long long)r[FEND_SEQ],
                         (long long)r[END_SEQ]);
        }
        psh_functor_destroy(f);
        psh_array_free(src_mem);
        teardown(&fx);
        psh_context_destroy(ctx);
    }
}

static psh_error_info info_now(void)
{
    psh_error_info info;
    info.struct_size = sizeof info;
    assert_int_equal(psh_last_error_info(&info), PSH_OK);
    return info;
}

static void test_worker_hooks_failures_fail_the_map(void **state)
{
    (void)state;
    const size_t n = 300;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        int W = psh_context_num_workers(ctx);
        struct fixture fx;
        setup_hooks(&fx, ctx, n);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        for (size_t s = 0; s < sizeof schedules / sizeof schedules[0]; ++s) {
            /* worker_begin fails in the last worker: it runs no items and no
             * worker_end; the others' worker_end still runs. */
            reset(&fx, n);
            int victim = W - 1;
            fx.h.fail_begin_of = victim;
            psh_map_options o = hook_options(&fx, schedules[s].schedule, schedules[s].chunk);
            assert_error(psh_map_ext(ctx, item, &fx.h, f, &o), PSH_EKERNEL, "the map's worker_begin returned 41");
            psh_error_info info = info_now();
            assert_string_equal(info.callback, "worker_begin");
            assert_int_equal(info.worker_id, victim);
            assert_int_equal(info.index, -1);
            for (int w = 0; w < W; ++w) {
                assert_int_equal(row(&fx.h, w)[BEGINS], 1);
                assert_int_equal(row(&fx.h, w)[ENDS], w == victim ? 0 : 1);
            }
            for (size_t i = 0; i < n; ++i)
                if (fx.h.ran_by[i] == victim + 1) fail_msg("%s: worker %d ran index %zu after its begin failed", cfg->name, victim, i);

            /* worker_end fails in worker 0: the others stop early (a failed
             * map), but every worker's pair still brackets its items. */
            reset(&fx, n);
            fx.h.fail_end_of = 0;
            o = hook_options(&fx, schedules[s].schedule, schedules[s].chunk);
            assert_error(psh_map_ext(ctx, item, &fx.h, f, &o), PSH_EKERNEL, "the map's worker_end returned 42");
            info = info_now();
            assert_string_equal(info.callback, "worker_end");
            assert_int_equal(info.worker_id, 0);
            assert_int_equal(info.index, -1);
            check_some_pairs(cfg->name, &fx, n, 0);

            /* A kernel error: worker_end runs in every worker all the same,
             * and the error is the kernel's. */
            reset(&fx, n);
            fx.h.kernel_fails_at = 13;
            fx.h.fail_end_of = 0; /* a later failure does not replace the first */
            o = hook_options(&fx, schedules[s].schedule, schedules[s].chunk);
            assert_error(psh_map_ext(ctx, item, &fx.h, f, &o), PSH_EKERNEL, "the kernel returned 7 at index 13");
            info = info_now();
            assert_string_equal(info.callback, "kernel");
            assert_int_equal(info.index, 13);
            for (int w = 0; w < W; ++w) {
                assert_int_equal(row(&fx.h, w)[BEGINS], 1);
                assert_int_equal(row(&fx.h, w)[ENDS], 1);
            }
        }
        /* The context maps normally afterwards. */
        reset(&fx, n);
        psh_map_options o = hook_options(&fx, PSH_SCHEDULE_CONTEXT, 0);
        assert_int_equal(psh_map_ext(ctx, item, &fx.h, f, &o), PSH_OK);
        check_pairs(cfg->name, &fx, n);
        psh_functor_destroy(f);
        teardown(&fx);
        psh_context_destroy(ctx);
    }
}

/* A binary built against 0.2: its struct ends at user_data_size. Whatever
 * lies past it (here: hook pointers) is not read, and the exported
 * psh_map_options_init never writes past it. */
static void test_worker_hooks_old_struct_size_means_no_hooks(void **state)
{
    (void)state;
    const size_t old_size = offsetof(psh_map_options, worker_begin);
    union {
        psh_map_options o;
        unsigned char bytes[sizeof(psh_map_options) + 16];
    } u;
    memset(&u, 0xa5, sizeof u);
    (psh_map_options_init)(&u.o); /* the exported function, as an old binary or an FFI calls it */
    assert_int_equal(u.o.struct_size, old_size);
    assert_int_equal(u.o.schedule, PSH_SCHEDULE_CONTEXT);
    assert_null(u.o.progress);
    for (size_t i = old_size; i < sizeof u.bytes; ++i)
        if (u.bytes[i] != 0xa5) fail_msg("psh_map_options_init wrote byte %zu, past the 0.2 struct", i);
    /* psh_map_options_init_size: at most the size given, or this version's. */
    memset(&u, 0xa5, sizeof u);
    psh_map_options_init_size(&u.o, sizeof u.bytes);
    assert_int_equal(u.o.struct_size, sizeof(psh_map_options));
    assert_null(u.o.worker_begin);
    assert_null(u.o.worker_end);
    for (size_t i = sizeof(psh_map_options); i < sizeof u.bytes; ++i) assert_int_equal(u.bytes[i], 0xa5);
    memset(&u, 0xa5, sizeof u);
    psh_map_options_init_size(&u.o, 4); /* too small for schedule: nothing written */
    assert_int_equal(u.bytes[0], 0xa5);
    psh_map_options_init_size(NULL, sizeof u.o);

    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct fixture fx;
        setup_hooks(&fx, ctx, 50);
        reset(&fx, 50);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, 50), PSH_OK);
        psh_map_options o = hook_options(&fx, PSH_SCHEDULE_CONTEXT, 0);
        o.struct_size = old_size; /* the hooks lie beyond it */
        assert_int_equal(psh_map_ext(ctx, item, &fx.h, f, &o), PSH_OK);
        for (int w = 0; w < fx.h.num_workers; ++w) {
            assert_int_equal(row(&fx.h, w)[BEGINS], 0);
            assert_int_equal(row(&fx.h, w)[ENDS], 0);
        }
        for (size_t i = 0; i < 50; ++i) assert_true(fx.h.ran_by[i] >= 1);
        psh_functor_destroy(f);
        teardown(&fx);
        psh_context_destroy(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_hooks_run_once_per_worker_around_its_items),
        cmocka_unit_test(test_worker_hooks_wrap_the_functor_hooks),
        cmocka_unit_test(test_worker_hooks_failures_fail_the_map),
        cmocka_unit_test(test_worker_hooks_old_struct_size_means_no_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
