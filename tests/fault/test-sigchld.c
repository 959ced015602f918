/* A program that ignores SIGCHLD, or reaps its children itself in a SIGCHLD
 * handler, still gets PSH_EWORKER for a dead worker, never a hang, and the
 * context keeps working (fork-per-map and persistent pool). Each map runs
 * under a 5 s alarm that fails the test instead of hanging it. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pasha/pasha.h>

#include "fault.h"

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "psh_map hung on a dead worker (no return in 5 s)\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(1);
}

static void reap_all(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    errno = saved;
}

struct job {
    int32_t *out;
    int die;
};

static int kernel(void *ud, int worker_id, size_t index, const void *value)
{
    struct job *j = ud;
    (void)worker_id;
    (void)value;
    if (j->die && index == 3) raise(SIGKILL);
    j->out[index] = (int32_t)(index * 5 + 1);
    return 0;
}

static void scenario(const char *how, int persistent)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.num_workers = 2;
    o.persistent = persistent;
    psh_context *ctx;
    CHECK(psh_context_create_ext(&ctx, &o) == PSH_OK);
    size_t n = 64;
    psh_array *a;
    CHECK(psh_alloc(&a, ctx, PSH_INT32, 1, &n, NULL) == PSH_OK);
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    psh_map_options mo;
    psh_map_options_init(&mo);
    struct job j = {psh_array_data(a), 1};
    mo.user_data_size = sizeof j;
    char msg[256] = "";
    for (int rep = 0; rep < 3; ++rep) {
        j.die = 1;
        alarm(5);
        int rc = psh_map_ext(ctx, kernel, &j, f, &mo);
        alarm(0);
        CHECK(rc == PSH_EWORKER);
        snprintf(msg, sizeof msg, "%s", psh_last_error());
        CHECK(strstr(msg, "worker") && strstr(msg, "at index 3")); /* who and where */
        j.die = 0;
        memset(j.out, 0, n * sizeof *j.out);
        alarm(5);
        rc = psh_map_ext(ctx, kernel, &j, f, &mo);
        alarm(0);
        CHECK(rc == PSH_OK);
        for (size_t i = 0; i < n; ++i) CHECK(j.out[i] == (int32_t)(i * 5 + 1));
    }
    printf("ok - %s, %s: PSH_EWORKER 3 times (\"%s\"), each time then all results right\n", how,
           persistent ? "pool" : "fork-per-map", msg);
    psh_functor_destroy(f);
    psh_array_free(a);
    psh_context_destroy(ctx);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGALRM, on_alarm);
    signal(SIGCHLD, SIG_IGN);
    scenario("SIGCHLD ignored", 0);
    scenario("SIGCHLD ignored", 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reap_all;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    scenario("SIGCHLD handler reaping every child", 0);
    scenario("SIGCHLD handler reaping every child", 1);
    printf("4 passed\n");
    return 0;
}
