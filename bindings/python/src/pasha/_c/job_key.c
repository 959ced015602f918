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
 * Anything else makes the job uncacheable (None).
 *
 * Split mode (caller only): the globals a by-value function reads are not
 * frozen in place; each (globals dict, name) becomes a segment, frozen
 * after the job as a part of its own, so that a map whose job differs from
 * the last one only in the values of some globals can send just those
 * (context.py, _map_processes). Per part the key records whether it holds
 * anything but plain data (a function, partial, module, functor) and
 * whether it shares an object with another part. */

typedef struct {
    PyObject *ids, *vals, *seen;
    int worker, depth;
    PyObject *shared;                       /* worker: {id: view} of shared arrays */
    PyObject *missing;                      /* the missing marker (an instance) */
    PyObject *partial_type, *seq_type, *nd_type, *global_names;
    PyObject *by_value;                     /* cloudpickle's by-value modules (a set), or None */
    Py_ssize_t big;                         /* caller: arrays this large are copied per map */
    /* split mode (segs != NULL) */
    PyObject *segs;                         /* [(globals, name)] */
    PyObject *values;                       /* [value] of each segment */
    PyObject *segidx;                       /* {id(globals): {name: index}} */
    Py_ssize_t part;                        /* 0: the job; 1 + i: segment i */
    unsigned char *flags;                   /* per part: FZ_NONDATA, FZ_SHARED */
    Py_ssize_t nflags;
    Py_ssize_t *owner;                      /* per seen object: the part it was first met in */
    Py_ssize_t nowner;
} Freezer;

enum { FZ_NONDATA = 1, FZ_SHARED = 2 };

enum { FZ_MAX_IDS = 4096, FZ_MAX_DEPTH = 100 };

static int fz_add(Freezer *z, PyObject *o);
static int fz_append_new(PyObject *list, PyObject *o);

/* Grow a per-index array to hold index i (zero-filled). */
static int fz_grow(void **a, Py_ssize_t *n, Py_ssize_t i, size_t size)
{
    if (i < *n) return 0;
    Py_ssize_t m = *n ? *n : 64;
    while (m <= i) m *= 2;
    void *p = PyMem_Realloc(*a, (size_t)m * size);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    memset((char *)p + (size_t)*n * size, 0, (size_t)(m - *n) * size);
    *a = p;
    *n = m;
    return 0;
}

static int fz_flag(Freezer *z, Py_ssize_t part, unsigned char f)
{
    if (fz_grow((void **)&z->flags, &z->nflags, part, 1) < 0) return -1;
    z->flags[part] |= f;
    return 0;
}

/* Split mode: the index of segment (g, name) (added with value v if new). */
static Py_ssize_t fz_segment(Freezer *z, PyObject *g, PyObject *name, PyObject *v)
{
    PyObject *gid = PyLong_FromVoidPtr(g);
    if (!gid) return -1;
    PyObject *names = PyDict_GetItemWithError(z->segidx, gid);
    if (!names) {
        names = PyErr_Occurred() ? NULL : PyDict_New();
        if (!names || PyDict_SetItem(z->segidx, gid, names) < 0) {
            Py_XDECREF(names);
            Py_DECREF(gid);
            return -1;
        }
        Py_DECREF(names);  /* the dict holds it */
    }
    Py_DECREF(gid);
    PyObject *index = PyDict_GetItemWithError(names, name);
    if (index) return PyLong_AsSsize_t(index);
    if (PyErr_Occurred()) return -1;
    Py_ssize_t i = PyList_GET_SIZE(z->segs);
    PyObject *seg = PyTuple_Pack(2, g, name);
    if (fz_append_new(z->segs, seg) < 0 || PyList_Append(z->values, v) < 0) return -1;
    index = PyLong_FromSsize_t(i);
    int r = index ? PyDict_SetItem(names, name, index) : -1;
    Py_XDECREF(index);
    return r < 0 ? -1 : i;
}

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
        if (z->segs) {  /* split mode: the value is frozen later, as a part */
            Py_ssize_t seg = fz_segment(z, g, PyTuple_GET_ITEM(names, i), v);
            r = seg < 0 ? -1 : fz_append_new(z->vals, PyLong_FromSsize_t(seg));
        } else {
            r = fz_add(z, v);
        }
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

/* 1 when cloudpickle pickles module m by value (its name is not in
 * sys.modules: a module made at run time), 0 when by name, -1: an error. */
static int fz_module_by_value(PyObject *m)
{
    PyObject *name = PyModule_GetNameObject(m);
    if (!name) {
        PyErr_Clear();
        return 1;
    }
    int in = PyDict_Contains(PyImport_GetModuleDict(), name);
    Py_DECREF(name);
    return in < 0 ? -1 : !in;
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
        if (z->segs) {  /* met in another part: both share it */
            Py_ssize_t n = -PyLong_AsSsize_t(ref) - 1;
            if (n >= 0 && n < z->nowner && z->owner[n] != z->part &&
                (fz_flag(z, z->owner[n], FZ_SHARED) < 0 || fz_flag(z, z->part, FZ_SHARED) < 0))
                return -1;
        }
        return PyList_Append(z->vals, ref);
    }
    Py_ssize_t n = PyDict_GET_SIZE(z->seen);
    PyObject *mark = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(-n - 1);
    int r = mark ? PyDict_SetItem(z->seen, id, mark) : -1;
    Py_DECREF(id);
    Py_XDECREF(mark);
    if (r < 0) return -1;
    PyTypeObject *t = Py_TYPE(o);
    if (z->segs) {
        if (fz_grow((void **)&z->owner, &z->nowner, n, sizeof *z->owner) < 0) return -1;
        z->owner[n] = z->part;
        if (t != &PyTuple_Type && t != &PyList_Type && t != &PyDict_Type && t != &PyArray_Type &&
            t != &PyFrozenSet_Type && t != &PySlice_Type && fz_flag(z, z->part, FZ_NONDATA) < 0)
            return -1;
    }
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
        } else if (!z->worker && (r = fz_module_by_value(o)) != 0) {
            /* not in sys.modules: cloudpickle ships it by value, with its
             * attributes as they are: no key (1), or an error (-1) */
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
 *         global_names, by_value, big, split=False) -> (ids, vals), or None
 * when uncacheable. split (caller only): (ids, vals, segs, bounds, flags,
 * values): segs [(globals, name)], the globals by-value functions read,
 * values their values (apart: a kept key holds no value alive);
 * bounds (ids end, vals end) of each part (the job, then each segment's
 * value) in ids and vals; flags (bytes) of each part: FZ_NONDATA,
 * FZ_SHARED. */
PyObject *pyp_job_key(PyObject *self, PyObject *args)
{
    (void)self;
    Freezer z;
    memset(&z, 0, sizeof z);
    PyObject *job;
    int split = 0;
    if (!PyArg_ParseTuple(args, "OpOOOOOOOn|p", &job, &z.worker, &z.shared, &z.missing,
                          &z.partial_type, &z.seq_type, &z.nd_type, &z.global_names, &z.by_value,
                          &z.big, &split))
        return NULL;
    if (split && z.worker) return PyErr_Format(PyExc_ValueError, "job_key: split in a worker");
    if (z.shared == Py_None) z.shared = NULL;
    if (z.shared && !PyDict_Check(z.shared)) return PyErr_Format(PyExc_TypeError, "job_key: shared");
    z.ids = PyList_New(0);
    z.vals = PyList_New(0);
    z.seen = PyDict_New();
    PyObject *bounds = NULL, *flags = NULL;
    if (split) {
        z.segs = PyList_New(0);
        z.values = PyList_New(0);
        z.segidx = PyDict_New();
        bounds = PyList_New(0);
    }
    int r = z.ids && z.vals && z.seen && (!split || (z.segs && z.values && z.segidx && bounds)) ?
            fz_add(&z, job) : -1;
    /* Split: each segment's value, in order (a function among them may add
     * segments as it is frozen). */
    for (Py_ssize_t i = -1; split && r == 0 && i < PyList_GET_SIZE(z.segs); ++i) {
        if (i >= 0) {
            z.part = i + 1;
            z.depth = 0;
            PyObject *v = PyList_GET_ITEM(z.values, i);
            Py_INCREF(v);
            r = fz_add(&z, v);
            Py_DECREF(v);
            if (r) break;
        }
        r = fz_append_new(bounds, PyLong_FromSsize_t(PyList_GET_SIZE(z.ids)));
        if (r == 0) r = fz_append_new(bounds, PyLong_FromSsize_t(PyList_GET_SIZE(z.vals)));
    }
    if (split && r == 0) {
        Py_ssize_t nparts = PyList_GET_SIZE(z.segs) + 1;
        r = fz_grow((void **)&z.flags, &z.nflags, nparts, 1);
        flags = r == 0 ? PyBytes_FromStringAndSize((const char *)z.flags, nparts) : NULL;
        if (!flags) r = -1;
    }
    PyObject *out = NULL;
    if (r == 0) {
        out = split ? PyTuple_Pack(6, z.ids, z.vals, z.segs, bounds, flags, z.values)
                    : PyTuple_Pack(2, z.ids, z.vals);
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
    Py_XDECREF(z.segs);
    Py_XDECREF(z.values);
    Py_XDECREF(z.segidx);
    Py_XDECREF(bounds);
    Py_XDECREF(flags);
    PyMem_Free(z.flags);
    PyMem_Free(z.owner);
    return out;
}

/* same_key(a, b): a and b are (ids, vals) keys of the same job: ids
 * identical one by one, vals equal. */
PyObject *pyp_same_key(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "OO", &a, &b)) return NULL;
    if (!PyTuple_Check(a) || !PyTuple_Check(b) || PyTuple_GET_SIZE(a) < 2 || PyTuple_GET_SIZE(b) < 2)
        Py_RETURN_FALSE;
    PyObject *ia = PyTuple_GET_ITEM(a, 0), *ib = PyTuple_GET_ITEM(b, 0);
    if (!PyList_Check(ia) || !PyList_Check(ib) || PyList_GET_SIZE(ia) != PyList_GET_SIZE(ib))
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ia); ++i)
        if (PyList_GET_ITEM(ia, i) != PyList_GET_ITEM(ib, i)) Py_RETURN_FALSE;
    return PyObject_RichCompare(PyTuple_GET_ITEM(a, 1), PyTuple_GET_ITEM(b, 1), Py_EQ);
}

/* split_diff(cur, base): two split keys (job_key's split=True). None when
 * they differ in the job itself or in which segments there are (globals
 * dict by identity, name by value); else the list of the indices of the
 * segments whose values differ. */
PyObject *pyp_split_diff(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &a, &PyTuple_Type, &b)) return NULL;
    if (PyTuple_GET_SIZE(a) < 5 || PyTuple_GET_SIZE(b) < 5)
        return PyErr_Format(PyExc_TypeError, "split_diff: not split keys");
    PyObject *ia = PyTuple_GET_ITEM(a, 0), *va = PyTuple_GET_ITEM(a, 1), *sa = PyTuple_GET_ITEM(a, 2),
             *ba = PyTuple_GET_ITEM(a, 3);
    PyObject *ib = PyTuple_GET_ITEM(b, 0), *vb = PyTuple_GET_ITEM(b, 1), *sb = PyTuple_GET_ITEM(b, 2),
             *bb = PyTuple_GET_ITEM(b, 3);
    if (!PyList_Check(ia) || !PyList_Check(va) || !PyList_Check(sa) || !PyList_Check(ba) ||
        !PyList_Check(ib) || !PyList_Check(vb) || !PyList_Check(sb) || !PyList_Check(bb))
        return PyErr_Format(PyExc_TypeError, "split_diff: not split keys");
    Py_ssize_t n = PyList_GET_SIZE(sa);
    if (n != PyList_GET_SIZE(sb) || PyList_GET_SIZE(ba) != 2 * (n + 1) ||
        PyList_GET_SIZE(bb) != 2 * (n + 1))
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject *x = PyList_GET_ITEM(sa, i), *y = PyList_GET_ITEM(sb, i);
        if (PyTuple_GET_ITEM(x, 0) != PyTuple_GET_ITEM(y, 0)) Py_RETURN_NONE;
        int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(x, 1), PyTuple_GET_ITEM(y, 1), Py_EQ);
        if (eq < 0) return NULL;
        if (!eq) Py_RETURN_NONE;
    }
    Py_ssize_t bounds_a[2] = {0, 0}, bounds_b[2] = {0, 0};
    PyObject *changed = PyList_New(0);
    if (!changed) return NULL;
    for (Py_ssize_t p = 0; p <= n; ++p) {
        Py_ssize_t ea[2], eb[2];
        for (int k = 0; k < 2; ++k) {
            ea[k] = PyLong_AsSsize_t(PyList_GET_ITEM(ba, 2 * p + k));
            eb[k] = PyLong_AsSsize_t(PyList_GET_ITEM(bb, 2 * p + k));
        }
        if (PyErr_Occurred()) goto fail;
        int same = ea[0] - bounds_a[0] == eb[0] - bounds_b[0] &&
                   ea[1] - bounds_a[1] == eb[1] - bounds_b[1] &&
                   ea[0] <= PyList_GET_SIZE(ia) && eb[0] <= PyList_GET_SIZE(ib) &&
                   ea[1] <= PyList_GET_SIZE(va) && eb[1] <= PyList_GET_SIZE(vb);
        if (same) {
            /* the same lengths: compare a's range with b's, offset */
            Py_ssize_t di = bounds_b[0] - bounds_a[0], dv = bounds_b[1] - bounds_a[1];
            for (Py_ssize_t i = bounds_a[0]; same && i < ea[0]; ++i)
                same = PyList_GET_ITEM(ia, i) == PyList_GET_ITEM(ib, i + di);
            for (Py_ssize_t i = bounds_a[1]; same == 1 && i < ea[1]; ++i) {
                PyObject *x = PyList_GET_ITEM(va, i), *y = PyList_GET_ITEM(vb, i + dv);
                if (x != y) same = PyObject_RichCompareBool(x, y, Py_EQ);
            }
            if (same < 0) goto fail;
        }
        if (!same) {
            if (p == 0) {
                Py_DECREF(changed);
                Py_RETURN_NONE;
            }
            if (fz_append_new(changed, PyLong_FromSsize_t(p - 1)) < 0) goto fail;
        }
        bounds_a[0] = ea[0], bounds_a[1] = ea[1];
        bounds_b[0] = eb[0], bounds_b[1] = eb[1];
    }
    return changed;
fail:
    Py_DECREF(changed);
    return NULL;
}
