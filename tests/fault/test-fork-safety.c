/* Programs that use libpasha and fork, print or exit threads (issue 10):
 *  1. fork() while another thread is inside psh_map (threads and pool
 *     contexts): the child maps on a new context and on the parent's
 *     contexts (regression: it deadlocked on a lock held at fork time);
 *  2. a logging thread printing while 500 fork-per-map maps run: every line
 *     comes out exactly once (regression: ~11,000 lines twice, flushed again
 *     by the workers);
 *  3. a persistent pool made by a thread that then exits keeps its workers
 *     (regression: PR_SET_PDEATHSIG killed them with the thread);
 *  4. a progress callback that maps on the context it reports on gets an
 *     error, not a deadlock;
 *  5. 300 fork-per-map maps of tiny work never report a worker that
 *     finished and exited as dead;
 *  6. psh_default_context_ref gives a reference that outlives a concurrent
 *     psh_set_default_kind;
 *  7. fork hooks run in pthread_atfork order; a pool worker killed between
 *     maps is replaced in place; replacements that always die are an error,
 *     not an endless loop.
 * Each scenario runs in a child with an alarm, so a hang fails the test. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pasha/pasha.h>

#include "fault.h"

static psh_context *make(psh_kind kind, int workers, int persistent)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = kind;
    o.num_workers = workers;
    o.persistent = persistent;
    psh_context *ctx = NULL;
    CHECK(psh_context_create_ext(&ctx, &o) == PSH_OK);
    return ctx;
}

static int square(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((double *)ud)[index] = (double)index * (double)index;
    return 0;
}

static int slow_square(void *ud, int worker_id, size_t index, const void *value)
{
    usleep(200);
    return square(ud, worker_id, index, value);
}

static void map_and_check(psh_context *ctx, size_t n)
{
    psh_array *a;
    CHECK(psh_alloc(&a, ctx, PSH_FLOAT64, 1, &n, NULL) == PSH_OK);
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    CHECK(psh_map(ctx, square, psh_array_data(a), f) == PSH_OK);
    const double *d = psh_array_data(a);
    for (size_t i = 0; i < n; ++i) CHECK(d[i] == (double)i * (double)i);
    psh_functor_destroy(f);
    psh_array_free(a);
}

/* ---- 1. fork while another thread maps ---------------------------------- */

struct busy {
    psh_context *ctx;
    volatile int stop;
    volatile int maps;
};

static void *keep_mapping(void *p)
{
    struct busy *b = p;
    size_t n = 2000;
    psh_array *a;
    CHECK(psh_alloc(&a, NULL, PSH_FLOAT64, 1, &n, NULL) == PSH_OK);
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
        CHECK(psh_map(b->ctx, slow_square, psh_array_data(a), f) == PSH_OK);
        __atomic_add_fetch(&b->maps, 1, __ATOMIC_SEQ_CST);
    }
    psh_functor_destroy(f);
    psh_array_free(a);
    return NULL;
}

static int fork_while_mapping(void)
{
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer cannot start threads in the child of a multi-threaded
     * fork (it dies by design), and that is what this scenario does. */
    printf("SKIP: fork while mapping (ThreadSanitizer)\n");
    return 0;
#endif
    psh_context *ctx[2] = {make(PSH_THREADS, 2, 0), make(PSH_PROCESSES, 2, 1)};
    for (int k = 0; k < 2; ++k) {
        struct busy b = {ctx[k], 0, 0};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, keep_mapping, &b) == 0);
        for (int round = 0; round < 10; ++round) {
            while (__atomic_load_n(&b.maps, __ATOMIC_SEQ_CST) <= round) usleep(100);
            usleep(1000 + 300 * round); /* somewhere inside a map */
            pid_t pid = fork();
            CHECK(pid >= 0);
            if (pid == 0) {
                alarm(20);
                psh_context *fresh = make(PSH_PROCESSES, 2, 0);
                map_and_check(fresh, 1000);
                map_and_check(ctx[0], 1000);
                map_and_check(ctx[1], 1000);
                psh_context_destroy(fresh);
                _exit(0);
            }
            int status;
            CHECK(waitpid(pid, &status, 0) == pid);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "child of a fork during a %s map: status 0x%x%s\n", k ? "pool" : "threads",
                        (unsigned)status, WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (hung)" : "");
                return 1;
            }
        }
        __atomic_store_n(&b.stop, 1, __ATOMIC_RELAXED);
        pthread_join(t, NULL);
    }
    map_and_check(ctx[0], 1000);
    map_and_check(ctx[1], 1000);
    psh_context_destroy(ctx[0]);
    psh_context_destroy(ctx[1]);
    printf("ok - 20 forks while another thread maps (threads, pool): each child maps on a new context and "
           "on both of the parent's\n");
    return 0;
}

/* ---- 2. a logging thread and fork-per-map workers ------------------------- */

static volatile int logging_stop;

static void *log_lines(void *unused)
{
    (void)unused;
    for (int i = 0; !__atomic_load_n(&logging_stop, __ATOMIC_RELAXED); ++i) {
        printf("log %d\n", i);
        if ((i & 63) == 0) usleep(50);
    }
    return NULL;
}

static int printing_thread(void)
{
    char path[] = "/tmp/pasha-log-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(60);
        CHECK(dup2(fd, 1) == 1);
        setvbuf(stdout, NULL, _IOFBF, 1 << 16); /* a file: fully buffered, as in production */
        psh_context *ctx = make(PSH_PROCESSES, 2, 0);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, log_lines, NULL) == 0);
        for (int i = 0; i < 500; ++i) map_and_check(ctx, 64);
        __atomic_store_n(&logging_stop, 1, __ATOMIC_RELAXED);
        pthread_join(t, NULL);
        psh_context_destroy(ctx);
        fflush(stdout);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    unlink(path);
    close(fd);
    size_t cap = 1 << 20, lines = 0, dup = 0, other = 0;
    unsigned char *seen = calloc(cap, 1);
    char line[128];
    long max = -1;
    while (fgets(line, sizeof line, f)) {
        long k;
        if (sscanf(line, "log %ld", &k) != 1 || k < 0 || (size_t)k >= cap) {
            ++other;
            continue;
        }
        ++lines;
        if (seen[k]++) ++dup;
        if (k > max) max = k;
    }
    fclose(f);
    size_t missing = 0;
    for (long k = 0; k <= max; ++k) missing += !seen[k];
    free(seen);
    if (dup || missing || other) {
        fprintf(stderr, "logging thread: %zu lines, %zu twice, %zu missing, %zu garbled\n", lines, dup, missing,
                other);
        return 1;
    }
    printf("ok - a thread printed %zu lines while 500 fork-per-map maps ran: each exactly once\n", lines);
    return 0;
}

/* ---- 3. a pool made by a thread that exits -------------------------------- */

/* The children of this process (whichever thread forked them), as a
 * string of pids in /proc order. */
static void children(char *buf, size_t size)
{
    buf[0] = 0;
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    size_t len = 0;
    while ((e = readdir(d))) {
        char path[300], stat[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = 0;
        char *p = strrchr(stat, ')');
        int ppid;
        char state;
        if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 || ppid != (int)getpid() || state == 'Z') continue;
        len += (size_t)snprintf(buf + len, size - len, "%s ", e->d_name);
        if (len >= size) break;
    }
    closedir(d);
}

static char pool_children[256];

static void *make_pool(void *out)
{
    *(psh_context **)out = make(PSH_PROCESSES, 2, 1);
    children(pool_children, sizeof pool_children);
    return NULL;
}

static int pool_outlives_its_thread(void)
{
    psh_context *pool = NULL;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, make_pool, &pool) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    usleep(200000); /* a death signal would have fired by now */
    for (int i = 0; i < 5; ++i) map_and_check(pool, 10000);
    /* The same two workers as when the pool was made: none died (the pool
     * would have replaced them silently). */
    char now[256];
    children(now, sizeof now);
    if (strcmp(now, pool_children) != 0 || !pool_children[0]) {
        fprintf(stderr, "pool workers changed: '%s' at creation, '%s' now\n", pool_children, now);
        return 1;
    }
    psh_context_destroy(pool);
    printf("ok - a pool made by a thread that exited keeps its workers and maps correctly\n");
    return 0;
}

/* ---- 4. a progress callback that maps on its own context ------------------ */

struct progress_state {
    psh_context *ctx;
    int nested_rc;
    int calls;
    char nested_error[256];
};

static void nested_progress(void *ud, size_t done, size_t total)
{
    (void)done;
    (void)total;
    struct progress_state *s = ud;
    psh_functor *f;
    CHECK(psh_functor_range(&f, 4) == PSH_OK);
    int rc = psh_map(s->ctx, slow_square, NULL, f);
    if (s->calls++ == 0) {
        s->nested_rc = rc;
        snprintf(s->nested_error, sizeof s->nested_error, "%s", psh_last_error());
    }
    psh_functor_destroy(f);
}

static int noop(void *ud, int worker_id, size_t index, const void *value)
{
    (void)ud;
    (void)worker_id;
    (void)index;
    (void)value;
    usleep(1000);
    return 0;
}

static int progress_maps_on_its_context(void)
{
    const psh_kind kinds[2] = {PSH_PROCESSES, PSH_PROCESSES};
    for (int k = 0; k < 2; ++k) {
        psh_context *ctx = make(kinds[k], 2, k);
        struct progress_state s = {ctx, 1, 0, ""};
        psh_map_options o;
        psh_map_options_init(&o);
        o.progress = nested_progress;
        o.progress_data = &s;
        psh_functor *f;
        CHECK(psh_functor_range(&f, 400) == PSH_OK);
        CHECK(psh_map_ext(ctx, noop, NULL, f, &o) == PSH_OK);
        CHECK(s.calls >= 1);
        CHECK(s.nested_rc == PSH_EINVAL);
        CHECK(strstr(s.nested_error, "from inside its own map") != NULL);
        psh_functor_destroy(f);
        map_and_check(ctx, 100);
        psh_context_destroy(ctx);
    }
    printf("ok - a progress callback mapping on its own context gets PSH_EINVAL (fork-per-map, pool), no "
           "deadlock\n");
    return 0;
}

/* ---- 5. finished workers are never reported dead -------------------------- */

static int finished_is_not_dead(void)
{
    psh_context *ctx = make(PSH_PROCESSES, 2, 0);
    for (int i = 0; i < 300; ++i) map_and_check(ctx, 2);
    psh_context_destroy(ctx);
    printf("ok - 300 fork-per-map maps of 2 items: every one PSH_OK\n");
    return 0;
}

/* ---- 6. an owned reference to the default context ------------------------- */

static volatile int swapping;

static void *swap_default(void *unused)
{
    (void)unused;
    for (int i = 0; __atomic_load_n(&swapping, __ATOMIC_RELAXED); ++i) CHECK(psh_set_default_kind(i & 1 ? PSH_SERIAL : PSH_THREADS, 2) == PSH_OK);
    return NULL;
}

static int default_ref_is_owned(void)
{
    CHECK(psh_set_default_kind(PSH_THREADS, 2) == PSH_OK);
    __atomic_store_n(&swapping, 1, __ATOMIC_RELAXED);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, swap_default, NULL) == 0);
    for (int i = 0; i < 300; ++i) {
        psh_context *ctx = psh_default_context_ref();
        CHECK(ctx != NULL);
        map_and_check(ctx, 50); /* still alive although the default changed */
        psh_context_destroy(ctx);
    }
    __atomic_store_n(&swapping, 0, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    printf("ok - 300 psh_default_context_ref references stayed usable while another thread swapped the "
           "default\n");
    return 0;
}

/* ---- 7. fork hooks; a replacement worker that always dies ---------------- */

struct hook_log {
    int killing;      /* child hooks SIGKILL the new worker while set */
    int children;     /* child hooks run */
    char order[64];   /* prepare/parent hooks in the forking thread */
    int len;
};
static struct hook_log *hooks;

static void hook_prepare(void *tag) { hooks->order[hooks->len++] = *(const char *)tag; }
static void hook_parent(void *tag) { hooks->order[hooks->len++] = (char)(*(const char *)tag - 'a' + 'A'); }
static void hook_child(void *tag)
{
    (void)tag;
    __atomic_add_fetch(&hooks->children, 1, __ATOMIC_SEQ_CST);
    if (hooks->killing) raise(SIGKILL);
}

static int fork_hooks_and_doomed_replacements(void)
{
    hooks = mmap(NULL, sizeof *hooks, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(hooks != MAP_FAILED);
    static const char a = 'a', b = 'b';
    CHECK(psh_register_fork_hooks(NULL, NULL, NULL, NULL) == PSH_EINVAL);
    CHECK(psh_register_fork_hooks(hook_prepare, hook_parent, hook_child, (void *)&a) == PSH_OK);
    CHECK(psh_register_fork_hooks(hook_prepare, hook_parent, NULL, (void *)&b) == PSH_OK);
    /* Fork per map, 2 workers: per fork, prepare in reverse order (b a),
     * parent in order (A B); the child hook in each worker. */
    psh_context *fork_ctx = make(PSH_PROCESSES, 2, 0);
    map_and_check(fork_ctx, 100);
    CHECK(strcmp(hooks->order, "baABbaAB") == 0);
    CHECK(hooks->children == 2);
    psh_context_destroy(fork_ctx);

    /* A pool whose worker is killed between maps is repaired in place ... */
    psh_context *pool = make(PSH_PROCESSES, 2, 1);
    map_and_check(pool, 1000);
    char kids[256];
    children(kids, sizeof kids);
    int victim = atoi(kids);
    CHECK(victim > 0);
    CHECK(kill(victim, SIGKILL) == 0);
    usleep(20000);
    map_and_check(pool, 1000);
    /* ... but when every new worker dies at once, the map says so (once per
     * slot, no endless replacing) instead of hanging. */
    children(kids, sizeof kids);
    victim = atoi(kids);
    hooks->killing = 1;
    CHECK(kill(victim, SIGKILL) == 0);
    usleep(20000);
    psh_functor *f;
    CHECK(psh_functor_range(&f, 100) == PSH_OK);
    int rc = psh_map(pool, noop, NULL, f);
    CHECK(rc == PSH_EWORKER);
    CHECK(strstr(psh_last_error(), "signal 9") != NULL);
    hooks->killing = 0;
    /* The pool recovers once workers can start again. */
    int ok = 0;
    for (int i = 0; i < 3 && !ok; ++i) ok = psh_map(pool, noop, NULL, f) == PSH_OK;
    CHECK(ok);
    map_and_check(pool, 1000);
    psh_functor_destroy(f);
    psh_context_destroy(pool);
    printf("ok - fork hooks run in pthread_atfork order (%s); a pool worker killed between maps is replaced "
           "in place; replacements that always die give PSH_EWORKER, not a hang\n",
           "prepare in reverse, parent and child in order");
    return 0;
}

static int run(int (*fn)(void), const char *label, int seconds)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm((unsigned)seconds);
        _exit(fn());
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: %s\n", label,
                WTERMSIG(status) == SIGALRM ? "hung (no result within the alarm)" : strsignal(WTERMSIG(status)));
        return 1;
    }
    if (WEXITSTATUS(status)) {
        fprintf(stderr, "%s: failed\n", label);
        return 1;
    }
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int failed = 0;
    failed += run(fork_while_mapping, "fork while mapping", 120);
    failed += run(printing_thread, "printing thread", 120);
    failed += run(pool_outlives_its_thread, "pool made by an exited thread", 60);
    failed += run(progress_maps_on_its_context, "progress maps on its context", 60);
    failed += run(finished_is_not_dead, "finished is not dead", 120);
    failed += run(default_ref_is_owned, "default context reference", 60);
    failed += run(fork_hooks_and_doomed_replacements, "fork hooks, doomed replacements", 60);
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
