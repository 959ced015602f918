/* pasha._pasha_mpi: the C MPI context (src/mpi/context_mpi.cc, compiled
 * into this module) for pasha.MpiContext. It builds on the engine of the
 * _pasha module (handed over as the capsule _pasha._engine, see
 * src/pasha_internal.h), so the context it makes is one of that engine and
 * maps on it through _pasha.Context like any other. Python keeps argument
 * handling and numpy views (mpi.py); every collective is the C library's.
 *
 * SPDX-License-Identifier: BSD-3-Clause */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <mpi.h>

#include <pasha/pasha_mpi.h>
#include <pasha_internal.h>

/* context_mpi.cc, compiled with PASHA_MPI_HOSTED */
int pasha_mpi_set_engine(const psh_internal_engine *engine);
int pasha_mpi_failed_rank(const psh_context *ctx);
int pasha_mpi_node_info(const psh_context *ctx, int *node_rank, int *node_size, int *node_of);

static const psh_internal_engine *E;

static psh_array *array_of(PyObject *arr);

static PyObject *raise_psh(int rc, const char *what)
{
    PyErr_Format(rc == PSH_ENOMEM ? PyExc_MemoryError : rc == PSH_EINVAL ? PyExc_ValueError : PyExc_RuntimeError,
                 "%s: %s", what, E->last_error());
    return NULL;
}

#define CTX_TAKEN "pasha.psh_context (taken)"

static void ctx_capsule_free(PyObject *cap)
{
    /* Not taken by a _pasha.Context: the reference is still ours. */
    psh_context *c = PyCapsule_GetPointer(cap, "pasha.psh_context");
    if (!c) {
        PyErr_Clear();
        return;
    }
    E->context_destroy(c);
}

static psh_context *ctx_of(PyObject *cap)
{
    if (cap == Py_None) return NULL;
    if (PyCapsule_IsValid(cap, CTX_TAKEN)) return PyCapsule_GetPointer(cap, CTX_TAKEN);
    return PyCapsule_GetPointer(cap, "pasha.psh_context");
}

/* create(comm_f, local_kind, local_workers) -> "pasha.psh_context" capsule
 * (collective; every rank raises the same error). */
static PyObject *py_create(PyObject *self, PyObject *args)
{
    (void)self;
    long long comm_f;
    int kind, workers;
    if (!PyArg_ParseTuple(args, "Lii", &comm_f, &kind, &workers)) return NULL;
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)comm_f);
    psh_context *ctx = NULL;
    int rc;
    psh_kind k;
    memcpy(&k, &kind, sizeof k);
    Py_BEGIN_ALLOW_THREADS
    rc = psh_context_create_mpi(&ctx, comm, k, workers);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) return raise_psh(rc, "MpiContext");
    PyObject *cap = PyCapsule_New(ctx, "pasha.psh_context", ctx_capsule_free);
    if (!cap) E->context_destroy(ctx);
    return cap;
}

static PyObject *py_rank_size(PyObject *self, PyObject *cap)
{
    (void)self;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    return Py_BuildValue("(ii)", psh_mpi_rank(c), psh_mpi_size(c));
}

/* node_info(ctx) -> (node_rank, node_size, [node leader of each rank]) */
static PyObject *py_node_info(PyObject *self, PyObject *cap)
{
    (void)self;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    int n = psh_mpi_size(c), nr = 0, ns = 0;
    int *of = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    if (!of) return PyErr_NoMemory();
    if (pasha_mpi_node_info(c, &nr, &ns, of) != 0) {
        PyMem_Free(of);
        return PyErr_Format(PyExc_ValueError, "not an MPI context");
    }
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; ++i) PyList_SET_ITEM(list, i, PyLong_FromLong(of[i]));
    PyMem_Free(of);
    if (!list) return NULL;
    return Py_BuildValue("(iiN)", nr, ns, list);
}

static PyObject *py_is_whole(PyObject *self, PyObject *arr)
{
    (void)self;
    return PyBool_FromLong(PyArray_Check(arr) && array_of(arr) != NULL);
}

static PyObject *py_failed_rank(PyObject *self, PyObject *cap)
{
    (void)self;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    return PyLong_FromLong(pasha_mpi_failed_rank(c));
}

static void array_capsule_free(PyObject *cap)
{
    psh_array *a = PyCapsule_GetPointer(cap, "pasha.mpi_array");
    if (a) E->array_free(a);
    else PyErr_Clear();
}

/* alloc(ctx or None, psh_dtype, rows, row_items) -> a 2-d ndarray (uint8
 * for dtype -1: row_items bytes per row) over a new psh array of ctx
 * (collective for an MPI ctx), zeroed. */
static PyObject *py_alloc(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int dtype;
    Py_ssize_t rows, items;
    if (!PyArg_ParseTuple(args, "Oinn", &cap, &dtype, &rows, &items)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c && cap != Py_None) return NULL;
    psh_dtype dt = dtype < 0 ? PSH_UINT8 : (psh_dtype)dtype;
    size_t shape[2] = {(size_t)(rows < 0 ? 0 : rows), (size_t)(items < 0 ? 0 : items)};
    psh_array *a = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = E->alloc(&a, c, dt, 2, shape, NULL);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) return raise_psh(rc, "alloc");
    static const int npy[] = {NPY_INT8, NPY_UINT8, NPY_INT16, NPY_UINT16, NPY_INT32, NPY_UINT32, NPY_INT64,
                              NPY_UINT64, NPY_FLOAT32, NPY_FLOAT64, NPY_COMPLEX64, NPY_COMPLEX128};
    npy_intp dims[2] = {(npy_intp)shape[0], (npy_intp)shape[1]};
    PyObject *arr = PyArray_New(&PyArray_Type, 2, dims, npy[dt], NULL, E->array_data(a), 0, NPY_ARRAY_CARRAY, NULL);
    PyObject *base = arr ? PyCapsule_New(a, "pasha.mpi_array", array_capsule_free) : NULL;
    if (!base) {
        Py_XDECREF(arr);
        E->array_free(a);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, base) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* The psh array under an ndarray from alloc (through views), or NULL. */
static psh_array *array_of(PyObject *arr)
{
    PyObject *o = arr;
    while (o && PyArray_Check(o)) o = PyArray_BASE((PyArrayObject *)o);
    if (!o || !PyCapsule_IsValid(o, "pasha.mpi_array")) return NULL;
    psh_array *a = PyCapsule_GetPointer(o, "pasha.mpi_array");
    /* the whole array, in C order: a view of part of it is not the array */
    PyArrayObject *v = (PyArrayObject *)arr;
    if (PyArray_DATA(v) != E->array_data(a) || (size_t)PyArray_NBYTES(v) != E->array_nbytes(a) ||
        !PyArray_IS_C_CONTIGUOUS(v))
        return NULL;
    return a;
}

/* collect(ctx, array or None, op, root): op -1 gather, -2 allgather, else
 * psh_mpi_reduce's op (collective). array None: this rank refuses the call,
 * so that every rank fails it (the error of Python's own checks). */
static PyObject *py_collect(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *arr;
    int op, root;
    if (!PyArg_ParseTuple(args, "OOii", &cap, &arr, &op, &root)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    psh_array *a = arr == Py_None ? NULL : array_of(arr);
    if (!a && arr != Py_None) return PyErr_Format(PyExc_TypeError, "not an array of pasha._pasha_mpi.alloc");
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = op == -1 ? psh_mpi_gather(c, a, root) : op == -2 ? psh_mpi_allgather(c, a) : psh_mpi_reduce(c, a, op, root);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) return raise_psh(rc, op == -1 ? "gather" : op == -2 ? "allgather" : "reduce");
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"create", py_create, METH_VARARGS, "create(comm_f, local_kind, local_workers) -> psh_context capsule"},
    {"rank_size", py_rank_size, METH_O, "rank_size(ctx) -> (rank, size)"},
    {"node_info", py_node_info, METH_O, "node_info(ctx) -> (node_rank, node_size, node leader of each rank)"},
    {"is_whole", py_is_whole, METH_O, "is_whole(array): the whole array of an alloc of this module"},
    {"failed_rank", py_failed_rank, METH_O, "failed_rank(ctx): the rank whose error the last failed call spread, or -1"},
    {"alloc", py_alloc, METH_VARARGS, "alloc(ctx, psh_dtype, rows, row_items) -> 2-d ndarray"},
    {"collect", py_collect, METH_VARARGS, "collect(ctx, array, op, root): gather (-1), allgather (-2), reduce"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_pasha_mpi", "libpasha's MPI context (internal)", -1,
                                        methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pasha_mpi(void)
{
    import_array();
    PyObject *core = PyImport_ImportModule("pasha._pasha");
    PyObject *cap = core ? PyObject_GetAttrString(core, "_engine") : NULL;
    Py_XDECREF(core);
    if (!cap) return NULL;
    E = PyCapsule_GetPointer(cap, "pasha._engine");
    Py_DECREF(cap);
    if (!E) return NULL;
    if (pasha_mpi_set_engine(E) != PSH_OK)
        return PyErr_Format(PyExc_ImportError, "pasha._pasha_mpi: the engine of pasha._pasha has another layout");
    return PyModule_Create(&module_def);
}
