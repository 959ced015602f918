# SPDX-License-Identifier: BSD-3-Clause
"""map_async, maps inside other pools' workers, nested maps (issue 22)."""

import concurrent.futures
import multiprocessing
import threading

import numpy as np
import pytest

import pasha as psh

from conftest import KINDS, make_context

# The fork start method in a process with threads (ours: a pool, libpasha's
# threads) is what these tests exercise.
pytestmark = pytest.mark.filterwarnings(
    'ignore:This process .* is multi-threaded:DeprecationWarning')


def test_map_async_gives_a_future_of_the_values(ctx):
    out = ctx.zeros(20)
    release = threading.Event()

    def kernel(w, i, x):
        out[i] = x
        return x * x

    fut = ctx.map_async(kernel, np.arange(20.0), chunksize=4)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=300) == [float(i * i) for i in range(20)]
    np.testing.assert_array_equal(out, np.arange(20.0))
    release.set()


def test_map_async_runs_in_the_background():
    ctx = psh.ThreadContext(2)
    gate = threading.Event()

    def kernel(w, i, x):
        gate.wait(300)
        return x

    fut = ctx.map_async(kernel, range(4))
    assert not fut.done()  # the caller goes on while the map runs
    gate.set()
    assert fut.result(timeout=300) == [0, 1, 2, 3]


def test_map_async_exception(ctx):
    def kernel(w, i, x):
        if i == 3:
            raise ZeroDivisionError('item 3')
        return x

    fut = ctx.map_async(kernel, range(8))
    assert isinstance(fut.exception(timeout=300), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError, match='item 3'):
        fut.result()


def test_module_map_async():
    old = psh.get_default_context()
    try:
        psh.set_default_context('processes', num_workers=2)
        assert psh.map_async(lambda w, i, x: -x, range(5)).result(300) == [0, -1, -2, -3, -4]
    finally:
        psh.set_default_context(old)


def test_several_map_async_on_one_context():
    ctx = psh.ProcessContext(2)
    futs = [ctx.map_async(lambda w, i, x, k=k: x + k, range(10)) for k in range(4)]
    for k, f in enumerate(futs):
        assert f.result(300) == [i + k for i in range(10)]


def _map_in_a_worker(kind):
    ctx = make_context(kind, 2)
    out = ctx.zeros(10)

    def kernel(w, i, x):
        out[i] = x * 2
        return int(x) + 1

    values = ctx.map(kernel, np.arange(10.0))
    return values, out.tolist()


@pytest.mark.parametrize('kind', KINDS)
def test_map_in_a_process_pool_executor_worker(kind):
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('fork')) \
            as ex:
        values, out = ex.submit(_map_in_a_worker, kind).result(timeout=300)
    assert values == list(range(1, 11))
    assert out == [2.0 * i for i in range(10)]


def _daemon_target(kind, queue):
    try:
        queue.put(_map_in_a_worker(kind))
    except BaseException as exc:  # pragma: no cover - reported to the test
        queue.put(repr(exc))


@pytest.mark.parametrize('kind', KINDS)
def test_map_in_a_daemonic_process(kind):
    mp = multiprocessing.get_context('fork')
    queue = mp.Queue()
    p = mp.Process(target=_daemon_target, args=(kind, queue), daemon=True)
    p.start()
    got = queue.get(timeout=300)
    p.join(300)
    assert got == (list(range(1, 11)), [2.0 * i for i in range(10)]), got


@pytest.mark.parametrize('kind', KINDS)
def test_map_in_a_multiprocessing_pool_worker(kind):
    with multiprocessing.get_context('fork').Pool(1) as pool:
        values, out = pool.apply(_map_in_a_worker, (kind,))
    assert values == list(range(1, 11)) and out == [2.0 * i for i in range(10)]


def test_nested_map_runs_serially_in_the_worker(ctx):
    """A kernel that maps runs the inner map in its own worker, serially,
    with the same worker id; the inner map's values come back to it."""
    inner_ids = ctx.full((6, 3), -1, dtype=np.int64)

    def inner(w, j, y):
        return (w, y * 10)

    def outer(w, i, x):
        got = ctx.map(inner, [i, i + 1, i + 2])
        for j, (wj, _) in enumerate(got):
            inner_ids[i, j] = wj
        return w, [v for _, v in got]

    got = ctx.map(outer, range(6))
    for i, (w, vals) in enumerate(got):
        assert vals == [i * 10, (i + 1) * 10, (i + 2) * 10]
        assert (inner_ids[i] == w).all()
