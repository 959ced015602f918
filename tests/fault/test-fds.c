/* Descriptors (issue 16).
 *  1. A daemon-like program: it uses libpasha (every kind, arrays, maps),
 *     then closes every descriptor above 2 and opens its own data file,
 *     which gets the numbers libpasha's descriptors had. Later allocations,
 *     maps and frees must work or fail cleanly, and the program's file must
 *     stay byte-for-byte intact (regression: psh_alloc grew it to 1 MiB with
 *     posix_fallocate, psh_array_free punched a hole in it).
 *  2. An exec'd child inherits no libpasha descriptor (memfd, pidfd,
 *     eventfd, shm object): everything libpasha opens is close-on-exec. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pasha/pasha.h>

#include "fault.h"

static int fill(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((uint32_t *)ud)[index] = (uint32_t)(index * 5 + 3);
    return 0;
}

static psh_context *make(psh_kind kind, int persistent)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = kind;
    o.num_workers = 2;
    o.persistent = persistent;
    psh_context *ctx = NULL;
    CHECK(psh_context_create_ext(&ctx, &o) == PSH_OK);
    return ctx;
}

/* Map fill over a fresh array of n items; returns the status of the map or
 * the allocation, checking the values when it worked. */
static int use(psh_context *ctx, size_t n)
{
    psh_array *a = NULL;
    int rc = psh_alloc(&a, ctx, PSH_UINT32, 1, &n, NULL);
    if (rc != PSH_OK) {
        CHECK(rc < 0 && psh_last_error()[0]);
        return rc;
    }
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    rc = psh_map(ctx, fill, psh_array_data(a), f);
    if (rc == PSH_OK) {
        const uint32_t *d = psh_array_data(a);
        for (size_t i = 0; i < n; ++i) CHECK(d[i] == (uint32_t)(i * 5 + 3));
    }
    psh_functor_destroy(f);
    psh_array_free(a);
    return rc;
}

static int daemon_scenario(void)
{
    psh_context *ctx[3] = {make(PSH_THREADS, 0), make(PSH_PROCESSES, 0), make(PSH_PROCESSES, 1)};
    for (int k = 0; k < 3; ++k) CHECK(use(ctx[k], 100000) == PSH_OK);
    psh_array *kept;
    size_t n = 1000;
    CHECK(psh_alloc(&kept, NULL, PSH_UINT32, 1, &n, NULL) == PSH_OK);

    /* Daemonize: close everything above 2, open our own files. */
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    char path[] = "/tmp/pasha-daemon-XXXXXX";
    int files[8];
    static unsigned char pattern[8][65536];
    for (int i = 0; i < 8; ++i) {
        char p[64];
        snprintf(p, sizeof p, "%s", path);
        files[i] = mkstemp(p);
        CHECK(files[i] >= 0);
        unlink(p);
        for (size_t k = 0; k < sizeof pattern[i]; ++k) pattern[i][k] = (unsigned char)(k * 31 + i);
        CHECK(write(files[i], pattern[i], sizeof pattern[i]) == (ssize_t)sizeof pattern[i]);
    }

    /* libpasha goes on: every call works or fails cleanly. */
    int ok = 0, failed = 0;
    for (int round = 0; round < 3; ++round)
        for (int k = 0; k < 3; ++k) *(use(ctx[k], 300000) == PSH_OK ? &ok : &failed) += 1;
    psh_array_free(kept);
    psh_context *fresh = make(PSH_PROCESSES, 0);
    *(use(fresh, 1000) == PSH_OK ? &ok : &failed) += 1;
    psh_context_destroy(fresh);
    for (int k = 0; k < 3; ++k) psh_context_destroy(ctx[k]);

    /* Our files are exactly what we wrote. */
    for (int i = 0; i < 8; ++i) {
        struct stat st;
        CHECK(fstat(files[i], &st) == 0);
        if (st.st_size != (off_t)sizeof pattern[i]) {
            fprintf(stderr, "file %d (fd %d) is %lld bytes, not %zu\n", i, files[i], (long long)st.st_size,
                    sizeof pattern[i]);
            return 1;
        }
        static unsigned char back[65536];
        CHECK(pread(files[i], back, sizeof back, 0) == (ssize_t)sizeof back);
        if (memcmp(back, pattern[i], sizeof back) != 0) {
            fprintf(stderr, "file %d (fd %d) was changed\n", i, files[i]);
            return 1;
        }
    }
    printf("ok - after closing every descriptor above 2 and opening 8 files: %d maps worked, %d failed "
           "cleanly; the files are intact\n",
           ok, failed);
    return 0;
}

static int exec_scenario(void)
{
    psh_context *ctx[3] = {make(PSH_THREADS, 0), make(PSH_PROCESSES, 0), make(PSH_PROCESSES, 1)};
    for (int k = 0; k < 3; ++k) CHECK(use(ctx[k], 10000) == PSH_OK);
    psh_array *a;
    size_t n = 1 << 20;
    CHECK(psh_alloc(&a, NULL, PSH_UINT8, 1, &n, NULL) == PSH_OK);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        execl("/bin/sh", "sh", "-c", "ls -l /proc/$$/fd/", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char buf[8192];
    size_t got = 0;
    ssize_t r;
    while ((r = read(pipefd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(pipefd[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(got > 0);
    const char *ours[] = {"memfd:pasha", "[pidfd]", "[eventfd]", "/dev/shm/psh-"};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; ++i) {
        if (strstr(buf, ours[i])) {
            fprintf(stderr, "an exec'd child inherited a libpasha descriptor (%s):\n%s", ours[i], buf);
            return 1;
        }
    }
    psh_array_free(a);
    for (int k = 0; k < 3; ++k) psh_context_destroy(ctx[k]);
    printf("ok - an exec'd child of a program with threads, fork-per-map and pool contexts and arrays "
           "inherits no libpasha descriptor\n");
    return 0;
}

static int run(int (*fn)(void), const char *label)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(120);
        _exit(fn());
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "%s: failed (status 0x%x)\n", label, (unsigned)status);
        return 1;
    }
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int failed = run(daemon_scenario, "daemon") + run(exec_scenario, "exec");
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
