/*
 * Context: a Python object over a libpasha psh_context.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "ext.h"

psh_context *pyp_ctx_of(PyObject *o)
{
    if (o == Py_None) return NULL;
    return ((CtxObject *)o)->ctx;
}

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
        pyp_raise(rc, "context");
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
        if (pyp_exiting) {
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

/* Context._from_capsule(capsule): a Context over the psh_context * a
 * PyCapsule named "pasha.psh_context" holds (one reference, which the new
 * Context takes over: the capsule is renamed "pasha.psh_context.taken" and
 * no longer destroys it; a second take-over raises ValueError). */
static PyObject *ctx_from_capsule(PyObject *cls, PyObject *cap)
{
    if (!PyCapsule_IsValid(cap, "pasha.psh_context"))
        return PyErr_Format(PyExc_ValueError,
                            "Context._from_capsule: not a live capsule named 'pasha.psh_context'"
                            " (one that holds a psh_context * not taken over yet)");
    psh_context *c = (psh_context *)PyCapsule_GetPointer(cap, "pasha.psh_context");
    if (!c) return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &pyp_CtxType))
        return PyErr_Format(PyExc_TypeError, "Context._from_capsule: not a Context type");
    PyTypeObject *t = (PyTypeObject *)cls;
    CtxObject *self = (CtxObject *)t->tp_alloc(t, 0);
    if (!self) return NULL;
    if (PyCapsule_SetDestructor(cap, NULL) < 0 ||
        PyCapsule_SetName(cap, "pasha.psh_context.taken") < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->ctx = c;
    return (PyObject *)self;
}

static void capsule_destroy_context(PyObject *cap)
{
    psh_context_destroy((psh_context *)PyCapsule_GetPointer(cap, "pasha.psh_context"));
}

/* Context._new_capsule(kind, num_workers): a new psh_context of this
 * module's engine in a "pasha.psh_context" capsule that destroys it unless
 * taken over. The extension exports no psh_* symbol (it links libpasha
 * in), so this is how a test reaches the engine's psh_context_create. */
static PyObject *ctx_new_capsule(PyObject *cls, PyObject *args)
{
    (void)cls;
    int kind, workers;
    if (!PyArg_ParseTuple(args, "ii", &kind, &workers)) return NULL;
    psh_context *c;
    if (psh_context_create(&c, (psh_kind)kind, workers) != PSH_OK)
        return PyErr_Format(PyExc_ValueError, "%s", psh_last_error());
    PyObject *cap = PyCapsule_New(c, "pasha.psh_context", capsule_destroy_context);
    if (!cap) psh_context_destroy(c);
    return cap;
}

static PyMethodDef ctx_methods[] = {
    {"_new_capsule", ctx_new_capsule, METH_VARARGS | METH_CLASS,
     "_new_capsule(kind, num_workers) -> a 'pasha.psh_context' capsule of a new context"},
    {"map", (PyCFunction)(void (*)(void))pyp_ctx_map, METH_VARARGS | METH_KEYWORDS,
     "map(n, *, itemwise, function, functor, seq, shares, run_worker, mode, job, serial, err,"
     " err_size, schedule, chunk, progress, worker_base, begin, end)"
     " -> (status, message, errors, results, info)"},
    {"map_native", (PyCFunction)pyp_ctx_map_native, METH_VARARGS,
     "map_native(fnptr, user_data, n, array, axis) -> (status, message, info)"},
    {"_from_capsule", ctx_from_capsule, METH_O | METH_CLASS,
     "_from_capsule(capsule) -> Context over the psh_context * of a 'pasha.psh_context' capsule"
     " (takes over its reference)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef ctx_getset[] = {
    {"num_workers", (getter)ctx_num_workers, NULL, "number of workers", NULL},
    {"kind", (getter)ctx_kind, NULL, "psh_kind of the context", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject pyp_CtxType = {
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
