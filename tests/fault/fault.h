/* Helpers shared by the fault tests: a fatal CHECK for tests that run in
 * forked children or namespaces (where CMocka's longjmp cannot reach), a
 * monotonic clock, and what /proc and /dev/shm say about our processes and
 * shared memory. */
#ifndef PASHA_TESTS_FAULT_H
#define PASHA_TESTS_FAULT_H

#include <dirent.h>
#include <pasha/pasha.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Print the failed condition and psh_last_error(), and end the process. */
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    psh_last_error());                                                    \
            _exit(1);                                                                     \
        }                                                                                 \
    } while (0)

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Objects of ours visible in /dev/shm (there should never be any). */
static inline int count_psh_shm(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "psh-", 4) == 0) ++n;
    closedir(d);
    return n;
}

/* The state ('R', 'S', 'Z', ...) of a process, or 0 if it is gone. */
static inline char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

/* Is pid alive and not a zombie? */
static inline int alive(pid_t pid)
{
    char s = proc_state(pid);
    return s != 0 && s != 'Z';
}

#endif
