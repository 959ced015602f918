/*
 * The pool job cache: the key of a pool job (what its pickled bytes depend
 * on), so that an unchanged job is neither pickled nor unpickled again.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

#include <string.h>

/* The key of a pool job (pasha.context._job_key).
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
        if (fz_append_new(z->vals, pyp_array_key(NULL, o)) < 0) return -1;
        PyObject *id = PyLong_FromVoidPtr(o);
        if (!id) return -1;
        int shared = z->shared ? PyDict_Contains(z->shared, id) : 0;
        Py_DECREF(id);
        if (shared < 0) return -1;
        if (!shared && fz_append_new(z->vals, PyArray_ToString(a, NPY_CORDER)) < 0) return -1;
        return 0;
    }
    PyObject *region = pyp_find_region(NULL, o);
    if (!region) return -1;
    if (region == Py_None) {
        Py_DECREF(region);
        if ((Py_ssize_t)PyArray_NBYTES(a) >= z->big) return 1;
        if (fz_append_new(z->vals, PyArray_ToString(a, NPY_CORDER)) < 0) return -1;
    } else if (fz_append_new(z->vals, region) < 0) {
        return -1;
    }
    PyObject *key = pyp_array_key(NULL, o); /* (address, shape, strides, writeable) */
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
PyObject *pyp_job_key(PyObject *self, PyObject *args)
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
PyObject *pyp_same_key(PyObject *self, PyObject *args)
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
