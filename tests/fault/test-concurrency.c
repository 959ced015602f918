/* Several threads mapping at once: each on its own context, and two on one
 * context (psh_map serializes them). Every result is checked. */
#include <pthread.h>

#include "../common.h"

#define N 20000
#define ROUNDS 30

struct job {
    psh_context *ctx;
    psh_functor *f;
    int64_t *out;
    int64_t salt;
    int failures;
};

static int write_salted(void *ud, int worker_id, size_t index, const void *value)
{
    const struct job *j = ud;
    (void)worker_id;
    (void)value;
    j->out[index] = (int64_t)index * 3 + j->salt;
    return 0;
}

static void *mapper(void *arg)
{
    struct job *j = arg;
    for (int r = 0; r < ROUNDS; ++r) {
        j->salt += 1;
        if (map_copy(j->ctx, write_salted, j, sizeof *j, j->f) != PSH_OK) {
            j->failures += 1;
            continue;
        }
        for (size_t i = 0; i < N; ++i)
            if (j->out[i] != (int64_t)i * 3 + j->salt) {
                j->failures += 1;
                break;
            }
    }
    return NULL;
}

static void run_threads(psh_context **ctxs, int nthreads)
{
    struct job jobs[8];
    pthread_t t[8];
    psh_array *outs[8];
    psh_functor *f;
    size_t n = N;
    assert_int_equal(psh_functor_range(&f, N), PSH_OK);
    for (int i = 0; i < nthreads; ++i) {
        assert_int_equal(psh_alloc(&outs[i], NULL, PSH_INT64, 1, &n, NULL), PSH_OK);
        jobs[i] = (struct job){ctxs[i], f, psh_array_data(outs[i]), 1000 * i, 0};
    }
    for (int i = 0; i < nthreads; ++i) pthread_create(&t[i], NULL, mapper, &jobs[i]);
    for (int i = 0; i < nthreads; ++i) pthread_join(t[i], NULL);
    for (int i = 0; i < nthreads; ++i) {
        if (jobs[i].failures) fail_msg("thread %d: %d failed rounds (%s)", i, jobs[i].failures, psh_last_error());
        psh_array_free(outs[i]);
    }
    psh_functor_destroy(f);
}

static void test_threads_map_at_once_on_their_own_contexts(void **state)
{
    (void)state;
    psh_context *ctxs[6];
    static const int pick[6] = {0, 2, 3, 5, 7, 8}; /* serial, threads, dynamic threads, fork, pools */
    for (int i = 0; i < 6; ++i) ctxs[i] = make_context(&all_configs[pick[i]]);
    run_threads(ctxs, 6);
    for (int i = 0; i < 6; ++i) psh_context_destroy(ctxs[i]);
}

static void test_threads_map_at_once_on_one_context(void **state)
{
    (void)state;
    static const int pick[3] = {2, 5, 7}; /* threads, fork, pool */
    for (int k = 0; k < 3; ++k) {
        psh_context *ctx = make_context(&all_configs[pick[k]]);
        psh_context *ctxs[4] = {ctx, ctx, ctx, ctx};
        run_threads(ctxs, 4);
        psh_context_destroy(ctx);
    }
}

static void *alloc_free_loop(void *arg)
{
    int *failures = arg;
    for (int r = 0; r < 200; ++r) {
        size_t n = 1000 + (size_t)r * 37;
        psh_array *a;
        if (psh_alloc(&a, NULL, PSH_INT32, 1, &n, NULL) != PSH_OK) {
            *failures += 1;
            continue;
        }
        int32_t *d = psh_array_data(a);
        for (size_t i = 0; i < n; ++i) *failures += d[i] != 0; /* fresh memory is zero */
        for (size_t i = 0; i < n; ++i) d[i] = (int32_t)i;
        psh_array_free(a);
    }
    return NULL;
}

static void test_threads_allocate_and_free_at_once(void **state)
{
    (void)state;
    pthread_t t[4];
    int failures[4] = {0};
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, alloc_free_loop, &failures[i]);
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; ++i) assert_int_equal(failures[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_map_at_once_on_their_own_contexts),
        cmocka_unit_test(test_threads_map_at_once_on_one_context),
        cmocka_unit_test(test_threads_allocate_and_free_at_once),
    };
    return cmocka_run_group_tests_name("fault-concurrency", tests, NULL, NULL);
}
