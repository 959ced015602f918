/*
 * Arrays: numpy views of libpasha shared-memory arrays, and the registry of
 * their address ranges (which array's memory an ndarray lies in, whatever
 * its base objects are).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

#include <pthread.h>

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

/* alloc_bytes(ctx, nbytes) -> 1-d uint8 ndarray over a new psh array. */
PyObject *pyp_alloc_bytes(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ctxo;
    Py_ssize_t nbytes;
    if (!PyArg_ParseTuple(args, "On", &ctxo, &nbytes)) return NULL;
    if (ctxo != Py_None && !PyObject_TypeCheck(ctxo, &pyp_CtxType))
        return PyErr_Format(PyExc_TypeError, "alloc_bytes: ctx must be a Context or None");
    if (nbytes < 0) return PyErr_Format(PyExc_ValueError, "alloc_bytes: negative size");
    size_t shape = (size_t)nbytes;
    psh_array *a = NULL;
    int rc = psh_alloc(&a, pyp_ctx_of(ctxo), PSH_UINT8, 1, &shape, NULL);
    if (rc != PSH_OK) return pyp_raise(rc, "alloc");
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
PyObject *pyp_find_region(PyObject *self, PyObject *obj)
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
PyObject *pyp_array_key(PyObject *self, PyObject *obj)
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

/* from_address(addr, nbytes) -> writable memoryview (no ownership); used to
 * rebuild psh-backed arrays inside persistent-pool workers. */
PyObject *pyp_from_address(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long addr;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Kn", &addr, &n)) return NULL;
    return PyMemoryView_FromMemory((char *)(uintptr_t)addr, n, PyBUF_WRITE);
}
