/*
 * pasha._pasha: the C half of the Python package pasha, on libpasha.
 *
 * Contexts are psh_context handles; alloc hands out numpy arrays that are
 * zero-copy views of psh arrays; map dispatches one Python call per share
 * through psh_map_blocks_ext (static schedule: worker w runs share w).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <pasha/pasha.h>

#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The process in which the interpreter's state is valid: a forked worker
 * calls PyOS_AfterFork_Child() once before it runs Python code. */
static pid_t py_pid;
/* The Python function a persistent-pool worker calls for a share. */
static PyObject *pool_entry;

static void ensure_child_ready(void)
{
    pid_t p = getpid();
    if (p != py_pid) {
        PyOS_AfterFork_Child();
        py_pid = p;
    }
}

/* ---- arrays ---------------------------------------------------------- */

static void array_capsule_free(PyObject *cap)
{
    psh_array_free((psh_array *)PyCapsule_GetPointer(cap, "pasha.array"));
}

typedef struct {
    PyObject_HEAD
    psh_context *ctx;
} CtxObject;

static PyTypeObject CtxType;

static psh_context *ctx_of(PyObject *o)
{
    if (o == Py_None) return NULL;
    return ((CtxObject *)o)->ctx;
}

static PyObject *raise_psh(int rc, const char *what)
{
    PyErr_Format(rc == PSH_ENOMEM ? PyExc_MemoryError
                 : rc == PSH_EINVAL ? PyExc_ValueError : PyExc_RuntimeError,
                 "%s: %s (%s)", what, psh_strerror(rc), psh_last_error());
    return NULL;
}

/* alloc_bytes(ctx, nbytes) -> 1-d uint8 ndarray over a new psh array. */
static PyObject *py_alloc_bytes(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ctxo;
    Py_ssize_t nbytes;
    if (!PyArg_ParseTuple(args, "On", &ctxo, &nbytes)) return NULL;
    if (ctxo != Py_None && !PyObject_TypeCheck(ctxo, &CtxType))
        return PyErr_Format(PyExc_TypeError, "alloc_bytes: ctx must be a Context or None");
    if (nbytes < 0) return PyErr_Format(PyExc_ValueError, "alloc_bytes: negative size");
    size_t shape = (size_t)nbytes;
    psh_array *a = NULL;
    int rc = psh_alloc(&a, ctx_of(ctxo), PSH_UINT8, 1, &shape, NULL);
    if (rc != PSH_OK) return raise_psh(rc, "alloc");
    npy_intp dims = (npy_intp)nbytes;
    PyObject *arr = PyArray_New(&PyArray_Type, 1, &dims, NPY_UINT8, NULL, psh_array_data(a), 0,
                                NPY_ARRAY_CARRAY, NULL);
    if (!arr) {
        psh_array_free(a);
        return NULL;
    }
    PyObject *cap = PyCapsule_New(a, "pasha.array", array_capsule_free);
    if (!cap) {
        psh_array_free(a);
        Py_DECREF(arr);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, cap) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* from_address(addr, nbytes) -> writable memoryview (no ownership); used to
 * rebuild psh-backed arrays inside persistent-pool workers. */
static PyObject *py_from_address(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long addr;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Kn", &addr, &n)) return NULL;
    return PyMemoryView_FromMemory((char *)(uintptr_t)addr, n, PyBUF_WRITE);
}

/* ---- contexts -------------------------------------------------------- */

static int ctx_init(CtxObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"kind", "num_workers", "persistent", "schedule", "chunk",
                             "pin_cpus", NULL};
    int kind, nw, persistent = 0, schedule = 0, pin = 0;
    Py_ssize_t chunk = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ii|pini", kwlist, &kind, &nw, &persistent,
                                     &schedule, &chunk, &pin))
        return -1;
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = (psh_kind)kind;
    o.num_workers = nw;
    o.persistent = persistent;
    o.schedule = (psh_schedule)schedule;
    o.chunk = chunk < 0 ? 0 : (size_t)chunk;
    o.pin_cpus = pin;
    psh_context *c = NULL;
    /* A persistent pool forks here, with the GIL held: its workers are
     * copies of this thread, which owns the GIL in them. */
    int rc = psh_context_create_ext(&c, &o);
    if (rc != PSH_OK) {
        raise_psh(rc, "context");
        return -1;
    }
    psh_context_destroy(self->ctx);
    self->ctx = c;
    return 0;
}

static void ctx_dealloc(CtxObject *self)
{
    psh_context_destroy(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ctx_num_workers(CtxObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong(psh_context_num_workers(self->ctx));
}

static PyObject *ctx_kind(CtxObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong((long)psh_context_kind(self->ctx));
}

/* ---- map ------------------------------------------------------------- */

enum { MODE_INPROC = 0, MODE_FORK = 1, MODE_POOL = 2 };

typedef struct {
    int mode;
    PyObject *runner;   /* INPROC/FORK: runner(share_index, worker_id) -> int */
    char *job;          /* POOL: the pickled job, in a psh array */
    size_t job_len;
    char *err;          /* per-worker error slots, in a psh array */
    size_t err_size;
    PyObject *progress; /* callable(done, total) or NULL */
} MapData;

static int call_runner(PyObject *fn, PyObject *args)
{
    if (!args) return -1;
    PyObject *r = PyObject_CallObject(fn, args);
    Py_DECREF(args);
    if (!r) {
        PyErr_Print();
        return -1;
    }
    long v = PyLong_AsLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return (int)v;
}

static _Thread_local int tstate_kept;

static int block_kernel(void *ud, int w, size_t begin, size_t end)
{
    MapData *d = (MapData *)ud;
    int rc = 0;
    if (d->mode == MODE_INPROC) {
        PyGILState_STATE st = PyGILState_Ensure();
        if (!tstate_kept) {
            /* Keep this pool thread's Python thread state for later maps:
             * one Ensure never released, so the next ones only take the
             * GIL instead of making and deleting a thread state. */
            (void)PyGILState_Ensure();
            tstate_kept = 1;
        }
        for (size_t i = begin; i < end && rc == 0; ++i)
            rc = call_runner(d->runner, Py_BuildValue("(ni)", (Py_ssize_t)i, w));
        PyGILState_Release(st);
        return rc;
    }
    /* A forked worker: this thread is the copy of the one that held the
     * GIL at fork time (or runs inline in the caller, nested). */
    ensure_child_ready();
    for (size_t i = begin; i < end && rc == 0; ++i) {
        if (d->mode == MODE_FORK) {
            rc = call_runner(d->runner, Py_BuildValue("(ni)", (Py_ssize_t)i, w));
        } else {
            PyObject *job = PyMemoryView_FromMemory(d->job, (Py_ssize_t)d->job_len, PyBUF_READ);
            PyObject *err = PyMemoryView_FromMemory(d->err + (size_t)w * d->err_size,
                                                    (Py_ssize_t)d->err_size, PyBUF_WRITE);
            PyObject *args = (job && err) ? Py_BuildValue("(OOni)", job, err, (Py_ssize_t)i, w)
                                          : NULL;
            Py_XDECREF(job);
            Py_XDECREF(err);
            rc = pool_entry ? call_runner(pool_entry, args) : -1;
        }
    }
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

/* Ctrl-C during a map: set libpasha's cancel flag and chain to the
 * previous handler (Python's, which trips KeyboardInterrupt). */
static volatile int cancel_flag;
static struct sigaction old_sigint;

static void on_sigint(int sig)
{
    __atomic_store_n((int *)&cancel_flag, 1, __ATOMIC_RELAXED);
    if (!(old_sigint.sa_flags & SA_SIGINFO) && old_sigint.sa_handler != SIG_DFL &&
        old_sigint.sa_handler != SIG_IGN && old_sigint.sa_handler != NULL)
        old_sigint.sa_handler(sig);
}

/* ctx.map_blocks(n, runner, mode, job, err, err_size, schedule, chunk,
 *                progress) -> (status, message)
 * job and err are uint8 ndarrays over psh arrays (or None). */
static PyObject *ctx_map_blocks(CtxObject *self, PyObject *args)
{
    Py_ssize_t n, err_size, chunk;
    PyObject *runner, *job, *err, *progress;
    int mode, schedule;
    if (!PyArg_ParseTuple(args, "nOiOOninO", &n, &runner, &mode, &job, &err, &err_size,
                          &schedule, &chunk, &progress))
        return NULL;
    MapData d;
    memset(&d, 0, sizeof d);
    d.mode = mode;
    d.runner = runner;
    if (job != Py_None) {
        if (!PyArray_Check(job)) return PyErr_Format(PyExc_TypeError, "job must be an ndarray");
        d.job = PyArray_BYTES((PyArrayObject *)job);
        d.job_len = (size_t)PyArray_NBYTES((PyArrayObject *)job);
    }
    if (err != Py_None) {
        if (!PyArray_Check(err)) return PyErr_Format(PyExc_TypeError, "err must be an ndarray");
        d.err = PyArray_BYTES((PyArrayObject *)err);
        d.err_size = (size_t)err_size;
    }
    d.progress = progress == Py_None ? NULL : progress;

    psh_map_options o;
    psh_map_options_init(&o);
    o.schedule = (psh_schedule)schedule;
    o.chunk = (size_t)chunk;
    o.cancel = &cancel_flag;
    if (d.progress) {
        o.progress = progress_cb;
        o.progress_data = &d;
    }
    if (mode == MODE_POOL) o.user_data_size = sizeof d;

    int main_thread = PyGILState_Check() && _PyOS_IsMainThread();
    struct sigaction sa, saved;
    if (main_thread) {
        __atomic_store_n((int *)&cancel_flag, 0, __ATOMIC_RELAXED);
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &saved);
        old_sigint = saved;
    }
    int rc;
    if (mode == MODE_INPROC) {
        Py_BEGIN_ALLOW_THREADS
        rc = psh_map_blocks_ext(self->ctx, block_kernel, &d, (size_t)n, &o);
        Py_END_ALLOW_THREADS
    } else {
        /* Hold the GIL across the fork so the children own it. */
        py_pid = getpid();
        rc = psh_map_blocks_ext(self->ctx, block_kernel, &d, (size_t)n, &o);
    }
    const char *msg = psh_last_error();
    PyObject *res = Py_BuildValue("(is)", rc, rc == PSH_OK ? "" : msg);
    int canceled = 0;
    if (main_thread) {
        sigaction(SIGINT, &saved, NULL);
        canceled = __atomic_load_n((int *)&cancel_flag, __ATOMIC_RELAXED);
    }
    if (canceled) {
        Py_XDECREF(res);
        if (PyErr_CheckSignals() < 0) return NULL;
        PyErr_SetNone(PyExc_KeyboardInterrupt);
        return NULL;
    }
    return res;
}

/* ctx.map_native(fnptr, user_data, n, array_or_None, axis) -> (status, msg)
 * Runs a C kernel (psh_kernel) without the GIL: over range(n) (value NULL)
 * or over the sub-arrays of a numpy array along axis (value: psh_view *). */
static int npy_to_psh(int t, psh_dtype *out)
{
    switch (t) {
    case NPY_INT8: *out = PSH_INT8; return 0;
    case NPY_UINT8: *out = PSH_UINT8; return 0;
    case NPY_INT16: *out = PSH_INT16; return 0;
    case NPY_UINT16: *out = PSH_UINT16; return 0;
    case NPY_INT32: *out = PSH_INT32; return 0;
    case NPY_UINT32: *out = PSH_UINT32; return 0;
    case NPY_INT64: *out = PSH_INT64; return 0;
    case NPY_UINT64: *out = PSH_UINT64; return 0;
    case NPY_LONGLONG: *out = sizeof(long long) == 8 ? PSH_INT64 : PSH_INT32; return 0;
    case NPY_ULONGLONG: *out = sizeof(long long) == 8 ? PSH_UINT64 : PSH_UINT32; return 0;
    case NPY_FLOAT32: *out = PSH_FLOAT32; return 0;
    case NPY_FLOAT64: *out = PSH_FLOAT64; return 0;
    case NPY_COMPLEX64: *out = PSH_COMPLEX64; return 0;
    case NPY_COMPLEX128: *out = PSH_COMPLEX128; return 0;
    default: return -1;
    }
}

static PyObject *ctx_map_native(CtxObject *self, PyObject *args)
{
    unsigned long long fn, ud;
    Py_ssize_t n;
    PyObject *arr;
    int axis;
    if (!PyArg_ParseTuple(args, "KKnOi", &fn, &ud, &n, &arr, &axis)) return NULL;
    if (!fn) return PyErr_Format(PyExc_ValueError, "map: NULL native kernel");
    psh_functor *f = NULL;
    int rc;
    if (arr == Py_None) {
        rc = psh_functor_range(&f, (size_t)(n < 0 ? 0 : n));
    } else {
        if (!PyArray_Check(arr)) return PyErr_Format(PyExc_TypeError, "map: not an ndarray");
        PyArrayObject *a = (PyArrayObject *)arr;
        psh_dtype dt;
        if (npy_to_psh(PyArray_TYPE(a), &dt) != 0)
            return PyErr_Format(PyExc_ValueError, "map: dtype %R has no native kernel type",
                                (PyObject *)PyArray_DESCR(a));
        int nd = PyArray_NDIM(a);
        size_t shape[NPY_MAXDIMS];
        ptrdiff_t strides[NPY_MAXDIMS];
        for (int i = 0; i < nd; ++i) {
            shape[i] = (size_t)PyArray_DIMS(a)[i];
            strides[i] = (ptrdiff_t)PyArray_STRIDES(a)[i];
        }
        rc = psh_functor_strided(&f, PyArray_DATA(a), dt, nd, shape, strides, axis);
    }
    if (rc != PSH_OK) return raise_psh(rc, "map");
    psh_map_options o;
    psh_map_options_init(&o);
    o.cancel = &cancel_flag;
    __atomic_store_n((int *)&cancel_flag, 0, __ATOMIC_RELAXED);
    Py_BEGIN_ALLOW_THREADS
    rc = psh_map_ext(self->ctx, (psh_kernel)(uintptr_t)fn, (void *)(uintptr_t)ud, f, &o);
    Py_END_ALLOW_THREADS
    PyObject *res = Py_BuildValue("(is)", rc, rc == PSH_OK ? "" : psh_last_error());
    psh_functor_destroy(f);
    return res;
}

static PyObject *py_set_pool_entry(PyObject *self, PyObject *fn)
{
    (void)self;
    Py_XINCREF(fn);
    Py_XSETREF(pool_entry, fn);
    Py_RETURN_NONE;
}

static PyObject *py_version(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(psh_version());
}

static PyObject *py_default_num_workers(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    psh_context *c = NULL;
    int rc = psh_context_create(&c, PSH_THREADS, 0);
    if (rc != PSH_OK) return raise_psh(rc, "context");
    int n = psh_context_num_workers(c);
    psh_context_destroy(c);
    return PyLong_FromLong(n);
}

static PyMethodDef ctx_methods[] = {
    {"map_blocks", (PyCFunction)ctx_map_blocks, METH_VARARGS,
     "map_blocks(n, runner, mode, job, err, err_size, schedule, chunk, progress)"
     " -> (status, message): one psh_map_blocks_ext call"},
    {"map_native", (PyCFunction)ctx_map_native, METH_VARARGS,
     "map_native(fnptr, user_data, n, array, axis) -> (status, message)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef ctx_getset[] = {
    {"num_workers", (getter)ctx_num_workers, NULL, "number of workers", NULL},
    {"kind", (getter)ctx_kind, NULL, "psh_kind of the context", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject CtxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pasha._pasha.Context",
    .tp_basicsize = sizeof(CtxObject),
    .tp_dealloc = (destructor)ctx_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Context(kind, num_workers, persistent=False, schedule=0, chunk=0, pin_cpus=0):"
              " a libpasha psh_context",
    .tp_methods = ctx_methods,
    .tp_getset = ctx_getset,
    .tp_init = (initproc)ctx_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_methods[] = {
    {"alloc_bytes", py_alloc_bytes, METH_VARARGS,
     "alloc_bytes(ctx, nbytes) -> uint8 ndarray viewing a new psh array"},
    {"from_address", py_from_address, METH_VARARGS,
     "from_address(addr, nbytes) -> writable memoryview of psh memory"},
    {"set_pool_entry", py_set_pool_entry, METH_O,
     "set_pool_entry(fn): fn(job, err, share_index, worker_id) runs in pool workers"},
    {"version", py_version, METH_NOARGS, "libpasha's version"},
    {"default_num_workers", py_default_num_workers, METH_NOARGS,
     "the default number of workers of libpasha"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_pasha", "libpasha bindings (internal)", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pasha(void)
{
    import_array();
    if (PyType_Ready(&CtxType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    Py_INCREF(&CtxType);
    if (PyModule_AddObject(m, "Context", (PyObject *)&CtxType) < 0) return NULL;
    PyModule_AddIntConstant(m, "OK", PSH_OK);
    PyModule_AddIntConstant(m, "EKERNEL", PSH_EKERNEL);
    PyModule_AddIntConstant(m, "EWORKER", PSH_EWORKER);
    PyModule_AddIntConstant(m, "ECANCELED", PSH_ECANCELED);
    py_pid = getpid();
    return m;
}
