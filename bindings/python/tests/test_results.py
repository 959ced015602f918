# SPDX-License-Identifier: BSD-3-Clause
"""map returns the kernel's values in item order, on every context (issue 22)."""

import numpy as np
import pytest

import pasha as psh
from pasha import _pasha
from pasha import context as pctx

from conftest import KINDS, make_context


class Squares(psh.Functor):
    """A functor of its own (runs share by share, not item by item)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def split(self, num_workers):
        return psh.gen_split_slices(self.n, n_parts=num_workers)

    def iterate(self, share):
        for i in range(*share.indices(self.n)):
            yield i, i * i


def test_values_in_item_order(ctx):
    assert ctx.map(lambda w, i, x: (i, x * 2), list(range(50))) == \
        [(i, 2 * i) for i in range(50)]
    assert ctx.map(lambda w, i, x: float(x.sum()), np.arange(12.0).reshape(4, 3)) == \
        [3.0, 12.0, 21.0, 30.0]


def test_values_of_a_functor_of_its_own(ctx):
    assert ctx.map(lambda w, i, sq: sq + 1, Squares(23)) == [i * i + 1 for i in range(23)]


def test_values_some_none(ctx):
    got = ctx.map(lambda w, i, x: None if i % 3 else {'i': i}, range(20))
    assert got == [None if i % 3 else {'i': i} for i in range(20)]
    got = ctx.map(lambda w, i, sq: None if i % 2 else sq, Squares(9))
    assert got == [None if i % 2 else i * i for i in range(9)]


def test_none_only_kernel_gives_nones(ctx):
    out = ctx.zeros(30, dtype=np.int64)

    def kernel(w, i, x):
        out[i] = x + 1

    assert ctx.map(kernel, np.arange(30)) == [None] * 30
    np.testing.assert_array_equal(out, np.arange(30) + 1)
    assert ctx.map(lambda w, i, sq: None, Squares(7)) == [None] * 7
    assert ctx.map(kernel, np.arange(0)) == []


def test_large_values_from_worker_processes(ctx):
    # More than a worker's slot in shared memory holds: the values go
    # through a file in /dev/shm, which the caller removes.
    import glob
    before = set(glob.glob('/dev/shm/pasha-results-*'))
    got = ctx.map(lambda w, i, x: np.full(5000, i, dtype=np.int64), range(40))
    assert [int(v[0]) for v in got] == list(range(40)) and all(v.shape == (5000,) for v in got)
    assert set(glob.glob('/dev/shm/pasha-results-*')) == before


@pytest.mark.parametrize('kind', ['processes', 'pool'])
def test_values_travel_once_per_worker(kind, monkeypatch):
    """Each worker process pickles its values once, after its last item,
    however many chunks it took (chunksize=1: one item at a time)."""
    calls = psh.ThreadContext(1).zeros(60, dtype=np.int64)  # [first index a worker kept] += 1
    sizes = psh.ThreadContext(1).zeros(60, dtype=np.int64)  # how many values it carried
    workers = psh.ThreadContext(1).full(60, -1, dtype=np.int64)

    def counting(slot, indices, values):
        calls[indices[0]] += 1
        sizes[indices[0]] = len(values)
        return pctx._store_results(slot, indices, values)

    _pasha.set_hooks(pctx._pool_entry, pctx._store_exception, pctx._flush_stdio, counting,
                     pctx._collect_run_worker)
    try:
        ctx = make_context(kind, 3)  # a pool's workers fork here, with the hook above

        def kernel(w, i, x):
            workers[i] = w
            return i * 10

        assert ctx.map(kernel, range(60), chunksize=1) == [i * 10 for i in range(60)]
    finally:
        _pasha.set_hooks(pctx._pool_entry, pctx._store_exception, pctx._flush_stdio,
                         pctx._store_results, pctx._collect_run_worker)
    used = set(workers.tolist())
    assert -1 not in used
    assert int(calls.sum()) == len(used)
    for w in used:
        assert sizes[calls > 0].tolist().count(int((workers == w).sum())) >= 1
    assert int(sizes.sum()) == 60


def test_values_of_a_context_with_its_own_run_worker():
    class Reversed(psh.ThreadContext):
        @staticmethod
        def run_worker(function, functor, share, worker_id):
            for entry in reversed(list(functor.iterate(share))):
                function(worker_id, *entry)

    ctx = Reversed(num_workers=1)
    # one share, run backwards: the values come in the order run_worker called
    assert ctx.map(lambda w, i, x: x, list(range(5))) == [4, 3, 2, 1, 0]


def test_unpicklable_value_is_an_error():
    import threading
    ctx = psh.ProcessContext(num_workers=2)
    with pytest.raises(Exception, match='pickle|lock'):
        ctx.map(lambda w, i, x: threading.Lock(), range(4))
    # the context still works
    assert ctx.map(lambda w, i, x: x, range(3)) == [0, 1, 2]


def test_module_map_returns_values():
    old = psh.get_default_context()
    try:
        psh.set_default_context('threads', num_workers=2)
        assert psh.map(lambda w, i, x: x + 1, [1, 2, 3]) == [2, 3, 4]
        assert psh.map(lambda w, i, x: x + 1, [1, 2, 3], chunksize=1) == [2, 3, 4]
    finally:
        psh.set_default_context(old)


def test_failed_map_leaves_no_result_files():
    import glob
    before = set(glob.glob('/dev/shm/pasha-results-*'))
    ctx = psh.ProcessContext(num_workers=2)

    def kernel(w, i, x):
        if i == 39:
            raise KeyError('late')
        return np.zeros(20000)

    with pytest.raises(KeyError, match='late'):
        ctx.map(kernel, range(40), chunksize=1)
    assert set(glob.glob('/dev/shm/pasha-results-*')) == before


@pytest.mark.parametrize('kind', KINDS)
def test_values_after_values(kind):
    """A second map on the same context (the pool reuses its slots)."""
    ctx = make_context(kind)
    for k in range(3):
        assert ctx.map(lambda w, i, x: x * k, range(6)) == [i * k for i in range(6)]
    assert ctx.map(lambda w, i, x: None, range(6)) == [None] * 6
