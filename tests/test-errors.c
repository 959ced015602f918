/* Errors as data: psh_last_error_info in every kind, for every way a map
 * fails (kernel, get, block kernel, functor worker_begin, a worker process
 * killed by a signal or exiting, cancel, bad arguments), checked against
 * what the workers recorded themselves; success resets the code; an older,
 * smaller struct gets only the fields it has. */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common.h"

static const size_t kN = 100;
static const size_t kFailAt = 13;

/* What the workers record in shared memory: who ran an index (worker + 1,
 * 0: nobody), and the block start of the failing block. */
struct record {
    int32_t ran_by[100];
    int64_t fail_begin;
    int32_t cancel;
    int what; /* what the kernel does at kFailAt */
};

enum { DO_RETURN, DO_SEGV, DO_KILL, DO_EXIT, DO_CANCEL, DO_NOTHING };

struct shared {
    psh_array *mem;
    struct record *r;
};

static struct shared make_shared(psh_context *ctx, int what)
{
    struct shared s;
    size_t size = sizeof(struct record);
    assert_int_equal(psh_alloc(&s.mem, ctx, PSH_UINT8, 1, &size, NULL), PSH_OK);
    s.r = psh_array_data(s.mem);
    s.r->fail_begin = -1;
    s.r->what = what;
    return s;
}

static int failing_kernel(void *ud, int worker_id, size_t index, const void *value)
{
    struct record *r = ud;
    (void)value;
    r->ran_by[index] = worker_id + 1;
    /* After a cancel, slow down: process workers learn of it from the
     * caller, which checks the flag every few milliseconds. */
    if (r->what == DO_CANCEL && __atomic_load_n(&r->cancel, __ATOMIC_SEQ_CST)) usleep(2000);
    if (index != kFailAt) return 0;
    switch (r->what) {
    case DO_SEGV: raise(SIGSEGV); break;
    case DO_KILL: raise(SIGKILL); break;
    case DO_EXIT: _exit(3);
    case DO_CANCEL: __atomic_store_n(&r->cancel, 1, __ATOMIC_SEQ_CST); return 0;
    case DO_NOTHING: return 0;
    default: break;
    }
    return 7;
}

static int failing_block_kernel(void *ud, int worker_id, size_t begin, size_t end)
{
    struct record *r = ud;
    for (size_t i = begin; i < end; ++i) r->ran_by[i] = worker_id + 1;
    if (begin <= kFailAt && kFailAt < end) {
        r->fail_begin = (int64_t)begin;
        return 7;
    }
    return 0;
}

static psh_error_info info_now(void)
{
    psh_error_info info;
    memset(&info, 0x5a, sizeof info); /* every field must be written */
    info.struct_size = sizeof info;
    assert_int_equal(psh_last_error_info(&info), PSH_OK);
    assert_ptr_equal(info.message, psh_last_error());
    return info;
}

/* The map failed at kFailAt in worker ran_by[kFailAt] - 1, in callback. */
static void expect_item_failure(const char *name, int code, const char *callback, long long index,
                                const struct record *r)
{
    psh_error_info info = info_now();
    if (info.code != code) fail_msg("%s: code %d, expected %d (%s)", name, info.code, code, info.message);
    if (info.index != index) fail_msg("%s: index %lld, expected %lld", name, info.index, index);
    if (info.worker_id != r->ran_by[kFailAt] - 1 || info.worker_id < 0)
        fail_msg("%s: worker_id %d, but worker %d ran index %zu", name, info.worker_id, r->ran_by[kFailAt] - 1,
                 kFailAt);
    if ((callback == NULL) != (info.callback == NULL) || (callback && strcmp(info.callback, callback) != 0))
        fail_msg("%s: callback %s, expected %s", name, info.callback ? info.callback : "NULL",
                 callback ? callback : "NULL");
    assert_int_equal(info.signal, 0);
    assert_int_equal(info.exit_status, -1);
}

static void test_error_info_kernel_return_names_worker_index_and_callback(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct shared s = make_shared(ctx, DO_RETURN);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, kN), PSH_OK);
        assert_error(psh_map(ctx, failing_kernel, s.r, f), PSH_EKERNEL, "the kernel returned 7 at index 13");
        expect_item_failure(cfg->name, PSH_EKERNEL, "kernel", (long long)kFailAt, s.r);
        /* A later success in the same thread resets the code and the fields. */
        struct record *r = s.r;
        r->what = DO_NOTHING;
        for (size_t i = 0; i < kN; ++i) r->ran_by[i] = 0;
        assert_int_equal(psh_map(ctx, failing_kernel, r, f), PSH_OK);
        for (size_t i = 0; i < kN; ++i)
            if (r->ran_by[i] < 1 || r->ran_by[i] > cfg->workers) fail_msg("%s: index %zu not run", cfg->name, i);
        psh_error_info info = info_now();
        assert_int_equal(info.code, 0);
        assert_int_equal(info.worker_id, -1);
        assert_int_equal(info.index, -1);
        assert_int_equal(info.signal, 0);
        assert_int_equal(info.exit_status, -1);
        assert_null(info.callback);
        assert_non_null(strstr(info.message, "the kernel returned 7")); /* the text stays */
        psh_functor_destroy(f);
        psh_array_free(s.mem);
        psh_context_destroy(ctx);
    }
}

/* A custom functor whose get fails at kFailAt (no worker id reaches get:
 * with the static schedule, the worker whose share holds it). */
static size_t fn_length(void *self)
{
    (void)self;
    return kN;
}
static int fn_get(void *self, size_t index, const void **value)
{
    (void)self;
    *value = NULL;
    return index == kFailAt ? 5 : 0;
}
static int fn_begin_fails(void *self, int worker_id)
{
    struct record *r = self;
    __atomic_store_n(&r->fail_begin, worker_id, __ATOMIC_SEQ_CST); /* the last worker whose begin ran (all fail) */
    return 21;
}

static void test_error_info_functor_get_and_worker_begin(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct shared s = make_shared(ctx, DO_RETURN);
        psh_functor_vtable vt;
        memset(&vt, 0, sizeof vt);
        vt.struct_size = sizeof vt;
        vt.length = fn_length;
        vt.get = fn_get;
        psh_functor *f;
        assert_int_equal(psh_functor_custom(&f, &vt, s.r), PSH_OK);
        psh_map_options o;
        psh_map_options_init(&o);
        o.schedule = PSH_SCHEDULE_STATIC;
        assert_error(psh_map_ext(ctx, failing_kernel, s.r, f, &o), PSH_EKERNEL, "get returned 5 at index 13");
        /* Index 13 is in worker w's share [w*n/W, (w+1)*n/W). */
        int owner = 0;
        for (int w = 0; w < cfg->workers; ++w)
            if ((size_t)w * kN / (size_t)cfg->workers <= kFailAt) owner = w;
        s.r->ran_by[kFailAt] = owner + 1;
        expect_item_failure(cfg->name, PSH_EKERNEL, "get", (long long)kFailAt, s.r);
        psh_functor_destroy(f);

        for (size_t i = 0; i < kN; ++i) s.r->ran_by[i] = 0;
        vt.worker_begin = fn_begin_fails;
        assert_int_equal(psh_functor_custom(&f, &vt, s.r), PSH_OK);
        assert_error(psh_map(ctx, failing_kernel, s.r, f), PSH_EKERNEL, "worker_begin returned 21");
        psh_error_info info = info_now();
        assert_int_equal(info.code, PSH_EKERNEL);
        assert_string_equal(info.callback, "functor_worker_begin");
        assert_int_equal(info.index, -1);
        if (info.worker_id < 0 || info.worker_id >= cfg->workers) fail_msg("%s: worker_id %d", cfg->name, info.worker_id);
        if (cfg->workers == 1) assert_int_equal(info.worker_id, s.r->fail_begin);
        for (size_t i = 0; i < kN; ++i) assert_int_equal(s.r->ran_by[i], 0); /* no item ran */
        psh_functor_destroy(f);
        psh_array_free(s.mem);
        psh_context_destroy(ctx);
    }
}

static void test_error_info_block_kernel_reports_block_start(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct shared s = make_shared(ctx, DO_RETURN);
        assert_error(psh_map_blocks(ctx, failing_block_kernel, s.r, kN), PSH_EKERNEL, "the block kernel returned 7");
        assert_true(s.r->fail_begin >= 0 && s.r->fail_begin <= (int64_t)kFailAt);
        expect_item_failure(cfg->name, PSH_EKERNEL, "block_kernel", (long long)s.r->fail_begin, s.r);
        psh_array_free(s.mem);
        psh_context_destroy(ctx);
    }
}

/* Worker processes that die: by a signal they raise on themselves, or by
 * _exit(3), in fork-per-map and pool contexts. */
static void test_error_info_dead_worker_signal_and_exit_status(void **state)
{
    (void)state;
    const int whats[] = {DO_SEGV, DO_KILL, DO_EXIT};
    const int signals[] = {SIGSEGV, SIGKILL, 0};
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k) || all_configs[k].kind != PSH_PROCESSES) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, kN), PSH_OK);
        for (int j = 0; j < 3; ++j) {
            struct shared s = make_shared(ctx, whats[j]);
            assert_int_equal(psh_map(ctx, failing_kernel, s.r, f), PSH_EWORKER);
            psh_error_info info = info_now();
            assert_int_equal(info.code, PSH_EWORKER);
            if (info.worker_id != s.r->ran_by[kFailAt] - 1)
                fail_msg("%s: worker_id %d, worker %d ran index 13 (%s)", cfg->name, info.worker_id,
                         s.r->ran_by[kFailAt] - 1, info.message);
            assert_int_equal(info.index, (long long)kFailAt);
            assert_int_equal(info.signal, signals[j]);
            assert_int_equal(info.exit_status, whats[j] == DO_EXIT ? 3 : -1);
            assert_null(info.callback);
            psh_array_free(s.mem);
        }
        /* The context still works (dead pool workers are replaced). */
        struct shared s = make_shared(ctx, DO_NOTHING);
        assert_int_equal(psh_map(ctx, failing_kernel, s.r, f), PSH_OK);
        assert_int_equal(info_now().code, 0);
        psh_array_free(s.mem);
        psh_functor_destroy(f);
        psh_context_destroy(ctx);
    }
}

static void test_error_info_cancel_has_no_worker_or_index(void **state)
{
    (void)state;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        const struct ctx_config *cfg = &all_configs[k];
        psh_context *ctx = make_context(cfg);
        struct shared s = make_shared(ctx, DO_CANCEL);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, kN), PSH_OK);
        psh_map_options o;
        psh_map_options_init(&o);
        o.cancel = &s.r->cancel;
        int rc = psh_map_ext(ctx, failing_kernel, s.r, f, &o);
        if (rc != PSH_ECANCELED) fail_msg("%s: rc %d (%s)", cfg->name, rc, psh_last_error());
        psh_error_info info = info_now();
        assert_int_equal(info.code, PSH_ECANCELED);
        assert_int_equal(info.worker_id, -1);
        assert_int_equal(info.index, -1);
        assert_int_equal(info.signal, 0);
        assert_int_equal(info.exit_status, -1);
        assert_null(info.callback);
        /* Cancelled before it started: the same. */
        assert_error(psh_map_ext(ctx, failing_kernel, s.r, f, &o), PSH_ECANCELED, "before it started");
        info = info_now();
        assert_int_equal(info.code, PSH_ECANCELED);
        assert_int_equal(info.worker_id, -1);
        assert_int_equal(info.index, -1);
        psh_functor_destroy(f);
        psh_array_free(s.mem);
        psh_context_destroy(ctx);
    }
}

static void expect_plain(int code, const char *needle)
{
    psh_error_info info = info_now();
    assert_int_equal(info.code, code);
    assert_int_equal(info.worker_id, -1);
    assert_int_equal(info.index, -1);
    assert_int_equal(info.signal, 0);
    assert_int_equal(info.exit_status, -1);
    assert_null(info.callback);
    if (!strstr(info.message, needle)) fail_msg("message \"%s\" lacks \"%s\"", info.message, needle);
}

static void test_error_info_invalid_arguments_have_no_worker(void **state)
{
    (void)state;
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, 10), PSH_OK);
    assert_int_equal(psh_map(NULL, NULL, NULL, f), PSH_EINVAL);
    expect_plain(PSH_EINVAL, "psh_map: kernel is NULL");
    psh_functor_destroy(f);
    assert_int_equal(psh_functor_range(&f, 10), PSH_OK); /* success in between */
    assert_int_equal(info_now().code, 0);
    psh_functor_destroy(f);
    psh_array *a;
    size_t shape[1] = {4};
    assert_int_equal(psh_alloc(&a, NULL, PSH_FLOAT64, 40, shape, NULL), PSH_EINVAL);
    expect_plain(PSH_EINVAL, "ndim 40");
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, (psh_kind)17, 2), PSH_EINVAL);
    expect_plain(PSH_EINVAL, "unknown context kind 17");
}

static void test_error_info_struct_size_old_and_too_small(void **state)
{
    (void)state;
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, kN), PSH_OK);
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 2), PSH_OK);
    struct shared s = make_shared(ctx, DO_RETURN);
    assert_int_equal(psh_map(ctx, failing_kernel, s.r, f), PSH_EKERNEL);

    /* NULL and a struct_size that cannot hold code: PSH_EINVAL, and the
     * thread's error state is left alone. */
    assert_int_equal(psh_last_error_info(NULL), PSH_EINVAL);
    psh_error_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = offsetof(psh_error_info, code) + sizeof(int) - 1;
    assert_int_equal(psh_last_error_info(&info), PSH_EINVAL);
    assert_int_equal(info.code, 0);
    assert_non_null(strstr(psh_last_error(), "the kernel returned 7"));

    /* A caller built against a struct that ended after worker_id: those two
     * fields are filled, nothing past them is touched. */
    memset(&info, 0x5a, sizeof info);
    info.struct_size = offsetof(psh_error_info, index);
    assert_int_equal(psh_last_error_info(&info), PSH_OK);
    assert_int_equal(info.code, PSH_EKERNEL);
    assert_int_equal(info.worker_id, s.r->ran_by[kFailAt] - 1);
    unsigned char poison[sizeof info];
    memset(poison, 0x5a, sizeof poison);
    assert_memory_equal((unsigned char *)&info + offsetof(psh_error_info, index),
                        poison + offsetof(psh_error_info, index), sizeof info - offsetof(psh_error_info, index));
    /* A larger (future) struct_size fills every field this version has. */
    struct {
        psh_error_info info;
        char future[32];
    } big;
    memset(&big, 0x5a, sizeof big);
    big.info.struct_size = sizeof big;
    assert_int_equal(psh_last_error_info(&big.info), PSH_OK);
    assert_int_equal(big.info.index, (long long)kFailAt);
    assert_string_equal(big.info.callback, "kernel");
    assert_memory_equal(big.future, poison, sizeof big.future);
    psh_array_free(s.mem);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
}

/* Thread-local: another thread's failure does not show here, and vice versa. */
static void *fail_in_thread(void *arg)
{
    psh_functor *f = NULL;
    (void)arg;
    psh_map(NULL, NULL, NULL, f);
    psh_error_info info;
    info.struct_size = sizeof info;
    psh_last_error_info(&info);
    return (void *)(intptr_t)info.code;
}

static void test_error_info_is_thread_local(void **state)
{
    (void)state;
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, 3), PSH_OK);
    pthread_t t;
    void *code;
    assert_int_equal(pthread_create(&t, NULL, fail_in_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &code), 0);
    assert_int_equal((int)(intptr_t)code, PSH_EINVAL);
    assert_int_equal(info_now().code, 0);
    psh_functor_destroy(f);
}

int main(void)
{
    /* Workers that raise SIGSEGV must not write core files. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_info_kernel_return_names_worker_index_and_callback),
        cmocka_unit_test(test_error_info_functor_get_and_worker_begin),
        cmocka_unit_test(test_error_info_block_kernel_reports_block_start),
        cmocka_unit_test(test_error_info_dead_worker_signal_and_exit_status),
        cmocka_unit_test(test_error_info_cancel_has_no_worker_or_index),
        cmocka_unit_test(test_error_info_invalid_arguments_have_no_worker),
        cmocka_unit_test(test_error_info_struct_size_old_and_too_small),
        cmocka_unit_test(test_error_info_is_thread_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
