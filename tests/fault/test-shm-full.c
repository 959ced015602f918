/* A full /dev/shm: in a private mount namespace with a 16 MiB tmpfs over
 * /dev/shm, an allocation larger than the free space fails in psh_alloc with
 * PSH_ENOMEM, and everything that did fit is usable to the last byte (no
 * SIGBUS), with and without the arena (PASHA_ARENA_SIZE=0). Needs root
 * (unshare + mount); skipped (exit 77) where that is not allowed. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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

/* The largest mapping of one of our shm objects, in bytes. */
static size_t largest_psh_mapping(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[1024];
    size_t largest = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (!strstr(line, "/dev/shm/psh-") || sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        if (hi - lo > largest) largest = hi - lo;
    }
    fclose(f);
    return largest;
}

/* One scenario, in a child so that each gets a fresh arena. */
static int scenario(const char *arena)
{
    if (arena) setenv("PASHA_ARENA_SIZE", arena, 1);
    psh_context *ctx;
    CHECK(psh_context_create(&ctx, PSH_PROCESSES, 2) == PSH_OK);
    size_t big = (size_t)64 << 20;
    psh_array *a = NULL;
    int rc = psh_alloc(&a, ctx, PSH_UINT8, 1, &big, NULL);
    CHECK(rc == PSH_ENOMEM);
    CHECK(a == NULL);
    CHECK(strstr(psh_last_error(), "not enough space in /dev/shm") != NULL);
    /* The arena (a sparse object of >= 1 GiB) is really in use on the 16 MiB
     * tmpfs, or really absent with PASHA_ARENA_SIZE=0. */
    size_t largest = largest_psh_mapping();
    if (arena) CHECK(largest < ((size_t)1 << 30));
    else CHECK(largest >= ((size_t)1 << 30));
    /* What fits is all there: the workers write every byte, the caller reads it. */
    size_t n = (size_t)6 << 20;
    psh_array *b[2];
    for (int i = 0; i < 2; ++i) CHECK(psh_alloc(&b[i], ctx, PSH_UINT8, 1, &n, NULL) == PSH_OK);
    psh_array *c = NULL;
    CHECK(psh_alloc(&c, ctx, PSH_UINT8, 1, &n, NULL) == PSH_ENOMEM); /* 18 MiB > 16 MiB */
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    for (int i = 0; i < 2; ++i) {
        CHECK(psh_map(ctx, fill, psh_array_data(b[i]), f) == PSH_OK);
        const uint8_t *d = psh_array_data(b[i]);
        for (size_t k = 0; k < n; ++k) CHECK(d[k] == (uint8_t)(k * 7 + 1));
    }
    /* Freeing gives the space back. */
    psh_array_free(b[0]);
    CHECK(psh_alloc(&c, ctx, PSH_UINT8, 1, &n, NULL) == PSH_OK);
    psh_array_free(c);
    psh_array_free(b[1]);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
    printf("ok - %s (largest shm mapping %zu MiB): PSH_ENOMEM for 64 MiB and for 18 MiB on a 16 MiB /dev/shm; 12 MiB usable, no SIGBUS\n",
           arena ? "PASHA_ARENA_SIZE=0 (no arena)" : "with the arena", largest >> 20);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (unshare(CLONE_NEWNS) != 0) {
        printf("SKIP: unshare(CLONE_NEWNS) not allowed (%s): run as root to test a full /dev/shm\n", strerror(errno));
        return 77;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("pasha-test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777") != 0) {
        printf("SKIP: cannot mount a tmpfs over /dev/shm (%s)\n", strerror(errno));
        return 77;
    }
    const char *arenas[2] = {NULL, "0"};
    for (int i = 0; i < 2; ++i) {
        pid_t pid = fork();
        if (pid == 0) _exit(scenario(arenas[i]));
        int status;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) {
            fprintf(stderr, "scenario %d died of signal %d (%s)\n", i, WTERMSIG(status), strsignal(WTERMSIG(status)));
            return 1;
        }
        if (WEXITSTATUS(status) != 0) return 1;
    }
    printf("2 passed, 0 failed\n");
    return 0;
}
