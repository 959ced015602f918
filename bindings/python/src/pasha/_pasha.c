/*
 * pasha._pasha: the C half of the Python package pasha, on libpasha.
 *
 * Contexts are psh_context handles; alloc hands out numpy arrays that are
 * zero-copy views of psh arrays (recorded in a registry of address ranges);
 * map runs the kernel over the items of a sequence with one psh_map_ext
 * call (a custom functor whose worker_begin takes the GIL for the worker's
 * items and worker_end gives it back), or over the shares of any other
 * functor with psh_map_blocks_ext. Only the public CPython API is used.
 *
 * Process maps release the GIL while the caller waits. From the main
 * thread they run on a helper thread, so that the main thread can run the
 * program's signal handlers every few milliseconds: a handler that raises
 * cancels the map (every worker stops at its next item) and the exception
 * is re-raised. Forks made by libpasha run CPython's fork protocol through
 * psh_register_fork_hooks.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <pasha/pasha.h>
#include <pasha_internal.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#if PY_VERSION_HEX < 0x03090000
#error "pasha needs Python 3.9 or newer"
#endif

/* Python functions set by pasha.context (set_hooks). */
static PyObject *pool_entry;      /* pool_entry(job, serial) -> (fn, functor, shares, run_worker) */
static PyObject *store_exception; /* store_exception(slot, exc, index) in worker processes */
static PyObject *flush_stdio;     /* flush_stdio(): sys.stdout/stderr at a worker's end */

/* Set in a worker process made by libpasha (by the child fork hook). */
static volatile int in_worker_process;
/* Set at interpreter exit (atexit): no more thread-state work. */
static volatile int py_exiting;
/* The ident of the main thread, whose maps run the signal handlers. */
static unsigned long main_ident;

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
    if (py_exiting || !p || !Py_IsInitialized()) return;
    PyThreadState *ts = (PyThreadState *)p;
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
}

static PyGILState_STATE gil_enter(void)
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
    in_worker_process = 1;
    main_ident = PyThread_get_thread_ident();
}

/* ---- the registry of psh arrays ------------------------------------- */

typedef struct {
    uintptr_t begin, end;
} Region;

static Region *regions;
static size_t num_regions, cap_regions;
static pthread_mutex_t regions_mu = PTHREAD_MUTEX_INITIALIZER;

static int region_add(uintptr_t b, uintptr_t e)
{
    pthread_mutex_lock(&regions_mu);
    if (num_regions == cap_regions) {
        size_t cap = cap_regions ? cap_regions * 2 : 64;
        Region *r = realloc(regions, cap * sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&regions_mu);
            return -1;
        }
        regions = r;
        cap_regions = cap;
    }
    regions[num_regions++] = (Region){b, e};
    pthread_mutex_unlock(&regions_mu);
    return 0;
}

static void region_remove(uintptr_t b)
{
    pthread_mutex_lock(&regions_mu);
    for (size_t i = num_regions; i-- > 0;)
        if (regions[i].begin == b) {
            regions[i] = regions[--num_regions];
            break;
        }
    pthread_mutex_unlock(&regions_mu);
}

/* The region holding [b, e), or 0. */
static int region_find(uintptr_t b, uintptr_t e, Region *out)
{
    int found = 0;
    pthread_mutex_lock(&regions_mu);
    for (size_t i = 0; i < num_regions; ++i)
        if (regions[i].begin <= b && e <= regions[i].end && b < regions[i].end) {
            *out = regions[i];
            found = 1;
            break;
        }
    pthread_mutex_unlock(&regions_mu);
    return found;
}

static void array_capsule_free(PyObject *cap)
{
    psh_array *a = (psh_array *)PyCapsule_GetPointer(cap, "pasha.array");
    if (!a) {
        PyErr_Clear();
        return;
    }
    region_remove((uintptr_t)psh_array_data(a));
    psh_array_free(a);
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
    char *data = psh_array_data(a);
    if (region_add((uintptr_t)data, (uintptr_t)data + (size_t)nbytes + (nbytes == 0)) != 0) {
        psh_array_free(a);
        return PyErr_NoMemory();
    }
    PyObject *cap = PyCapsule_New(a, "pasha.array", array_capsule_free);
    if (!cap) {
        region_remove((uintptr_t)data);
        psh_array_free(a);
        return NULL;
    }
    PyObject *arr = PyArray_New(&PyArray_Type, 1, &dims, NPY_UINT8, NULL, data, 0,
                                NPY_ARRAY_CARRAY, NULL);
    if (!arr) {
        Py_DECREF(cap);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, cap) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* find_region(obj) -> (region_address, region_nbytes, offset) when the
 * memory of the ndarray (or buffer) obj lies in a live psh array, else None. */
static PyObject *py_find_region(PyObject *self, PyObject *obj)
{
    (void)self;
    uintptr_t lo, hi;
    if (PyArray_Check(obj)) {
        PyArrayObject *a = (PyArrayObject *)obj;
        lo = hi = (uintptr_t)PyArray_DATA(a);
        npy_intp size = PyArray_SIZE(a);
        if (size == 0) Py_RETURN_NONE;
        for (int i = 0; i < PyArray_NDIM(a); ++i) {
            npy_intp ext = (PyArray_DIMS(a)[i] - 1) * PyArray_STRIDES(a)[i];
            if (ext < 0)
                lo += ext;
            else
                hi += ext;
        }
        hi += PyArray_ITEMSIZE(a);
    } else {
        Py_RETURN_NONE;
    }
    Region r;
    if (!region_find(lo, hi, &r)) Py_RETURN_NONE;
    return Py_BuildValue("(KnK)", (unsigned long long)r.begin, (Py_ssize_t)(r.end - r.begin),
                         (unsigned long long)((uintptr_t)PyArray_DATA((PyArrayObject *)obj) -
                                              r.begin));
}

/* array_key(a) -> (data address, shape, strides, writeable): what a pool
 * worker compares to tell that a view it kept was not changed in place. */
static PyObject *py_array_key(PyObject *self, PyObject *obj)
{
    (void)self;
    if (!PyArray_Check(obj)) return PyErr_Format(PyExc_TypeError, "array_key: not an ndarray");
    PyArrayObject *a = (PyArrayObject *)obj;
    int nd = PyArray_NDIM(a);
    PyObject *shape = PyTuple_New(nd), *strides = PyTuple_New(nd);
    if (!shape || !strides) goto fail;
    for (int i = 0; i < nd; ++i) {
        PyObject *d = PyLong_FromSsize_t((Py_ssize_t)PyArray_DIMS(a)[i]);
        if (!d) goto fail;
        PyTuple_SET_ITEM(shape, i, d);
        PyObject *st = PyLong_FromSsize_t((Py_ssize_t)PyArray_STRIDES(a)[i]);
        if (!st) goto fail;
        PyTuple_SET_ITEM(strides, i, st);
    }
    return Py_BuildValue("(KNNi)", (unsigned long long)(uintptr_t)PyArray_DATA(a), shape, strides,
                         PyArray_ISWRITEABLE(a) ? 1 : 0);
fail:
    Py_XDECREF(shape);
    Py_XDECREF(strides);
    return NULL;
}

/* ---- the key of a pool job (pasha.context._job_key) --------------------
 *
 * What the pickled bytes of a job depend on (in the caller), or what the
 * objects a worker unpickled hold (in a worker): `ids`, compared by
 * identity, and `vals`, compared with ==. Atoms (None, bool, int, float,
 * complex, str, bytes, range, Ellipsis, the missing marker) by identity;
 * tuples, frozensets, slices and pasha's own functors (made anew for each
 * map) by their contents; lists, dicts, functions, partials and arrays by
 * identity and contents; modules by identity; an object met again by where
 * it was first met.
 * Anything else makes the job uncacheable (None). */

typedef struct {
    PyObject *ids, *vals, *seen;
    int worker, depth;
    PyObject *shared;                       /* worker: {id: view} of shared arrays */
    PyObject *missing;                      /* the missing marker (an instance) */
    PyObject *partial_type, *seq_type, *nd_type, *global_names;
    PyObject *by_value;                     /* cloudpickle's by-value modules (a set), or None */
    Py_ssize_t big;                         /* caller: arrays this large are copied per map */
} Freezer;

enum { FZ_MAX_IDS = 4096, FZ_MAX_DEPTH = 100 };

static int fz_add(Freezer *z, PyObject *o);

static int fz_atom(Freezer *z, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    return o == Py_None || t == &PyBool_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyComplex_Type ||
           t == &PyRange_Type || o == Py_Ellipsis || (PyObject *)t == (PyObject *)Py_TYPE(z->missing);
}

/* Append a new reference (stolen; NULL: error) to a list. */
static int fz_append_new(PyObject *list, PyObject *o)
{
    if (!o) return -1;
    int r = PyList_Append(list, o);
    Py_DECREF(o);
    return r;
}

static int fz_attr(Freezer *z, PyObject *o, const char *name)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v) return -1;
    int r = fz_add(z, v);
    Py_DECREF(v);
    return r;
}

static int fz_items(Freezer *z, PyObject *d)
{
    if (!PyDict_Check(d)) return 1;
    if (fz_append_new(z->vals, PyLong_FromSsize_t(PyDict_GET_SIZE(d))) < 0) return -1;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        Py_INCREF(k);
        Py_INCREF(v);
        int r = fz_add(z, k);
        if (r == 0) r = fz_add(z, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (r) return r;
    }
    return 0;
}

static int fz_array(Freezer *z, PyObject *o)
{
    PyArrayObject *a = (PyArrayObject *)o;
    PyArray_Descr *dt = PyArray_DESCR(a);
    if (PyDataType_REFCHK(dt)) return 1;
    if (PyList_Append(z->ids, (PyObject *)dt) < 0) return -1;
    if (z->worker) {
        if (fz_append_new(z->vals, py_array_key(NULL, o)) < 0) return -1;
        PyObject *id = PyLong_FromVoidPtr(o);
        if (!id) return -1;
        int shared = z->shared ? PyDict_Contains(z->shared, id) : 0;
        Py_DECREF(id);
        if (shared < 0) return -1;
        if (!shared && fz_append_new(z->vals, PyArray_ToString(a, NPY_CORDER)) < 0) return -1;
        return 0;
    }
    PyObject *region = py_find_region(NULL, o);
    if (!region) return -1;
    if (region == Py_None) {
        Py_DECREF(region);
        if ((Py_ssize_t)PyArray_NBYTES(a) >= z->big) return 1;
        if (fz_append_new(z->vals, PyArray_ToString(a, NPY_CORDER)) < 0) return -1;
    } else if (fz_append_new(z->vals, region) < 0) {
        return -1;
    }
    PyObject *key = py_array_key(NULL, o); /* (address, shape, strides, writeable) */
    if (!key) return -1;
    int r = PyList_Append(z->vals, PyTuple_GET_ITEM(key, 1));
    if (r == 0) r = PyList_Append(z->vals, PyTuple_GET_ITEM(key, 2));
    Py_DECREF(key);
    return r;
}

static int fz_function(Freezer *z, PyObject *f)
{
    int r = -1;
    PyObject *module = PyObject_GetAttrString(f, "__module__");
    PyObject *qualname = module ? PyObject_GetAttrString(f, "__qualname__") : NULL;
    PyObject *name = NULL, *doc = NULL, *names = NULL;
    if (!qualname) goto done;
    /* cloudpickle ships a function of __main__, or one defined in another
     * function, by value; any other by reference (module and name) while
     * that module's attribute of that name is the function. */
    int main = PyUnicode_Check(module) && PyUnicode_CompareWithASCIIString(module, "__main__") == 0;
    if (!main) {
        PyObject *tag = PyUnicode_FromString("<locals>");
        if (!tag) goto done;
        int local = PyUnicode_Check(qualname) ? PySequence_Contains(qualname, tag) : 0;
        Py_DECREF(tag);
        if (local < 0) goto done;
        if (!local) {
            r = 1;
            if (z->worker) {
                r = PyList_Append(z->ids, module);
                if (r == 0) r = PyList_Append(z->ids, qualname);
                goto done;
            }
            if (!PyUnicode_Check(module) || !PyUnicode_Check(qualname) ||
                !PyAnySet_Check(z->by_value) || PySet_GET_SIZE(z->by_value) != 0)
                goto done;
            Py_ssize_t dot = PyUnicode_FindChar(qualname, '.', 0, PyUnicode_GET_LENGTH(qualname), 1);
            if (dot != -1) {
                if (dot == -2) r = -1;
                goto done;
            }
            PyObject *m = PyDict_GetItemWithError(PyImport_GetModuleDict(), module);
            if (!m) {
                if (PyErr_Occurred()) r = -1;
                goto done;
            }
            PyObject *v = PyObject_GetAttr(m, qualname);
            if (!v) {
                PyErr_Clear();
                goto done;
            }
            Py_DECREF(v);
            if (v == f) {  /* the weak reference is there already: the name */
                r = PyList_Append(z->ids, module);
                if (r == 0) r = PyList_Append(z->ids, qualname);
            }
            goto done;
        }
    }
    PyObject *code = PyFunction_GET_CODE(f), *g = PyFunction_GET_GLOBALS(f);
    name = PyObject_GetAttrString(f, "__name__");
    doc = name ? PyObject_GetAttrString(f, "__doc__") : NULL;
    if (!doc) goto done;
    PyObject *fixed[6] = {code, name, qualname, module, doc, g};
    for (int i = 0; i < 6; ++i)
        if (PyList_Append(z->ids, fixed[i]) < 0) goto done;
    PyObject *defaults = PyFunction_GET_DEFAULTS(f), *kwdefaults = PyFunction_GET_KW_DEFAULTS(f);
    if ((r = fz_add(z, defaults ? defaults : Py_None)) != 0) goto done;
    if ((r = fz_add(z, kwdefaults ? kwdefaults : Py_None)) != 0) goto done;
    r = -1;
    if ((r = fz_attr(z, f, "__dict__")) != 0) goto done;
    if ((r = fz_attr(z, f, "__annotations__")) != 0) goto done;
    PyObject *closure = PyFunction_GET_CLOSURE(f);
    if (closure && PyTuple_Check(closure)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(closure); ++i) {
            PyObject *cell = PyTuple_GET_ITEM(closure, i);
            PyObject *v = PyCell_Check(cell) ? PyCell_GET(cell) : NULL;
            v = v ? v : z->missing;
            Py_INCREF(v);
            r = fz_add(z, v);
            Py_DECREF(v);
            if (r) goto done;
        }
    }
    r = -1;
    names = PyObject_CallOneArg(z->global_names, code);
    if (!names || !PyTuple_Check(names) || !PyDict_Check(g)) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); ++i) {
        PyObject *v = PyDict_GetItemWithError(g, PyTuple_GET_ITEM(names, i));
        if (!v && PyErr_Occurred()) goto done;
        v = v ? v : z->missing;
        Py_INCREF(v);
        r = fz_add(z, v);
        Py_DECREF(v);
        if (r) goto done;
        r = -1;
    }
    if (z->worker) {
        /* cloudpickle sets __builtins__; a kernel may add names */
        if (fz_append_new(z->vals, PyLong_FromSsize_t(PyDict_GET_SIZE(g))) < 0) goto done;
        PyObject *b = PyDict_GetItemString(g, "__builtins__");
        if (PyList_Append(z->ids, b ? b : z->missing) < 0) goto done;
    }
    r = 0;
done:
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    Py_XDECREF(name);
    Py_XDECREF(doc);
    Py_XDECREF(names);
    return r;
}

/* The identity of an array, function or partial: in the caller a weak
 * reference (one per live object, a new one for a new object at the same
 * address), so that the key keeps no array alive between maps. */
static int fz_identity(Freezer *z, PyObject *o)
{
    if (z->worker) return PyList_Append(z->ids, o);
    return fz_append_new(z->ids, PyWeakref_NewRef(o, NULL));
}

/* 0: added; 1: uncacheable; -1: an error (set). */
static int fz_add(Freezer *z, PyObject *o)
{
    if (fz_atom(z, o)) return PyList_Append(z->ids, o);
    if (PyList_GET_SIZE(z->ids) > FZ_MAX_IDS || z->depth > FZ_MAX_DEPTH) return 1;
    PyObject *id = PyLong_FromVoidPtr(o);
    if (!id) return -1;
    PyObject *ref = PyDict_GetItemWithError(z->seen, id);
    if (ref) {
        Py_DECREF(id);
        return PyList_Append(z->vals, ref);
    }
    PyObject *mark = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(-PyDict_GET_SIZE(z->seen) - 1);
    int r = mark ? PyDict_SetItem(z->seen, id, mark) : -1;
    Py_DECREF(id);
    Py_XDECREF(mark);
    if (r < 0) return -1;
    PyTypeObject *t = Py_TYPE(o);
    z->depth++;
    if (t == &PyTuple_Type || t == &PyList_Type) {
        r = PyList_Append(z->ids, t == &PyTuple_Type ? (PyObject *)t : o);
        if (r == 0) r = fz_append_new(z->vals, PyLong_FromSsize_t(PySequence_Fast_GET_SIZE(o)));
        for (Py_ssize_t i = 0; r == 0 && i < PySequence_Fast_GET_SIZE(o); ++i) {
            PyObject *x = PySequence_Fast_GET_ITEM(o, i);
            Py_INCREF(x);
            r = fz_add(z, x);
            Py_DECREF(x);
        }
    } else if (t == &PyDict_Type) {
        r = PyList_Append(z->ids, o);
        if (r == 0) r = fz_items(z, o);
    } else if (t == &PyArray_Type) {
        r = fz_identity(z, o);
        if (r == 0) r = fz_array(z, o);
    } else if (t == &PyFunction_Type) {
        r = fz_identity(z, o);
        if (r == 0) r = fz_function(z, o);
    } else if ((PyObject *)t == z->partial_type) {
        r = fz_identity(z, o);
        if (r == 0) r = fz_attr(z, o, "func");
        if (r == 0) r = fz_attr(z, o, "args");
        if (r == 0) r = fz_attr(z, o, "keywords");
        if (r == 0) r = fz_attr(z, o, "__dict__");
    } else if ((PyObject *)t == z->seq_type || (PyObject *)t == z->nd_type) {
        r = PyList_Append(z->ids, (PyObject *)t);
        PyObject *d = r == 0 ? PyObject_GetAttrString(o, "__dict__") : NULL;
        if (!d) {
            r = -1;
        } else if (z->worker) {
            r = PyList_Append(z->ids, o);
            if (r == 0) r = fz_add(z, d);
        } else {
            r = fz_items(z, d);
        }
        Py_XDECREF(d);
    } else if (t == &PyFrozenSet_Type) {
        r = PyList_Append(z->ids, (PyObject *)t);
        if (r == 0) r = fz_append_new(z->vals, PyLong_FromSsize_t(PySet_GET_SIZE(o)));
        PyObject *it = r == 0 ? PyObject_GetIter(o) : NULL, *x;
        if (r == 0 && !it) r = -1;
        while (r == 0 && (x = PyIter_Next(it)) != NULL) {
            r = fz_add(z, x);
            Py_DECREF(x);
        }
        if (r == 0 && PyErr_Occurred()) r = -1;
        Py_XDECREF(it);
    } else if (t == &PyModule_Type) {
        /* cloudpickle ships an imported module by name, with the loaded
         * submodules the function names: sys.modules growing (an import)
         * makes a new key. A module registered to go by value: no key. */
        if (!z->worker && (!PyAnySet_Check(z->by_value) || PySet_GET_SIZE(z->by_value) != 0)) {
            r = 1;
        } else {
            r = PyList_Append(z->ids, o);
            if (r == 0 && !z->worker)
                r = fz_append_new(z->vals, PyLong_FromSsize_t(PyDict_Size(PyImport_GetModuleDict())));
        }
    } else if (t == &PySlice_Type) {
        PySliceObject *sl = (PySliceObject *)o;
        r = PyList_Append(z->ids, (PyObject *)t);
        if (r == 0) r = fz_add(z, sl->start);
        if (r == 0) r = fz_add(z, sl->stop);
        if (r == 0) r = fz_add(z, sl->step);
    } else {
        r = 1;
    }
    z->depth--;
    return r;
}

/* job_key(job, worker, shared, missing, partial_type, seq_type, nd_type,
 *         global_names, by_value, big) -> (ids, vals), or None when uncacheable. */
static PyObject *py_job_key(PyObject *self, PyObject *args)
{
    (void)self;
    Freezer z;
    memset(&z, 0, sizeof z);
    PyObject *job;
    if (!PyArg_ParseTuple(args, "OpOOOOOOOn", &job, &z.worker, &z.shared, &z.missing,
                          &z.partial_type, &z.seq_type, &z.nd_type, &z.global_names, &z.by_value,
                          &z.big))
        return NULL;
    if (z.shared == Py_None) z.shared = NULL;
    if (z.shared && !PyDict_Check(z.shared)) return PyErr_Format(PyExc_TypeError, "job_key: shared");
    z.ids = PyList_New(0);
    z.vals = PyList_New(0);
    z.seen = PyDict_New();
    int r = z.ids && z.vals && z.seen ? fz_add(&z, job) : -1;
    PyObject *out = NULL;
    if (r == 0) {
        out = PyTuple_Pack(2, z.ids, z.vals);
    } else {
        /* An error reading an object (a property that raises): pickling
         * will report it if it matters; the job is just not cached. */
        if (r < 0 && PyErr_ExceptionMatches(PyExc_MemoryError)) goto fail;
        PyErr_Clear();
        Py_INCREF(Py_None);
        out = Py_None;
    }
fail:
    Py_XDECREF(z.ids);
    Py_XDECREF(z.vals);
    Py_XDECREF(z.seen);
    return out;
}

/* same_key(a, b): a and b are (ids, vals) keys of the same job: ids
 * identical one by one, vals equal. */
static PyObject *py_same_key(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "OO", &a, &b)) return NULL;
    if (!PyTuple_Check(a) || !PyTuple_Check(b) || PyTuple_GET_SIZE(a) != 2 || PyTuple_GET_SIZE(b) != 2)
        Py_RETURN_FALSE;
    PyObject *ia = PyTuple_GET_ITEM(a, 0), *ib = PyTuple_GET_ITEM(b, 0);
    if (!PyList_Check(ia) || !PyList_Check(ib) || PyList_GET_SIZE(ia) != PyList_GET_SIZE(ib))
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ia); ++i)
        if (PyList_GET_ITEM(ia, i) != PyList_GET_ITEM(ib, i)) Py_RETURN_FALSE;
    return PyObject_RichCompare(PyTuple_GET_ITEM(a, 1), PyTuple_GET_ITEM(b, 1), Py_EQ);
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
    /* A persistent pool forks here (the fork hooks run CPython's fork
     * protocol around it). */
    int rc = psh_context_create_ext(&c, &o);
    if (rc != PSH_OK) {
        raise_psh(rc, "context");
        return -1;
    }
    psh_context *old = self->ctx;
    self->ctx = c;
    if (old) {
        Py_BEGIN_ALLOW_THREADS
        psh_context_destroy(old);
        Py_END_ALLOW_THREADS
    }
    return 0;
}

static void ctx_dealloc(CtxObject *self)
{
    psh_context *c = self->ctx;
    self->ctx = NULL;
    if (c) {
        /* Its threads give their Python thread states back as they end:
         * they need the GIL. */
        if (py_exiting) {
            psh_context_destroy(c);
        } else {
            Py_BEGIN_ALLOW_THREADS
            psh_context_destroy(c);
            Py_END_ALLOW_THREADS
        }
    }
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

/* ---- running a libpasha map (directly or on the helper thread) ------- */

typedef struct {
    psh_context *ctx;
    psh_block_kernel bk; /* or */
    psh_kernel k;
    psh_functor *f;
    void *ud;
    size_t n;
    const psh_map_options *o;
    int rc;
    char msg[1024];
    int done;
} RunReq;

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

static int is_main_thread(void)
{
    return !in_worker_process && PyThread_get_thread_ident() == main_ident;
}

/* Run r with the GIL released. In the main thread of a process map, run it
 * on the helper thread and run signal handlers every 5 ms meanwhile; when
 * one raises, call cancel(cancel_data) and return -1 with the exception
 * set once the map has ended. */
static int run_released(RunReq *r, int process_map, void (*cancel)(void *), void *cancel_data)
{
    if (!process_map || !is_main_thread() || helper.busy || helper_start() != 0) {
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

enum { MODE_INPROC = 0, MODE_FORK = 1, MODE_POOL = 2 };

/* The error buffer (a psh array every worker sees): a header with the stop
 * flag, then one slot per worker: [exception length, item index, data]. */
enum { ERR_HEADER = 64 };

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
    PyObject *t = pool_entry ? PyObject_CallFunction(pool_entry, "OL", mv, d->serial) : NULL;
    Py_DECREF(mv);
    if (!t) {
        if (!pool_entry) PyErr_SetString(PyExc_RuntimeError, "pasha: no pool entry");
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
    } else if (store_exception) {
        char *slot = slot_of(d, w);
        PyObject *mv = PyMemoryView_FromMemory(slot, (Py_ssize_t)d->err_size, PyBUF_WRITE);
        PyObject *r = mv ? PyObject_CallFunction(store_exception, "OOn", mv, exc, index) : NULL;
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
    s->gil = gil_enter();
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
    if (s->d && s->d->mode != MODE_INPROC && flush_stdio) {
        /* The worker's Python-level stdout/stderr buffers. */
        PyObject *r = PyObject_CallNoArgs(flush_stdio);
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

/* ctx.map(itemwise, n, function, functor, seq, shares, run_worker, mode,
 *         job, serial, err, err_size, schedule, chunk, progress[, worker_base])
 *   -> (status, message, errors)
 * worker_base is added to the worker ids the kernels get (an MPI rank's
 * offset); libpasha's messages keep the local ids.
 * itemwise: n items of seq, else n shares. errors: [(index, exception)]
 * raised in-process. job and err: uint8 ndarrays over psh arrays, or None. */
static PyObject *ctx_map(CtxObject *self, PyObject *args)
{
    int itemwise, mode, schedule;
    Py_ssize_t n, err_size, chunk;
    long long serial;
    PyObject *function, *functor, *seq, *shares, *run_worker, *job, *err, *progress;
    int worker_base = 0;
    if (!PyArg_ParseTuple(args, "pnOOOOOiOLOninO|i", &itemwise, &n, &function, &functor, &seq,
                          &shares, &run_worker, &mode, &job, &serial, &err, &err_size, &schedule,
                          &chunk, &progress, &worker_base))
        return NULL;
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
            return raise_psh(rc, "map");
        }
        r.k = item_kernel;
        r.f = f;
    } else {
        r.bk = block_kernel;
        r.n = len;
    }

    int main_thread = is_main_thread();
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
    int raised = run_released(&r, mode != MODE_INPROC, cancel_map, &d);
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

static void cancel_flag_only(void *p)
{
    __atomic_store_n((int *)p, 1, __ATOMIC_RELAXED);
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
    volatile int cancel = 0;
    psh_map_options o;
    psh_map_options_init(&o);
    o.cancel = &cancel;
    RunReq r;
    memset(&r, 0, sizeof r);
    r.ctx = self->ctx;
    r.k = (psh_kernel)(uintptr_t)fn;
    r.ud = (void *)(uintptr_t)ud;
    r.f = f;
    r.o = &o;
    int raised = run_released(&r, psh_context_kind(self->ctx) == PSH_PROCESSES,
                              cancel_flag_only, (void *)&cancel);
    psh_functor_destroy(f);
    if (raised) return NULL;
    return Py_BuildValue("(is)", r.rc, r.rc == PSH_OK ? "" : r.msg);
}

static PyObject *py_set_hooks(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *a, *b, *c;
    if (!PyArg_ParseTuple(args, "OOO", &a, &b, &c)) return NULL;
    Py_INCREF(a);
    Py_INCREF(b);
    Py_INCREF(c);
    Py_XSETREF(pool_entry, a);
    Py_XSETREF(store_exception, b);
    Py_XSETREF(flush_stdio, c);
    Py_RETURN_NONE;
}

static PyObject *py_at_exit(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    py_exiting = 1;
    Py_RETURN_NONE;
}

static PyObject *py_after_fork_child(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    main_ident = PyThread_get_thread_ident();
    /* The helper thread is not in the child (and may have held its lock). */
    pthread_mutex_init(&helper.mu, NULL);
    pthread_cond_init(&helper.cv, NULL);
    helper.started = 0;
    helper.busy = 0;
    helper.req = NULL;
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
    psh_context *c = psh_default_context_ref();
    if (!c) return raise_psh(PSH_ESYS, "context");
    int n = psh_context_num_workers(c);
    psh_context_destroy(c);
    return PyLong_FromLong(n);
}

/* Context._from_capsule(capsule): a Context over the psh_context of a
 * "pasha.psh_context" capsule (one reference, which the Context takes). */
static PyObject *ctx_from_capsule(PyObject *cls, PyObject *cap)
{
    psh_context *c = PyCapsule_GetPointer(cap, "pasha.psh_context");
    if (!c) return NULL;
    CtxObject *o = (CtxObject *)PyType_GenericAlloc((PyTypeObject *)cls, 0);
    if (!o) return NULL;
    if (PyCapsule_SetName(cap, "pasha.psh_context (taken)") < 0) {
        Py_DECREF(o);
        return NULL;
    }
    o->ctx = c;
    return (PyObject *)o;
}

static PyMethodDef ctx_methods[] = {
    {"_from_capsule", (PyCFunction)ctx_from_capsule, METH_O | METH_CLASS,
     "_from_capsule(capsule) -> Context over a \"pasha.psh_context\" capsule's reference"},
    {"map", (PyCFunction)ctx_map, METH_VARARGS,
     "map(itemwise, n, function, functor, seq, shares, run_worker, mode, job, serial, err,"
     " err_size, schedule, chunk, progress) -> (status, message, errors)"},
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
    {"find_region", py_find_region, METH_O,
     "find_region(array) -> (address, nbytes, offset) of the live psh array holding it, or None"},
    {"job_key", py_job_key, METH_VARARGS,
     "job_key(job, worker, shared, missing, partial, seq, nd, global_names, by_value, big)"
     " -> key or None"},
    {"same_key", py_same_key, METH_VARARGS, "same_key(a, b): two job keys are the same"},
    {"array_key", py_array_key, METH_O,
     "array_key(a) -> (data address, shape, strides, writeable) of an ndarray"},
    {"from_address", py_from_address, METH_VARARGS,
     "from_address(addr, nbytes) -> writable memoryview of psh memory"},
    {"set_hooks", py_set_hooks, METH_VARARGS,
     "set_hooks(pool_entry, store_exception, flush_stdio)"},
    {"_at_exit", py_at_exit, METH_NOARGS, "the interpreter is exiting"},
    {"_after_fork_child", py_after_fork_child, METH_NOARGS, "after os.fork() in the child"},
    {"version", py_version, METH_NOARGS, "libpasha's version"},
    {"default_num_workers", py_default_num_workers, METH_NOARGS,
     "the number of workers of libpasha's default context"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_pasha", "libpasha bindings (internal)", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pasha(void)
{
    import_array();
    if (PyType_Ready(&CtxType) < 0) return NULL;
    static int once;
    if (!once) {
        if (pthread_key_create(&kept_key, kept_tstate_free) != 0)
            return PyErr_Format(PyExc_RuntimeError, "pasha: pthread_key_create failed");
        if (psh_register_fork_hooks(hook_prepare, hook_parent, hook_child, NULL) != PSH_OK)
            return PyErr_Format(PyExc_RuntimeError, "pasha: %s", psh_last_error());
        once = 1;
    }
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *mt = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = mt ? PyObject_GetAttrString(mt, "ident") : NULL;
    Py_XDECREF(threading);
    Py_XDECREF(mt);
    if (!ident) return NULL;
    main_ident = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (PyErr_Occurred()) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    Py_INCREF(&CtxType);
    if (PyModule_AddObject(m, "Context", (PyObject *)&CtxType) < 0) return NULL;
    /* The engine's internal table (src/pasha_internal.h), for the MPI
     * extension module, which builds on this module's engine. */
    if (PyModule_AddObject(m, "_engine", PyCapsule_New((void *)psh_internal_engine_get(PSH_INTERNAL_VERSION),
                                                       "pasha._engine", NULL)) < 0)
        return NULL;
    PyModule_AddIntConstant(m, "OK", PSH_OK);
    PyModule_AddIntConstant(m, "EKERNEL", PSH_EKERNEL);
    PyModule_AddIntConstant(m, "EWORKER", PSH_EWORKER);
    PyModule_AddIntConstant(m, "ECANCELED", PSH_ECANCELED);
    PyModule_AddIntConstant(m, "ERR_HEADER", ERR_HEADER);
    return m;
}
