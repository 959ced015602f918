# SPDX-License-Identifier: BSD-3-Clause
"""Map hooks (pasha.util), issue 22, on every context.

test_stages_in_order checks what the original's `hook_api` branch
(European-XFEL/pasha, pasha/tests/test_util.py: test_maphook) checks,
written anew: each stage runs after the ones before it and before the
ones after it, with the context and the function. The original checks that
every worker of the context ran pre_worker; here a worker that takes no
item runs no worker stage, so the map has more items than workers. The
rest are our own: once per worker per map however many chunks a worker
takes (the original ran them per chunk), the function pre_map returns is
the one the workers run, replacements keep the hooks, with_reduction
counts the target once (the original counted it once per worker)."""

import numpy as np
import pytest

import pasha as psh
from pasha.util import MapHook, with_finalize, with_init, with_local_copies, with_reduction

from conftest import KINDS, make_context


class Hook(MapHook):
    def __init__(self, ctx):
        self.ctx = ctx
        n = ctx.num_workers
        self.pre_map_n = 0
        self.post_map_n = 0
        self.pre_worker_n = ctx.zeros(n, dtype=np.int64)
        self.post_worker_n = ctx.zeros(n, dtype=np.int64)
        self.items = ctx.zeros(n, dtype=np.int64)
        self.late_items = ctx.zeros(n, dtype=np.int64)  # items run after post_worker

    def pre_map(self, context, function):
        assert context is self.ctx
        assert self.pre_map_n == 0 and self.items.sum() == 0 and self.pre_worker_n.sum() == 0
        self.pre_map_n += 1
        return function

    def pre_worker(self, context, function, worker_id):
        assert context.num_workers == self.ctx.num_workers
        assert self.items[worker_id] == 0 and self.post_worker_n[worker_id] == 0
        self.pre_worker_n[worker_id] += 1
        return function

    def post_worker(self, context, function, worker_id):
        assert self.pre_worker_n[worker_id] == 1 and self.items[worker_id] > 0
        self.post_worker_n[worker_id] += 1
        return function

    def post_map(self, context, function):
        assert context is self.ctx
        assert self.pre_map_n == 1 and self.post_map_n == 0
        assert (self.pre_worker_n == self.post_worker_n).all()
        self.post_map_n += 1
        return function


@pytest.mark.parametrize('chunksize', [None, 1])
def test_stages_in_order_once_per_worker(ctx, chunksize):
    hook = Hook(ctx)
    items, post_worker_n = hook.items, hook.post_worker_n
    late = hook.late_items

    @hook
    def kernel(w, i, x):
        items[w] += 1
        if post_worker_n[w]:
            late[w] += 1
        return x * 2

    assert kernel._pasha_hooks_ == [hook]
    assert ctx.map(kernel, range(40), chunksize=chunksize) == [2 * i for i in range(40)]
    ran = hook.items > 0
    assert hook.pre_map_n == 1 and hook.post_map_n == 1
    assert (hook.pre_worker_n[ran] == 1).all() and (hook.pre_worker_n[~ran] == 0).all()
    assert (hook.post_worker_n == hook.pre_worker_n).all()
    assert hook.items.sum() == 40 and hook.late_items.sum() == 0
    # a second map: the hooks run again, once
    hook.pre_map_n = hook.post_map_n = 0
    hook.pre_worker_n[:] = hook.post_worker_n[:] = hook.items[:] = 0
    ctx.map(kernel, range(10))
    assert hook.pre_map_n == 1 and hook.post_map_n == 1
    assert (hook.pre_worker_n == (hook.items > 0)).all()


def test_stages_on_a_serial_context_as_the_original():
    ctx = psh.SerialContext()
    called = []

    class H(MapHook):
        def pre_map(self, context, function):
            assert context is ctx and function is kernel and called == []
            called.append('pre_map')

        def pre_worker(self, context, function, worker_id):
            assert context is ctx and function is kernel and worker_id == 0
            called.append('pre_worker')

        def post_worker(self, context, function, worker_id):
            assert called[-1] == 'kernel'
            called.append('post_worker')

        def post_map(self, context, function):
            called.append('post_map')

    @H()
    def kernel(w, i, x):
        if i == 0:
            assert called == ['pre_map', 'pre_worker']
            called.append('kernel')

    ctx.map(kernel, np.arange(10))
    assert called == ['pre_map', 'pre_worker', 'kernel', 'post_worker', 'post_map']


def test_pre_map_replacement_is_what_workers_run(ctx):
    class Swap(MapHook):
        def pre_map(self, context, function):
            def replacement(w, i, x):
                return ('replaced', x)
            return replacement

    seen = ctx.zeros(1, dtype=np.int64)

    class Check(MapHook):
        def pre_worker(self, context, function, worker_id):
            seen[0] += function.__name__ == 'replacement'
            assert function._pasha_hooks_ == hooks  # the replacement keeps the hooks
            return function

    @Check()
    @Swap()
    def kernel(w, i, x):
        return ('original', x)

    hooks = kernel._pasha_hooks_
    assert ctx.map(kernel, range(6)) == [('replaced', i) for i in range(6)]
    assert seen[0] >= 1


def test_pre_worker_replacement_runs_in_that_worker(ctx):
    class PerWorker(MapHook):
        def pre_worker(self, context, function, worker_id):
            return lambda w, i, x: (w, worker_id, x)

    @PerWorker()
    def kernel(w, i, x):
        return None

    got = ctx.map(kernel, range(12), chunksize=2)
    assert [x for _, _, x in got] == list(range(12))
    assert all(w == wid for w, wid, _ in got)


def init_counter(worker_id):
    counter = [worker_id * 1000]
    yield
    _cleanups[worker_id] += 1
    _cleanup_totals[worker_id] = counter[0]


_cleanups = None
_cleanup_totals = None


@pytest.mark.parametrize('kind', KINDS)
def test_with_init_generator(kind):
    global _cleanups, _cleanup_totals
    # module globals a pool's workers see: set before they fork
    _cleanups = psh.ThreadContext(1).zeros(2, dtype=np.int64)
    _cleanup_totals = psh.ThreadContext(1).zeros(2, dtype=np.int64)
    ctx = make_context(kind, 2)

    @with_init(init_counter)
    def kernel(w, i, x):
        counter[0] += 1  # noqa: F821 (a local of init_counter, injected)
        return counter[0] - w * 1000

    got = ctx.map(kernel, range(20), chunksize=3)
    assert len(got) == 20 and all(v >= 1 for v in got)
    ran = _cleanups > 0
    assert (_cleanups[ran] == 1).all()
    # each worker's count went up by one per item it ran, from its own start
    assert int((_cleanup_totals[ran] - np.flatnonzero(ran) * 1000).sum()) == 20
    assert 'counter' not in globals()  # the module's globals are left alone


@pytest.mark.parametrize('kind', KINDS)
def test_with_init_plain_function_and_finalize(kind):
    ctx = make_context(kind, 2)
    inits = ctx.zeros(2, dtype=np.int64)
    finals = ctx.zeros(2, dtype=np.int64)

    def init(worker_id):
        inits[worker_id] += 1

    def final(worker_id, kernel_globals):
        assert kernel_globals['np'] is np
        finals[worker_id] += 1

    @with_finalize(final)
    @with_init(init)
    def kernel(w, i, x):
        assert inits[w] == 1 and finals[w] == 0

    ctx.map(kernel, range(10), chunksize=1)
    assert (inits == finals).all() and inits.sum() >= 1 and (inits <= 1).all()


_scratch = [0]


@pytest.mark.parametrize('kind', KINDS)
def test_with_local_copies(kind):
    ctx = make_context(kind, 2)
    owner = ctx.full(10, -1, dtype=np.int64)
    sizes = ctx.zeros(10, dtype=np.int64)

    @with_local_copies('_scratch')
    def kernel(w, i, x):
        _scratch.append(w)
        owner[i] = w
        sizes[i] = len(_scratch)
        assert set(_scratch[1:]) == {w}  # never another worker's

    ctx.map(kernel, range(10))
    assert _scratch == [0]  # the caller's object is untouched
    for w in set(owner.tolist()):
        mine = np.flatnonzero(owner == w)
        assert sorted(sizes[mine].tolist()) == list(range(2, len(mine) + 2))


_total = None
_peak = None


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('chunksize', [None, 1])
def test_with_reduction_counts_the_target_once(kind, chunksize):
    global _total, _peak
    ctx = make_context(kind, 3)
    _total = np.full(4, 100.0)
    _peak = np.full(2, -50)

    @with_reduction('_total')
    @with_reduction('_peak', function=np.max)
    def kernel(w, i, x):
        _total[:] += x
        _peak[0] = max(_peak[0], x)
        _peak[1] = max(_peak[1], -x)

    ctx.map(kernel, np.arange(30.0), chunksize=chunksize)
    np.testing.assert_array_equal(_total, 100.0 + np.arange(30.0).sum())
    np.testing.assert_array_equal(_peak, [29, 0])
    ctx.map(kernel, np.arange(3.0))  # again: from the new value, once
    np.testing.assert_array_equal(_total, 100.0 + np.arange(30.0).sum() + 3.0)


_scalar = None


@pytest.mark.parametrize('kind', KINDS)
def test_with_reduction_of_a_0d_target(kind):
    # Regression: each worker's accumulator of a 0-d target was a numpy
    # scalar (acc[worker_id]), not a writable 0-d view, so `_scalar[()] +=`
    # raised TypeError in the kernel.
    global _scalar
    ctx = make_context(kind, 2)
    _scalar = np.zeros(())

    @with_reduction('_scalar')
    def kernel(w, i, x):
        _scalar[()] += x

    ctx.map(kernel, np.arange(10.0))
    assert _scalar[()] == 45.0


def test_with_reduction_bad_symbols():
    @with_reduction('nothing_of_that_name')
    def kernel(w, i, x):
        pass

    with pytest.raises(ValueError, match='nothing_of_that_name'):
        psh.SerialContext().map(kernel, range(2))

    @with_reduction('psh')
    def kernel2(w, i, x):
        pass

    with pytest.raises(TypeError, match='not an array'):
        psh.SerialContext().map(kernel2, range(2))


@pytest.mark.parametrize('stage', ['pre_worker', 'post_worker', 'pre_map', 'post_map'])
def test_hook_errors_fail_the_map(ctx, stage):
    class Bad(MapHook):
        pass

    def fail(self, *args):
        raise LookupError(f'no {stage} today')

    setattr(Bad, stage, fail)

    @Bad()
    def kernel(w, i, x):
        return x

    with pytest.raises(LookupError, match=f'no {stage} today'):
        ctx.map(kernel, range(40), chunksize=3)
    assert ctx.map(lambda w, i, x: x, range(3)) == [0, 1, 2]


def test_psh_names_are_the_util_ones():
    import pasha.util as util
    for name in ('MapHook', 'with_init', 'with_finalize', 'with_local_copies', 'with_reduction'):
        assert getattr(psh, name) is getattr(util, name)
