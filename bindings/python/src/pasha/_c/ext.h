/*
 * pasha._pasha: the C half of the Python package pasha, on libpasha.
 *
 * Contexts are psh_context handles (contexts.c); alloc hands out numpy
 * arrays that are zero-copy views of psh arrays, recorded in a registry of
 * address ranges (arrays.c); map runs the kernel over the items of a
 * sequence or the shares of any other functor with one psh_map_ext call
 * (a custom functor whose worker_begin takes the GIL for the worker's items
 * and worker_end gives it back) and returns the kernel's values (map.c);
 * native kernels run without the GIL (native_map.c). A persistent pool
 * keeps the job of the last map while provably unchanged (job_key.c).
 * Only the public CPython API is used.
 *
 * Process maps release the GIL while the caller waits. From the main
 * thread they run on a helper thread, so that the main thread can run the
 * program's signal handlers every few milliseconds (run.c): a handler that
 * raises cancels the map (every worker stops at its next item) and the
 * exception is re-raised. Forks made by libpasha run CPython's fork
 * protocol through psh_register_fork_hooks (interpreter.c).
 *
 * This header is what the files share; nothing here is public.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_PY_EXT_H
#define PASHA_PY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL pasha_ARRAY_API
#ifndef PASHA_PY_MODULE_INIT
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <pasha/pasha.h>

#include <stdint.h>

#if PY_VERSION_HEX < 0x03090000
#error "pasha needs Python 3.9 or newer"
#endif

/* ---- interpreter.c: the interpreter in libpasha's threads and forks -- */

/* Set in a worker process made by libpasha (by the child fork hook). */
extern volatile int pyp_in_worker_process;
/* Set at interpreter exit (atexit): no more thread-state work. */
extern volatile int pyp_exiting;
/* The ident of the main thread, whose maps run the signal handlers. */
extern unsigned long pyp_main_ident;

/* Take the GIL in any thread; a libpasha worker thread keeps its thread
 * state between maps. */
PyGILState_STATE pyp_gil_enter(void);
/* Once, at module init: the thread-state key and the fork hooks. */
int pyp_interpreter_init(void);
PyObject *pyp_at_exit(PyObject *self, PyObject *noargs);
PyObject *pyp_after_fork_child(PyObject *self, PyObject *noargs);

/* ---- module.c -------------------------------------------------------- */

/* Python functions set by pasha.context (set_hooks). */
extern PyObject *pyp_pool_entry;      /* pool_entry(job, serial) -> (fn, functor, shares, run_worker) */
extern PyObject *pyp_store_exception; /* store_exception(slot, exc, index) in worker processes */
extern PyObject *pyp_flush_stdio;     /* flush_stdio(): sys.stdout/stderr at a worker's end */
extern PyObject *pyp_store_results;   /* store_results(slot, indices, values) in worker processes */
/* collect_run_worker(run_worker, function, functor, share, worker_id) -> the
 * share's values (a list, or their number when all are None) */
extern PyObject *pyp_collect_run_worker;

/* Raise the Python exception of libpasha status rc (set; returns NULL). */
PyObject *pyp_raise(int rc, const char *what);

/* ---- contexts.c ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    psh_context *ctx;
} CtxObject;

extern PyTypeObject pyp_CtxType;

/* The psh_context of a Context object; NULL for None (the default). */
psh_context *pyp_ctx_of(PyObject *o);

/* ---- arrays.c -------------------------------------------------------- */

PyObject *pyp_alloc_bytes(PyObject *self, PyObject *args);
PyObject *pyp_find_region(PyObject *self, PyObject *obj);
PyObject *pyp_array_key(PyObject *self, PyObject *obj);
PyObject *pyp_from_address(PyObject *self, PyObject *args);

/* ---- job_key.c ------------------------------------------------------- */

PyObject *pyp_job_key(PyObject *self, PyObject *args);
PyObject *pyp_same_key(PyObject *self, PyObject *args);
PyObject *pyp_split_diff(PyObject *self, PyObject *args);

/* ---- run.c: running a libpasha map (directly or on the helper thread) */

typedef struct {
    psh_context *ctx;
    psh_kernel k;
    psh_functor *f;
    void *ud;
    const psh_map_options *o;
    int rc;
    char msg[1024];
    psh_error_info info; /* of the failed map (its callback and message copied below) */
    char callback[32];
    int done;
} RunReq;

/* (code, worker_id, index, signal, exit_status, callback) of a failed
 * run's psh_error_info; worker ids get worker_base added. */
PyObject *pyp_error_info(const RunReq *r, int worker_base);

int pyp_is_main_thread(void);
/* Run r with the GIL released. In the main thread of a process map, run it
 * on the helper thread and run signal handlers every 5 ms meanwhile; when
 * one raises, call cancel(cancel_data) and return -1 with the exception
 * set once the map has ended. */
int pyp_run_released(RunReq *r, int process_map, void (*cancel)(void *), void *cancel_data);
/* In a child of os.fork(): the helper thread is not there. */
void pyp_run_after_fork(void);

/* ---- map.c, native_map.c: Context.map, Context.map_native ------------ */

enum { MODE_INPROC = 0, MODE_FORK = 1, MODE_POOL = 2 };

/* The error buffer (a psh array every worker sees): a header with the stop
 * flag, then one slot per worker: a header of four int64 [exception
 * length, item index, results length (< 0: the length of the name of the
 * file that holds them), 0], then the pickled exception or results. */
enum { ERR_HEADER = 64, SLOT_HEADER = 32 };

PyObject *pyp_ctx_map(CtxObject *self, PyObject *args, PyObject *kw);
PyObject *pyp_ctx_map_native(CtxObject *self, PyObject *args);
PyObject *pyp_current_worker(PyObject *self, PyObject *noargs);

#endif
