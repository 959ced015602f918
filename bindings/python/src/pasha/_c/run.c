/*
 * Running a libpasha map with the GIL released: directly, or (a process
 * map from the main thread) on a helper thread while the main thread runs
 * the program's signal handlers.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* A short map (a pool map of a few items: tens of microseconds) costs two
 * thread hand-offs on top of its work: the helper's wake-up and the main
 * thread's. Each side first waits up to 100 us (PASHA_SPIN_US if less, as
 * libpasha's own waits; 0: none) with sched_yield (the CPU left to whoever
 * needs it), then sleeps: a loop of short maps hands off without sleeping,
 * a long map costs at most that much CPU more. */
static long long handoff_spin_ns = -1;

static long long monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long handoff_spin(void)
{
    if (handoff_spin_ns < 0) {
        long long ns = 100000;
        const char *env = getenv("PASHA_SPIN_US");
        if (env && *env) {
            char *end;
            long long us = strtoll(env, &end, 10);
            if (*end == '\0' && us >= 0 && us < ns / 1000) ns = us * 1000;
        }
        handoff_spin_ns = ns;
    }
    return handoff_spin_ns;
}

static void run_req(RunReq *r)
{
    r->rc = psh_map_ext(r->ctx, r->k, r->ud, r->f, r->o);
    if (r->rc == PSH_OK) return;
    /* Both thread-local: read on the thread that ran the map. */
    snprintf(r->msg, sizeof r->msg, "%s", psh_last_error());
    memset(&r->info, 0, sizeof r->info);
    r->info.struct_size = sizeof r->info;
    if (psh_last_error_info(&r->info) != PSH_OK) {
        r->info.code = r->rc;
        r->info.worker_id = -1;
        r->info.index = -1;
        r->info.exit_status = -1;
        r->info.callback = NULL;
    }
    snprintf(r->callback, sizeof r->callback, "%s", r->info.callback ? r->info.callback : "");
    r->info.callback = NULL;
    r->info.message = NULL;
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;
    int busy;
    RunReq *req;
    int efd;
} helper = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, -1};

static void *helper_main(void *arg)
{
    (void)arg;
    /* A Python thread state for the fork hooks and progress callbacks,
     * kept for the thread's life. */
    (void)PyGILState_Ensure();
    PyEval_SaveThread();
    for (;;) {
        /* the next map of a loop of short maps comes soon: take it awake */
        long long t0 = monotonic_ns(), spin = handoff_spin();
        while (spin && !__atomic_load_n(&helper.req, __ATOMIC_ACQUIRE) &&
               monotonic_ns() - t0 < spin)
            sched_yield();
        pthread_mutex_lock(&helper.mu);
        while (!__atomic_load_n(&helper.req, __ATOMIC_ACQUIRE)) pthread_cond_wait(&helper.cv, &helper.mu);
        RunReq *r = helper.req;
        __atomic_store_n(&helper.req, NULL, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&helper.mu);
        run_req(r);
        __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
        uint64_t one = 1;
        ssize_t w = write(helper.efd, &one, sizeof one);
        (void)w;
    }
    return NULL;
}

static int helper_start(void)
{
    if (helper.started) return 0;
    (void)handoff_spin();  /* read once, before the thread that reads it too */
    helper.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (helper.efd < 0) return -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 8u << 20);
    /* A process-directed signal may land on this thread: Python's C-level
     * handler then only trips its flag, which the main thread checks. */
    pthread_t t;
    int rc = pthread_create(&t, &attr, helper_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(helper.efd);
        helper.efd = -1;
        return -1;
    }
    helper.started = 1;
    return 0;
}

int pyp_is_main_thread(void)
{
    return !pyp_in_worker_process && PyThread_get_thread_ident() == pyp_main_ident;
}

int pyp_run_released(RunReq *r, int process_map, void (*cancel)(void *), void *cancel_data)
{
    if (!process_map || !pyp_is_main_thread() || helper.busy || helper_start() != 0) {
        Py_BEGIN_ALLOW_THREADS
        run_req(r);
        Py_END_ALLOW_THREADS
        return 0;
    }
    helper.busy = 1;
    r->done = 0;
    int raised = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&helper.mu);
    __atomic_store_n(&helper.req, r, __ATOMIC_RELEASE);
    pthread_cond_signal(&helper.cv);
    pthread_mutex_unlock(&helper.mu);
    /* a short map is done soon: wait awake first (signals are checked
     * below, within 5 ms as ever) */
    long long t0 = monotonic_ns(), spin = handoff_spin();
    while (spin && !__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) && monotonic_ns() - t0 < spin)
        sched_yield();
    for (;;) {
        if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) break;
        struct pollfd p = {helper.efd, POLLIN, 0};
        int pr = poll(&p, 1, 5);
        if (pr > 0) {
            uint64_t v;
            ssize_t rd = read(helper.efd, &v, sizeof v);
            (void)rd;
        }
        if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) break;
        if (!raised) {
            Py_BLOCK_THREADS
            if (PyErr_CheckSignals() < 0) {
                raised = 1;
                cancel(cancel_data);
            }
            Py_UNBLOCK_THREADS
        }
    }
    Py_END_ALLOW_THREADS
    helper.busy = 0;
    return raised ? -1 : 0;
}

/* ---- map ------------------------------------------------------------- */


void pyp_run_after_fork(void)
{
    /* The helper thread is not in the child (and may have held its lock). */
    pthread_mutex_init(&helper.mu, NULL);
    pthread_cond_init(&helper.cv, NULL);
    helper.started = 0;
    helper.busy = 0;
    helper.req = NULL;
}

PyObject *pyp_error_info(const RunReq *r, int worker_base)
{
    const psh_error_info *i = &r->info;
    return Py_BuildValue("(iiLiis)", i->code, i->worker_id >= 0 ? i->worker_id + worker_base : -1,
                         (long long)i->index, i->signal, i->exit_status, r->callback);
}
