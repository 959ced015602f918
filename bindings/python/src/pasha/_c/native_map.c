/*
 * Context.map_native: a C kernel (psh_kernel) run without the GIL.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

#include <string.h>

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

PyObject *pyp_ctx_map_native(CtxObject *self, PyObject *args)
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
    if (rc != PSH_OK) return pyp_raise(rc, "map");
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
    int raised = pyp_run_released(&r, psh_context_kind(self->ctx) == PSH_PROCESSES,
                              cancel_flag_only, (void *)&cancel);
    psh_functor_destroy(f);
    if (raised) return NULL;
    return Py_BuildValue("(is)", r.rc, r.rc == PSH_OK ? "" : r.msg);
}
