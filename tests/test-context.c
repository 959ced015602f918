/* Contexts: creation, options, reference counting, the default context. */
#include <sched.h>

#include "common.h"

static void test_context_create_each_kind(void **state)
{
    (void)state;
    static const psh_kind kinds[] = {PSH_SERIAL, PSH_THREADS, PSH_PROCESSES};
    for (int k = 0; k < 3; ++k)
        for (int w = 1; w <= 5; w += 2) {
            psh_context *ctx = NULL;
            assert_int_equal(psh_context_create(&ctx, kinds[k], w), PSH_OK);
            assert_non_null(ctx);
            assert_int_equal(psh_context_kind(ctx), kinds[k]);
            /* A serial context always has one worker. */
            assert_int_equal(psh_context_num_workers(ctx), kinds[k] == PSH_SERIAL ? 1 : w);
            assert_int_equal(psh_context_schedule(ctx), PSH_SCHEDULE_STATIC);
            psh_context_destroy(ctx);
        }
}

static void test_context_default_workers_come_from_env_then_affinity(void **state)
{
    (void)state;
    psh_context *ctx;
    setenv("PASHA_NUM_WORKERS", "3", 1);
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 0), PSH_OK);
    assert_int_equal(psh_context_num_workers(ctx), 3);
    psh_context_destroy(ctx);

    unsetenv("PASHA_NUM_WORKERS");
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    assert_int_equal(psh_context_create(&ctx, PSH_PROCESSES, -1), PSH_OK);
    assert_int_equal(psh_context_num_workers(ctx), CPU_COUNT(&set));
    psh_context_destroy(ctx);

    static const char *bad[] = {"abc", "0", "-2", "4097", "3x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        setenv("PASHA_NUM_WORKERS", bad[i], 1);
        ctx = NULL;
        assert_error(psh_context_create(&ctx, PSH_THREADS, 0), PSH_EINVAL, "PASHA_NUM_WORKERS");
        assert_null(ctx); /* out is untouched on failure */
    }
    setenv("PASHA_NUM_WORKERS", "2", 1);
}

static void test_context_bad_arguments(void **state)
{
    (void)state;
    psh_context *ctx = NULL;
    assert_error(psh_context_create(NULL, PSH_THREADS, 2), PSH_EINVAL, "out is NULL");
    assert_error(psh_context_create(&ctx, (psh_kind)42, 2), PSH_EINVAL, "unknown context kind 42");
    assert_error(psh_context_create(&ctx, PSH_MPI, 2), PSH_EINVAL, "psh_context_create_mpi");
    assert_error(psh_context_create(&ctx, PSH_THREADS, 4097), PSH_EINVAL, "4097");
    assert_null(ctx);

    psh_context_options o;
    psh_context_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_int_equal(o.kind, PSH_PROCESSES);
    assert_int_equal(o.schedule, PSH_SCHEDULE_STATIC);
    o.kind = PSH_THREADS;
    o.persistent = 1;
    assert_error(psh_context_create_ext(&ctx, &o), PSH_EINVAL, "persistent");
    psh_context_options_init(&o);
    o.schedule = (psh_schedule)7;
    assert_error(psh_context_create_ext(&ctx, &o), PSH_EINVAL, "schedule 7");
    psh_context_options_init(&o);
    o.struct_size = 3;
    assert_error(psh_context_create_ext(&ctx, &o), PSH_EINVAL, "psh_context_options_init");
    assert_error(psh_context_create_ext(NULL, NULL), PSH_EINVAL, "out is NULL");
    assert_null(ctx);
    psh_context_options_init(NULL); /* harmless */

    /* opts NULL: a fork-per-map processes context with the default workers. */
    assert_int_equal(psh_context_create_ext(&ctx, NULL), PSH_OK);
    assert_int_equal(psh_context_kind(ctx), PSH_PROCESSES);
    assert_int_equal(psh_context_num_workers(ctx), 2); /* PASHA_NUM_WORKERS=2 in the test env */
    psh_context_destroy(ctx);
}

static void test_context_options_are_kept(void **state)
{
    (void)state;
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = PSH_THREADS;
    o.num_workers = 3;
    o.schedule = PSH_SCHEDULE_GUIDED;
    o.chunk = 5;
    psh_context *ctx;
    assert_int_equal(psh_context_create_ext(&ctx, &o), PSH_OK);
    assert_int_equal(psh_context_kind(ctx), PSH_THREADS);
    assert_int_equal(psh_context_num_workers(ctx), 3);
    assert_int_equal(psh_context_schedule(ctx), PSH_SCHEDULE_GUIDED);
    psh_context_destroy(ctx);
}

static void test_context_reference_counting(void **state)
{
    (void)state;
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 2), PSH_OK);
    assert_ptr_equal(psh_context_reference(ctx), ctx);
    psh_context_destroy(ctx); /* one reference left: still usable */
    assert_int_equal(psh_context_num_workers(ctx), 2);
    psh_context_destroy(ctx);
    psh_context_destroy(NULL);
    assert_null(psh_context_reference(NULL));
    assert_int_equal(psh_context_num_workers(NULL), 0);
    assert_int_equal(psh_context_kind(NULL), PSH_SERIAL);
}

static void test_default_context_holds_its_own_reference(void **state)
{
    (void)state;
    psh_context *def = psh_get_default_context();
    assert_non_null(def);
    assert_int_equal(psh_context_kind(def), PSH_PROCESSES);
    assert_ptr_equal(psh_get_default_context(), def); /* made once */

    psh_context *mine;
    assert_int_equal(psh_context_create(&mine, PSH_SERIAL, 0), PSH_OK);
    assert_int_equal(psh_set_default_context(mine), PSH_OK);
    psh_context_destroy(mine); /* the default keeps it alive */
    assert_ptr_equal(psh_get_default_context(), mine);
    assert_int_equal(psh_context_kind(psh_get_default_context()), PSH_SERIAL);

    assert_error(psh_set_default_context(NULL), PSH_EINVAL, "ctx is NULL");
    assert_error(psh_set_default_kind((psh_kind)9, 1), PSH_EINVAL, "unknown context kind 9");
    assert_ptr_equal(psh_get_default_context(), mine); /* unchanged by the failures */
    assert_int_equal(psh_set_default_kind(PSH_PROCESSES, 0), PSH_OK);
    assert_int_equal(psh_context_kind(psh_get_default_context()), PSH_PROCESSES);
}

static void test_strerror_and_version(void **state)
{
    (void)state;
    static const struct { int code; const char *name; } codes[] = {
        {PSH_OK, "PSH_OK"}, {PSH_EINVAL, "PSH_EINVAL"}, {PSH_ENOMEM, "PSH_ENOMEM"},
        {PSH_ESYS, "PSH_ESYS"}, {PSH_EKERNEL, "PSH_EKERNEL"}, {PSH_EWORKER, "PSH_EWORKER"},
        {PSH_ECANCELED, "PSH_ECANCELED"}, {PSH_ENOTSUP, "PSH_ENOTSUP"}};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; ++i)
        assert_true(strncmp(psh_strerror(codes[i].code), codes[i].name, strlen(codes[i].name)) == 0 &&
                    psh_strerror(codes[i].code)[strlen(codes[i].name)] == ':');
    assert_string_equal(psh_strerror(-100), "unknown psh status code");
    assert_string_equal(psh_version(), PASHA_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_create_each_kind),
        cmocka_unit_test(test_context_default_workers_come_from_env_then_affinity),
        cmocka_unit_test(test_context_bad_arguments),
        cmocka_unit_test(test_context_options_are_kept),
        cmocka_unit_test(test_context_reference_counting),
        cmocka_unit_test(test_default_context_holds_its_own_reference),
        cmocka_unit_test(test_strerror_and_version),
    };
    return cmocka_run_group_tests_name("context", tests, NULL, NULL);
}
