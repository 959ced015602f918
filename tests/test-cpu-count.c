/* psh_cpu_count: PASHA_NUM_WORKERS overrides everything, SLURM_CPUS_PER_TASK
 * lowers the count, malformed values are PSH_EINVAL naming the variable, and
 * every default worker count in the engine is this number. The parts that
 * need taskset and a cgroup with a CPU quota are in fault/cpu-count.sh,
 * which runs this program as `test-cpu-count --print`. */
#include <sched.h>

#include "common.h"

static int affinity_cpus(void)
{
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    return CPU_COUNT(&set);
}

static void clear_env(void)
{
    unsetenv("PASHA_NUM_WORKERS");
    unsetenv("SLURM_CPUS_PER_TASK");
}

static void test_cpu_count_is_at_most_the_affinity_mask(void **state)
{
    (void)state;
    clear_env();
    int n = psh_cpu_count();
    assert_true(n >= 1);
    assert_true(n <= affinity_cpus());
    psh_error_info info;
    info.struct_size = sizeof info;
    assert_int_equal(psh_last_error_info(&info), PSH_OK);
    assert_int_equal(info.code, 0);
}

static void test_cpu_count_pasha_num_workers_overrides_everything(void **state)
{
    (void)state;
    clear_env();
    setenv("PASHA_NUM_WORKERS", "3", 1);
    setenv("SLURM_CPUS_PER_TASK", "1", 1); /* overridden too */
    assert_int_equal(psh_cpu_count(), 3);
    setenv("PASHA_NUM_WORKERS", "4096", 1);
    assert_int_equal(psh_cpu_count(), 4096);
    clear_env();
}

static void test_cpu_count_slurm_cpus_per_task_lowers_it(void **state)
{
    (void)state;
    clear_env();
    int plain = psh_cpu_count();
    setenv("SLURM_CPUS_PER_TASK", "1", 1);
    assert_int_equal(psh_cpu_count(), 1);
    setenv("SLURM_CPUS_PER_TASK", "4000", 1); /* more than we have: no effect */
    assert_int_equal(psh_cpu_count(), plain);
    setenv("SLURM_CPUS_PER_TASK", "", 1); /* set but empty: as unset */
    assert_int_equal(psh_cpu_count(), plain);
    clear_env();
}

static void test_cpu_count_malformed_values_name_the_variable(void **state)
{
    (void)state;
    const char *bad[] = {"abc", "0", "-2", "3x", " 3", "4097", "99999999999999999999", "+2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        clear_env();
        setenv("PASHA_NUM_WORKERS", bad[i], 1);
        assert_error(psh_cpu_count(), PSH_EINVAL, "PASHA_NUM_WORKERS");
        if (!strstr(psh_last_error(), bad[i])) fail_msg("\"%s\" does not quote '%s'", psh_last_error(), bad[i]);
        psh_error_info info;
        info.struct_size = sizeof info;
        assert_int_equal(psh_last_error_info(&info), PSH_OK);
        assert_int_equal(info.code, PSH_EINVAL);
        /* The same error from a context made with the default count. */
        psh_context *ctx = NULL;
        assert_error(psh_context_create(&ctx, PSH_THREADS, 0), PSH_EINVAL, "PASHA_NUM_WORKERS");
        assert_null(ctx);

        clear_env();
        setenv("SLURM_CPUS_PER_TASK", bad[i], 1);
        assert_error(psh_cpu_count(), PSH_EINVAL, "SLURM_CPUS_PER_TASK");
        if (!strstr(psh_last_error(), bad[i])) fail_msg("\"%s\" does not quote '%s'", psh_last_error(), bad[i]);
        assert_error(psh_context_create(&ctx, PSH_PROCESSES, 0), PSH_EINVAL, "SLURM_CPUS_PER_TASK");
        /* A given worker count needs no default: no error. */
        assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 2), PSH_OK);
        assert_int_equal(psh_context_num_workers(ctx), 2);
        psh_context_destroy(ctx);
    }
    clear_env();
}

static void test_cpu_count_is_every_default_worker_count(void **state)
{
    (void)state;
    clear_env();
    setenv("SLURM_CPUS_PER_TASK", "1", 1);
    const psh_kind kinds[] = {PSH_THREADS, PSH_PROCESSES};
    for (int k = 0; k < 2; ++k) {
        psh_context *ctx;
        assert_int_equal(psh_context_create(&ctx, kinds[k], 0), PSH_OK);
        assert_int_equal(psh_context_num_workers(ctx), 1);
        psh_context_destroy(ctx);
        psh_context_options o;
        psh_context_options_init(&o);
        o.kind = kinds[k];
        o.num_workers = -1;
        o.persistent = kinds[k] == PSH_PROCESSES;
        assert_int_equal(psh_context_create_ext(&ctx, &o), PSH_OK);
        assert_int_equal(psh_context_num_workers(ctx), 1);
        psh_context_destroy(ctx);
    }
    setenv("PASHA_NUM_WORKERS", "3", 1);
    assert_int_equal(psh_set_default_kind(PSH_THREADS, 0), PSH_OK);
    assert_int_equal(psh_context_num_workers(psh_get_default_context()), 3);
    clear_env();
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print") == 0) {
        int n = psh_cpu_count();
        printf("%d %s\n", n, n < 0 ? psh_last_error() : "");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_count_is_at_most_the_affinity_mask),
        cmocka_unit_test(test_cpu_count_pasha_num_workers_overrides_everything),
        cmocka_unit_test(test_cpu_count_slurm_cpus_per_task_lowers_it),
        cmocka_unit_test(test_cpu_count_malformed_values_name_the_variable),
        cmocka_unit_test(test_cpu_count_is_every_default_worker_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
