/* pasha._pasha_mpi: the C MPI context (src/mpi/context_mpi.cc, compiled
 * into this module) for pasha.MpiContext. It builds on the engine of the
 * _pasha module (handed over as the capsule _pasha._engine, see
 * src/pasha_internal.h), so the context it makes is one of that engine and
 * maps on it through _pasha.Context like any other: one engine per process.
 * Python keeps argument handling and numpy views (mpi.py); every
 * collective is the C library's, and so are the few exchanges the binding
 * needs of its own (exchange: a bytes object from every rank, on the
 * context's own communicator).
 *
 * Built only where an MPI C library is found (meson option mpi); the
 * package works without it (pasha.MpiContext then says what is missing).
 *
 * SPDX-License-Identifier: BSD-3-Clause */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <mpi.h>

#include <pasha/pasha_mpi.h>
#include <pasha_internal.h>

#include <limits.h>
#include <string.h>

/* context_mpi.cc, compiled with PASHA_MPI_HOSTED */
int pasha_mpi_set_engine(const psh_internal_engine *engine);
int pasha_mpi_failed_rank(const psh_context *ctx);
int pasha_mpi_node_info(const psh_context *ctx, int *node_rank, int *node_size, int *node_of);
int pasha_mpi_call_state(const psh_context *ctx, long long *calls, int *self_failed);
MPI_Comm pasha_mpi_comm(const psh_context *ctx);

static const psh_internal_engine *E;

static PyObject *raise_psh(int rc)
{
    PyErr_SetString(rc == PSH_ENOMEM ? PyExc_MemoryError : rc == PSH_EINVAL ? PyExc_ValueError : PyExc_RuntimeError,
                    E->last_error());
    return NULL;
}

static void ctx_capsule_free(PyObject *cap)
{
    /* Not taken over by a _pasha.Context: the reference is still ours. */
    psh_context *c = PyCapsule_GetPointer(cap, "pasha.psh_context");
    if (c) E->context_destroy(c);
    else PyErr_Clear();
}

/* The MPI psh_context of a capsule from create (taken over or not). */
static psh_context *ctx_of(PyObject *cap)
{
    const char *name = PyCapsule_IsValid(cap, "pasha.psh_context.taken") ? "pasha.psh_context.taken"
                                                                          : "pasha.psh_context";
    psh_context *c = PyCapsule_GetPointer(cap, name);
    if (c && psh_mpi_size(c) < 1) {
        PyErr_SetString(PyExc_ValueError, "not an MPI context");
        return NULL;
    }
    return c;
}

/* create(comm_f, local_kind, local_workers) -> "pasha.psh_context" capsule
 * (collective over the communicator, a Fortran handle: mpi4py's py2f). */
static PyObject *py_create(PyObject *self, PyObject *args)
{
    (void)self;
    long long comm_f;
    int kind, workers;
    if (!PyArg_ParseTuple(args, "Lii", &comm_f, &kind, &workers)) return NULL;
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)comm_f);
    psh_context *ctx = NULL;
    psh_kind k;
    memcpy(&k, &kind, sizeof k);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = psh_context_create_mpi(&ctx, comm, k, workers);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) return raise_psh(rc);
    PyObject *cap = PyCapsule_New(ctx, "pasha.psh_context", ctx_capsule_free);
    if (!cap) E->context_destroy(ctx);
    return cap;
}

/* info(ctx, local_workers) -> (rank, size, node_rank, node_size,
 * [node leader of each rank], worker_base): collective (the worker base is
 * the sum of the lower ranks' local workers). */
static PyObject *py_info(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int workers;
    if (!PyArg_ParseTuple(args, "Oi", &cap, &workers)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    int n = psh_mpi_size(c), nr = 0, ns = 0, base = 0;
    int *of = PyMem_Calloc((size_t)n, sizeof(int));
    if (!of) return PyErr_NoMemory();
    pasha_mpi_node_info(c, &nr, &ns, of);
    Py_BEGIN_ALLOW_THREADS
    MPI_Exscan(&workers, &base, 1, MPI_INT, MPI_SUM, pasha_mpi_comm(c));
    Py_END_ALLOW_THREADS
    if (psh_mpi_rank(c) == 0) base = 0; /* MPI_Exscan leaves rank 0's undefined */
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; ++i) PyList_SET_ITEM(list, i, PyLong_FromLong(of[i]));
    PyMem_Free(of);
    if (!list) return NULL;
    return Py_BuildValue("(iiiiNi)", psh_mpi_rank(c), n, nr, ns, list, base);
}

/* state(ctx) -> (calls begun, the rank whose error the last failed call
 * spread (-1: the ranks passed different values, -2: made different
 * calls), whether this rank's own part of it failed). */
static PyObject *py_state(PyObject *self, PyObject *cap)
{
    (void)self;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    long long calls = 0;
    int mine = 0;
    pasha_mpi_call_state(c, &calls, &mine);
    return Py_BuildValue("(LiO)", calls, pasha_mpi_failed_rank(c), mine ? Py_True : Py_False);
}

/* exchange(ctx, data) -> [the bytes every rank passed] (collective: one
 * broadcast per rank, its length first, in pieces of at most 1 GiB). */
static PyObject *py_exchange(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    Py_buffer mine;
    if (!PyArg_ParseTuple(args, "Oy*", &cap, &mine)) return NULL;
    psh_context *c = ctx_of(cap);
    int size = c ? psh_mpi_size(c) : 0, me = c ? psh_mpi_rank(c) : 0;
    PyObject *out = c ? PyList_New(size) : NULL;
    MPI_Comm comm = c ? pasha_mpi_comm(c) : MPI_COMM_NULL;
    for (int r = 0; out && r < size; ++r) {
        long long len = mine.len;
        MPI_Bcast(&len, 1, MPI_LONG_LONG, r, comm);
        PyObject *b = PyBytes_FromStringAndSize(r == me ? mine.buf : NULL, r == me ? mine.len : (Py_ssize_t)len);
        char *p = b ? PyBytes_AS_STRING(b) : NULL;
        /* Every rank takes part in every broadcast, even one short of memory. */
        for (long long done = 0; done < len; done += 1 << 30) {
            int piece = (int)(len - done < (1 << 30) ? len - done : (1 << 30));
            static char sink[1 << 16];
            if (p) {
                Py_BEGIN_ALLOW_THREADS
                MPI_Bcast(p + done, piece, MPI_BYTE, r, comm);
                Py_END_ALLOW_THREADS
            } else {
                for (int off = 0; off < piece; off += (int)sizeof sink)
                    MPI_Bcast(sink, piece - off < (int)sizeof sink ? piece - off : (int)sizeof sink, MPI_BYTE, r, comm);
            }
        }
        if (b) PyList_SET_ITEM(out, r, b);
        else Py_CLEAR(out);
    }
    PyBuffer_Release(&mine);
    return out;
}

static void array_capsule_free(PyObject *cap)
{
    psh_array *a = PyCapsule_GetPointer(cap, "pasha.mpi_array");
    if (a) E->array_free(a);
    else PyErr_Clear();
}

/* alloc(ctx or None, psh_dtype, rows, row_items) -> a 2-d ndarray (uint8
 * for dtype -1: row_items bytes per row) over a new psh array of ctx
 * (collective for an MPI ctx: one buffer per node), zeroed. Its base is a
 * "pasha.mpi_array" capsule, which frees the psh array. */
static PyObject *py_alloc(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int dtype;
    Py_ssize_t rows, items;
    if (!PyArg_ParseTuple(args, "Oinn", &cap, &dtype, &rows, &items)) return NULL;
    psh_context *c = cap == Py_None ? NULL : ctx_of(cap);
    if (!c && cap != Py_None) return NULL;
    psh_dtype dt = dtype < 0 || dtype > PSH_COMPLEX128 ? PSH_UINT8 : (psh_dtype)dtype;
    size_t shape[2] = {(size_t)(rows < 0 ? 0 : rows), (size_t)(items < 0 ? 0 : items)};
    psh_array *a = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = E->alloc(&a, c, dt, 2, shape, NULL);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) return raise_psh(rc);
    static const int npy[] = {NPY_INT8,   NPY_UINT8,   NPY_INT16,   NPY_UINT16,    NPY_INT32,    NPY_UINT32,
                              NPY_INT64,  NPY_UINT64,  NPY_FLOAT32, NPY_FLOAT64,   NPY_COMPLEX64, NPY_COMPLEX128};
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

/* The psh array under an ndarray from alloc (*part: the ndarray is not the
 * whole of it in C order), or NULL. */
static psh_array *array_under(PyObject *arr, int *part)
{
    if (!PyArray_Check(arr)) return NULL;
    PyObject *o = arr;
    while (o && PyArray_Check(o)) o = PyArray_BASE((PyArrayObject *)o);
    if (!o || !PyCapsule_IsValid(o, "pasha.mpi_array")) return NULL;
    psh_array *a = PyCapsule_GetPointer(o, "pasha.mpi_array");
    PyArrayObject *v = (PyArrayObject *)arr;
    *part = PyArray_DATA(v) != E->array_data(a) || (size_t)PyArray_NBYTES(v) != E->array_nbytes(a) ||
            !PyArray_IS_C_CONTIGUOUS(v);
    return a;
}

static psh_array *array_of(PyObject *arr)
{
    int part = 1;
    psh_array *a = array_under(arr, &part);
    return part ? NULL : a;
}

/* is_whole(array) -> 1: the whole of an array of alloc in C order, 2: part
 * of one (or the whole in another order), 0: not in one. */
static PyObject *py_is_whole(PyObject *self, PyObject *arr)
{
    (void)self;
    int part = 0;
    return PyLong_FromLong(array_under(arr, &part) ? 1 + part : 0);
}

/* collect(ctx, array or None, op, root): op -1 psh_mpi_gather, -2
 * psh_mpi_allgather, else psh_mpi_reduce's op (collective). array None:
 * this rank refuses the call, so that every rank fails it (with the error
 * of the binding's own checks on this rank). */
static PyObject *py_collect(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *arr;
    int op, root;
    if (!PyArg_ParseTuple(args, "OOii", &cap, &arr, &op, &root)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    psh_array *a = arr == Py_None ? NULL : array_of(arr);
    if (!a && arr != Py_None) return PyErr_Format(PyExc_TypeError, "not a whole array of pasha._pasha_mpi.alloc");
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = op == -1 ? psh_mpi_gather(c, a, root) : op == -2 ? psh_mpi_allgather(c, a) : psh_mpi_reduce(c, a, op, root);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) return raise_psh(rc);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"create", py_create, METH_VARARGS, "create(comm_f, local_kind, local_workers) -> psh_context capsule"},
    {"info", py_info, METH_VARARGS,
     "info(ctx, local_workers) -> (rank, size, node_rank, node_size, node leader of each rank, worker_base)"},
    {"state", py_state, METH_O, "state(ctx) -> (calls begun, rank of the last failure, own part failed)"},
    {"exchange", py_exchange, METH_VARARGS, "exchange(ctx, data) -> [bytes of every rank] (collective)"},
    {"alloc", py_alloc, METH_VARARGS, "alloc(ctx or None, psh_dtype, rows, row_items) -> 2-d ndarray"},
    {"is_whole", py_is_whole, METH_O, "is_whole(array): the whole of an array of alloc, in C order"},
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
