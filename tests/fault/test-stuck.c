/* A kernel that never returns (a stuck read, an endless loop) cannot hang a
 * cancelled map in a processes context: the library stops the workers that
 * do not come back (SIGKILL about 1 s after the cancel), psh_map returns
 * PSH_ECANCELED, no worker is left behind and the context maps again. Prints
 * how long the cancel took. 5 times in a row, fork-per-map and pool. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common.h"

#include "fault.h"

struct stuck {
    int32_t *pids; /* shared: the pid of each worker */
    int32_t *out;  /* shared: results */
    int stuck;     /* make worker 1 hang at its first item */
};

static int maybe_hang(void *ud, int worker_id, size_t index, const void *value)
{
    struct stuck *s = ud;
    (void)value;
    s->pids[worker_id] = (int32_t)getpid();
    if (s->stuck && worker_id == 1)
        for (;;) pause(); /* never returns on its own */
    s->out[index] = (int32_t)(3 * index + 2);
    return 0;
}

static volatile int cancel_flag;

static void *cancel_soon(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    __atomic_store_n(&cancel_flag, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_stuck_worker_cannot_hang_a_cancelled_map(void **state)
{
    (void)state;
    const size_t n = 64;
    for (int persistent = 0; persistent <= 1; ++persistent) {
        struct ctx_config cfg = {persistent ? "pool-2" : "processes-2", PSH_PROCESSES, 2, persistent,
                                 PSH_SCHEDULE_STATIC, 0};
        psh_context *ctx = make_context(&cfg);
        psh_array *pids, *out;
        size_t two = 2;
        assert_int_equal(psh_alloc(&pids, ctx, PSH_INT32, 1, &two, NULL), PSH_OK);
        assert_int_equal(psh_alloc(&out, ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
        psh_functor *f;
        assert_int_equal(psh_functor_range(&f, n), PSH_OK);
        double worst = 0, sum = 0;
        for (int rep = 0; rep < 5; ++rep) {
            struct stuck s = {psh_array_data(pids), psh_array_data(out), 1};
            memset(s.pids, 0, 2 * sizeof *s.pids);
            psh_map_options o;
            psh_map_options_init(&o);
            o.cancel = &cancel_flag;
            o.user_data_size = sizeof s; /* s lives on the stack: the pool needs a copy */
            cancel_flag = 0;
            pthread_t t;
            pthread_create(&t, NULL, cancel_soon, NULL);
            double t0 = now_s();
            int rc = psh_map_ext(ctx, maybe_hang, &s, f, &o);
            double took = now_s() - t0;
            pthread_join(t, NULL);
            if (rc != PSH_ECANCELED) fail_msg("%s: rc %d (%s)", cfg.name, rc, psh_last_error());
            /* The stuck worker is gone: no process left hanging in pause(). */
            assert_true(s.pids[1] > 0);
            for (int i = 0; i < 200 && alive(s.pids[1]); ++i) usleep(1000);
            if (alive(s.pids[1])) fail_msg("%s: the stuck worker %d is still alive", cfg.name, (int)s.pids[1]);
            if (!persistent) {
                errno = 0;
                assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
                assert_int_equal(errno, ECHILD);
            }
            assert_int_equal(count_psh_shm(), 0);
            /* The context maps again, in full. */
            s.stuck = 0;
            memset(s.out, 0, n * sizeof *s.out);
            assert_int_equal(map_copy(ctx, maybe_hang, &s, sizeof s, f), PSH_OK);
            for (size_t i = 0; i < n; ++i) assert_int_equal(s.out[i], (int32_t)(3 * i + 2));
            sum += took;
            if (took > worst) worst = took;
        }
        printf("# %s: a cancelled map with a stuck kernel returned PSH_ECANCELED after mean %.2f s, max %.2f s "
               "(cancel set at 0.10 s)\n",
               cfg.name, sum / 5, worst);
        psh_functor_destroy(f);
        psh_array_free(out);
        psh_array_free(pids);
        psh_context_destroy(ctx);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuck_worker_cannot_hang_a_cancelled_map),
    };
    return cmocka_run_group_tests_name("fault-stuck", tests, NULL, NULL);
}
