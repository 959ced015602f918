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
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void run_req(RunReq *r)
{
    r->rc = r->bk ? psh_map_blocks_ext(r->ctx, r->bk, r->ud, r->n, r->o)
                  : psh_map_ext(r->ctx, r->k, r->ud, r->f, r->o);
    if (r->rc != PSH_OK) snprintf(r->msg, sizeof r->msg, "%s", psh_last_error());
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
        pthread_mutex_lock(&helper.mu);
        while (!helper.req) pthread_cond_wait(&helper.cv, &helper.mu);
        RunReq *r = helper.req;
        helper.req = NULL;
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
    helper.req = r;
    pthread_cond_signal(&helper.cv);
    pthread_mutex_unlock(&helper.mu);
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
