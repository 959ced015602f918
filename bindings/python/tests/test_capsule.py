# SPDX-License-Identifier: BSD-3-Clause
"""A psh_context made outside pasha (a PyCapsule named "pasha.psh_context",
as pasha.MpiContext's C side hands over) becomes an ordinary context."""

import ctypes
import sys

import numpy as np
import pytest

import pasha as psh
from pasha import _pasha
from pasha.context import ProcessContext, ThreadContext, _PshContext

_lib = ctypes.CDLL(_pasha.__file__)  # libpasha is linked into the extension
_lib.psh_context_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
_lib.psh_context_create.restype = ctypes.c_int
_lib.psh_context_num_workers.argtypes = [ctypes.c_void_p]
_lib.psh_context_reference.argtypes = [ctypes.c_void_p]
_lib.psh_context_reference.restype = ctypes.c_void_p
_lib.psh_context_destroy.argtypes = [ctypes.c_void_p]
_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_new.restype = ctypes.py_object
_NAME = b'pasha.psh_context'  # ctypes keeps this bytes object (the capsule's name) alive


def _capsule(kind, workers):
    ctx = ctypes.c_void_p()
    assert _lib.psh_context_create(ctypes.byref(ctx), kind, workers) == 0
    return _capsule_new(ctx.value, _NAME, None), ctx.value


@pytest.mark.parametrize('kind,cls', [(1, ThreadContext), (2, ProcessContext)])
def test_capsule_context_maps_and_allocs(kind, cls):
    cap, _ = _capsule(kind, 3)
    ctx = _PshContext._from_capsule(cap)
    assert type(ctx) is cls and ctx.num_workers == 3
    out = ctx.alloc(shape=10, dtype=np.int64)

    def kernel(wid, i, x):
        out[i] = x * x + wid * 0

    ctx.map(kernel, np.arange(10))
    np.testing.assert_array_equal(out, np.arange(10) ** 2)


def test_capsule_taken_over_once():
    cap, ptr = _capsule(1, 2)
    _lib.psh_context_reference(ptr)  # one more reference, ours: the context must outlive ctx
    ctx = ThreadContext._from_capsule(cap)
    with pytest.raises(ValueError, match='pasha.psh_context'):
        ThreadContext._from_capsule(cap)
    del cap  # the renamed capsule no longer destroys the context
    assert ctx.num_workers == 2
    del ctx
    assert _lib.psh_context_num_workers(ptr) == 2  # our reference is still good
    _lib.psh_context_destroy(ptr)


def test_capsule_wrong_kind_and_name():
    cap, _ = _capsule(1, 2)
    with pytest.raises(ValueError, match='not of that kind'):
        ProcessContext._from_capsule(cap)
    other = _capsule_new(ctypes.cast(ctypes.pointer(ctypes.c_int(0)), ctypes.c_void_p).value,
                         b'something.else', None)
    with pytest.raises(ValueError, match='pasha.psh_context'):
        _pasha.Context._from_capsule(other)
    with pytest.raises(ValueError):
        _pasha.Context._from_capsule(object())
