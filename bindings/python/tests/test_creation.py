# SPDX-License-Identifier: BSD-3-Clause
"""numpy-style creation on every context and at module level (issue 22).

The first three tests check what the original's `numpy_array_api` branch
(European-XFEL/pasha, pasha/tests/test_array.py: test_array,
test_array_like, test_array_per_worker) checks, written anew here for a
MapContext subclass that implements only `empty` and for HeapContext, and
then for every context of this package."""

import warnings

import numpy as np
import pytest

import pasha as psh
from pasha.context import HeapContext, MapContext

from conftest import KINDS, make_context


class OnlyEmpty(MapContext):
    """A context of its own that implements nothing but empty."""

    def __init__(self, num_workers):
        super().__init__(num_workers)
        self.calls = 0

    def empty(self, shape, dtype=np.float64, order='C'):
        self.calls += 1
        return np.empty(shape, dtype=dtype, order=order)


def _contexts():
    return [('only_empty', lambda: OnlyEmpty(3)), ('heap', lambda: HeapContext(num_workers=3))] + \
        [(k, lambda k=k: make_context(k, 3)) for k in KINDS]


CONTEXTS = [c for _, c in _contexts()]
IDS = [n for n, _ in _contexts()]
METHODS = [('empty', None, {}), ('zeros', 0, {}), ('ones', 1, {}),
           ('full', 42, {'fill_value': 42})]


@pytest.mark.parametrize('make', CONTEXTS, ids=IDS)
@pytest.mark.parametrize('method,expected,extra', METHODS, ids=[m[0] for m in METHODS])
@pytest.mark.parametrize('shape_in,shape_out', [(3, (3,)), ((3, 2), (3, 2)), ([2, 2], (2, 2))])
@pytest.mark.parametrize('order', ['C', 'F'])
def test_direct(make, method, expected, extra, shape_in, shape_out, order):
    ctx = make()
    a = getattr(ctx, method)(shape_in, dtype=np.uint32, order=order, **extra)
    assert a.shape == shape_out and a.dtype == np.uint32
    assert a.flags.c_contiguous if order == 'C' else a.flags.f_contiguous
    if expected is not None:
        np.testing.assert_array_equal(a, expected)
    a[...] = 5  # writable
    b = getattr(ctx, method)(shape_in, **extra)
    assert b.dtype == np.float64 and b.flags.c_contiguous


@pytest.mark.parametrize('make', CONTEXTS, ids=IDS)
@pytest.mark.parametrize('method,expected,extra', METHODS, ids=[m[0] for m in METHODS])
@pytest.mark.parametrize('shape_in,shape_out', [(None, (2, 3, 4)), ((6, 4), (6, 4))])
@pytest.mark.parametrize('order_in,order_out,contiguous', [
    ('C', 'C', 'c'), ('F', 'C', 'c'), ('C', 'F', 'f'), ('F', 'F', 'f'),
    ('C', 'A', 'c'), ('F', 'A', 'f'), ('C', 'K', 'c'), ('F', 'K', 'f')])
def test_like(make, method, expected, extra, shape_in, shape_out, order_in, order_out,
              contiguous):
    ctx = make()
    proto = np.random.rand(2, 3, 4).astype(np.float32, order=order_in)
    a = getattr(ctx, f'{method}_like')(proto, order=order_out, shape=shape_in, **extra)
    assert a.shape == shape_out
    assert a.dtype == np.float32  # the prototype's
    assert getattr(a.flags, f'{contiguous}_contiguous')
    if expected is not None:
        np.testing.assert_array_equal(a, expected)
    assert getattr(ctx, f'{method}_like')(proto, dtype=np.int16, **extra).dtype == np.int16


@pytest.mark.parametrize('make', CONTEXTS, ids=IDS)
@pytest.mark.parametrize('method,expected,extra', METHODS, ids=[m[0] for m in METHODS])
@pytest.mark.parametrize('shape_in,shape_out', [(3, (3,)), ((3, 2), (3, 2))])
@pytest.mark.parametrize('order', ['C', 'F'])
def test_per_worker(make, method, expected, extra, shape_in, shape_out, order):
    ctx = make()
    a = getattr(ctx, f'{method}_per_worker')(shape_in, dtype=np.uint32, order=order, **extra)
    assert a.shape == (ctx.num_workers,) + shape_out and a.dtype == np.uint32
    assert a.flags.c_contiguous if order == 'C' else a.flags.f_contiguous
    if expected is not None:
        np.testing.assert_array_equal(a, expected)


def test_only_empty_gets_everything_from_it():
    ctx = OnlyEmpty(2)
    for make in (lambda: ctx.zeros(2), lambda: ctx.ones_like(np.zeros(3)),
                 lambda: ctx.full_per_worker(2, 7), lambda: ctx.alloc(shape=4, fill=1)):
        before = ctx.calls
        make()
        assert ctx.calls == before + 1
    np.testing.assert_array_equal(ctx.alloc(shape=3, fill=2.5), 2.5)
    np.testing.assert_array_equal(ctx.alloc(shape=(2, 2), per_worker=True), np.zeros((2, 2, 2)))


@pytest.mark.parametrize('kind', KINDS)
def test_arrays_are_shared_with_workers(kind):
    ctx = make_context(kind)
    made = [ctx.empty(8), ctx.zeros(8), ctx.ones_like(np.zeros(8)), ctx.full(8, 3.0),
            ctx.zeros_per_worker(8)[0]]

    def kernel(w, i, x):
        for a in made:
            a[i] = i + 100

    ctx.map(kernel, range(8))
    for a in made:
        np.testing.assert_array_equal(a, np.arange(8) + 100)


def test_full_values_and_dtypes():
    ctx = psh.ThreadContext(2)
    np.testing.assert_array_equal(ctx.full((2, 2), [1, 2]), [[1, 2], [1, 2]])
    assert ctx.full(3, 7).dtype == np.float64  # float64 unless given, as the issue fixes
    assert ctx.zeros(2, dtype=object).tolist() == [0, 0]
    with pytest.raises(ValueError, match='order'):
        ctx.empty(3, order='K')


def test_module_level_on_the_default_context():
    old = psh.get_default_context()
    try:
        ctx = psh.ThreadContext(num_workers=3)
        psh.set_default_context(ctx)
        assert psh.empty_per_worker(2).shape == (3, 2)
        np.testing.assert_array_equal(psh.ones((2,)), [1, 1])
        np.testing.assert_array_equal(psh.full_like(np.zeros(2, np.int8), 4), [4, 4])
        assert psh.zeros_like([[1, 2]]).shape == (1, 2)
        for name in ('empty', 'zeros', 'ones', 'full', 'empty_like', 'zeros_like', 'ones_like',
                     'full_like', 'empty_per_worker', 'zeros_per_worker', 'ones_per_worker',
                     'full_per_worker', 'map_async', 'with_init', 'with_finalize',
                     'with_local_copies', 'with_reduction', 'MapHook', 'HeapContext'):
            assert callable(getattr(psh, name)), name
    finally:
        psh.set_default_context(old)


@pytest.mark.parametrize('call,new', [
    (lambda m: m.array(3, np.uint8), 'empty'),
    (lambda m: m.array_like(np.zeros((2, 2), np.int16)), 'empty_like'),
    (lambda m: m.array_per_worker(2), 'empty_per_worker')])
@pytest.mark.parametrize('on', ['context', 'module'])
def test_deprecated_aliases(call, new, on):
    target = psh.SerialContext() if on == 'context' else psh
    filters = list(warnings.filters)
    with pytest.warns(DeprecationWarning, match=f'use {new}') as record:
        a = call(target)
    assert record[0].filename == __file__  # points at the caller
    assert warnings.filters == filters  # the global filters are left alone
    ref = getattr(psh.SerialContext(), new)
    assert isinstance(a, np.ndarray)
    if new == 'empty':
        assert a.shape == (3,) and a.dtype == np.uint8
    elif new == 'empty_like':
        assert a.shape == (2, 2) and a.dtype == np.int16
    else:
        assert a.shape == (psh.get_default_context().num_workers if on == 'module' else 1, 2)
    assert callable(ref)


def test_heap_context_maps_serially():
    ctx = HeapContext(num_workers=2)
    a = ctx.zeros(5)

    def kernel(w, i, x):
        a[i] = x * 2
        return w

    assert ctx.map(kernel, np.arange(5.0)) == [0] * 5
    np.testing.assert_array_equal(a, np.arange(5.0) * 2)
    assert type(a.base) is not np.uint8  # ordinary numpy memory
