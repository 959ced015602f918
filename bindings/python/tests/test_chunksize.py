# SPDX-License-Identifier: BSD-3-Clause
"""chunksize: the number of items a worker takes at a time (issue 22).

Our own tests; the original's `chunksize` branch (European-XFEL/pasha) only
grouped whole shares. Its test_context.py version of that branch is not
among the stored copies we could read, so this file states the contract
itself: every context accepts chunksize, results are the same with and
without it, and in threads and processes a chunk of that many items goes
to one worker."""

import numpy as np
import pytest

import pasha as psh

from conftest import make_context

from test_results import Squares


@pytest.mark.parametrize('chunksize', [None, 1, 3, 7, 1000])
def test_same_values_any_chunksize(ctx, chunksize):
    out = ctx.zeros(50)

    def kernel(w, i, x):
        out[i] = x * 3
        return x - 1

    assert ctx.map(kernel, np.arange(50.0), chunksize=chunksize) == \
        [float(i - 1) for i in range(50)]
    np.testing.assert_array_equal(out, np.arange(50.0) * 3)
    assert ctx.map(lambda w, i, sq: sq, Squares(31), chunksize) == [i * i for i in range(31)]


@pytest.mark.parametrize('kind', ['threads', 'processes', 'pool'])
@pytest.mark.parametrize('chunksize', [2, 5])
def test_a_chunk_goes_to_one_worker(kind, chunksize):
    ctx = make_context(kind, 3)
    n = 40
    who = ctx.full(n, -1, dtype=np.int64)

    def kernel(w, i, x):
        who[i] = w

    ctx.map(kernel, range(n), chunksize=chunksize)
    assert (who >= 0).all() and (who < 3).all()
    for start in range(0, n, chunksize):
        assert len(set(who[start:start + chunksize].tolist())) == 1, who


@pytest.mark.parametrize('kind', ['threads', 'processes', 'pool'])
def test_chunks_are_handed_out_dynamically(kind):
    """Worker 0 stalls on its first chunk; with chunks of one item, the
    other workers take the rest meanwhile (a static split would have given
    worker 0 a third of the items)."""
    import time
    ctx = make_context(kind, 3)
    n = 30
    who = ctx.full(n, -1, dtype=np.int64)
    started = ctx.zeros(1, dtype=np.int64)

    def kernel(w, i, x):
        who[i] = w
        if i == 0:
            deadline = time.monotonic() + 60
            while (who < 0).sum() > 0 and time.monotonic() < deadline:
                time.sleep(0.001)

    ctx.map(kernel, range(n), chunksize=1)
    assert who[0] >= 0
    assert (who == who[0]).sum() == 1, who  # the stalled worker took only item 0


def test_serial_ignores_chunksize():
    ctx = psh.SerialContext()
    assert ctx.map(lambda w, i, x: (w, x), range(5), chunksize=2) == [(0, i) for i in range(5)]


@pytest.mark.parametrize('bad', [0, -1, 1.5, True, '2'])
def test_bad_chunksize(ctx, bad):
    with pytest.raises(ValueError, match='chunksize'):
        ctx.map(lambda w, i, x: x, range(3), chunksize=bad)


def test_chunksize_on_a_functor_without_length():
    class NoLen(psh.Functor):
        def split(self, n):
            return psh.gen_split_slices(10, n_parts=n)

        def iterate(self, share):
            for i in range(*share.indices(10)):
                yield i, -i

    for kind in ['threads', 'processes']:
        assert make_context(kind, 2).map(lambda w, i, x: x, NoLen(), chunksize=3) == \
            [-i for i in range(10)]
