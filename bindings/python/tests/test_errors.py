# SPDX-License-Identifier: BSD-3-Clause
"""Errors as data (issue 23): the exception a failed map raises says
where it came from as attributes (worker_id, index, signal, exit_status),
from libpasha's psh_error_info, not from message text; and
pasha.cpu_count() (psh_cpu_count)."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import pasha as psh

from conftest import KINDS, make_context


class Boom(Exception):
    pass


def _raise_at(where, seen, worker_id, index, value):
    seen[index] = worker_id
    if index == where:
        raise Boom(f'item {index}')
    return value


@pytest.mark.parametrize('kind', KINDS)
def test_kernel_exception_has_where_it_came_from(kind):
    ctx = make_context(kind, 2)
    seen = ctx.full(30, -1, dtype=np.int64)
    import functools
    with pytest.raises(Boom, match='item 17') as info:
        ctx.map(functools.partial(_raise_at, 17, seen), range(30))
    exc = info.value
    assert exc.index == 17
    assert exc.worker_id == seen[17]
    assert exc.signal is None and exc.exit_status is None
    if kind in ('processes', 'pool'):
        assert exc.__cause__ is not None and "raise Boom(f'item {index}')" in str(exc.__cause__)


class Pairs(psh.Functor):
    def split(self, n):
        return psh.gen_split_slices(12, n_parts=n)

    def iterate(self, share):
        for i in range(*share.indices(12)):
            yield i, -i


@pytest.mark.parametrize('kind', KINDS)
def test_kernel_exception_of_a_functor_of_its_own(kind):
    ctx = make_context(kind, 2)

    def kernel(w, i, x):
        if i == 9:
            raise KeyError(i)

    with pytest.raises(KeyError) as info:
        ctx.map(kernel, Pairs())
    assert info.value.index == 9 and info.value.worker_id in (0, 1)


def _exit_at(where, seen, worker_id, index, value):
    seen[index] = worker_id
    if index == where:
        os._exit(7)


def _kill_at(where, seen, worker_id, index, value):
    seen[index] = worker_id
    if index == where:
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize('kind', ['processes', 'pool'])
@pytest.mark.parametrize('functor', ['items', 'shares'])
def test_dead_worker_error_attributes(kind, functor):
    import functools
    ctx = make_context(kind, 2)
    seen = ctx.full(12, -1, dtype=np.int64)
    what = range(12) if functor == 'items' else Pairs()
    with pytest.raises(psh.WorkerError) as info:
        ctx.map(functools.partial(_exit_at, 5, seen), what)
    e = info.value
    assert (e.worker_id, e.index, e.signal, e.exit_status) == (seen[5], 5, None, 7)
    assert str(e) == f'map: on item 5: worker {seen[5]} exited with status 7'
    seen[:] = -1
    with pytest.raises(psh.WorkerError) as info:
        ctx.map(functools.partial(_kill_at, 8, seen), what)
    e = info.value
    assert (e.worker_id, e.index, e.signal, e.exit_status) == (seen[8], 8, signal.SIGKILL, None)
    assert 'was killed by signal 9 (SIGKILL)' in str(e)
    assert ctx.map(lambda w, i, x: 1, range(3)) == [1, 1, 1]  # still usable


def test_worker_error_defaults_and_pickling():
    import pickle
    e = psh.WorkerError('map: failed')
    assert (e.worker_id, e.index, e.signal, e.exit_status) == (None, None, None, None)
    e2 = pickle.loads(pickle.dumps(psh.WorkerError('x', 1, 2, 9, None)))
    assert str(e2) == 'x' and isinstance(e2, psh.WorkerError)


def test_no_message_parsing_left():
    import inspect
    from pasha import context
    src = inspect.getsource(context)
    assert '_describe_failure' not in src
    assert 're.search' not in src


def test_cpu_count():
    n = psh.cpu_count()
    assert isinstance(n, int) and 1 <= n <= 4096
    code = 'import pasha; print(pasha.cpu_count())'
    env = dict(os.environ, PASHA_NUM_WORKERS='3')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == '3', out.stderr
    assert psh.ProcessContext().num_workers == psh.cpu_count()
    for bad in ('0', 'many', '-2', '2.5'):
        env = dict(os.environ, PASHA_NUM_WORKERS=bad)
        code = ('import pasha\ntry:\n    pasha.cpu_count()\nexcept ValueError as e:\n'
                '    print("ValueError", e)\n')
        out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                             text=True)
        assert out.stdout.startswith('ValueError') and 'PASHA_NUM_WORKERS' in out.stdout, \
            (bad, out.stdout, out.stderr)
