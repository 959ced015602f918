/*
 * Context.map: a Python kernel over the items of a sequence (one
 * psh_map_ext call, a custom functor whose worker_begin takes the GIL for
 * the worker's items and worker_end gives it back) or over the shares of
 * any other functor (psh_map_blocks_ext), in this process or in worker
 * processes (fork per map, or a persistent pool that unpickles the job).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

#include <signal.h>
#include <string.h>
#include <time.h>

typedef struct {
    int mode;
    int itemwise;        /* items of a sequence, or shares of a functor */
    int num_slots;
    volatile int cancel; /* libpasha's cancel flag of this map */
    char *err;           /* the error buffer, or NULL (in-process maps) */
    size_t err_size;     /* bytes per slot */
    char *job;           /* POOL: the pickled job, in a psh array */
    size_t job_len;
    long long serial;    /* POOL: which job */
    /* In-process and fork maps (in a fork child: the copy of the parent's) */
    PyObject *function;
    PyObject *functor;
    PyObject *seq;       /* itemwise: functor.sequence */
    PyObject *shares;    /* blocks: the list of shares */
    PyObject *run_worker; /* blocks: a run_worker override, or NULL */
    PyObject *errors;    /* in-process: list of (index, exception) */
    PyObject *progress;  /* callable(done, total) or NULL */
    volatile int stop_local;
    size_t num_items;
    int worker_base;     /* added to the worker ids kernels get (MPI ranks) */
} MapData;

static int stopped(MapData *d)
{
    if (d->err) return __atomic_load_n((int64_t *)d->err, __ATOMIC_RELAXED) != 0;
    return __atomic_load_n((int *)&d->stop_local, __ATOMIC_RELAXED) != 0 ||
           __atomic_load_n((int *)&d->cancel, __ATOMIC_RELAXED) != 0;
}

static void set_stop(MapData *d)
{
    if (d->err)
        __atomic_store_n((int64_t *)d->err, 1, __ATOMIC_RELAXED);
    else
        __atomic_store_n((int *)&d->stop_local, 1, __ATOMIC_RELAXED);
}

static void cancel_map(void *p)
{
    MapData *d = (MapData *)p;
    __atomic_store_n((int *)&d->cancel, 1, __ATOMIC_RELAXED);
    set_stop(d);
}

static char *slot_of(MapData *d, int w)
{
    return d->err + ERR_HEADER + (size_t)(w % d->num_slots) * d->err_size;
}

/* What a pool worker unpickled for the job it runs (one process, one
 * thread: plain statics). */
static long long pool_serial = -1;
static PyObject *pool_job; /* (function, functor, shares, run_worker_or_None) */
static PyObject *pool_seq;

typedef struct {
    PyObject *function, *functor, *seq, *shares, *run_worker;
} Resolved;

static int resolve(MapData *d, Resolved *r)
{
    if (d->mode != MODE_POOL) {
        r->function = d->function;
        r->functor = d->functor;
        r->seq = d->seq;
        r->shares = d->shares;
        r->run_worker = d->run_worker;
        return 0;
    }
    /* The entry is asked on every map: it may hand back the job it gave
     * for the last one (the same serial, and unchanged in this worker). */
    PyObject *mv = PyMemoryView_FromMemory(d->job, (Py_ssize_t)d->job_len, PyBUF_READ);
    if (!mv) return -1;
    PyObject *t = pyp_pool_entry ? PyObject_CallFunction(pyp_pool_entry, "OL", mv, d->serial) : NULL;
    Py_DECREF(mv);
    if (!t) {
        if (!pyp_pool_entry) PyErr_SetString(PyExc_RuntimeError, "pasha: no pool entry");
        return -1;
    }
    if (t == pool_job && pool_serial == d->serial && (pool_seq != NULL) == (d->itemwise != 0)) {
        Py_DECREF(t);
    } else {
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_RuntimeError, "pasha: bad pool job");
            return -1;
        }
        PyObject *seq = NULL;
        if (d->itemwise) {
            seq = PyObject_GetAttrString(PyTuple_GET_ITEM(t, 1), "sequence");
            if (!seq) {
                Py_DECREF(t);
                return -1;
            }
        }
        Py_XSETREF(pool_job, t);
        Py_XSETREF(pool_seq, seq);
        pool_serial = d->serial;
    }
    r->function = PyTuple_GET_ITEM(pool_job, 0);
    r->functor = PyTuple_GET_ITEM(pool_job, 1);
    r->shares = PyTuple_GET_ITEM(pool_job, 2);
    r->run_worker = PyTuple_GET_ITEM(pool_job, 3) == Py_None ? NULL : PyTuple_GET_ITEM(pool_job, 3);
    r->seq = pool_seq;
    return 0;
}

/* The current exception (cleared), normalized, with its traceback. */
static PyObject *fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (!t) return NULL;
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v) PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

/* A kernel raised at item `index` (-1: unknown) in worker w: keep the
 * exception for the caller and stop the other workers. */
static void record_failure(MapData *d, int w, Py_ssize_t index)
{
    PyObject *exc = fetch_exception();
    set_stop(d);
    if (!exc) return;
    if (d->mode == MODE_INPROC) {
        PyObject *item = Py_BuildValue("(nO)", index, exc);
        if (!item || PyList_Append(d->errors, item) < 0) PyErr_Clear();
        Py_XDECREF(item);
    } else if (pyp_store_exception) {
        char *slot = slot_of(d, w);
        PyObject *mv = PyMemoryView_FromMemory(slot, (Py_ssize_t)d->err_size, PyBUF_WRITE);
        PyObject *r = mv ? PyObject_CallFunction(pyp_store_exception, "OOn", mv, exc, index) : NULL;
        if (!r) PyErr_Clear();
        Py_XDECREF(r);
        Py_XDECREF(mv);
    }
    Py_DECREF(exc);
}

/* Per (thread, map) state: the GIL taken when the worker starts on the
 * map, given back when it ends. A stack: maps nest (a kernel may map). */
typedef struct WorkerState {
    MapData *d;
    PyGILState_STATE gil;
    PyObject *wid;
    Resolved r;
    int resolved;
    unsigned count;
    long long last_ns;
    struct WorkerState *up;
} WorkerState;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* In-process maps: a kernel that runs no bytecode never lets the eval loop
 * hand the GIL over; give other threads (the map's other workers, the
 * program's) a turn every 5 ms, as CPython's switch interval does. */
static void maybe_switch(WorkerState *s)
{
    if ((++s->count & 63) != 0) return;
    long long now = now_ns();
    if (now - s->last_ns < 5000000LL) return;
    PyThreadState *ts = PyEval_SaveThread();
    PyEval_RestoreThread(ts);
    s->last_ns = now_ns();
}

static _Thread_local WorkerState *cur_worker;

static WorkerState *worker_push(int w)
{
    WorkerState *s = PyMem_RawMalloc(sizeof *s);
    if (!s) return NULL;
    s->gil = pyp_gil_enter();
    s->d = NULL;
    s->resolved = 0;
    s->count = 0;
    s->last_ns = now_ns();
    s->wid = PyLong_FromLong(w);
    s->up = cur_worker;
    cur_worker = s;
    if (!s->wid) PyErr_Clear();
    return s;
}

static void worker_pop(void)
{
    WorkerState *s = cur_worker;
    if (!s) return;
    cur_worker = s->up;
    Py_XDECREF(s->wid);
    if (s->d && s->d->mode != MODE_INPROC && pyp_flush_stdio) {
        /* The worker's Python-level stdout/stderr buffers. */
        PyObject *r = PyObject_CallNoArgs(pyp_flush_stdio);
        if (!r) PyErr_Clear();
        Py_XDECREF(r);
    }
    PyGILState_STATE g = s->gil;
    PyMem_RawFree(s);
    PyGILState_Release(g);
}

/* The worker's state for map d (resolving the job on first use). */
static WorkerState *worker_state(MapData *d, int w)
{
    WorkerState *s = cur_worker;
    if (!s || !s->wid) return NULL;
    if (s->d != d) {
        s->d = d;
        s->resolved = 0;
        if (d->worker_base) {  /* here, not in items_begin: its self is not the map's in a pool */
            PyObject *id = PyLong_FromLong((long)w + d->worker_base);
            if (!id) {
                record_failure(d, w, -1);
                return NULL;
            }
            PyObject *old = s->wid;
            s->wid = id;
            Py_XDECREF(old);
        }
    }
    if (!s->resolved) {
        if (resolve(d, &s->r) < 0) {
            record_failure(d, w, -1);
            return NULL;
        }
        s->resolved = 1;
    }
    return s;
}

/* The items' functor: a custom psh functor over range(n) whose callbacks
 * take the GIL when a worker starts on the map and give it back at its
 * end (the functor's self cannot tell the map in a pool worker; the
 * kernel's user data can). */
static size_t items_length(void *self)
{
    return ((MapData *)self)->num_items;
}

static int items_get(void *self, size_t index, const void **value)
{
    (void)self;
    (void)index;
    *value = NULL;
    return 0;
}

static int items_begin(void *self, int w)
{
    (void)self;
    return worker_push(w) ? 0 : 3;
}

static void items_end(void *self, int w)
{
    (void)self;
    (void)w;
    worker_pop();
}

static int item_kernel(void *ud, int w, size_t index, const void *value)
{
    (void)value;
    MapData *d = (MapData *)ud;
    WorkerState *s = worker_state(d, w);
    if (!s) return 3;
    if (stopped(d)) return 2;
    if (d->err) {
        ((int64_t *)slot_of(d, w))[1] = (int64_t)index;
    } else {
        /* In-process, in the main thread: run signal handlers (even if the
         * kernel runs no bytecode; elsewhere a no-op), share the GIL. */
        if (PyErr_CheckSignals() < 0) {
            record_failure(d, w, (Py_ssize_t)index);
            return 1;
        }
        maybe_switch(s);
    }
    PyObject *idx = PyLong_FromSize_t(index);
    PyObject *val = idx ? PySequence_GetItem(s->r.seq, (Py_ssize_t)index) : NULL;
    PyObject *res = NULL;
    if (val) {
        PyObject *args[3] = {s->wid, idx, val};
        res = PyObject_Vectorcall(s->r.function, args, 3, NULL);
    }
    Py_XDECREF(idx);
    Py_XDECREF(val);
    if (!res) {
        record_failure(d, w, (Py_ssize_t)index);
        return 1;
    }
    Py_DECREF(res);
    return 0;
}

/* One share of a generic functor: function(w, *entry) for each entry of
 * functor.iterate(share), or run_worker(function, functor, share, w). */
static int run_share(MapData *d, WorkerState *s, int w, PyObject *share)
{
    Resolved *r = &s->r;
    if (r->run_worker) {
        PyObject *res = PyObject_CallFunctionObjArgs(r->run_worker, r->function, r->functor, share,
                                                     s->wid, NULL);
        if (!res) {
            record_failure(d, w, -1);
            return 1;
        }
        Py_DECREF(res);
        return 0;
    }
    PyObject *gen = PyObject_CallMethod(r->functor, "iterate", "O", share);
    PyObject *it = gen ? PyObject_GetIter(gen) : NULL;
    Py_XDECREF(gen);
    if (!it) {
        record_failure(d, w, -1);
        return 1;
    }
    PyObject *entry;
    PyObject *small[8];
    int rc = 0;
    while ((entry = PyIter_Next(it)) != NULL) {
        if (stopped(d)) {
            Py_DECREF(entry);
            rc = 2;
            break;
        }
        PyObject *tup = PySequence_Tuple(entry);
        Py_DECREF(entry);
        if (!tup) {
            record_failure(d, w, -1);
            rc = 1;
            break;
        }
        Py_ssize_t m = PyTuple_GET_SIZE(tup);
        Py_ssize_t index = -1;
        if (m > 0 && PyLong_Check(PyTuple_GET_ITEM(tup, 0))) {
            index = PyLong_AsSsize_t(PyTuple_GET_ITEM(tup, 0));
            if (index == -1 && PyErr_Occurred()) PyErr_Clear();
        }
        if (d->err) {
            ((int64_t *)slot_of(d, w))[1] = (int64_t)index;
        } else {
            if (PyErr_CheckSignals() < 0) {
                Py_DECREF(tup);
                record_failure(d, w, index);
                rc = 1;
                break;
            }
            maybe_switch(s);
        }
        PyObject **args = m + 1 <= 8 ? small : PyMem_Malloc((size_t)(m + 1) * sizeof *args);
        PyObject *res = NULL;
        if (args) {
            args[0] = s->wid;
            for (Py_ssize_t i = 0; i < m; ++i) args[i + 1] = PyTuple_GET_ITEM(tup, i);
            res = PyObject_Vectorcall(r->function, args, (size_t)m + 1, NULL);
            if (args != small) PyMem_Free(args);
        } else {
            PyErr_NoMemory();
        }
        Py_DECREF(tup);
        if (!res) {
            record_failure(d, w, index);
            rc = 1;
            break;
        }
        Py_DECREF(res);
    }
    if (rc == 0 && PyErr_Occurred()) {
        record_failure(d, w, -1);
        rc = 1;
    }
    Py_DECREF(it);
    return rc;
}

static int block_kernel(void *ud, int w, size_t begin, size_t end)
{
    MapData *d = (MapData *)ud;
    if (!worker_push(w)) return 3;
    WorkerState *s = worker_state(d, w);
    int rc = s ? 0 : 3;
    for (size_t i = begin; i < end && rc == 0; ++i) {
        if (stopped(d)) {
            rc = 2;
            break;
        }
        PyObject *share = PySequence_GetItem(s->r.shares, (Py_ssize_t)i);
        if (!share) {
            record_failure(d, w, -1);
            rc = 1;
            break;
        }
        rc = run_share(d, s, w, share);
        Py_DECREF(share);
    }
    worker_pop();
    return rc;
}

static void progress_cb(void *ud, size_t done, size_t total)
{
    MapData *d = (MapData *)ud;
    PyGILState_STATE st = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction(d->progress, "nn", (Py_ssize_t)done, (Py_ssize_t)total);
    if (!r) PyErr_Clear();
    Py_XDECREF(r);
    PyGILState_Release(st);
}

/* Ctrl-C during an in-process map in the main thread: cancel that map and
 * chain to the previous handler (Python's, which trips KeyboardInterrupt). */
static volatile int *volatile sigint_target;
static struct sigaction old_sigint;

static void on_sigint(int sig)
{
    volatile int *t = sigint_target;
    if (t) __atomic_store_n((int *)t, 1, __ATOMIC_RELAXED);
    if (!(old_sigint.sa_flags & SA_SIGINFO) && old_sigint.sa_handler != SIG_DFL &&
        old_sigint.sa_handler != SIG_IGN && old_sigint.sa_handler != NULL)
        old_sigint.sa_handler(sig);
}

static const psh_functor_vtable items_vt = {sizeof(psh_functor_vtable), items_length, items_get,
                                            items_begin, items_end};

/* ctx.map(n, *, itemwise=False, function=None, functor=None, seq=None,
 *         shares=None, run_worker=None, mode=MODE_INPROC, job=None, serial=0,
 *         err=None, err_size=0, schedule=-1, chunk=0, progress=None,
 *         worker_base=0) -> (status, message, errors)
 * itemwise: n items of seq, else n shares. errors: [(index, exception)]
 * raised in-process. job and err: uint8 ndarrays over psh arrays, or None.
 * schedule -1: the context's. worker_base is added to the worker ids the
 * kernels get (an MPI rank's offset); libpasha's messages keep the local ids. */
PyObject *pyp_ctx_map(CtxObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"n", "itemwise", "function", "functor", "seq", "shares",
                             "run_worker", "mode", "job", "serial", "err", "err_size",
                             "schedule", "chunk", "progress", "worker_base", NULL};
    int itemwise = 0, mode = MODE_INPROC, schedule = PSH_SCHEDULE_CONTEXT, worker_base = 0;
    Py_ssize_t n, err_size = 0, chunk = 0;
    long long serial = 0;
    PyObject *function = Py_None, *functor = Py_None, *seq = Py_None, *shares = Py_None;
    PyObject *run_worker = Py_None, *job = Py_None, *err = Py_None, *progress = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|$pOOOOOiOLOninOi:map", kwlist, &n, &itemwise,
                                     &function, &functor, &seq, &shares, &run_worker, &mode, &job,
                                     &serial, &err, &err_size, &schedule, &chunk, &progress,
                                     &worker_base))
        return NULL;
    if (mode < MODE_INPROC || mode > MODE_POOL) return PyErr_Format(PyExc_ValueError, "map: bad mode");
    if (chunk < 0) return PyErr_Format(PyExc_ValueError, "map: negative chunk");
    if (worker_base < 0) return PyErr_Format(PyExc_ValueError, "map: negative worker base");
    if (n < 0) return PyErr_Format(PyExc_ValueError, "map: negative length");
    MapData d;
    memset(&d, 0, sizeof d);
    d.mode = mode;
    d.worker_base = worker_base;
    d.itemwise = itemwise;
    d.function = function;
    d.functor = functor;
    d.seq = seq;
    d.shares = shares;
    d.run_worker = run_worker == Py_None ? NULL : run_worker;
    d.serial = serial;
    d.progress = progress == Py_None ? NULL : progress;
    d.num_slots = psh_context_num_workers(self->ctx);
    if (d.num_slots < 1) d.num_slots = 1;
    if (job != Py_None) {
        if (!PyArray_Check(job)) return PyErr_Format(PyExc_TypeError, "job must be an ndarray");
        d.job = PyArray_BYTES((PyArrayObject *)job);
        d.job_len = (size_t)PyArray_NBYTES((PyArrayObject *)job);
    }
    if (err != Py_None) {
        if (!PyArray_Check(err)) return PyErr_Format(PyExc_TypeError, "err must be an ndarray");
        if ((size_t)PyArray_NBYTES((PyArrayObject *)err) <
            ERR_HEADER + (size_t)d.num_slots * (size_t)err_size || err_size < 16)
            return PyErr_Format(PyExc_ValueError, "err buffer too small");
        d.err = PyArray_BYTES((PyArrayObject *)err);
        d.err_size = (size_t)err_size;
        memset(d.err, 0, ERR_HEADER);
        for (int w = 0; w < d.num_slots; ++w) memset(slot_of(&d, w), 0xff, 16);
        for (int w = 0; w < d.num_slots; ++w) ((int64_t *)slot_of(&d, w))[0] = 0;
    } else if (mode != MODE_INPROC) {
        return PyErr_Format(PyExc_ValueError, "process maps need an error buffer");
    }
    d.errors = PyList_New(0);
    if (!d.errors) return NULL;

    psh_map_options o;
    psh_map_options_init(&o);
    o.schedule = (psh_schedule)schedule;
    o.chunk = (size_t)chunk;
    o.cancel = &d.cancel;
    if (d.progress) {
        o.progress = progress_cb;
        o.progress_data = &d;
    }
    if (mode == MODE_POOL) o.user_data_size = sizeof d;

    size_t len = (size_t)n;
    d.num_items = len;
    psh_functor *f = NULL;
    RunReq r;
    memset(&r, 0, sizeof r);
    r.ctx = self->ctx;
    r.ud = &d;
    r.o = &o;
    if (itemwise) {
        int rc = psh_functor_custom(&f, &items_vt, &d);
        if (rc != PSH_OK) {
            Py_DECREF(d.errors);
            return pyp_raise(rc, "map");
        }
        r.k = item_kernel;
        r.f = f;
    } else {
        r.bk = block_kernel;
        r.n = len;
    }

    int main_thread = pyp_is_main_thread();
    struct sigaction sa, saved;
    volatile int *prev_target = NULL;
    int hooked = 0;
    if (main_thread && mode == MODE_INPROC) {
        prev_target = sigint_target;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        if (!prev_target) {
            if (sigaction(SIGINT, &sa, &saved) == 0) {
                old_sigint = saved;
                hooked = 1;
            }
        }
        sigint_target = &d.cancel;
    }
    int raised = pyp_run_released(&r, mode != MODE_INPROC, cancel_map, &d);
    if (main_thread && mode == MODE_INPROC) {
        sigint_target = prev_target;
        if (hooked) sigaction(SIGINT, &saved, NULL);
    }
    psh_functor_destroy(f);
    if (raised) {
        Py_DECREF(d.errors);
        return NULL;
    }
    if (d.cancel && PyErr_CheckSignals() < 0) {
        Py_DECREF(d.errors);
        return NULL;
    }
    PyObject *res = Py_BuildValue("(isO)", r.rc, r.rc == PSH_OK ? "" : r.msg, d.errors);
    Py_DECREF(d.errors);
    return res;
}
