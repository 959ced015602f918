# SPDX-License-Identifier: BSD-3-Clause
"""The pasha 0.1.2 API on libpasha: alloc, map, default context, functors."""

import functools
import os
import typing
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import pasha as psh
from pasha.functor import Functor, gen_split_slices

from conftest import KINDS, make_context

QUICK_GUIDE = textwrap.dedent('''\
    import numpy as np
    import pasha as psh
    inp = np.random.rand(100)
    outp = psh.alloc(like=inp)
    def triple_it(worker_id, index, value):
        outp[index] = 3 * value
    psh.map(triple_it, inp)
    print(np.allclose(outp, inp * 3))
''')


def test_quick_guide_verbatim():
    out = subprocess.run([sys.executable, '-c', QUICK_GUIDE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'True'


def test_default_context_and_version():
    assert isinstance(psh.__version__, str)
    assert psh.libpasha_version.count('.') == 2
    old = psh.get_default_context()
    try:
        psh._default_context = None
        assert isinstance(psh.get_default_context(), psh.ProcessContext)
        psh.set_default_context('threads', num_workers=3)
        assert isinstance(psh.get_default_context(), psh.ThreadContext)
        assert psh.get_default_context().num_workers == 3
        psh.set_default_context('serial')
        assert isinstance(psh.get_default_context(), psh.SerialContext)
        psh.set_default_context('processes', 2, persistent=True)
        ctx = psh.get_default_context()
        assert isinstance(ctx, psh.ProcessContext) and ctx.persistent
        mine = psh.ThreadContext(2)
        psh.set_default_context(mine)
        assert psh.get_default_context() is mine
        with pytest.raises(ValueError):
            psh.set_default_context('gpu')
        out = psh.alloc(4, dtype=np.int32)
        psh.map(lambda w, i, v: out.__setitem__(i, v + 1), [10, 20, 30, 40])
        np.testing.assert_array_equal(out, [11, 21, 31, 41])
    finally:
        psh.set_default_context(old)


def test_alloc_rules(ctx):
    a = ctx.alloc(5)
    assert a.shape == (5,) and a.dtype == np.float64 and a.flags.c_contiguous
    assert not a.any()
    with pytest.raises(ValueError):
        ctx.alloc()
    like_f = np.asfortranarray(np.ones((3, 4), dtype=np.int16))
    b = ctx.alloc(like=like_f)
    assert b.shape == (3, 4) and b.dtype == np.int16 and b.flags.f_contiguous
    c = ctx.alloc(like=np.ones((3, 4))[:, ::2])  # neither C nor F: C
    assert c.shape == (3, 2) and c.flags.c_contiguous
    d = ctx.alloc(like=like_f, shape=[2, 2], dtype=np.float32, order='C')
    assert d.shape == (2, 2) and d.dtype == np.float32 and d.flags.c_contiguous
    e = ctx.alloc((2, 3), np.int64, fill=7, per_worker=True)
    assert e.shape == (ctx.num_workers, 2, 3) and (e == 7).all()
    f = ctx.alloc((2, 3), order='F', per_worker=True, fill=0)
    assert f.shape == (2, 3, ctx.num_workers) and f.flags.f_contiguous and not f.any()
    g = ctx.alloc(3, dtype=bool, fill=True)
    assert g.all()


def test_alloc_is_psh_memory_that_outlives_its_name(ctx):
    from pasha.context import _array_root
    a = ctx.alloc((10, 10))
    view = a[2:5]
    del a
    assert _array_root(view) is not None
    view[...] = 1.5
    assert view.sum() == 1.5 * 30


def _write_square(out, worker_id, index, value):
    out[index] = value * value


def test_map_sequence_and_ndarray(ctx):
    seq = list(range(37))
    out = ctx.alloc(37, dtype=np.int64)
    ctx.map(functools.partial(_write_square, out), seq)
    np.testing.assert_array_equal(out, np.arange(37) ** 2)

    arr = np.arange(24.0).reshape(4, 6)
    sums = ctx.alloc(6)
    ctx.map(functools.partial(_sum_into, sums), psh.NdarrayFunctor(arr, axis=1))
    np.testing.assert_allclose(sums, arr.sum(axis=0))


def _sum_into(out, worker_id, index, value):
    out[index] = value.sum()


def _count_worker(out, worker_id, index, value):
    out[worker_id] += value


def test_per_worker_reduction(ctx):
    acc = ctx.alloc(1, per_worker=True, fill=0)
    ctx.map(functools.partial(_count_worker, acc), np.arange(1000.0))
    assert acc.sum() == sum(range(1000))
    # the static split: worker w gets [w*n/W, (w+1)*n/W)
    W = ctx.num_workers
    for w in range(W):
        lo, hi = w * 1000 // W, (w + 1) * 1000 // W
        assert acc[w, 0] == sum(range(lo, hi))


def test_run_worker_and_split():
    calls = []
    psh.MapContext.run_worker(lambda w, i, v: calls.append((w, i, v)),
                              psh.SequenceFunctor('abcdef'), slice(2, 5), 3)
    assert calls == [(3, 2, 'c'), (3, 3, 'd'), (3, 4, 'e')]
    assert psh.SequenceFunctor(list(range(10))).split(3) == \
        [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert gen_split_slices(10, part_len=4) == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert gen_split_slices(5, n_parts=2) == [slice(0, 2), slice(2, 5)]
    with pytest.raises(ValueError):
        gen_split_slices(5)


def test_try_wrap():
    f = psh.SequenceFunctor([1])
    assert Functor.try_wrap(f) is f
    assert isinstance(Functor.try_wrap([1, 2]), psh.SequenceFunctor)
    assert type(Functor.try_wrap(np.zeros(3))) is psh.NdarrayFunctor

    class Custom:
        def _pasha_functor_(self):
            return f
    assert Functor.try_wrap(Custom()) is f
    with pytest.raises(ValueError, match='no default functor'):
        Functor.try_wrap(3.5)

    class Ambiguous(Functor):
        @classmethod
        def wrap(cls, value):
            return cls() if isinstance(value, tuple) else None
    try:
        with pytest.raises(ValueError, match='ambiguous'):
            Functor.try_wrap((1, 2))
    finally:
        Functor._functor_types.remove(Ambiguous)


def _raise_at(where, worker_id, index, value):
    if index == where:
        raise KeyError(f'bad index {index}')


def test_exception_reraised(ctx):
    with pytest.raises(KeyError, match='bad index 13'):
        ctx.map(functools.partial(_raise_at, 13), list(range(20)))
    # the context still works afterwards
    out = ctx.alloc(20, dtype=np.int64)
    ctx.map(functools.partial(_write_square, out), list(range(20)))
    np.testing.assert_array_equal(out, np.arange(20) ** 2)


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.lock = __import__('threading').Lock()


def _raise_unpicklable(worker_id, index, value):
    raise Unpicklable('odd one', 2)


@pytest.mark.parametrize('kind', ['processes', 'pool'])
def test_unpicklable_exception_message(kind):
    ctx = make_context(kind)
    with pytest.raises(Exception, match='odd one'):
        ctx.map(_raise_unpicklable, [1, 2, 3])


def _die(worker_id, index, value):
    if index == 3:
        os._exit(7)


def _segv(worker_id, index, value):
    if index == 1:
        os.kill(os.getpid(), 9)


@pytest.mark.parametrize('kind', ['processes', 'pool'])
def test_dead_worker_raises(kind):
    ctx = make_context(kind)
    with pytest.raises(psh.WorkerError, match='exit|status|7'):
        ctx.map(_die, list(range(8)))
    with pytest.raises(psh.WorkerError, match='signal|9|KILL'):
        ctx.map(_segv, list(range(8)))
    out = ctx.alloc(8)
    ctx.map(functools.partial(_write_square, out), list(range(8)))
    np.testing.assert_array_equal(out, np.arange(8) ** 2)


def test_pool_reuses_workers_and_sees_new_arrays():
    ctx = make_context('pool')
    pids = ctx.alloc(2, dtype=np.int64, per_worker=True)
    ctx.map(functools.partial(_record_pid, pids), [0, 1])
    first = pids.copy()
    ctx.map(functools.partial(_record_pid, pids), [0, 1])
    np.testing.assert_array_equal(first, pids)
    assert os.getpid() not in first
    for n in (10, 1000):  # arrays made after the pool's fork
        out = ctx.alloc(n)
        ctx.map(functools.partial(_write_square, out), np.arange(float(n)))
        np.testing.assert_array_equal(out, np.arange(float(n)) ** 2)


def _record_pid(out, worker_id, index, value):
    out[worker_id, 0] = os.getpid()
    out[worker_id, 1] = worker_id


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('schedule', ['dynamic', 'guided'])
def test_schedules(kind, schedule):
    ctx = make_context(kind, schedule=schedule)
    out = ctx.alloc(101)
    ctx.map(functools.partial(_write_square, out), np.arange(101.0))
    np.testing.assert_array_equal(out, np.arange(101.0) ** 2)


def test_bad_arguments():
    with pytest.raises(ValueError):
        psh.ThreadContext(0)
    with pytest.raises(ValueError):
        psh.ProcessContext(2, schedule='sometimes')
    with pytest.raises(ValueError):
        psh.ThreadContext(2).alloc(3, order='K')


def test_progress_callback(ctx):
    seen = []
    out = ctx.alloc(50)
    ctx.map(functools.partial(_write_square, out), np.arange(50.0),
            progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(out, np.arange(50.0) ** 2)
    # items of a sequence are counted one by one
    assert seen and seen[-1] == (50, 50)
    assert all(0 <= d <= t == 50 for d, t in seen)


def test_progress_bar(ctx, capsys):
    out = ctx.alloc(10)
    ctx.map(functools.partial(_write_square, out), np.arange(10.0), progress=True)
    np.testing.assert_array_equal(out, np.arange(10.0) ** 2)
    captured = capsys.readouterr()
    assert '10/10' in captured.err + captured.out


SIGINT_SCRIPT = textwrap.dedent('''\
    import os, signal, sys, threading, time
    import pasha as psh
    kind = sys.argv[1]
    def slow(w, i, v):
        time.sleep(0.01)
    ctx = psh.ProcessContext(2, persistent=kind == 'pool') if kind in ('processes', 'pool') \\
        else psh.ThreadContext(2) if kind == 'threads' else psh.SerialContext()
    print('started', flush=True)
    try:
        ctx.map(slow, list(range(100000)))
    except KeyboardInterrupt:
        print('interrupted')
''')


@pytest.mark.parametrize('kind', KINDS)
def test_ctrl_c_ends_map(kind):
    proc = subprocess.Popen([sys.executable, '-c', SIGINT_SCRIPT, kind], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'started'
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert out.strip() == 'interrupted', err


ORIGINAL_PUBLIC_NAMES = {  # pasha 0.1.2's public module attributes (it had no __all__)
    'MapContext', 'SerialContext', 'ThreadContext', 'ProcessContext', 'SequenceFunctor',
    'NdarrayFunctor', 'DataArrayFunctor', 'ExtraDataFunctor', 'get_default_context',
    'set_default_context', 'alloc', 'map'}


def test_package_metadata():
    assert set(psh.__all__) == ORIGINAL_PUBLIC_NAMES
    assert all(hasattr(psh, name) for name in psh.__all__)
    here = os.path.dirname(psh.__file__)
    assert os.path.exists(os.path.join(here, 'py.typed'))
    with open(os.path.join(here, 'COPYING')) as f:
        assert 'BSD' in f.read() or 'Redistribution' in f.read()
    # one version: meson's project version, in the package and in libpasha
    assert psh.__version__ == psh.libpasha_version
    # map returns the kernel's values (issue 22); None for native kernels
    assert psh.MapContext.map.__annotations__['return'] == typing.Optional[list]
