/*
 * The module pasha._pasha: its functions and constants, and init.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define PASHA_PY_MODULE_INIT /* this file imports numpy's C API */
#include "ext.h"

#include <pasha_internal.h>

PyObject *pyp_pool_entry;
PyObject *pyp_store_exception;
PyObject *pyp_flush_stdio;
PyObject *pyp_store_results;
PyObject *pyp_collect_run_worker;

PyObject *pyp_raise(int rc, const char *what)
{
    PyErr_Format(rc == PSH_ENOMEM ? PyExc_MemoryError
                 : rc == PSH_EINVAL ? PyExc_ValueError : PyExc_RuntimeError,
                 "%s: %s (%s)", what, psh_strerror(rc), psh_last_error());
    return NULL;
}

static PyObject *py_set_hooks(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *h[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &h[0], &h[1], &h[2], &h[3], &h[4])) return NULL;
    PyObject **to[5] = {&pyp_pool_entry, &pyp_store_exception, &pyp_flush_stdio,
                        &pyp_store_results, &pyp_collect_run_worker};
    for (int i = 0; i < 5; ++i) {
        Py_INCREF(h[i]);
        Py_XSETREF(*to[i], h[i]);
    }
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
    if (!c) return pyp_raise(PSH_ESYS, "context");
    int n = psh_context_num_workers(c);
    psh_context_destroy(c);
    return PyLong_FromLong(n);
}

static PyObject *py_cpu_count(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    int n = psh_cpu_count();
    if (n < 1) return PyErr_Format(PyExc_ValueError, "%s", psh_last_error());
    return PyLong_FromLong(n);
}

static PyMethodDef module_methods[] = {
    {"alloc_bytes", pyp_alloc_bytes, METH_VARARGS,
     "alloc_bytes(ctx, nbytes) -> uint8 ndarray viewing a new psh array"},
    {"find_region", pyp_find_region, METH_O,
     "find_region(array) -> (address, nbytes, offset) of the live psh array holding it, or None"},
    {"job_key", pyp_job_key, METH_VARARGS,
     "job_key(job, worker, shared, missing, partial, seq, nd, global_names, by_value, big)"
     " -> key or None"},
    {"same_key", pyp_same_key, METH_VARARGS, "same_key(a, b): two job keys are the same"},
    {"split_diff", pyp_split_diff, METH_VARARGS,
     "split_diff(cur, base): None, or the segments whose values differ (split job keys)"},
    {"array_key", pyp_array_key, METH_O,
     "array_key(a) -> (data address, shape, strides, writeable) of an ndarray"},
    {"from_address", pyp_from_address, METH_VARARGS,
     "from_address(addr, nbytes) -> writable memoryview of psh memory"},
    {"set_hooks", py_set_hooks, METH_VARARGS,
     "set_hooks(pool_entry, store_exception, flush_stdio, store_results, collect_run_worker)"},
    {"_at_exit", pyp_at_exit, METH_NOARGS, "the interpreter is exiting"},
    {"_after_fork_child", pyp_after_fork_child, METH_NOARGS, "after os.fork() in the child"},
    {"version", py_version, METH_NOARGS, "libpasha's version"},
    {"current_worker", pyp_current_worker, METH_NOARGS,
     "the worker id of the kernel running on this thread, or None outside kernels"},
    {"cpu_count", py_cpu_count, METH_NOARGS,
     "psh_cpu_count(): the default number of workers (ValueError on a bad PASHA_NUM_WORKERS)"},
    {"default_num_workers", py_default_num_workers, METH_NOARGS,
     "the number of workers of libpasha's default context"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_pasha", "libpasha bindings (internal)", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pasha(void)
{
    import_array();
    if (PyType_Ready(&pyp_CtxType) < 0) return NULL;
    if (pyp_interpreter_init() < 0) return NULL;
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *mt = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = mt ? PyObject_GetAttrString(mt, "ident") : NULL;
    Py_XDECREF(threading);
    Py_XDECREF(mt);
    if (!ident) return NULL;
    pyp_main_ident = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (PyErr_Occurred()) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    Py_INCREF(&pyp_CtxType);
    if (PyModule_AddObject(m, "Context", (PyObject *)&pyp_CtxType) < 0) return NULL;
    /* The engine's internal table (src/pasha_internal.h), for the MPI
     * extension pasha._pasha_mpi, which builds on this module's engine. */
    PyObject *engine = PyCapsule_New((void *)psh_internal_engine_get(PSH_INTERNAL_VERSION), "pasha._engine", NULL);
    if (!engine || PyModule_AddObject(m, "_engine", engine) < 0) {
        Py_XDECREF(engine);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "OK", PSH_OK);
    PyModule_AddIntConstant(m, "EKERNEL", PSH_EKERNEL);
    PyModule_AddIntConstant(m, "EWORKER", PSH_EWORKER);
    PyModule_AddIntConstant(m, "ECANCELED", PSH_ECANCELED);
    PyModule_AddIntConstant(m, "ERR_HEADER", ERR_HEADER);
    PyModule_AddIntConstant(m, "SLOT_HEADER", SLOT_HEADER);
    return m;
}
