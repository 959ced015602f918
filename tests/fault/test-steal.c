/* A persistent pool's idle worker takes the share of a worker that has not
 * started (issue 24): the share runs under its own worker id, in the taking
 * process; never for a map with worker hooks (they run in the worker's own
 * process); a death inside a taken share is reported with that share's
 * worker id and index; a worker whose shares others take, and which died
 * unseen, is still replaced. Workers are held with SIGSTOP: a stopped
 * process is one that has not started, whatever the machine's load. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity */
#endif
#include <dirent.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "../common.h"

#include "fault.h"

enum { N = 1000 };

struct rec {
    int32_t *pid;      /* shared, N: the process that ran item i */
    int32_t *id;       /* shared, N: the worker id item i got */
    int32_t *hook_pid; /* shared, 2: the process worker_begin ran in, by id */
    size_t die_at;     /* the item whose runner kills itself (SIZE_MAX: none) */
    int32_t die_in;    /* ... if it runs in this process */
};

/* getpid() once per process: a system call per item would make every map
 * long enough for the caller to sleep and watch all its workers. */
static pid_t cached_pid;

static pid_t my_pid(void)
{
    if (!cached_pid) cached_pid = getpid(); /* the caller never runs it: forks copy 0 */
    return cached_pid;
}

static int record(void *ud, int worker_id, size_t index, const void *value)
{
    struct rec *r = ud;
    (void)value;
    if (index == r->die_at && my_pid() == r->die_in) raise(SIGKILL);
    r->pid[index] = (int32_t)my_pid();
    r->id[index] = worker_id;
    return 0;
}

static int hook_begin(void *ud, int worker_id)
{
    struct rec *r = ud;
    r->hook_pid[worker_id] = (int32_t)getpid();
    return 0;
}

static int run(psh_context *ctx, struct rec *r, psh_functor *f, int hooks)
{
    psh_map_options o;
    psh_map_options_init(&o);
    o.user_data_size = sizeof *r;
    if (hooks) o.worker_begin = hook_begin;
    memset(r->pid, 0, N * sizeof *r->pid);
    memset(r->id, 0xff, N * sizeof *r->id);
    return psh_map_ext(ctx, record, r, f, &o);
}

/* SIGCONT a stopped worker after a while: without the change under test a
 * map would wait for it; with this it returns, and the assertions on who ran
 * what fail instead of the test hanging. */
struct cont {
    pid_t pid;
    int ms;
};

static void *cont_later(void *arg)
{
    struct cont *c = arg;
    struct timespec ts = {c->ms / 1000, (long)(c->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    kill(c->pid, SIGCONT);
    return NULL;
}

/* Live (non-zombie) children of this process, over all its threads; their
 * pids into out (at most max). */
static int live_children(pid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)getpid());
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char cpath[512];
        snprintf(cpath, sizeof cpath, "%s/%s/children", path, e->d_name);
        FILE *fp = fopen(cpath, "r");
        if (!fp) continue;
        int pid;
        while (fscanf(fp, "%d", &pid) == 1)
            if (alive(pid) && n < max) out[n++] = pid;
        fclose(fp);
    }
    closedir(d);
    return n;
}

struct fixture {
    psh_context *ctx;
    psh_array *pid, *id, *hook_pid;
    psh_functor *f;
    struct rec r;
    pid_t p[2]; /* the pool's processes, by worker id */
};

static void setup_pinned(struct fixture *x, int pin)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = PSH_PROCESSES;
    o.num_workers = 2;
    o.persistent = 1;
    o.pin_cpus = pin;
    x->ctx = NULL;
    assert_int_equal(psh_context_create_ext(&x->ctx, &o), PSH_OK);
    size_t n = N, two = 2;
    assert_int_equal(psh_alloc(&x->pid, x->ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&x->id, x->ctx, PSH_INT32, 1, &n, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&x->hook_pid, x->ctx, PSH_INT32, 1, &two, NULL), PSH_OK);
    assert_int_equal(psh_functor_range(&x->f, N), PSH_OK);
    x->r = (struct rec){psh_array_data(x->pid), psh_array_data(x->id), psh_array_data(x->hook_pid), SIZE_MAX, 0};
    /* With a hook each share runs in its own process: learn the pids. */
    assert_int_equal(run(x->ctx, &x->r, x->f, 1), PSH_OK);
    for (int w = 0; w < 2; ++w) {
        x->p[w] = x->r.hook_pid[w];
        assert_true(x->p[w] > 0 && x->p[w] != getpid());
    }
    assert_true(x->p[0] != x->p[1]);
    for (size_t i = 0; i < N; ++i) assert_int_equal(x->r.pid[i], x->p[i < N / 2 ? 0 : 1]);
}

static void setup(struct fixture *x) { setup_pinned(x, 0); }

static void teardown(struct fixture *x)
{
    psh_functor_destroy(x->f);
    psh_array_free(x->pid);
    psh_array_free(x->id);
    psh_array_free(x->hook_pid);
    psh_context_destroy(x->ctx);
}

/* Worker 1 stopped: worker 0 runs both shares, each under its own id. */
static void test_a_stopped_workers_share_is_taken(void **state)
{
    (void)state;
    struct fixture x;
    setup(&x);
    assert_int_equal(kill(x.p[1], SIGSTOP), 0);
    struct cont c = {x.p[1], 20000};
    pthread_t t;
    pthread_create(&t, NULL, cont_later, &c);
    for (int rep = 0; rep < 20; ++rep) {
        int rc = run(x.ctx, &x.r, x.f, 0);
        if (rc != PSH_OK) fail_msg("%s", psh_last_error());
        for (size_t i = 0; i < N; ++i) {
            int want = i < N / 2 ? 0 : 1;
            if (x.r.id[i] != want) fail_msg("rep %d: item %zu got worker id %d, not %d", rep, i, x.r.id[i], want);
            if (x.r.pid[i] != x.p[0])
                fail_msg("rep %d: item %zu ran in %d, not in worker 0 (%d; worker 1 %d is stopped)", rep, i,
                         x.r.pid[i], (int)x.p[0], (int)x.p[1]);
        }
    }
    kill(x.p[1], SIGCONT);
    pthread_cancel(t); /* it sleeps in nanosleep, a cancellation point */
    pthread_join(t, NULL);
    teardown(&x);
}

/* With worker hooks nobody takes a share: worker 1's items and its hook
 * run in worker 1, once it runs again. */
static void test_no_share_is_taken_with_hooks(void **state)
{
    (void)state;
    struct fixture x;
    setup(&x);
    for (int rep = 0; rep < 3; ++rep) {
        assert_int_equal(kill(x.p[1], SIGSTOP), 0);
        struct cont c = {x.p[1], 200};
        pthread_t t;
        pthread_create(&t, NULL, cont_later, &c);
        x.r.hook_pid[0] = x.r.hook_pid[1] = 0;
        int rc = run(x.ctx, &x.r, x.f, 1);
        pthread_join(t, NULL);
        if (rc != PSH_OK) fail_msg("%s", psh_last_error());
        assert_int_equal(x.r.hook_pid[0], x.p[0]);
        assert_int_equal(x.r.hook_pid[1], x.p[1]);
        for (size_t i = 0; i < N; ++i) {
            int w = i < N / 2 ? 0 : 1;
            if (x.r.id[i] != w || x.r.pid[i] != x.p[w])
                fail_msg("item %zu: worker id %d in %d; want %d in %d", i, x.r.id[i], x.r.pid[i], w, (int)x.p[w]);
        }
    }
    teardown(&x);
}

static int record_cpu(void *ud, int worker_id, size_t index, const void *value)
{
    struct rec *r = ud;
    (void)value;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int cpu = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpu = c;
    r->pid[index] = CPU_COUNT(&set) == 1 ? cpu : -CPU_COUNT(&set);
    r->id[index] = worker_id;
    return 0;
}

/* pin_cpus: worker w's items run on the w-th CPU, so nobody takes a share
 * (the taker is pinned elsewhere), even with worker 1 stopped. */
static void test_no_share_is_taken_from_pinned_workers(void **state)
{
    (void)state;
    cpu_set_t mask;
    assert_int_equal(sched_getaffinity(0, sizeof mask, &mask), 0);
    int cpus[CPU_SETSIZE], ncpu = 0;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &mask)) cpus[ncpu++] = c;
    if (ncpu < 2) skip(); /* both workers on one CPU: nothing to tell apart */
    struct fixture x;
    setup_pinned(&x, 1);
    for (int rep = 0; rep < 3; ++rep) {
        assert_int_equal(kill(x.p[1], SIGSTOP), 0);
        struct cont c = {x.p[1], 200};
        pthread_t t;
        pthread_create(&t, NULL, cont_later, &c);
        psh_map_options o;
        psh_map_options_init(&o);
        o.user_data_size = sizeof x.r;
        int rc = psh_map_ext(x.ctx, record_cpu, &x.r, x.f, &o);
        pthread_join(t, NULL);
        if (rc != PSH_OK) fail_msg("%s", psh_last_error());
        for (size_t i = 0; i < N; ++i) {
            int w = i < N / 2 ? 0 : 1;
            if (x.r.id[i] != w || x.r.pid[i] != cpus[w])
                fail_msg("item %zu: worker id %d on CPU %d; want %d on CPU %d", i, x.r.id[i], x.r.pid[i], w, cpus[w]);
        }
    }
    teardown(&x);
}

/* Worker 0 dies inside worker 1's share (worker 1 stopped): PSH_EWORKER
 * with worker id 1 and that index, no hang; the pool keeps working, in
 * full, with a new worker 0. */
static void test_a_death_in_a_taken_share(void **state)
{
    (void)state;
    struct fixture x;
    setup(&x);
    assert_int_equal(kill(x.p[1], SIGSTOP), 0);
    struct cont c = {x.p[1], 20000};
    pthread_t t;
    pthread_create(&t, NULL, cont_later, &c);
    x.r.die_at = 700;
    x.r.die_in = x.p[0];
    int rc = run(x.ctx, &x.r, x.f, 0);
    kill(x.p[1], SIGCONT);
    pthread_cancel(t);
    pthread_join(t, NULL);
    if (rc != PSH_EWORKER) fail_msg("rc %d: %s", rc, psh_last_error());
    psh_error_info info;
    info.struct_size = sizeof info;
    assert_int_equal(psh_last_error_info(&info), PSH_OK);
    if (info.worker_id != 1 || info.index != 700 || info.signal != SIGKILL)
        fail_msg("worker %d index %lld signal %d: %s", info.worker_id, info.index, info.signal, info.message);
    for (size_t i = 0; i < N / 2; ++i) assert_int_equal(x.r.id[i], 0);  /* share 0 was done first */
    x.r.die_at = SIZE_MAX;
    for (int rep = 0; rep < 3; ++rep) {
        rc = run(x.ctx, &x.r, x.f, 1);
        if (rc != PSH_OK) fail_msg("%s", psh_last_error());
        for (size_t i = 0; i < N; ++i) assert_int_equal(x.r.id[i], i < N / 2 ? 0 : 1);
        assert_true(x.r.hook_pid[0] != x.p[0] && alive(x.r.hook_pid[0])); /* replaced */
        assert_int_equal(x.r.hook_pid[1], x.p[1]);
    }
    teardown(&x);
}

/* Worker 1 killed between maps, then maps without hooks back to back:
 * worker 0 takes its share each time, so no map waits for worker 1, and
 * the dead worker must still be found and replaced. */
static void test_a_dead_worker_whose_share_is_taken_is_replaced(void **state)
{
    (void)state;
    struct fixture x;
    setup(&x);
    /* Stopped first, so that it dies outside a futex wait and while worker
     * 0 is busy taking its share: no map needs to wait for it. */
    assert_int_equal(kill(x.p[1], SIGSTOP), 0);
    int replaced = 0, maps = 0;
    for (; maps < 50000 && !replaced; ++maps) {
        if (maps == 100) assert_int_equal(kill(x.p[1], SIGKILL), 0);
        int rc = run(x.ctx, &x.r, x.f, 0);
        if (rc != PSH_OK) fail_msg("%d: %s", rc, psh_last_error());
        if (maps % 1000 == 999) {
            pid_t kids[8];
            int n = live_children(kids, 8);
            int has0 = 0, has1 = 0;
            for (int k = 0; k < n; ++k) {
                has0 |= kids[k] == x.p[0];
                has1 |= kids[k] == x.p[1];
            }
            replaced = n == 2 && has0 && !has1 && proc_state(x.p[1]) == 0; /* reaped */
        }
    }
    if (!replaced) fail_msg("after %d maps the dead worker %d was not replaced", maps, (int)x.p[1]);
    printf("# the dead worker was replaced within %d maps\n", maps);
    assert_int_equal(run(x.ctx, &x.r, x.f, 1), PSH_OK);
    assert_true(x.r.hook_pid[1] != x.p[1] && alive(x.r.hook_pid[1]));
    for (size_t i = 0; i < N; ++i) assert_int_equal(x.r.id[i], i < N / 2 ? 0 : 1);
    teardown(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_stopped_workers_share_is_taken),
        cmocka_unit_test(test_no_share_is_taken_with_hooks),
        cmocka_unit_test(test_no_share_is_taken_from_pinned_workers),
        cmocka_unit_test(test_a_death_in_a_taken_share),
        cmocka_unit_test(test_a_dead_worker_whose_share_is_taken_is_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
