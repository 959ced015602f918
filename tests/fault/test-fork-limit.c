/* fork failing (RLIMIT_NPROC reached) is an error, never a hang or a leak of
 * processes: a fork-per-map context whose map cannot fork all its workers
 * returns PSH_ESYS naming the worker, reaps those that started, and maps
 * again once fewer workers fit; a persistent pool that cannot fork all its
 * workers is not created (PSH_ESYS) and leaves no process behind. Runs as
 * user nobody in a child, with RLIMIT_NPROC leaving room for 2 more
 * processes; needs root (else skip, 77). */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pasha/pasha.h>

#include "fault.h"

static int fill(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((int32_t *)ud)[index] = (int32_t)(index + 1);
    return 0;
}

static void no_children_left(void)
{
    errno = 0;
    pid_t r = waitpid(-1, NULL, WNOHANG);
    CHECK(r == -1 && errno == ECHILD);
}

/* The tasks (threads) in /proc/<pid>/task. */
static int tasks_of(const char *pid)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/task", pid);
    DIR *d = opendir(path);
    if (!d) return 1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Tasks of uid 65534 already running: RLIMIT_NPROC counts every thread. */
static int nobody_processes(void)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Uid:", 4) == 0) {
                if (atoi(line + 4) == 65534) count += tasks_of(e->d_name);
                break;
            }
        fclose(f);
    }
    closedir(d);
    return count;
}

static int run(void)
{
    size_t n = 1000;
    psh_array *a;
    psh_functor *f;
    CHECK(psh_alloc(&a, NULL, PSH_INT32, 1, &n, NULL) == PSH_OK);
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    rlim_t others = (rlim_t)nobody_processes();
    if (setgid(65534) != 0 || setuid(65534) != 0) return 77;
    /* This process's threads (a sanitizer runtime may have one) and 2 more. */
    rlim_t limit = others + (rlim_t)tasks_of("self") + 2;
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_NPROC, &rl) == 0);
    int32_t *d = psh_array_data(a);

    psh_context *ctx;
    CHECK(psh_context_create(&ctx, PSH_PROCESSES, 6) == PSH_OK);
    int rc = psh_map(ctx, fill, d, f);
    CHECK(rc == PSH_ESYS);
    CHECK(strstr(psh_last_error(), "fork of worker") != NULL);
    printf("# fork-per-map, 6 workers, 2 processes allowed: \"%s\"\n", psh_last_error());
    no_children_left();
    psh_context_destroy(ctx);

    /* Fewer workers fit: the map works, all results right. */
    CHECK(psh_context_create(&ctx, PSH_PROCESSES, 2) == PSH_OK);
    memset(d, 0, n * sizeof *d);
    CHECK(psh_map(ctx, fill, d, f) == PSH_OK);
    for (size_t i = 0; i < n; ++i) CHECK(d[i] == (int32_t)(i + 1));
    psh_context_destroy(ctx);
    no_children_left();

    psh_context_options o;
    psh_context_options_init(&o);
    o.num_workers = 6;
    o.persistent = 1;
    ctx = NULL;
    CHECK(psh_context_create_ext(&ctx, &o) == PSH_ESYS);
    CHECK(ctx == NULL);
    printf("# pool, 6 workers, 2 processes allowed: \"%s\"\n", psh_last_error());
    no_children_left();
    psh_functor_destroy(f);
    psh_array_free(a);
    printf("ok - fork failures are errors; no process left; a context that fits works\n");
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (geteuid() != 0) {
        printf("SKIP: needs root (to run as nobody with a process limit)\n");
        return 77;
    }
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(run());
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("SKIP: cannot become user nobody\n");
        return 77;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
