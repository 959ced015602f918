/*
 * The interpreter in libpasha's threads and forks: the Python thread states
 * of libpasha's worker threads, and CPython's fork protocol around the
 * forks libpasha makes (psh_register_fork_hooks).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

#include <pthread.h>

volatile int pyp_in_worker_process;
volatile int pyp_exiting;
unsigned long pyp_main_ident;

/* ---- per-thread Python thread states of libpasha's threads ----------- */

/* A libpasha worker thread keeps its Python thread state between maps (an
 * Ensure never released), so later maps only take the GIL; the state is
 * freed when the thread ends (a pthread key destructor). */
static pthread_key_t kept_key;
static _Thread_local int tstate_kept;

static void kept_tstate_free(void *p)
{
    /* Python's own thread-state key may already be cleared (glibc clears
     * every key of an ending thread, in key order): use the state itself. */
    if (pyp_exiting || !p || !Py_IsInitialized()) return;
    PyThreadState *ts = (PyThreadState *)p;
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
}

PyGILState_STATE pyp_gil_enter(void)
{
    if (!tstate_kept && PyGILState_GetThisThreadState() == NULL) {
        /* A thread Python never saw (a libpasha worker): keep its state. */
        (void)PyGILState_Ensure(); /* the kept count: never released */
        tstate_kept = 1;
        pthread_setspecific(kept_key, PyGILState_GetThisThreadState());
        PyEval_SaveThread();
    }
    return PyGILState_Ensure();
}

/* ---- fork hooks ------------------------------------------------------ */

static _Thread_local PyGILState_STATE fork_gil;

static void hook_prepare(void *data)
{
    (void)data;
    fork_gil = PyGILState_Ensure();
    PyOS_BeforeFork();
}

static void hook_parent(void *data)
{
    (void)data;
    PyOS_AfterFork_Parent();
    PyGILState_Release(fork_gil);
}

static void hook_child(void *data)
{
    (void)data;
    PyOS_AfterFork_Child();
    /* This thread (the copy of the forking one) is now the only thread and
     * holds the GIL; it keeps it for the worker's whole life, and every
     * kernel call here nests a PyGILState_Ensure in it. */
    pyp_in_worker_process = 1;
    pyp_main_ident = PyThread_get_thread_ident();
}

PyObject *pyp_at_exit(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    pyp_exiting = 1;
    Py_RETURN_NONE;
}

PyObject *pyp_after_fork_child(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    pyp_main_ident = PyThread_get_thread_ident();
    pyp_run_after_fork();
    Py_RETURN_NONE;
}

int pyp_interpreter_init(void)
{
    static int once;
    if (once) return 0;
    if (pthread_key_create(&kept_key, kept_tstate_free) != 0) {
        PyErr_Format(PyExc_RuntimeError, "pasha: pthread_key_create failed");
        return -1;
    }
    if (psh_register_fork_hooks(hook_prepare, hook_parent, hook_child, NULL) != PSH_OK) {
        PyErr_Format(PyExc_RuntimeError, "pasha: %s", psh_last_error());
        return -1;
    }
    once = 1;
    return 0;
}
