# SPDX-License-Identifier: BSD-3-Clause
"""The Python driver of the MPI behaviour suite: the cases of
tests/mpi/behaviours.txt (the C and Fortran drivers run the same ones),
through pasha.MpiContext's public API only.

One test per case of the spec, in its order, on every rank. A case makes
its collective calls on every rank whatever its checks find (a failed
check is recorded, never raised halfway), and returns what the rank saw:
'ok', or the spec's name of the error (EKERNEL, ...) prefixed by 'remote-'
when it is another rank's (pasha.RemoteRankError). The test compares that
with the spec's outcome for this rank. conftest.py's hang guard ends a
rank that waits longer than PASHA_MPI_TEST_TIMEOUT (120 s) per test.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

import pasha as psh

MPI = pytest.importorskip('mpi4py.MPI')

SPEC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'mpi',
                         'behaviours.txt')


def _read_spec(path):
    cases, na, gap = [], {}, {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith('#'):
                continue
            if words[0] in ('na', 'gap'):
                if words[1] == 'python':
                    (na if words[0] == 'na' else gap)[words[2]] = ' '.join(words[3:])
                continue
            name, fail_on, failing, others, min_ranks = words[:5]
            cases.append((name, fail_on, failing, others, int(min_ranks)))
    return cases, na, gap


SPEC, NA, GAP = _read_spec(SPEC_PATH)
CASES = {}


def case(name):
    """Register the function of the spec's case `name` (check-behaviours.py
    reads these decorators)."""
    def register(fn):
        CASES[name] = fn
        return fn
    return register


class KernelFailure(Exception):
    """What the failing kernels raise (EKERNEL in the spec)."""


# The spec's error names of the exceptions a rank raises itself.
CODES = {'KernelFailure': 'EKERNEL', 'WorkerError': 'EWORKER', 'KeyboardInterrupt': 'ECANCELED',
         'ValueError': 'EINVAL'}


class Checks:
    """Failed checks of one case, recorded (never raised mid-collective)."""

    def __init__(self):
        self.failed = []

    def __call__(self, cond, what):
        if not cond:
            self.failed.append(what)
        return cond


def outcome(chk, exc, named):
    """'ok', the error's spec name, or 'remote-' + the failing rank's; a
    RemoteRankError must name rank `named`."""
    if exc is None:
        return 'ok'
    if isinstance(exc, psh.RemoteRankError):
        chk(exc.rank == named, f'RemoteRankError names rank {exc.rank}, not {named}: {exc}')
        return 'remote-' + CODES.get(exc.type_name, exc.type_name)
    return CODES.get(type(exc).__name__, type(exc).__name__)


def _call(fn, *args, **kwargs):
    """(result, None) or (None, the exception)."""
    try:
        return fn(*args, **kwargs), None
    except BaseException as e:  # noqa: B902 - KeyboardInterrupt is a case
        return None, e


def rank_block(n, rank, size):
    """Items [lo, hi) of rank: contiguous blocks, the first n % size ranks
    one more (docs/mpi.md, "Split"; computed here, not taken from pasha)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _owner(n, i, size):
    for r in range(size):
        lo, hi = rank_block(n, r, size)
        if lo <= i < hi:
            return r
    return -1


def map_and_check(chk, ctx, n, every_worker=False):
    """A map of n items into fresh arrays; every value, writer rank and
    worker id checked on every rank after an allgather."""
    out = ctx.alloc(shape=n, dtype=np.float64)
    who = ctx.alloc(shape=n, dtype=np.int32, fill=-1)
    rk = ctx.alloc(shape=n, dtype=np.int32, fill=-1)
    me = ctx.rank

    def kernel(worker_id, index, value):
        out[index] = 3 * index + 1
        who[index] = worker_id
        rk[index] = me

    ctx.map(kernel, np.arange(n))
    for a in (out, who, rk):
        ctx.allgather(a)
    w = ctx.num_workers // ctx.size  # every rank has as many
    for i in range(n):
        r = _owner(n, i, ctx.size)
        if not (chk(out[i] == 3 * i + 1, f'out[{i}] = {out[i]}') and
                chk(rk[i] == r, f'index {i} written by rank {rk[i]}, not {r}') and
                chk(r * w <= who[i] < (r + 1) * w, f'index {i}: worker {who[i]} not of rank {r}')):
            break
    if every_worker:
        chk(len(np.unique(who)) == ctx.num_workers,
            f'workers used: {sorted(np.unique(who))} of {ctx.num_workers}')


def _map_results(chk, comm, local):
    with psh.MpiContext(comm, local=local, num_workers=2) as ctx:
        chk(ctx.num_workers == 2 * comm.Get_size(), f'num_workers {ctx.num_workers}')
        map_and_check(chk, ctx, 1001, every_worker=True)
    return 'ok'


@case('map-results')
def case_map_results(chk, comm):
    return _map_results(chk, comm, 'threads')


@case('map-results-processes')
def case_map_results_processes(chk, comm):
    return _map_results(chk, comm, 'processes')


@case('map-fewer-items')
def case_map_fewer_items(chk, comm):
    with psh.MpiContext(comm, local='threads', num_workers=2) as ctx:
        map_and_check(chk, ctx, 2 * comm.Get_size() - 1)
    return 'ok'


@case('map-empty')
def case_map_empty(chk, comm):
    calls = []
    with psh.MpiContext(comm, local='threads', num_workers=2) as ctx:
        _, exc = _call(ctx.map, lambda w, i, v: calls.append(i), np.arange(0))
        chk(not calls, f'the kernel ran on {calls}')
        map_and_check(chk, ctx, 37)
    return outcome(chk, exc, -1)


@case('gather')
def case_gather(chk, comm):
    last = comm.Get_size() - 1
    n = 999
    with psh.MpiContext(comm, local='threads', num_workers=2) as ctx:
        out = ctx.alloc(shape=n)
        rk = ctx.alloc(shape=n, dtype=np.int32, fill=-1)
        me = ctx.rank

        def kernel(worker_id, index, value):
            out[index] = 3 * index + 1
            rk[index] = me

        ctx.map(kernel, np.arange(n))
        ctx.gather(out, root=last)
        ctx.gather(rk, root=last)
        if ctx.rank == last:
            chk(np.array_equal(out, 3 * np.arange(n) + 1), 'gathered values')
            want = np.array([_owner(n, i, ctx.size) for i in range(n)])
            chk(np.array_equal(rk, want), 'gathered writer ranks')
    return 'ok'


@case('reduce-sum')
def case_reduce_sum(chk, comm):
    n = 5000
    with psh.MpiContext(comm, local='threads', num_workers=2) as ctx:
        acc = ctx.alloc(shape=2, dtype=np.int64, per_worker=True)

        def kernel(worker_id, index, value):
            acc[worker_id, 0] += index
            acc[worker_id, 1] += 1

        ctx.map(kernel, np.arange(n))
        ctx.reduce(acc, op='sum', root=0)
        if ctx.rank == 0:
            chk(int(acc[:, 0].sum()) == n * (n - 1) // 2, f'sum {acc[:, 0].sum()}')
            chk(int(acc[:, 1].sum()) == n, f'count {acc[:, 1].sum()}')
    return 'ok'


def _minmax_value(j, r):
    return (j * 7 + r * 13) % 29 - 10


@case('reduce-min-max')
def case_reduce_min_max(chk, comm):
    n, size, me = 64, comm.Get_size(), comm.Get_rank()
    root = size // 2
    with psh.MpiContext(comm, local='threads', num_workers=2) as ctx:
        mn = np.array([_minmax_value(j, me) for j in range(n)], dtype=np.int32)
        mx = mn.copy()
        ctx.reduce(mn, op='min', root=root)
        ctx.reduce(mx, op='max', root=root)
        if me == root:
            table = np.array([[_minmax_value(j, r) for j in range(n)] for r in range(size)])
            chk(np.array_equal(mn, table.min(axis=0)), 'element-wise minimum')
            chk(np.array_equal(mx, table.max(axis=0)), 'element-wise maximum')
    return 'ok'


def _failure_case(chk, comm, local, kill):
    """A failure at the middle of the last rank's block of 400 items."""
    size, me = comm.Get_size(), comm.Get_rank()
    last, n = size - 1, 400
    lo, hi = rank_block(n, last, size)
    at = lo + (hi - lo) // 2
    with psh.MpiContext(comm, local=local, num_workers=2) as ctx:
        out = ctx.alloc(shape=n)

        def kernel(worker_id, index, value):
            if me == last and index == at:
                if kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise KernelFailure(f'bad item {index}')
            out[index] = 3 * index + 1

        _, exc = _call(ctx.map, kernel, np.arange(n))
        seen = outcome(chk, exc, last)
        if exc is None:
            chk(False, 'the map did not fail')
        elif isinstance(exc, psh.RemoteRankError):
            chk(('signal 9' if kill else f'bad item {at}') in exc.message, f'message: {exc.message}')
        elif kill:
            chk(getattr(exc, 'signal', None) == 9, f'signal {getattr(exc, "signal", None)}')
            chk(getattr(exc, 'index', None) == at, f'index {getattr(exc, "index", None)}, not {at}')
            chk('signal 9' in str(exc), f'message: {exc}')
        else:
            chk(str(exc) == f'bad item {at}', f'message: {exc}')
            chk(getattr(exc, 'index', None) == at, f'index {getattr(exc, "index", None)}, not {at}')
            chk(2 * last <= getattr(exc, 'worker_id', -1) < 2 * last + 2,
                f'worker_id {getattr(exc, "worker_id", None)}')
        # the context maps again, every index right
        map_and_check(chk, ctx, n)
    return seen


@case('kernel-error')
def case_kernel_error(chk, comm):
    return _failure_case(chk, comm, 'threads', kill=False)


@case('kernel-error-processes')
def case_kernel_error_processes(chk, comm):
    return _failure_case(chk, comm, 'processes', kill=False)


@case('worker-killed')
def case_worker_killed(chk, comm):
    return _failure_case(chk, comm, 'processes', kill=True)


@case('cancel-during-map')
def case_cancel_during_map(chk, comm):
    """The last rank sends itself SIGINT from its kernel at its first item
    (Ctrl-C: KeyboardInterrupt cancels its map); its items take 5 ms, 2 s
    for its 400 on two threads, so the cancel comes well inside the map."""
    size, me = comm.Get_size(), comm.Get_rank()
    last, per_rank = size - 1, 400
    n = per_rank * size
    done = []
    sent = threading.Lock()
    pid = os.getpid()
    with psh.MpiContext(comm, local='threads', num_workers=2) as ctx:
        def kernel(worker_id, index, value):
            if me == last:
                if sent.acquire(blocking=False):
                    os.kill(pid, signal.SIGINT)
                time.sleep(0.005)
            done.append(index)

        _, exc = _call(ctx.map, kernel, np.arange(n))
        seen = outcome(chk, exc, last)
        if me == last:
            chk(len(done) < per_rank, f'the cancelled rank ran all its {len(done)} items')
        elif isinstance(exc, psh.RemoteRankError):
            chk(exc.type_name == 'KeyboardInterrupt', f'remote type {exc.type_name}')
        map_and_check(chk, ctx, 301)
    return seen


def env_case(chk, comm, var, others, last_value, num_workers, named, mention):
    """MpiContext with `var` set to last_value on the last rank and to
    `others` elsewhere (None: unset); restored afterwards. A context made
    is checked with a map."""
    last = comm.Get_size() - 1
    old = os.environ.get(var)
    value = last_value if comm.Get_rank() == last else others
    if value is None:
        os.environ.pop(var, None)
    else:
        os.environ[var] = value
    try:
        ctx, exc = _call(psh.MpiContext, comm, local='threads', num_workers=num_workers)
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old
    if exc is None:
        map_and_check(chk, ctx, 203)
        ctx.close()
        return 'ok'
    text = exc.message if isinstance(exc, psh.RemoteRankError) else str(exc)
    chk(mention in text, f'the message {text!r} does not name {mention!r}')
    return outcome(chk, exc, named)


@case('node-size-malformed')
def case_node_size_malformed(chk, comm):
    return env_case(chk, comm, 'PASHA_MPI_NODE_SIZE', 'abc', 'abc', 2, 0, "PASHA_MPI_NODE_SIZE='abc'")


@case('node-size-negative')
def case_node_size_negative(chk, comm):
    return env_case(chk, comm, 'PASHA_MPI_NODE_SIZE', '-1', '-1', 2, 0, "PASHA_MPI_NODE_SIZE='-1'")


@case('node-size-out-of-range')
def case_node_size_out_of_range(chk, comm):
    return env_case(chk, comm, 'PASHA_MPI_NODE_SIZE', '99999999999', '99999999999', 2, 0,
                    "PASHA_MPI_NODE_SIZE='99999999999'")


@case('node-size-zero')
def case_node_size_zero(chk, comm):
    return env_case(chk, comm, 'PASHA_MPI_NODE_SIZE', '0', '0', 2, 0, '')


@case('node-size-one-rank')
def case_node_size_one_rank(chk, comm):
    return env_case(chk, comm, 'PASHA_MPI_NODE_SIZE', os.environ.get('PASHA_MPI_NODE_SIZE'), '2x', 2,
                    comm.Get_size() - 1, "PASHA_MPI_NODE_SIZE='2x'")


@case('node-size-differs')
def case_node_size_differs(chk, comm):
    return env_case(chk, comm, 'PASHA_MPI_NODE_SIZE', '2', '1', 2, -1, 'PASHA_MPI_NODE_SIZE')


@case('num-workers-malformed')
def case_num_workers_malformed(chk, comm):
    return env_case(chk, comm, 'PASHA_NUM_WORKERS', 'two', 'two', None, 0, "PASHA_NUM_WORKERS='two'")


@case('num-workers-zero')
def case_num_workers_zero(chk, comm):
    return env_case(chk, comm, 'PASHA_NUM_WORKERS', '0', '0', None, 0, "PASHA_NUM_WORKERS='0'")


@case('num-workers-one-rank')
def case_num_workers_one_rank(chk, comm):
    return env_case(chk, comm, 'PASHA_NUM_WORKERS', '2', '3x', None, comm.Get_size() - 1,
                    "PASHA_NUM_WORKERS='3x'")


@pytest.mark.parametrize('spec', SPEC, ids=[s[0] for s in SPEC])
def test_behaviour(spec, comm, request):
    name, fail_on, failing, others, min_ranks = spec
    if name in NA:
        pytest.skip(f'not applicable to Python (tests/mpi/behaviours.txt): {NA[name]}')
    if comm.Get_size() < min_ranks:
        pytest.skip(f'needs {min_ranks} ranks')
    assert name in CASES, f'the Python driver lacks case {name} of {SPEC_PATH}'
    if name in GAP:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f'known gap: {GAP[name]}'))
    me, last = comm.Get_rank(), comm.Get_size() - 1
    chk = Checks()
    seen = CASES[name](chk, comm)
    fails_here = fail_on == 'all' or (fail_on == 'last' and me == last)
    want = failing if fail_on == 'none' or fails_here else others
    # every rank learns whether any rank failed, so that all report it
    mine = [] if seen == want and not chk.failed else [f'rank {me}: saw {seen}, the spec says {want}'] + \
        [f'rank {me}: {f}' for f in chk.failed]
    everyone = [m for ms in comm.allgather(mine) for m in ms]
    assert not everyone, '\n'.join(everyone)
