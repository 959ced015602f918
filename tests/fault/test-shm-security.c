/* The shared memory of psh arrays is private to the program: it is anonymous
 * (memfd; where memfd_create is missing, shm objects unlinked before
 * psh_alloc returns), so nothing of ours is ever in /dev/shm, and has mode
 * 0600 and no links. Checked for the arena, for standalone blocks
 * (PASHA_ARENA_SIZE=0) and for arrays made in a forked child (which makes
 * an arena of its own). */
#include <dirent.h>
#include <errno.h>
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

#define MAX_OBJS 64
static unsigned long inodes[MAX_OBJS];
static int num_inodes;

/* Every mapping of ours in /proc/self/maps: a deleted memfd named pasha (or
 * a deleted /dev/shm/psh- object). Checks its mode through
 * /proc/self/map_files where permitted. Returns the number of distinct
 * objects (by inode); *mode_checked counts the stats. */
static int check_mappings(int *mode_checked)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[1024];
    int objects = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "/memfd:pasha") && !strstr(line, "/dev/shm/psh-")) continue;
        if (!strstr(line, " (deleted)")) {
            fprintf(stderr, "a shared-memory object of ours has a name in a file system: %s", line);
            _exit(1);
        }
        char range[64] = {0}, perms[8], offset[32], dev[16], path[128];
        unsigned long inode = 0;
        CHECK(sscanf(line, "%63s %7s %31s %15s %lu", range, perms, offset, dev, &inode) == 5);
        int seen = 0;
        for (int i = 0; i < num_inodes; ++i) seen |= inodes[i] == inode;
        if (!seen && num_inodes < MAX_OBJS) inodes[num_inodes++] = inode;
        objects += !seen;
        /* The range, e.g. 7f0000000000-7f0000100000, names the file in map_files. */
        snprintf(path, sizeof path, "/proc/self/map_files/%s", range);
        struct stat st;
        if (stat(path, &st) == 0) {
            if ((st.st_mode & 07777) != 0600) {
                fprintf(stderr, "mode %o, not 0600: %s", (unsigned)(st.st_mode & 07777), line);
                _exit(1);
            }
            if (st.st_nlink != 0) {
                fprintf(stderr, "%lu links, not 0 (unlinked): %s", (unsigned long)st.st_nlink, line);
                _exit(1);
            }
            ++*mode_checked;
        }
    }
    fclose(f);
    return objects;
}

static int fill(void *ud, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((uint32_t *)ud)[index] = (uint32_t)(index * 3 + 1);
    return 0;
}

/* Allocate a few arrays, map over them, check /dev/shm and the mappings. */
static int scenario(const char *label, int expect_objects_at_least)
{
    psh_context *ctx;
    CHECK(psh_context_create(&ctx, PSH_PROCESSES, 2) == PSH_OK);
    psh_array *a[4];
    size_t n = 100000;
    for (int i = 0; i < 4; ++i) {
        CHECK(psh_alloc(&a[i], ctx, PSH_UINT32, 1, &n, NULL) == PSH_OK);
        CHECK(count_psh_shm() == 0); /* right after psh_alloc returns */
    }
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    for (int i = 0; i < 4; ++i) {
        CHECK(psh_map(ctx, fill, psh_array_data(a[i]), f) == PSH_OK);
        const uint32_t *d = psh_array_data(a[i]);
        for (size_t k = 0; k < n; ++k) CHECK(d[k] == (uint32_t)(k * 3 + 1));
    }
    int modes = 0;
    int objects = check_mappings(&modes);
    CHECK(objects >= expect_objects_at_least);
    CHECK(count_psh_shm() == 0);
    for (int i = 0; i < 4; ++i) psh_array_free(a[i]);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
    CHECK(count_psh_shm() == 0);
    printf("ok - %s: %d shared-memory object(s), all anonymous, nothing in /dev/shm; "
           "mode 0600 checked on %d mapping(s)%s\n",
           label, objects, modes, modes ? "" : " (map_files needs CAP_SYS_ADMIN: mode not checked)");
    return 0;
}

static int run_child(int (*fn)(const char *, int), const char *label, int expect, const char *arena)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (arena) setenv("PASHA_ARENA_SIZE", arena, 1);
        _exit(fn(label, expect));
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: failed (status 0x%x)\n", label, (unsigned)status);
        return 1;
    }
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int failed = 0;
    /* With the arena: one object however many arrays. */
    failed += run_child(scenario, "arena", 1, NULL);
    /* Without: one object per array, so 4 distinct names. */
    failed += run_child(scenario, "PASHA_ARENA_SIZE=0 (standalone)", 4, "0");
    /* In a child of a program whose arena is already mapped: an arena of its
     * own (at least 1 object besides the parent's). */
    {
        psh_array *warm;
        size_t one = 1;
        CHECK(psh_alloc(&warm, NULL, PSH_UINT8, 1, &one, NULL) == PSH_OK);
        failed += run_child(scenario, "forked child (its own arena)", 2, NULL);
        psh_array_free(warm);
    }
    CHECK(count_psh_shm() == 0);
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
