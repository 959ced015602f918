/* Unloading (issue 24): a program that dlopens libpasha, or a plugin linked
 * to it, maps with every kind (the library's default context included),
 * and dlcloses it, 100 times, with and without a context still alive at
 * dlclose. Before libpasha was linked with -z nodelete the threads that it
 * started (a threads context's pool, spinning or sleeping in libpasha's
 * code) ran on in unmapped memory: SIGSEGV.
 *
 * Usage: test-unload LIBPASHA_SO PLUGIN_SO [CYCLES]. Each kind and mode
 * runs in a child of its own, under a time-out, so a crash or a hang is
 * reported as the case it is. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unload-cycle.h"

static int cycles = 100;

/* Is the library mapped in this process? */
static int mapped(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, base)) found = 1;
    fclose(f);
    return found;
}

#define SYM(h, name) *(void **)&api.name = dlsym(h, "psh_" #name)

static int run_direct(const char *lib, int kind, int keep)
{
    for (int i = 0; i < cycles; ++i) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
            return 1;
        }
        struct unload_api api;
        SYM(h, context_options_init);
        SYM(h, context_create_ext);
        SYM(h, context_destroy);
        SYM(h, alloc);
        SYM(h, array_data);
        SYM(h, array_free);
        SYM(h, map_blocks);
        SYM(h, last_error);
        SYM(h, set_default_kind);
        if (!api.map_blocks || !api.last_error) {
            fprintf(stderr, "dlsym: %s\n", dlerror());
            return 1;
        }
        psh_context *kept;
        if (unload_cycle(&api, kind, keep, &kept)) {
            fprintf(stderr, "cycle %d failed\n", i);
            return 1;
        }
        if (dlclose(h)) {
            fprintf(stderr, "dlclose: %s\n", dlerror());
            return 1;
        }
        usleep(200);  /* let threads that would run on in unmapped code do so now */
    }
    return 0;
}

static int run_plugin(const char *plugin, int kind, int keep)
{
    for (int i = 0; i < cycles; ++i) {
        void *h = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen %s: %s\n", plugin, dlerror());
            return 1;
        }
        int (*cycle)(int, int);
        *(void **)&cycle = dlsym(h, "unload_plugin_cycle");
        if (!cycle || cycle(kind, keep)) {
            fprintf(stderr, "cycle %d failed\n", i);
            return 1;
        }
        if (dlclose(h)) {
            fprintf(stderr, "dlclose: %s\n", dlerror());
            return 1;
        }
        usleep(200);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIBPASHA_SO PLUGIN_SO [CYCLES]\n", argv[0]);
        return 2;
    }
    if (argc > 3) cycles = atoi(argv[3]);
    const char *lib = argv[1], *plugin = argv[2];
    if (mapped(lib)) {
        fprintf(stderr, "libpasha is loaded before any dlopen: the test must not link it\n");
        return 2;
    }
    int failures = 0, cases = 0;
    for (int mode = 0; mode < 2; ++mode)
        for (int kind = 0; kind < UNLOAD_KINDS; ++kind)
            for (int keep = 0; keep < 2; ++keep) {
                if (kind >= UNLOAD_DEFAULT && keep) continue;  /* the default context is always alive */
                ++cases;
                pid_t pid = fork();
                if (pid == 0) {
                    alarm(120);  /* a hang fails the case */
                    int rc = mode == 0 ? run_direct(lib, kind, keep) : run_plugin(plugin, kind, keep);
                    /* The threads of kept contexts are still alive: give them
                     * time to run (they would crash in unmapped code). */
                    usleep(20000);
                    fflush(stderr);
                    _exit(rc);
                }
                int st;
                waitpid(pid, &st, 0);
                const char *what = mode == 0 ? "dlopen libpasha" : "dlopen plugin";
                if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                    printf("ok   %-16s %-15s %s context at dlclose: %d cycles\n", what, unload_kind_names[kind],
                           keep ? "live" : "no  ", cycles);
                } else {
                    ++failures;
                    if (WIFSIGNALED(st))
                        printf("FAIL %-16s %-15s %s context at dlclose: signal %d (%s)\n", what,
                               unload_kind_names[kind], keep ? "live" : "no  ", WTERMSIG(st),
                               strsignal(WTERMSIG(st)));
                    else
                        printf("FAIL %-16s %-15s %s context at dlclose: exit %d\n", what, unload_kind_names[kind],
                               keep ? "live" : "no  ", WEXITSTATUS(st));
                }
                fflush(stdout);
            }
    printf("%d of %d cases passed\n", cases - failures, cases);
    return failures ? 1 : 0;
}
