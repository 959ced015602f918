/* Memory as containers give it (issue 10, "Memory that works in containers").
 * Each scenario runs in a child, so each gets a fresh arena:
 *  - a 16 MiB tmpfs over /dev/shm (Docker gives 64 MiB) in a private mount
 *    namespace: a 160 MB array works in every kind, with and without the
 *    arena (regression: it was PSH_ENOMEM, "not enough space in /dev/shm");
 *  - a cgroup memory limit of 64 MiB: a 100 MiB array is PSH_ENOMEM naming
 *    the cgroup limit, never the OOM killer; 16 MiB works;
 *  - 70,000 one-page arrays with every other one freed keep the process far
 *    from vm.max_map_count (regression: 65,531 mappings, pthread_create
 *    failed), and a threads context still starts and maps;
 *  - malformed PASHA_ARENA_SIZE and PASHA_SPIN_US are PSH_EINVAL naming the
 *    variable; documented suffixes are accepted exactly.
 * Needs root for the first two (unshare, mount, cgroups); those print SKIP
 * lines where not allowed, the others always run. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pasha/pasha.h>

#include "fault.h"

static int fill(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((uint8_t *)ud)[index] = (uint8_t)(index * 7 + 1);
    return 0;
}

static void map_and_check(psh_context *ctx, psh_array *a)
{
    size_t n = psh_array_size(a);
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    CHECK(psh_map(ctx, fill, psh_array_data(a), f) == PSH_OK);
    const uint8_t *d = psh_array_data(a);
    for (size_t k = 0; k < n; k += 4093) CHECK(d[k] == (uint8_t)(k * 7 + 1));
    CHECK(d[n - 1] == (uint8_t)((n - 1) * 7 + 1));
    psh_functor_destroy(f);
}

/* A 160 MB array on a 16 MiB /dev/shm, in each kind. */
static int small_dev_shm(const char *arena)
{
    if (arena) setenv("PASHA_ARENA_SIZE", arena, 1);
    psh_context *ctx[3];
    CHECK(psh_context_create(&ctx[0], PSH_THREADS, 2) == PSH_OK);
    CHECK(psh_context_create(&ctx[1], PSH_PROCESSES, 2) == PSH_OK);
    /* A pool needs the arena (it refuses standalone arrays it cannot see). */
    int kinds = arena ? 2 : 3;
    if (kinds == 3) {
        psh_context_options o;
        psh_context_options_init(&o);
        o.kind = PSH_PROCESSES;
        o.num_workers = 2;
        o.persistent = 1;
        CHECK(psh_context_create_ext(&ctx[2], &o) == PSH_OK);
    }
    size_t n = 160u * 1000 * 1000;
    for (int i = 0; i < kinds; ++i) {
        psh_array *a = NULL;
        CHECK(psh_alloc(&a, ctx[i], PSH_UINT8, 1, &n, NULL) == PSH_OK);
        map_and_check(ctx[i], a);
        psh_array_free(a);
    }
    for (int i = 0; i < kinds; ++i) psh_context_destroy(ctx[i]);
    CHECK(count_psh_shm() == 0);
    printf("ok - 160 MB arrays on a 16 MiB /dev/shm in threads, fork-per-map%s (%s)\n",
           arena ? "" : " and pool", arena ? "PASHA_ARENA_SIZE=0, standalone" : "arena");
    return 0;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}

/* Make the cgroup root/pasha-test-<test pid>, limit it to 64 MiB through
 * limit_file and move this process into it; its path, or NULL. */
static const char *try_cgroup(const char *root, const char *limit_file)
{
    static char dir[256];
    char pid[32], p[300];
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    /* Named after the test's main process, which removes it afterwards. */
    snprintf(dir, sizeof dir, "%s/pasha-test-%d", root, (int)getppid());
    if (mkdir(dir, 0755) != 0) return NULL;
    snprintf(p, sizeof p, "%s/%s", dir, limit_file);
    if (write_file(p, "67108864\n") == 0) {
        snprintf(p, sizeof p, "%s/cgroup.procs", dir);
        if (write_file(p, pid) == 0) return dir;
    }
    rmdir(dir);
    return NULL;
}

/* Move this process into a new memory cgroup limited to 64 MiB (v2, else v1).
 * Returns the cgroup's directory, or NULL if that is not possible here. */
static const char *enter_limited_cgroup(void)
{
    FILE *f = fopen("/sys/fs/cgroup/cgroup.subtree_control", "r");
    char ctl[256] = {0};
    if (f) {
        if (!fgets(ctl, sizeof ctl, f)) ctl[0] = 0;
        fclose(f);
    }
    const char *dir = strstr(ctl, "memory") ? try_cgroup("/sys/fs/cgroup", "memory.max") : NULL;
    return dir ? dir : try_cgroup("/sys/fs/cgroup/memory", "memory.limit_in_bytes");
}

static int cgroup_limit(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* The sanitizers' shadow memory alone outgrows a 64 MiB cgroup. */
    printf("SKIP: cgroup memory limit (sanitizer build)\n");
    return 0;
#endif
    const char *dir = enter_limited_cgroup();
    if (!dir) {
        printf("SKIP: cgroup memory limit: cannot make a memory cgroup here\n");
        return 0;
    }
    psh_context *ctx;
    CHECK(psh_context_create(&ctx, PSH_THREADS, 2) == PSH_OK);
    size_t big = (size_t)100 << 20, ok = (size_t)16 << 20;
    psh_array *a = NULL;
    CHECK(psh_alloc(&a, ctx, PSH_UINT8, 1, &big, NULL) == PSH_ENOMEM);
    CHECK(a == NULL);
    CHECK(strstr(psh_last_error(), "cgroup memory limit") != NULL);
    CHECK(strstr(psh_last_error(), "67108864") != NULL);
    CHECK(psh_alloc(&a, ctx, PSH_UINT8, 1, &ok, NULL) == PSH_OK);
    map_and_check(ctx, a);
    psh_array_free(a);
    psh_context_destroy(ctx);
    printf("ok - in a 64 MiB memory cgroup (%s): 100 MiB is PSH_ENOMEM naming the limit, 16 MiB maps\n", dir);
    return 0;
}

static int count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static int many_small_arrays(void)
{
    enum { N = 70000 };
    static psh_array *a[N];
    size_t page = 4096;
    for (int i = 0; i < N; ++i) CHECK(psh_alloc(&a[i], NULL, PSH_UINT8, 1, &page, NULL) == PSH_OK);
    for (int i = 0; i < N; i += 2) psh_array_free(a[i]);
    int maps = count_mappings();
    CHECK(maps < 1000);
    psh_context *ctx;
    CHECK(psh_context_create(&ctx, PSH_THREADS, 2) == PSH_OK);
    map_and_check(ctx, a[1]);
    map_and_check(ctx, a[N - 1]);
    psh_context_destroy(ctx);
    for (int i = 1; i < N; i += 2) psh_array_free(a[i]);
    printf("ok - 70000 one-page arrays, every other freed: %d mappings in the process; threads still start\n", maps);
    return 0;
}

/* One variable, one value: PSH_EINVAL naming it, or (ok) a working alloc. */
static int env_case(const char *name, const char *value, int ok)
{
    setenv(name, value, 1);
    psh_context *ctx = NULL;
    psh_array *a = NULL;
    size_t n = 100;
    int rc = strcmp(name, "PASHA_SPIN_US") == 0 ? psh_context_create(&ctx, PSH_THREADS, 2)
                                                 : psh_alloc(&a, NULL, PSH_UINT8, 1, &n, NULL);
    if (ok) {
        CHECK(rc == PSH_OK);
    } else {
        CHECK(rc == PSH_EINVAL);
        CHECK(strstr(psh_last_error(), name) != NULL);
        CHECK(strstr(psh_last_error(), value) != NULL);
    }
    psh_array_free(a);
    psh_context_destroy(ctx);
    return 0;
}

static int run(int (*fn)(void *), void *arg, const char *label)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(fn(arg));
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: died of signal %d (%s)\n", label, WTERMSIG(status), strsignal(WTERMSIG(status)));
        return 1;
    }
    if (WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: failed\n", label);
        return 1;
    }
    return 0;
}

static int in_small_dev_shm(void *arena)
{
    if (unshare(CLONE_NEWNS) != 0) {
        printf("SKIP: small /dev/shm: unshare(CLONE_NEWNS) not allowed (%s)\n", strerror(errno));
        return 0;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("pasha-test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777") != 0) {
        printf("SKIP: small /dev/shm: cannot mount a tmpfs over /dev/shm (%s)\n", strerror(errno));
        return 0;
    }
    return small_dev_shm(arena);
}

static int in_cgroup(void *unused)
{
    (void)unused;
    return cgroup_limit();
}

static int in_many(void *unused)
{
    (void)unused;
    return many_small_arrays();
}

struct env_arg {
    const char *name, *value;
    int ok;
};

static int in_env(void *p)
{
    struct env_arg *e = p;
    return env_case(e->name, e->value, e->ok);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int failed = 0;
    failed += run(in_small_dev_shm, NULL, "small /dev/shm, arena");
    failed += run(in_small_dev_shm, "0", "small /dev/shm, standalone");
    failed += run(in_cgroup, NULL, "cgroup limit");
    char dir[128];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/pasha-test-%d", (int)getpid());
    rmdir(dir);
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory/pasha-test-%d", (int)getpid());
    rmdir(dir);
    failed += run(in_many, NULL, "many small arrays");
    struct env_arg env[] = {
        {"PASHA_ARENA_SIZE", "abc", 0}, {"PASHA_ARENA_SIZE", "-1", 0},  {"PASHA_ARENA_SIZE", "1.5G", 0},
        {"PASHA_ARENA_SIZE", "4GB", 0}, {"PASHA_ARENA_SIZE", "99999999999T", 0},
        {"PASHA_ARENA_SIZE", "2G", 1},  {"PASHA_ARENA_SIZE", "65536", 1}, {"PASHA_ARENA_SIZE", "512k", 1},
        {"PASHA_SPIN_US", "abc", 0},    {"PASHA_SPIN_US", "-1", 0},       {"PASHA_SPIN_US", "1.5", 0},
        {"PASHA_SPIN_US", "50", 1},     {"PASHA_SPIN_US", "0", 1},
    };
    for (size_t i = 0; i < sizeof env / sizeof env[0]; ++i) {
        char label[96];
        snprintf(label, sizeof label, "%s=%s", env[i].name, env[i].value);
        failed += run(in_env, &env[i], label);
    }
    printf("ok - %zu environment values: malformed ones are PSH_EINVAL naming the variable\n",
           sizeof env / sizeof env[0]);
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
