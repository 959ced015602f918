/* pasha._pasha_mpi: the C MPI context (src/mpi/context_mpi.cc, compiled
 * into this module) for pasha.MpiContext. It builds on the engine of the
 * _pasha module (handed over as the capsule _pasha._engine, see
 * src/pasha_internal.h), so the context it makes is one of that engine and
 * maps on it through _pasha.Context like any other: one engine per process.
 * Python keeps argument handling and numpy views (mpi.py); every
 * collective is the C library's, and so is what the binding adds on top
 * (here): turning the C context's agreed failures into each rank's Python
 * exception (fail: its own where its part failed, RemoteRankError with the
 * failure's facts elsewhere), the map's values from every rank (values),
 * the checks and private copies of gather and reduce (collect), and the
 * few exchanges of its own, on the context's own communicator.
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
int pasha_mpi_create_failure(int *code, const char **message);
MPI_Comm pasha_mpi_comm(const psh_context *ctx);

static const psh_internal_engine *E;

/* The exception a PSH_E* code raises. */
static PyObject *exc_type(int rc)
{
    return rc == PSH_ENOMEM ? PyExc_MemoryError : rc == PSH_EINVAL ? PyExc_ValueError : PyExc_RuntimeError;
}

static PyObject *raise_psh(int rc)
{
    PyErr_SetString(exc_type(rc), E->last_error());
    return NULL;
}

static void ctx_capsule_free(PyObject *cap)
{
    /* Not taken over by a _pasha.Context: the reference is still ours. */
    psh_context *c = PyCapsule_GetPointer(cap, "pasha.psh_context");
    if (c) E->context_destroy(c);
    else PyErr_Clear();
}

/* The MPI psh_context of a capsule from create (taken over or not); None:
 * the context was closed. */
static psh_context *ctx_of(PyObject *cap)
{
    if (cap == Py_None) { /* closed: close() is collective, so on every rank */
        PyErr_SetString(PyExc_ValueError, "the MPI context is closed");
        return NULL;
    }
    const char *name = PyCapsule_IsValid(cap, "pasha.psh_context.taken") ? "pasha.psh_context.taken"
                                                                          : "pasha.psh_context";
    psh_context *c = PyCapsule_GetPointer(cap, name);
    if (c && psh_mpi_size(c) < 1) {
        PyErr_SetString(PyExc_ValueError, "not an MPI context");
        return NULL;
    }
    return c;
}

static PyObject *describe(PyObject *e);
static PyObject *exchange_obj_on(MPI_Comm comm, PyObject *obj);

/* create(comm_f, local_kind, local_workers, schedule, chunk, pin_cpus,
 * error, RemoteRankError) ->
 * "pasha.psh_context" capsule (collective over the communicator, a Fortran
 * handle: mpi4py's py2f). error: the exception the binding's checks raised
 * on this rank, or None; with one on any rank every rank fails: that rank
 * raises its own, the others RemoteRankError naming the lowest such rank
 * (the C context refuses local_kind -1 on every rank). */
static PyObject *py_create(PyObject *self, PyObject *args)
{
    (void)self;
    long long comm_f;
    int kind, workers, schedule, pin_cpus;
    Py_ssize_t chunk;
    PyObject *error, *cls;
    if (!PyArg_ParseTuple(args, "LiiinpOO", &comm_f, &kind, &workers, &schedule, &chunk, &pin_cpus, &error, &cls))
        return NULL;
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)comm_f);
    psh_context *ctx = NULL;
    psh_context_options lo;
    E->context_options_init(&lo);
    memcpy(&lo.kind, &kind, sizeof kind);
    memcpy(&lo.schedule, &schedule, sizeof schedule);
    lo.num_workers = workers;
    lo.chunk = chunk > 0 ? (size_t)chunk : 0;
    lo.pin_cpus = pin_cpus;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = psh_context_create_mpi_ext(&ctx, comm, &lo);
    Py_END_ALLOW_THREADS
    if (rc != PSH_OK) {
        int me = 0, size = 0, first = 0;
        MPI_Comm_rank(comm, &me);
        MPI_Comm_size(comm, &size);
        int mine = error != Py_None ? me : size;
        MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
        if (first == size) { /* an error of C's own: one rank's (RemoteRankError elsewhere) or every rank's */
            const char *message;
            int code, failed = pasha_mpi_create_failure(&code, &message);
            if (failed < 0 || failed == me) return raise_psh(rc);
            PyObject *e = PyObject_CallFunction(cls, "iss", failed, ((PyTypeObject *)exc_type(code))->tp_name, message);
            if (e) PyErr_SetObject((PyObject *)Py_TYPE(e), e);
            Py_XDECREF(e);
            return NULL;
        }
        PyObject *info = first == me ? describe(error) : (Py_INCREF(Py_None), Py_None);
        PyObject *all = info ? exchange_obj_on(comm, info) : NULL, *head = Py_BuildValue("(i)", first);
        PyObject *tail = all ? PySequence_Tuple(PyList_GET_ITEM(all, first)) : NULL;
        PyObject *full = tail && head ? PySequence_Concat(head, tail) : NULL;
        PyObject *e = error != Py_None ? (Py_INCREF(error), error) : full ? PyObject_CallObject(cls, full) : NULL;
        if (e) PyErr_SetObject((PyObject *)Py_TYPE(e), e);
        Py_XDECREF(e), Py_XDECREF(full), Py_XDECREF(tail), Py_XDECREF(head), Py_XDECREF(all), Py_XDECREF(info);
        return NULL;
    }
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

/* [the bytes every rank passed] (collective over the context's
 * communicator: one broadcast per rank, its length first, then its bytes in
 * pieces of 16 MiB; a rank short of memory for a copy still takes part). */
static PyObject *exchange_on(MPI_Comm comm, const char *mine, Py_ssize_t mine_len)
{
    static char sink[1 << 24];
    int size = 0, me = 0, short_of_memory = 0;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &me);
    PyObject *out = PyList_New(size);
    for (int r = 0; r < size; ++r) {
        long long len = mine_len;
        MPI_Bcast(&len, 1, MPI_LONG_LONG, r, comm);
        PyObject *b = PyBytes_FromStringAndSize(r == me ? mine : NULL, (Py_ssize_t)len);
        char *p = b ? PyBytes_AS_STRING(b) : NULL;
        Py_BEGIN_ALLOW_THREADS
        for (long long done = 0; done < len; done += (long long)sizeof sink) {
            int piece = (int)(len - done < (long long)sizeof sink ? len - done : (long long)sizeof sink);
            MPI_Bcast(p ? p + done : sink, piece, MPI_BYTE, r, comm);
        }
        Py_END_ALLOW_THREADS
        if (out && b) PyList_SET_ITEM(out, r, b);
        else Py_XDECREF(b), short_of_memory = 1;
    }
    if (short_of_memory) {
        Py_XDECREF(out);
        return PyErr_NoMemory();
    }
    return out;
}

#define exchange_bytes(c, mine, len) exchange_on(pasha_mpi_comm(c), mine, len)

static PyObject *pickle_dumps, *pickle_loads;
static int run_collect(psh_context *c, psh_array *a, int op, int root);

/* [the object every rank passed] (obj must pickle: the caller's own data) */
static PyObject *exchange_obj_on(MPI_Comm comm, PyObject *obj)
{
    PyObject *b = PyObject_CallFunction(pickle_dumps, "Oi", obj, -1);
    PyObject *all = b ? exchange_on(comm, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) : NULL;
    Py_XDECREF(b);
    for (Py_ssize_t r = 0; all && r < PyList_GET_SIZE(all); ++r) {
        PyObject *o = PyObject_CallOneArg(pickle_loads, PyList_GET_ITEM(all, r));
        if (o) PyList_SetItem(all, r, o);
        else Py_CLEAR(all);
    }
    return all;
}

/* exchange(ctx, obj) -> [the object every rank passed] (collective) */
#define exchange_obj(c, obj) exchange_obj_on(pasha_mpi_comm(c), obj)

static PyObject *py_exchange(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *obj;
    if (!PyArg_ParseTuple(args, "OO", &cap, &obj)) return NULL;
    psh_context *c = ctx_of(cap);
    return c ? exchange_obj(c, obj) : NULL;
}

static const char *const where_names[] = {"worker_id", "index", "signal", "exit_status"};

/* Raise exception object e (stolen; NULL: keep the error set) as one every
 * rank raises in this call: marked _pasha_agreed, which mpi.py's
 * collective wrapper lets through. */
static PyObject *raise_agreed(PyObject *e)
{
    if (!e) return NULL;
    if (PyObject_SetAttrString(e, "_pasha_agreed", Py_True) < 0) PyErr_Clear();
    PyErr_SetObject((PyObject *)Py_TYPE(e), e);
    Py_DECREF(e);
    return NULL;
}

/* (type name, str() or a note that it has none, worker_id, index, signal,
 * exit_status) of exception e: what the other ranks learn of it. */
static PyObject *describe(PyObject *e)
{
    PyObject *t = PyTuple_New(6);
    PyObject *text = PyObject_Str(e);
    if (!text) PyErr_Clear(), text = PyUnicode_FromString("(the exception cannot be turned into a string)");
    if (!t) return NULL;
    PyTuple_SET_ITEM(t, 0, PyObject_GetAttrString((PyObject *)Py_TYPE(e), "__name__"));
    PyTuple_SET_ITEM(t, 1, text);
    for (int i = 0; i < 4; ++i) {
        PyObject *v = PyObject_GetAttrString(e, where_names[i]);
        if (!v) PyErr_Clear(), v = Py_None, Py_INCREF(v);
        PyTuple_SET_ITEM(t, 2 + i, v);
    }
    for (int i = 0; i < 6; ++i)
        if (!PyTuple_GET_ITEM(t, i)) Py_CLEAR(t);
    return t;
}

/* "X on rank 0; Y on ranks 1, 2" for a list of each rank's str. */
static PyObject *by_rank(PyObject *values)
{
    PyObject *groups = PyDict_New(), *parts = PyList_New(0), *out = NULL, *comma = PyUnicode_FromString(", ");
    for (Py_ssize_t r = 0; groups && parts && r < PyList_GET_SIZE(values); ++r) {
        PyObject *ranks = PyDict_GetItemWithError(groups, PyList_GET_ITEM(values, r)), *n = NULL;
        if (!ranks && !PyErr_Occurred() && (ranks = PyList_New(0)) != NULL) {
            PyDict_SetItem(groups, PyList_GET_ITEM(values, r), ranks);
            Py_DECREF(ranks);
        }
        if (!ranks || !(n = PyUnicode_FromFormat("%zd", r)) || PyList_Append(ranks, n) < 0) Py_CLEAR(parts);
        Py_XDECREF(n);
    }
    PyObject *v, *ranks;
    Py_ssize_t pos = 0;
    while (parts && comma && PyDict_Next(groups, &pos, &v, &ranks)) {
        PyObject *joined = PyUnicode_Join(comma, ranks);
        PyObject *part = joined ? PyUnicode_FromFormat("%U on rank%s %U", v, PyList_GET_SIZE(ranks) > 1 ? "s" : "",
                                                       joined) : NULL;
        if (!part || PyList_Append(parts, part) < 0) Py_CLEAR(parts);
        Py_XDECREF(part);
        Py_XDECREF(joined);
    }
    PyObject *sep = PyUnicode_FromString("; ");
    if (parts && sep) out = PyUnicode_Join(sep, parts);
    Py_XDECREF(sep);
    Py_XDECREF(comma);
    Py_XDECREF(parts);
    Py_XDECREF(groups);
    return out;
}

/* fail(ctx, own, calls, shown, RemoteRankError) raises the exception this
 * rank raises after own was raised here in a collective call begun when
 * the context had seen `calls` calls (collective; own itself at once if it
 * is marked _pasha_agreed: every rank raises in this call already). A call that never
 * reached the C context is refused there, so that every rank fails it.
 * Then: the ranks made different calls: RuntimeError; they passed
 * different values: ValueError naming each rank's value of the first of
 * shown [(what, value)] that differs; else a rank whose own part failed
 * raises its own error, the others RemoteRankError(the lowest failing rank,
 * *its describe()). The C context says which: no message text is read. */
static PyObject *py_fail(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *own, *shown, *cls, *text, *out = NULL;
    long long calls, now = 0;
    int mine = 0;
    if (!PyArg_ParseTuple(args, "OOLOO", &cap, &own, &calls, &shown, &cls)) return NULL;
    psh_context *c = PyObject_HasAttrString(own, "_pasha_agreed") ? NULL : ctx_of(cap);
    if (!c) { /* own is every rank's already (or the context is closed: raise own) */
        PyErr_Clear();
        PyErr_SetObject((PyObject *)Py_TYPE(own), own);
        return NULL;
    }
    pasha_mpi_call_state(c, &now, &mine);
    if (now == calls) {
        run_collect(c, NULL, -1, 0);
        text = PyUnicode_FromString(E->last_error());
    } else {
        text = PyObject_Str(own);
        if (!text) PyErr_Clear(), text = PyUnicode_FromString("");
    }
    int first = pasha_mpi_failed_rank(c), me = psh_mpi_rank(c);
    pasha_mpi_call_state(c, &now, &mine);
    if (!text) return NULL;
    if (first == -2) {
        out = PyObject_CallOneArg(PyExc_RuntimeError, text);
    } else if (first == -1) {
        PyObject *all = exchange_obj(c, shown);
        Py_ssize_t n = all ? PyObject_Length(PyList_GET_ITEM(all, 0)) : 0, ranks = all ? PyList_GET_SIZE(all) : 0;
        for (Py_ssize_t i = 0; all && !out && i < n; ++i) {
            PyObject *values = PyList_New(ranks), *what = NULL;
            for (Py_ssize_t r = 0; values && r < ranks; ++r) {
                PyObject *pair = PySequence_GetItem(PyList_GET_ITEM(all, r), i); /* (what, value) */
                PyObject *v = pair ? PySequence_GetItem(pair, 1) : NULL, *str = v ? PyObject_Str(v) : NULL;
                if (r == 0 && str) what = PySequence_GetItem(pair, 0);
                Py_XDECREF(v);
                Py_XDECREF(pair);
                if (str) PyList_SET_ITEM(values, r, str);
                else Py_CLEAR(values);
            }
            PyObject *distinct = values && what ? PySet_New(values) : NULL;
            if (distinct && PySet_GET_SIZE(distinct) > 1) {
                PyObject *named = by_rank(values);
                out = named ? PyObject_CallFunction(PyExc_ValueError, "N",
                                                    PyUnicode_FromFormat("the ranks disagree on %S: %U", what, named))
                            : NULL;
                Py_XDECREF(named);
            }
            Py_XDECREF(distinct);
            Py_XDECREF(values);
            Py_XDECREF(what);
        }
        if (!out && all) out = PyObject_CallOneArg(PyExc_ValueError, text);
        Py_XDECREF(all);
    } else {
        PyObject *mine_info = first == me ? describe(own) : (Py_INCREF(Py_None), Py_None);
        PyObject *all = mine_info ? exchange_obj(c, mine_info) : NULL;
        Py_XDECREF(mine_info);
        if (all && (mine || first == me)) out = (Py_INCREF(own), own);
        else if (all) {
            PyObject *a = PySequence_Tuple(PyList_GET_ITEM(all, first)), *head = Py_BuildValue("(i)", first);
            PyObject *full = a && head ? PySequence_Concat(head, a) : NULL;
            out = full ? PyObject_CallObject(cls, full) : NULL;
            Py_XDECREF(full), Py_XDECREF(head), Py_XDECREF(a);
        }
        Py_XDECREF(all);
    }
    Py_XDECREF(text);
    return raise_agreed(out);
}

/* This rank's part of values(): its block of the values list, pickled as
 * (values, None), or (their number, None) when all are None. */
static PyObject *values_payload(psh_context *c, PyObject *all_values, int itemwise)
{
    Py_ssize_t n = PyList_GET_SIZE(all_values), lo = 0, hi = n, size = psh_mpi_size(c), r = psh_mpi_rank(c);
    if (itemwise) { /* this rank's block, as the C context splits n items */
        lo = r * (n / size) + (r < n % size ? r : n % size);
        hi = lo + n / size + (r < n % size);
    }
    PyObject *values = PyList_GetSlice(all_values, lo, hi);
    if (!values) return NULL;
    Py_ssize_t i = 0;
    n = hi - lo;
    while (i < n && PyList_GET_ITEM(values, i) == Py_None) ++i;
    PyObject *head = i < n ? (Py_INCREF(values), values) : PyLong_FromSsize_t(n);
    Py_DECREF(values);
    PyObject *payload = head ? Py_BuildValue("(NO)", head, Py_None) : NULL;
    PyObject *b = payload ? PyObject_CallFunction(pickle_dumps, "Oi", payload, -1) : NULL;
    Py_XDECREF(payload);
    return b;
}

/* values(ctx, values, itemwise, RemoteRankError) -> every rank's values,
 * in rank order, on every rank (collective): values are this rank's items'
 * (itemwise: a slot for every item, this rank's block filled). A rank whose
 * values are all None sends their number only; values that do not pickle
 * on one rank raise there, and RemoteRankError on the others. values may
 * be an exception instead (raised on this rank after its part of the map
 * succeeded, e.g. by a post_map hook): the same, with that exception. */
static PyObject *py_values(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *all_values, *cls, *own = NULL, *out = NULL, *b = NULL;
    int itemwise;
    if (!PyArg_ParseTuple(args, "OOpO", &cap, &all_values, &itemwise, &cls)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    if (PyExceptionInstance_Check(all_values))
        PyErr_SetObject((PyObject *)Py_TYPE(all_values), all_values); /* taken back below */
    else if (!PyList_Check(all_values)) /* raised on every rank, as below */
        PyErr_Format(PyExc_TypeError, "values: a list or an exception, not %.200s", Py_TYPE(all_values)->tp_name);
    else
        b = values_payload(c, all_values, itemwise);
    if (!b) { /* sent as (0, describe(error)) so that every rank raises */
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        own = v;
        Py_XDECREF(t);
        Py_XDECREF(tb);
        PyObject *info = own ? describe(own) : NULL;
        b = info ? PyObject_CallFunction(pickle_dumps, "(iN)i", 0, info, -1) : NULL;
        if (!b) b = PyBytes_FromStringAndSize("", 0); /* unpickles as an error on the others */
        if (!b) return NULL;
    }
    PyObject *all = exchange_bytes(c, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    out = all ? PyList_New(0) : NULL;
    for (Py_ssize_t r = 0; out && r < PyList_GET_SIZE(all); ++r) {
        PyObject *part = PyObject_CallOneArg(pickle_loads, PyList_GET_ITEM(all, r)), *got = NULL;
        PyObject *info = part ? PyTuple_GetItem(part, 1) : NULL;
        if (info && info != Py_None) {
            PyObject *head = Py_BuildValue("(i)", (int)r), *full = head ? PySequence_Concat(head, info) : NULL;
            got = own ? (Py_INCREF(own), own) : full ? PyObject_CallObject(cls, full) : NULL;
            Py_XDECREF(head), Py_XDECREF(full);
            Py_SETREF(out, got);
        } else if (info) {
            PyObject *v = PyTuple_GET_ITEM(part, 0);
            if (PyLong_Check(v)) {
                Py_ssize_t k = PyLong_AsSsize_t(v);
                for (Py_ssize_t j = 0; out && j < k; ++j)
                    if (PyList_Append(out, Py_None) < 0) Py_CLEAR(out);
            } else if (PyList_SetSlice(out, PyList_GET_SIZE(out), PyList_GET_SIZE(out), v) < 0) {
                Py_CLEAR(out);
            }
        } else {
            Py_CLEAR(out);
        }
        Py_XDECREF(part);
        if (out && !PyList_Check(out)) break;
    }
    Py_XDECREF(all);
    Py_XDECREF(own);
    return out && !PyList_Check(out) ? raise_agreed(out) : out;
}

static const int npy_of[] = {NPY_INT8,  NPY_UINT8,  NPY_INT16,   NPY_UINT16,  NPY_INT32,     NPY_UINT32,
                             NPY_INT64, NPY_UINT64, NPY_FLOAT32, NPY_FLOAT64, NPY_COMPLEX64, NPY_COMPLEX128};

/* The psh dtype of an array's numbers (in any byte order), or -1. */
static int code_of(PyArrayObject *a)
{
    PyArray_Descr *d = PyArray_DESCR(a);
    int n = (int)PyArray_ITEMSIZE(a), i = n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : n == 8 ? 3 : -1;
    if (PyDataType_HASFIELDS(d) || PyDataType_HASSUBARRAY(d)) return -1;
    switch (d->kind) {
    case 'i':
    case 'u': return i < 0 ? -1 : 2 * i + (d->kind == 'u');
    case 'f': return n == 4 ? PSH_FLOAT32 : n == 8 ? PSH_FLOAT64 : -1;
    case 'c': return n == 8 ? PSH_COMPLEX64 : n == 16 ? PSH_COMPLEX128 : -1;
    default: return -1;
    }
}

static void array_capsule_free(PyObject *cap)
{
    psh_array *a = PyCapsule_GetPointer(cap, "pasha.mpi_array");
    if (a) E->array_free(a);
    else PyErr_Clear();
}

/* alloc(ctx, shape, dtype, order) -> a zeroed ndarray of that shape, numpy
 * dtype and order ('C' or 'F') over a new psh array of the MPI context
 * (collective: one buffer per node): a psh array of rows along the slowest
 * axis (what gather splits), of the dtype's numbers or, for any other
 * dtype, of bytes. Its base is a "pasha.mpi_array" capsule, which frees the
 * psh array. */
static PyObject *py_alloc(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *shape_obj;
    PyArray_Descr *d;
    int order;
    if (!PyArg_ParseTuple(args, "OOO&C", &cap, &shape_obj, PyArray_DescrConverter, &d, &order)) return NULL;
    psh_context *c = ctx_of(cap);
    PyArray_Dims dims = {NULL, 0};
    if (!c || !PyArray_IntpConverter(shape_obj, &dims)) {
        Py_DECREF(d);
        return NULL;
    }
    const char *why = order != 'C' && order != 'F' ? "order must be 'C' or 'F'" : NULL;
    for (int i = 0; i < dims.len; ++i)
        if (dims.ptr[i] < 0) why = "negative dimensions are not allowed";
    if (why || PyDataType_REFCHK(d)) {
        if (why) PyErr_SetString(PyExc_ValueError, why);
        else PyErr_Format(PyExc_TypeError, "alloc: dtype %S holds Python objects, which cannot be shared between "
                          "ranks; use a numeric dtype", (PyObject *)d);
        Py_DECREF(d);
        PyDimMem_FREE(dims.ptr);
        return NULL;
    }
    PyObject *arr = NULL, *zero = PyArray_Zeros(0, NULL, d, 0); /* (steals d) for code_of */
    int code = zero ? code_of((PyArrayObject *)zero) : -1, n = dims.len, fortran = order == 'F';
    size_t shape[2] = {1, zero ? (size_t)PyArray_ITEMSIZE((PyArrayObject *)zero) : 0};
    for (int i = 0; zero && i < n; ++i) shape[i == (fortran ? n - 1 : 0) ? 0 : 1] *= (size_t)dims.ptr[i];
    if (code >= 0) shape[1] /= shape[1] ? (size_t)PyArray_ITEMSIZE((PyArrayObject *)zero) : 1;
    psh_array *a = NULL;
    int rc = PSH_OK;
    if (zero) {
        Py_BEGIN_ALLOW_THREADS
        rc = E->alloc(&a, c, code < 0 ? PSH_UINT8 : (psh_dtype)code, 2, shape, NULL);
        Py_END_ALLOW_THREADS
        if (rc != PSH_OK) raise_psh(rc);
    }
    if (a) {
        d = PyArray_DESCR((PyArrayObject *)zero);
        Py_INCREF(d);
        arr = PyArray_NewFromDescr(&PyArray_Type, d, n, dims.ptr, NULL, E->array_data(a),
                                   (fortran ? NPY_ARRAY_FARRAY : NPY_ARRAY_CARRAY), NULL);
        PyObject *base = arr ? PyCapsule_New(a, "pasha.mpi_array", array_capsule_free) : NULL;
        if (!base) {
            Py_CLEAR(arr);
            E->array_free(a);
        } else if (PyArray_SetBaseObject((PyArrayObject *)arr, base) < 0) {
            Py_CLEAR(arr);
        }
    }
    Py_XDECREF(zero);
    PyDimMem_FREE(dims.ptr);
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

enum { PY_ERROR = 1000 }; /* a Python exception is set (psh codes are <= 0) */

static int run_collect(psh_context *c, psh_array *a, int op, int root)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = op == -1 ? psh_mpi_gather(c, a, root) : op == -2 ? psh_mpi_allgather(c, a) : psh_mpi_reduce(c, a, op, root);
    Py_END_ALLOW_THREADS
    return rc;
}

/* The private C-order copy of a (any array) that gather (op < 0: rows of
 * bytes along the first axis) or reduce (op >= 0: its numbers, native) moves,
 * and the collective on it; the result back into a where it lands. */
static int collect_copy(psh_context *c, PyArrayObject *a, int op, int root, int code)
{
    npy_intp rows = op < 0 ? PyArray_DIM(a, 0) : 1;
    size_t shape[2] = {(size_t)rows, rows ? (size_t)(op < 0 ? PyArray_NBYTES(a) / rows : PyArray_SIZE(a)) : 0};
    psh_array *tmp = NULL;
    int rc = E->alloc(&tmp, NULL, op < 0 ? PSH_UINT8 : (psh_dtype)code, 2, shape, NULL);
    if (rc != PSH_OK) return rc;
    PyArray_Descr *d = op < 0 ? PyArray_DESCR(a) : PyArray_DescrFromType(npy_of[code]);
    if (op < 0) Py_INCREF(d);
    PyObject *view = PyArray_NewFromDescr(&PyArray_Type, d, PyArray_NDIM(a), PyArray_DIMS(a), NULL,
                                          E->array_data(tmp), NPY_ARRAY_CARRAY, NULL);
    if (!view || PyArray_CopyInto((PyArrayObject *)view, a) < 0) rc = PY_ERROR;
    /* Every rank takes part, even one whose copy failed (its refusal). */
    int got = run_collect(c, rc == PSH_OK ? tmp : NULL, op, root);
    if (rc == PSH_OK) rc = got;
    if (rc == PSH_OK && (op == -2 || psh_mpi_rank(c) == root) && PyArray_CopyInto(a, (PyArrayObject *)view) < 0)
        rc = PY_ERROR;
    Py_XDECREF(view);
    E->array_free(tmp);
    return rc;
}

/* collect(ctx, array or None, op, root, op_name): op -1 psh_mpi_gather, -2
 * psh_mpi_allgather, 0..2 psh_mpi_reduce's op, 99 an unknown op (collective).
 * An array of this context goes as it is (only other nodes' blocks travel);
 * any other, or part of one, or one in F order gathered along its first
 * axis, through a private C-order copy. Errors of the checks here are this
 * rank's only (the binding refuses the call then); array None: this rank
 * refuses the call, so that every rank fails it. */
static PyObject *py_collect(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *arr, *root_obj, *op_name = Py_None;
    int op, root = 0;
    if (!PyArg_ParseTuple(args, "OOiO|O", &cap, &arr, &op, &root_obj, &op_name)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    if (arr == Py_None) return raise_psh(run_collect(c, NULL, -1, 0));
    if (!PyArray_Check(arr)) return PyErr_Format(PyExc_TypeError, "expected a numpy array, not %s", Py_TYPE(arr)->tp_name);
    PyArrayObject *a = (PyArrayObject *)arr;
    PyObject *dt = (PyObject *)PyArray_DESCR(a);
    if (op != -2) {
        Py_ssize_t r = PyIndex_Check(root_obj) && !PyBool_Check(root_obj) ? PyNumber_AsSsize_t(root_obj, NULL) : -1;
        if (r == -1 && PyErr_Occurred()) return NULL;
        if (r < 0 || r >= psh_mpi_size(c))
            return PyErr_Format(PyExc_ValueError, "root %R is not a rank of the context (0..%d)", root_obj,
                                psh_mpi_size(c) - 1);
        root = (int)r;
    }
    int code = code_of(a), c_order = PyArray_IS_C_CONTIGUOUS(a);
    if (op == 99) return PyErr_Format(PyExc_ValueError, "op must be 'sum', 'min' or 'max', not %R", op_name);
    if (op >= 0 && code < 0)
        return PyErr_Format(PyExc_TypeError, "reduce: dtype %S has no MPI type here (integers, float32/64 and "
                            "complex64/128 only)", dt);
    if ((op == PSH_OP_MIN || op == PSH_OP_MAX) && code >= PSH_COMPLEX64)
        return PyErr_Format(PyExc_ValueError, "%S of complex numbers is not defined", op_name);
    if (op < 0 && (PyArray_NDIM(a) == 0 || PyDataType_REFCHK(PyArray_DESCR(a))))
        return PyErr_Format(PyExc_ValueError, "cannot gather a 0-d array or one of Python objects (dtype %S)", dt);
    if (op >= 0 && !c_order && !PyArray_IS_F_CONTIGUOUS(a))
        return PyErr_Format(PyExc_ValueError, "reduce needs a C- or F-contiguous array (an array from alloc is)");
    if ((op == -2 || psh_mpi_rank(c) == root) && !PyArray_ISWRITEABLE(a))
        return PyErr_Format(PyExc_ValueError, "the array is read-only");
    /* reduce is element-wise: an F-order array goes as its C-order transpose */
    PyObject *b = op >= 0 && !c_order ? PyArray_Transpose(a, NULL) : (Py_INCREF(arr), arr);
    if (!b) return NULL;
    int part = 1, rc;
    psh_array *whole = array_under(b, &part);
    if (whole && !part && (op < 0 || PyArray_ISNOTSWAPPED(a))) {
        rc = run_collect(c, whole, op, root);
    } else {
        rc = collect_copy(c, a, op, root, code);
        /* part of a node buffer: its ranks see what was written */
        if (rc == PSH_OK && whole) MPI_Barrier(pasha_mpi_comm(c));
    }
    Py_DECREF(b);
    if (rc == PY_ERROR) return NULL;
    if (rc != PSH_OK) return raise_psh(rc);
    Py_RETURN_NONE;
}

/* reclaim(ctx, capsules, kept) -> those of the capsules (the bases of
 * alloc's arrays) that an array still uses on some rank (collective); the
 * others go with the list the caller replaces, on every rank together
 * (freeing a node window is collective over the node). kept: a list to put
 * the used ones in instead (held for good: close), or None. */
static PyObject *py_reclaim(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *arrays, *kept;
    if (!PyArg_ParseTuple(args, "OO!O", &cap, &PyList_Type, &arrays, &kept)) return NULL;
    psh_context *c = ctx_of(cap);
    if (!c) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(arrays);
    if (n == 0) return PyList_New(0);
    PyObject *flags = PyBytes_FromStringAndSize(NULL, n);
    if (!flags) return NULL;
    for (Py_ssize_t i = 0; i < n; ++i) /* the list's reference, and the arrays' */
        PyBytes_AS_STRING(flags)[i] = Py_REFCNT(PyList_GET_ITEM(arrays, i)) > 1;
    PyObject *all = exchange_bytes(c, PyBytes_AS_STRING(flags), n), *out = all ? PyList_New(0) : NULL;
    Py_DECREF(flags);
    for (Py_ssize_t i = 0; out && i < n; ++i) {
        int used = 0;
        for (Py_ssize_t r = 0; r < PyList_GET_SIZE(all); ++r) /* every rank has the same n arrays */
            used |= PyBytes_AS_STRING(PyList_GET_ITEM(all, r))[i];
        if (used && PyList_Append(kept != Py_None ? kept : out, PyList_GET_ITEM(arrays, i)) < 0) Py_CLEAR(out);
    }
    Py_XDECREF(all);
    return out;
}

static PyObject *py_by_rank(PyObject *self, PyObject *values)
{
    (void)self;
    if (!PyList_Check(values)) return PyErr_Format(PyExc_TypeError, "by_rank: a list of str");
    return by_rank(values);
}

static PyObject *py_describe(PyObject *self, PyObject *e)
{
    (void)self;
    return describe(e);
}

static PyMethodDef methods[] = {
    {"reclaim", py_reclaim, METH_VARARGS, "reclaim(ctx, capsules, kept) -> the capsules still used (collective)"},
    {"by_rank", py_by_rank, METH_O, "by_rank([str of each rank]) -> 'X on rank 0; Y on ranks 1, 2'"},
    {"describe", py_describe, METH_O,
     "describe(exception) -> (type name, str, worker_id, index, signal, exit_status)"},
    {"create", py_create, METH_VARARGS,
     "create(comm_f, local_kind, local_workers, schedule, chunk, pin_cpus, error, RemoteRankError) -> psh_context capsule"},
    {"info", py_info, METH_VARARGS,
     "info(ctx, local_workers) -> (rank, size, node_rank, node_size, node leader of each rank, worker_base)"},
    {"state", py_state, METH_O, "state(ctx) -> (calls begun, rank of the last failure, own part failed)"},
    {"exchange", py_exchange, METH_VARARGS, "exchange(ctx, obj) -> [the obj of every rank] (collective)"},
    {"fail", py_fail, METH_VARARGS,
     "fail(ctx, own, calls, shown, RemoteRankError): raises what this rank raises (collective)"},
    {"values", py_values, METH_VARARGS,
     "values(ctx, values, itemwise, RemoteRankError) -> every rank's values in order (collective)"},
    {"alloc", py_alloc, METH_VARARGS, "alloc(ctx, shape, dtype, order) -> zeroed ndarray in the context's buffers"},
    {"collect", py_collect, METH_VARARGS,
     "collect(ctx, array, op, root, op_name): gather (-1), allgather (-2), reduce (0..2; 99: unknown op)"},
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
    PyObject *pickle = PyImport_ImportModule("pickle");
    pickle_dumps = pickle ? PyObject_GetAttrString(pickle, "dumps") : NULL;
    pickle_loads = pickle ? PyObject_GetAttrString(pickle, "loads") : NULL;
    Py_XDECREF(pickle);
    if (!pickle_dumps || !pickle_loads) return NULL;
    if (pasha_mpi_set_engine(E) != PSH_OK)
        return PyErr_Format(PyExc_ImportError, "pasha._pasha_mpi: the engine of pasha._pasha has another layout");
    return PyModule_Create(&module_def);
}
