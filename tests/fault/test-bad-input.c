/* Every public function, fed NULL, out-of-range and overflowing arguments:
 * the right code, a message naming the problem, no crash, outputs untouched. */
#include "../common.h"

static psh_context *ctx;
static psh_array *arr;
static psh_functor *fun;
static psh_array *out_a;
static psh_functor *out_f;
static psh_context *out_c;
static const size_t shape3[3] = {2, 3, 4};
static size_t big[2] = {SIZE_MAX / 4, 8};
static const size_t ones[32] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
/* Fits in size_t as a count of elements, not as bytes (16 each). */
static const size_t huge3[3] = {(size_t)1 << 20, (size_t)1 << 20, (size_t)1 << 20};

/* psh_context_create with the default workers, PASHA_NUM_WORKERS set to env. */
static int create_with_env(const char *env)
{
    const char *old = getenv("PASHA_NUM_WORKERS");
    char *saved = old ? strdup(old) : NULL;
    setenv("PASHA_NUM_WORKERS", env, 1);
    int rc = psh_context_create(&out_c, PSH_THREADS, 0);
    if (saved) {
        setenv("PASHA_NUM_WORKERS", saved, 1);
        free(saved);
    } else {
        unsetenv("PASHA_NUM_WORKERS");
    }
    return rc;
}

static int kern(void *u, int w, size_t i, const void *v)
{
    (void)u;
    (void)w;
    (void)i;
    (void)v;
    return 0;
}

static int bkern(void *u, int w, size_t b, size_t e)
{
    (void)u;
    (void)w;
    (void)b;
    (void)e;
    return 0;
}

static size_t len(void *s)
{
    (void)s;
    return 1;
}

static int get(void *s, size_t i, const void **v)
{
    (void)s;
    (void)i;
    *v = NULL;
    return 0;
}

#define CASE(name, expr, code, needle) \
    static int name(void) { return (expr); }
#include "bad-input-cases.h"
#undef CASE

struct bad_case {
    const char *name;
    int (*call)(void);
    int code;
    const char *needle;
};

static const struct bad_case cases[] = {
#define CASE(name, expr, code, needle) {#name, name, code, needle},
#include "bad-input-cases.h"
#undef CASE
};

static void test_every_function_rejects_bad_arguments(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        out_a = NULL;
        out_f = NULL;
        out_c = NULL;
        int rc = cases[i].call();
        if (rc != cases[i].code)
            fail_msg("%s: returned %d (%s), expected %d", cases[i].name, rc, psh_last_error(), cases[i].code);
        if (!strstr(psh_last_error(), cases[i].needle))
            fail_msg("%s: message \"%s\" does not say \"%s\"", cases[i].name, psh_last_error(), cases[i].needle);
        if (out_a || out_f || out_c) fail_msg("%s: an output was set on failure", cases[i].name);
        /* The same failure as data: the code, and no worker, item or callback. */
        psh_error_info info;
        memset(&info, 0x5a, sizeof info);
        info.struct_size = sizeof info;
        if (psh_last_error_info(&info) != PSH_OK || info.code != cases[i].code || info.worker_id != -1 ||
            info.index != -1 || info.signal != 0 || info.exit_status != -1 || info.callback != NULL ||
            info.message != psh_last_error())
            fail_msg("%s: psh_last_error_info has code %d worker %d index %lld callback %s", cases[i].name, info.code,
                     info.worker_id, info.index, info.callback ? info.callback : "(null)");
    }
    printf("# %zu bad calls rejected with the right code and message\n", sizeof cases / sizeof *cases);
}

static void test_null_is_harmless_everywhere_it_is_allowed(void **state)
{
    (void)state;
    psh_context_destroy(NULL);
    psh_array_free(NULL);
    psh_functor_destroy(NULL);
    psh_context_options_init(NULL);
    psh_alloc_options_init(NULL);
    psh_map_options_init(NULL);
    assert_null(psh_context_reference(NULL));
    assert_int_equal(psh_context_num_workers(NULL), 0);
    assert_int_equal(psh_functor_length(NULL), 0);
    assert_null(psh_array_data(NULL));
    assert_int_equal(psh_array_ndim(NULL), 0);
    assert_non_null(psh_strerror(12345));
    assert_non_null(psh_last_error());
    assert_non_null(psh_version());
    /* psh_last_error_info: NULL or a struct too small for code is refused,
     * never written through. */
    assert_int_equal(psh_last_error_info(NULL), PSH_EINVAL);
    psh_error_info tiny = {0, 77, 0, 0, 0, 0, NULL, NULL};
    assert_int_equal(psh_last_error_info(&tiny), PSH_EINVAL);
    assert_int_equal(tiny.code, 77);
}

static int setup(void **state)
{
    (void)state;
    if (psh_context_create(&ctx, PSH_THREADS, 2) != PSH_OK) return 1;
    if (psh_alloc(&arr, ctx, PSH_FLOAT32, 3, shape3, NULL) != PSH_OK) return 1;
    return psh_functor_range(&fun, 10);
}

static int teardown(void **state)
{
    (void)state;
    psh_functor_destroy(fun);
    psh_array_free(arr);
    psh_context_destroy(ctx);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_function_rejects_bad_arguments),
        cmocka_unit_test(test_null_is_harmless_everywhere_it_is_allowed),
    };
    return cmocka_run_group_tests_name("fault-bad-input", tests, setup, teardown);
}
