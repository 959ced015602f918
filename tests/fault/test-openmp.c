/* OpenMP inside kernels (issue 24), built once with GCC's libgomp and once
 * with LLVM's libomp. The parent runs a parallel region first, then maps
 * with every kind; each item's kernel runs a parallel reduction and the
 * map checks every sum. GNU libgomp's thread pool does not survive fork:
 * before libpasha released it (omp_pause_resource_all) before forking, a
 * fork-per-map or pool worker's first region waited for ever. Each case
 * runs in a child under a time-out, so a regression fails, never hangs.
 *
 * The pool case also kills a worker after the parent ran OpenMP again, so
 * that its replacement is forked from an OpenMP parent too. */
#include <omp.h>
#include <pasha/pasha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"

enum { ITEMS = 8, THREADS = 2 };

static long long reduce(long long n)
{
    long long s = 0;
#pragma omp parallel for reduction(+ : s) num_threads(THREADS)
    for (long long i = 0; i < n; ++i) s += i;
    return s;
}

/* Also records which process ran the item and how many threads its
 * region had, so that the test knows the region really was parallel. */
struct out {
    long long *sum;
    long long *pid;
    long long *team;
};

static int kernel(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    struct out *o = (struct out *)user_data;
    long long n = 1000 + (long long)index * 37, s = 0;
    int team = 0;
#pragma omp parallel reduction(+ : s) num_threads(THREADS)
    {
#pragma omp single
        team = omp_get_num_threads();
#pragma omp for
        for (long long i = 0; i < n; ++i) s += i;
    }
    o->sum[index] = s;
    o->pid[index] = getpid();
    o->team[index] = team;
    return 0;
}

static psh_array *array(psh_context *ctx)
{
    size_t n = ITEMS;
    psh_array *a = NULL;
    CHECK(psh_alloc(&a, ctx, PSH_INT64, 1, &n, NULL) == PSH_OK);
    return a;
}

/* One map; every item's sum checked. */
static void map_and_check(psh_context *ctx, struct out *o, const char *what)
{
    memset(o->sum, 0, ITEMS * sizeof *o->sum);
    psh_functor *f = NULL;
    CHECK(psh_functor_range(&f, ITEMS) == PSH_OK);
    psh_map_options mo;
    psh_map_options_init(&mo);
    mo.user_data_size = sizeof *o;  /* a pool's workers cannot see our stack */
    int rc = psh_map_ext(ctx, kernel, o, f, &mo);
    if (rc) fprintf(stderr, "%s: %s\n", what, psh_last_error());
    CHECK(rc == PSH_OK);
    psh_functor_destroy(f);
    for (int i = 0; i < ITEMS; ++i) {
        long long n = 1000 + (long long)i * 37;
        if (o->sum[i] != n * (n - 1) / 2 || o->team[i] != THREADS) {
            fprintf(stderr, "%s: item %d: sum %lld (want %lld), team %lld (want %d)\n", what, i, o->sum[i],
                    n * (n - 1) / 2, o->team[i], THREADS);
            _exit(1);
        }
    }
}

/* Ended (a zombie until the pool reaps it, or gone)? */
static int dead(pid_t pid)
{
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    const char *close = strrchr(stat, ')');
    return !close || close[1] == 0 || close[2] == 'Z' || close[2] == 'X';
}

enum { SERIAL, THREADS_KIND, PROCESSES, POOL, DEFAULT, KINDS };
static const char *const names[KINDS] = {"serial", "threads", "processes", "pool", "default"};

static void run_case(int kind)
{
    CHECK(reduce(100000) == 100000LL * 99999 / 2);  /* the parent's own region, first */
    psh_context *ctx = NULL;
    if (kind != DEFAULT) {
        psh_context_options o;
        psh_context_options_init(&o);
        o.kind = kind == SERIAL ? PSH_SERIAL : kind == THREADS_KIND ? PSH_THREADS : PSH_PROCESSES;
        o.num_workers = kind == SERIAL ? 1 : 2;
        o.persistent = kind == POOL;
        CHECK(psh_context_create_ext(&ctx, &o) == PSH_OK);
    }
    psh_array *sum = array(ctx), *pid = array(ctx), *team = array(ctx);
    struct out o = {psh_array_data(sum), psh_array_data(pid), psh_array_data(team)};
    map_and_check(ctx, &o, "first map");
    /* The parent's regions go on working, and so does the next map. */
    CHECK(reduce(5000) == 5000LL * 4999 / 2);
    map_and_check(ctx, &o, "second map");
    if (kind == POOL) {
        pid_t victim = (pid_t)o.pid[0];
        CHECK(victim != getpid());
        CHECK(kill(victim, SIGKILL) == 0);
        while (!dead(victim)) usleep(1000);
        CHECK(reduce(7000) == 7000LL * 6999 / 2);
        /* The map that finds the dead worker replaces it; one more map
         * runs on the replacement (forked after the parent's region). */
        psh_functor *f = NULL;
        CHECK(psh_functor_range(&f, ITEMS) == PSH_OK);
        psh_map_options mo;
        psh_map_options_init(&mo);
        mo.user_data_size = sizeof o;
        int rc = psh_map_ext(ctx, kernel, &o, f, &mo);  /* may report the death */
        (void)rc;
        psh_functor_destroy(f);
        map_and_check(ctx, &o, "map after a worker was replaced");
        int replaced = 0;
        for (int i = 0; i < ITEMS; ++i) replaced |= o.pid[i] != victim;
        CHECK(replaced);
    }
    psh_array_free(sum);
    psh_array_free(pid);
    psh_array_free(team);
    psh_context_destroy(ctx);
}

int main(void)
{
    /* No OpenMP in this process: each case forks from a clean one. */
    int failures = 0;
    for (int kind = 0; kind < KINDS; ++kind) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(60);  /* a hang fails the case */
            run_case(kind);
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok   %s\n", names[kind]);
        } else {
            ++failures;
            if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
                printf("FAIL %s: hung (no answer in 60 s)\n", names[kind]);
            else if (WIFSIGNALED(st))
                printf("FAIL %s: signal %d\n", names[kind], WTERMSIG(st));
            else
                printf("FAIL %s: exit %d\n", names[kind], WEXITSTATUS(st));
        }
    }
    printf("%d of %d kinds passed\n", KINDS - failures, KINDS);
    return failures ? 1 : 0;
}
