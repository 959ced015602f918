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

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_new.restype = ctypes.py_object


def _capsule(kind, workers):
    # The extension links libpasha in and exports no psh_* symbol: a context
    # of its own engine comes from Context._new_capsule.
    return _pasha.Context._new_capsule(kind, workers)


@pytest.mark.parametrize('kind,cls', [(1, ThreadContext), (2, ProcessContext)])
def test_capsule_context_maps_and_allocs(kind, cls):
    cap = _capsule(kind, 3)
    ctx = _PshContext._from_capsule(cap)
    assert type(ctx) is cls and ctx.num_workers == 3
    out = ctx.alloc(shape=10, dtype=np.int64)

    def kernel(wid, i, x):
        out[i] = x * x + wid * 0

    ctx.map(kernel, np.arange(10))
    np.testing.assert_array_equal(out, np.arange(10) ** 2)


def test_capsule_taken_over_once():
    cap = _capsule(1, 2)
    ctx = ThreadContext._from_capsule(cap)
    with pytest.raises(ValueError, match='pasha.psh_context'):
        ThreadContext._from_capsule(cap)
    del cap  # the renamed capsule no longer destroys the context
    assert ctx.num_workers == 2
    out = ctx.alloc(shape=4, dtype=np.int64)

    def kernel(wid, i, x):
        out[i] = x + 1

    ctx.map(kernel, np.arange(4))  # the context outlived the capsule
    np.testing.assert_array_equal(out, np.arange(4) + 1)


def test_capsule_wrong_kind_and_name():
    cap = _capsule(1, 2)
    with pytest.raises(ValueError, match='not of that kind'):
        ProcessContext._from_capsule(cap)
    other = _capsule_new(ctypes.cast(ctypes.pointer(ctypes.c_int(0)), ctypes.c_void_p).value,
                         b'something.else', None)
    with pytest.raises(ValueError, match='pasha.psh_context'):
        _pasha.Context._from_capsule(other)
    with pytest.raises(ValueError):
        _pasha.Context._from_capsule(object())
