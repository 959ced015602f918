# SPDX-License-Identifier: BSD-3-Clause
"""pasha.MpiContext under a real mpirun (1, 2 or 4 ranks, also cut into
simulated nodes with PASHA_MPI_NODE_SIZE): global indices and worker ids,
node-shared arrays, gather/allgather/reduce, errors raised on every rank,
EXtra-data runs split over the ranks."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

import pasha as psh
from pasha.mpi import rank_block

MPI = pytest.importorskip('mpi4py.MPI')


def _outcome(call, *args, **kwargs):
    """('ok', result) or (exception type name, exception)."""
    try:
        return 'ok', call(*args, **kwargs)
    except BaseException as e:  # noqa: B902 - the test checks what it got
        return type(e).__name__, e


def _owner(index, n, size):
    return next(r for r in range(size) if rank_block(n, r, size)[0] <= index <
                rank_block(n, r, size)[1])


def test_import_pasha_does_not_import_mpi4py(comm):
    if comm.Get_rank() == 0:
        r = subprocess.run([sys.executable, '-c',
                            'import sys, pasha; assert "mpi4py" not in sys.modules, '
                            'sorted(m for m in sys.modules if "mpi" in m); '
                            'print(pasha.MpiContext.__name__)'],
                           capture_output=True, text=True, env=dict(os.environ))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == 'MpiContext'


def test_rank_size_and_workers(comm, ctx):
    counts = comm.allgather(ctx.local_workers)
    assert ctx.rank == comm.Get_rank()
    assert ctx.size == comm.Get_size()
    assert ctx.num_workers == sum(counts)
    assert ctx.worker_base == sum(counts[:ctx.rank])
    assert ctx.local_workers == (1 if ctx.local_kind == 'serial' else 2)


@pytest.mark.parametrize('local', ['threads', 'processes'])
def test_warns_when_the_workers_of_a_rank_share_fewer_cpus(comm, local, monkeypatch):
    # mpirun binds each rank to one core by default (ranks <= cores): two
    # local workers then take turns on it, at half the speed, silently.
    import warnings
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0})
    with pytest.warns(RuntimeWarning, match='bind-to none') as rec:
        ctx = psh.MpiContext(comm, local=local, num_workers=2)
    ctx.close()
    msg = str(rec[0].message)
    assert f'rank {comm.Get_rank()} has 2 local workers' in msg and 'on 1 CPU only' in msg, msg
    assert rec[0].filename == __file__  # points at the caller's line
    # made an error (-W error) on one rank only: an error on every rank
    last = comm.Get_size() - 1
    with warnings.catch_warnings():
        warnings.simplefilter('error' if comm.Get_rank() == last else 'ignore')
        got = _outcome(psh.MpiContext, comm, local=local, num_workers=2)
    if comm.Get_rank() == last:
        assert got[0] == 'RuntimeWarning' and 'bind-to none' in str(got[1]), got
    else:
        assert got[0] == 'RemoteRankError' and got[1].type_name == 'RuntimeWarning', got
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        psh.MpiContext(comm, local=local, num_workers=2).close()
        monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0})
        psh.MpiContext(comm, local=local, num_workers=1).close()
        psh.MpiContext(comm, local='serial').close()


def _triple(out, wid, worker_id, index, value):
    out[index] = 3 * value
    wid[index] = worker_id


def test_map_global_indices_and_worker_ids(comm, ctx):
    n = 1001
    inp = np.arange(n, dtype=np.float64) * 0.5
    out = ctx.alloc(like=inp)
    wid = ctx.alloc(shape=n, dtype=np.int32, fill=-1)
    ctx.map(functools.partial(_triple, out, wid), inp)
    ctx.allgather(out)
    ctx.allgather(wid)
    np.testing.assert_array_equal(out, 3 * inp)
    counts = comm.allgather(ctx.local_workers)
    for r in range(ctx.size):
        lo, hi = rank_block(n, r, ctx.size)
        base = sum(counts[:r])
        ws = wid[lo:hi]
        assert ((ws >= base) & (ws < base + counts[r])).all(), (r, np.unique(ws))
    # every worker of every rank had a share of a 1001-item map
    assert len(np.unique(wid)) == ctx.num_workers


def test_map_list_and_custom_functor(comm, ctx):
    # a Python list (SequenceFunctor) and a functor with its own split
    seq = [float(i) for i in range(37)]
    out = ctx.alloc(shape=37)

    def kernel(worker_id, index, value):
        out[index] = value + 1

    ctx.map(kernel, seq)

    class Pairs(psh.Functor):
        def split(self, num_workers):
            return [range(2 * i, 2 * i + 2) for i in range(20)]

        def iterate(self, share):
            for i in share:
                yield i, i * i

    sq = ctx.alloc(shape=40, dtype=np.int64)
    who = ctx.alloc(shape=40, dtype=np.int64, fill=-1)
    rank = ctx.rank

    def kernel2(worker_id, index, value):
        sq[index] = value
        who[index] = rank

    ctx.map(kernel2, Pairs())
    ctx.allgather(out)
    # a custom functor's shares are not rank blocks of the first axis, so
    # gather does not apply: combine with reduce (each entry has one writer)
    ctx.reduce(who, 'max', root=0)
    ctx.reduce(sq, 'max', root=0)
    counts = comm.allgather(ctx.local_workers)
    np.testing.assert_array_equal(out, np.arange(37.0) + 1)
    assert counts == [counts[0]] * ctx.size
    if ctx.rank == 0:
        # the 20 shares split over the ranks as the C library splits items
        for r in range(ctx.size):
            lo, hi = rank_block(20, r, ctx.size)
            assert (who[2 * lo:2 * hi] == r).all(), (r, who)
        np.testing.assert_array_equal(sq, np.arange(40) ** 2)


def test_gather_moves_only_other_nodes_blocks(comm, ctx):
    n = 64
    inp = np.arange(n * 3, dtype=np.int64).reshape(n, 3)
    out = ctx.alloc(like=inp)

    def kernel(worker_id, index, row):
        out[index] = row + 1

    ctx.map(kernel, inp)
    root = ctx.size - 1
    ctx.gather(out, root=root)
    node_ranks = [r for r in range(ctx.size) if ctx._node_of[r] == ctx._node_of[ctx.rank]]
    on_root_node = ctx._node_of[ctx.rank] == ctx._node_of[root]
    if on_root_node:
        np.testing.assert_array_equal(out, inp + 1)
    else:
        # this node's blocks only: nothing travelled here
        for r in range(ctx.size):
            lo, hi = rank_block(n, r, ctx.size)
            expect = inp[lo:hi] + 1 if r in node_ranks else 0
            np.testing.assert_array_equal(out[lo:hi], expect)


def test_fortran_order_arrays_gather_along_the_mapped_axis(comm, ctx):
    # alloc(like=inp) of an F-order input, a map over its first axis, a
    # gather: the contract's pattern (0.2.0 moved blocks of the last axis
    # for F-order arrays, which mixed rows up across nodes)
    for shape in ((7, 5), (3, 4, 5), (2, 3), (13,)):
        inp = np.asfortranarray(np.arange(np.prod(shape), dtype=np.float64).reshape(shape))
        out = ctx.alloc(like=inp)
        assert out.flags.f_contiguous

        def kernel(worker_id, index, row):
            out[index] = row + 1

        ctx.map(kernel, inp)
        ctx.allgather(out)
        np.testing.assert_array_equal(out, inp + 1)


def test_allgather_private_array(comm):
    c = psh.MpiContext(comm, local='threads', num_workers=2)
    n = 50
    out = np.zeros(n)  # an ordinary array: private to each rank

    def kernel(worker_id, index, value):
        out[index] = value * 2

    c.map(kernel, np.arange(n, dtype=float))
    mine = np.count_nonzero(out)
    c.allgather(out)
    c.close()
    lo, hi = rank_block(n, comm.Get_rank(), comm.Get_size())
    assert mine == hi - lo - (1 if lo == 0 and hi > 0 else 0)
    np.testing.assert_array_equal(out, np.arange(n) * 2.0)


@pytest.mark.parametrize('op', ['sum', 'min', 'max'])
def test_reduce_per_worker(comm, ctx, op):
    n = 200
    fill = {'sum': 0, 'min': 10 ** 6, 'max': -1}[op]
    part = ctx.alloc(shape=8, dtype=np.int64, per_worker=True, fill=fill)
    assert part.shape == (ctx.num_workers, 8)

    def kernel(worker_id, index, value):
        b = index % 8
        if op == 'sum':
            part[worker_id, b] += value
        elif op == 'min':
            part[worker_id, b] = min(part[worker_id, b], value)
        else:
            part[worker_id, b] = max(part[worker_id, b], value)

    ctx.map(kernel, np.arange(n, dtype=np.int64) * 3)
    root = ctx.size // 2
    ctx.reduce(part, op, root=root)
    if ctx._node_of[ctx.rank] == ctx._node_of[root]:
        combine = {'sum': np.sum, 'min': np.min, 'max': np.max}[op]
        got = combine(part, axis=0)
        expect = np.array([combine(np.arange(b, n, 8) * 3) for b in range(8)])
        np.testing.assert_array_equal(got, expect)


def test_reduce_private_sums_every_rank(comm):
    c = psh.MpiContext(comm, local='serial')
    a = np.full(5, comm.Get_rank() + 1, dtype=np.float64)
    c.reduce(a, 'sum', root=0)
    c.close()
    if comm.Get_rank() == 0:
        size = comm.Get_size()
        np.testing.assert_array_equal(a, np.full(5, size * (size + 1) / 2))


def _raise_at(bad_index, worker_id, index, value):
    if index == bad_index:
        raise KeyError(f'no such frame {index}')


def test_kernel_exception_raised_on_every_rank(comm, ctx):
    n = 100
    bad = n - 1  # in the last rank's block
    got = _outcome(ctx.map, functools.partial(_raise_at, bad), np.arange(n))
    # the context maps again afterwards, on every rank
    out = ctx.alloc(shape=n)

    def kernel(worker_id, index, value):
        out[index] = value

    after = _outcome(ctx.map, kernel, np.arange(n, dtype=float))
    ctx.allgather(out)
    last = ctx.size - 1
    if ctx.rank == last:
        assert got[0] == 'KeyError', got
        assert 'no such frame 99' in str(got[1])
    else:
        assert got[0] == 'RemoteRankError', got
        assert got[1].rank == last and got[1].type_name == 'KeyError'
        assert 'no such frame 99' in got[1].message
        assert f'rank {last}' in str(got[1])
    assert after[0] == 'ok', after
    np.testing.assert_array_equal(out, np.arange(n, dtype=float))


def _die_at(bad_index, worker_id, index, value):
    if index == bad_index:
        os._exit(7)


def test_worker_death_raised_on_every_rank(comm):
    c = psh.MpiContext(comm, local='processes', num_workers=2)
    got = _outcome(c.map, functools.partial(_die_at, 0), np.arange(40))
    c.close()
    if comm.Get_rank() == 0:
        assert got[0] == 'WorkerError', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].rank == 0, got
        assert got[1].type_name == 'WorkerError'


def _die_on_last_rank(bad, seen, worker_id, index, value):
    seen[index] = worker_id
    if index == bad:
        os.kill(os.getpid(), 9)


def test_worker_death_names_the_global_worker_and_the_item(comm):
    # The message names the worker id the kernels saw (the rank's offset
    # added) and the item, as a local ProcessContext's does.
    c = psh.MpiContext(comm, local='processes', num_workers=2)
    n = 40 * c.size
    last = c.size - 1
    lo, hi = rank_block(n, last, c.size)
    bad = hi - 3  # in the last rank's second worker's half
    seen = c.alloc(shape=n, dtype=np.int64, fill=-1)
    got = _outcome(c.map, functools.partial(_die_on_last_rank, bad, seen), np.arange(n))
    worker = comm.bcast(c.worker_base + 1, root=last)
    c.close()
    if c.rank == last:
        assert got[0] == 'WorkerError', got
        assert seen[bad - 1] == worker, (seen[lo:hi], worker)
        message = str(got[1])
    else:
        assert got[0] == 'RemoteRankError' and got[1].rank == last, got
        message = got[1].message
    assert f'on item {bad}: worker {worker} was killed by signal 9' in message, message


def test_bad_arguments_on_one_rank_raise_everywhere(comm, ctx):
    last = ctx.size - 1
    mine = ctx.rank == last
    results = [
        _outcome(ctx.map, 'not callable' if mine else (lambda w, i, v: None), range(10)),
        _outcome(ctx.map, lambda w, i, v: None, object() if mine else range(10)),
        _outcome(ctx.alloc, shape=(-1,) if mine else (3,)),
        _outcome(ctx.reduce, ctx.alloc(shape=3), 'prod' if mine else 'sum', root=0),
        _outcome(ctx.gather, ctx.alloc(shape=3), root=ctx.size if mine else 0),
        _outcome(ctx.reduce, ctx.alloc(shape=3, dtype=np.complex128), 'min', root=0),
    ]
    # still usable
    ok = _outcome(ctx.map, lambda w, i, v: None, range(10))
    expected_own = ['TypeError', 'ValueError', 'ValueError', 'ValueError', 'ValueError']
    for (kind, e), own in zip(results[:5], expected_own):
        if mine:
            assert kind == own, (kind, e)
        else:
            assert kind == 'RemoteRankError', (kind, e)
            assert e.rank == last and e.type_name == own
    # complex min fails on every rank: each raises its own error
    assert results[5][0] == 'ValueError' and 'complex' in str(results[5][1]), results[5]
    assert ok[0] == 'ok'


class _SplitFails(psh.Functor):
    def split(self, num_workers):
        raise LookupError('no shares today')

    def iterate(self, share):
        yield from ()


def test_custom_functor_whose_split_raises_on_one_rank(comm, ctx):
    last = ctx.size - 1
    functor = _SplitFails() if ctx.rank == last else range(12)
    got = _outcome(ctx.map, lambda w, i, v: None, functor)
    after = _outcome(ctx.map, lambda w, i, v: None, range(12))
    if ctx.rank == last:
        assert got[0] == 'LookupError' and 'no shares today' in str(got[1]), got
    else:
        assert got[0] == 'RemoteRankError' and got[1].type_name == 'LookupError', got
    assert after[0] == 'ok', after


def test_ranks_that_disagree_get_the_same_error(comm, ctx):
    if ctx.size == 1:
        pytest.skip('needs two ranks')
    rank = ctx.rank
    sizes = _outcome(ctx.map, lambda w, i, v: None, range(10 + rank))
    allocs = _outcome(ctx.alloc, shape=4 + rank)
    calls = _outcome(ctx.gather, ctx.alloc(shape=4), 0) if rank == 0 else \
        _outcome(ctx.reduce, ctx.alloc(shape=4), 'sum', 0)
    # calls that agree on different numbers of integers (map: 1, gather: 4)
    calls2 = _outcome(ctx.map, lambda w, i, v: None, range(4)) if rank == 0 else \
        _outcome(lambda: ctx.allgather(ctx.alloc(shape=4)))
    ok = _outcome(ctx.map, lambda w, i, v: None, range(10))
    assert calls2[0] == 'RuntimeError' and 'different calls' in str(calls2[1]), calls2
    assert sizes[0] == 'ValueError' and 'number of items' in str(sizes[1]), sizes
    assert allocs[0] == 'ValueError' and "array's size" in str(allocs[1]), allocs
    assert calls[0] == 'RuntimeError' and 'different calls' in str(calls[1]), calls
    assert ok[0] == 'ok'


def test_constructor_errors_agree(comm):
    mine = comm.Get_rank() == comm.Get_size() - 1
    got = _outcome(psh.MpiContext, comm, local='bogus' if mine else 'threads', num_workers=1)
    got2 = _outcome(psh.MpiContext, comm, local='processes', persistent=True)
    if got[0] == 'ok':
        got[1].close()
    if mine:
        assert got[0] == 'ValueError', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].type_name == 'ValueError', got
    assert got2[0] in ('ValueError', 'RemoteRankError'), got2


def test_alloc_that_cannot_fit_fails_on_every_rank(comm, ctx):
    too_big = os.statvfs('/dev/shm').f_blocks * os.statvfs('/dev/shm').f_frsize + (1 << 30)
    total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    too_big = max(too_big, 4 * total)
    got = _outcome(ctx.alloc, shape=too_big, dtype=np.uint8)
    small = ctx.alloc(shape=10, fill=2.5)
    assert got[0] in ('MemoryError', 'RemoteRankError'), got
    if got[0] == 'RemoteRankError':
        assert got[1].type_name == 'MemoryError'
    np.testing.assert_array_equal(small, 2.5)


def test_fill_is_seen_by_every_rank_of_the_node(comm, ctx):
    a = ctx.alloc(shape=(3, 4), dtype=np.int16, fill=7)
    b = ctx.alloc(like=a)
    assert (a == 7).all() and (b == 0).all() and b.dtype == np.int16


def test_buffers_are_freed_when_no_rank_uses_them(comm):
    c = psh.MpiContext(comm, local='serial')
    kept = c.alloc(shape=1000, fill=1.5)
    for i in range(30):
        tmp = c.alloc(shape=(1 << 17), fill=i)  # 1 MiB each
        del tmp
    windows = len(c._arrays)  # the node buffers the context still holds
    view = kept[10:20]
    del kept
    c.close()
    closed = _outcome(c.map, lambda w, i, v: None, range(3))
    # one window per node (kept; the last tmp is freed at close) when the
    # node has several ranks; libpasha's own memory (freed by numpy) when alone
    assert windows <= 2, windows
    np.testing.assert_array_equal(view, 1.5)  # still valid memory after close
    assert closed[0] == 'ValueError' and 'closed' in str(closed[1])


def test_set_default_context_mpi(comm):
    old = psh.get_default_context()
    psh.set_default_context('mpi', comm=comm, local='threads', num_workers=2)
    try:
        ctx = psh.get_default_context()
        assert isinstance(ctx, psh.MpiContext)
        inp = np.arange(20.0)
        out = psh.alloc(like=inp)

        def kernel(worker_id, index, value):
            out[index] = 3 * value

        psh.map(kernel, inp)
        ctx.allgather(out)
        got = out.copy()
        ctx.close()
    finally:
        psh.set_default_context(old)
    np.testing.assert_array_equal(got, 3 * inp)


# ---- EXtra-data -------------------------------------------------------------

@pytest.fixture(scope='module')
def run_dir():
    pytest.importorskip('extra_data')
    make_examples = pytest.importorskip('extra_data.tests.make_examples')
    comm = MPI.COMM_WORLD
    path = None
    if comm.Get_rank() == 0:
        import tempfile
        path = tempfile.mkdtemp(prefix='pasha-mpi-run-')
        # two sequence files: trains 10000-10399 and 10400-10799
        make_examples.make_fxe_da_file(os.path.join(path, 'RAW-R0450-DA01-S00000.h5'),
                                       firsttrain=10000)
        make_examples.make_fxe_da_file(os.path.join(path, 'RAW-R0450-DA01-S00001.h5'),
                                       firsttrain=10400)
    path = comm.bcast(path, root=0)
    yield path
    comm.Barrier()
    if comm.Get_rank() == 0:
        import shutil
        shutil.rmtree(path, ignore_errors=True)


def _record(tids, counts, worker_id, index, train_id, data):
    tids[index] = train_id
    if data is None:
        counts[index] = 0
    elif isinstance(data, dict):
        counts[index] = len(data)
    else:
        counts[index] = np.asarray(data).shape[0] if np.ndim(data) else 1


def test_extra_data_trains_split_over_ranks(comm, ctx, run_dir):
    import extra_data as xd
    run = xd.RunDirectory(run_dir)
    n = len(run.train_ids)
    for f in run.files:  # RunDirectory read the metadata of every file
        f.close()
    tids = ctx.alloc(shape=n, dtype=np.uint64)
    counts = ctx.alloc(shape=n, dtype=np.int64)
    ctx.map(functools.partial(_record, tids, counts), run)
    lo, hi = rank_block(n, ctx.rank, ctx.size)
    mine = set(run.train_ids[lo:hi])
    opened = sorted(os.path.basename(f.filename) for f in run.files if f._file is not None)
    needed = sorted(os.path.basename(f.filename) for f in run.files
                    if mine & set(f.train_ids.tolist()))
    ctx.allgather(tids)
    ctx.allgather(counts)
    files_needed = comm.allgather(len(needed))
    np.testing.assert_array_equal(tids, np.asarray(run.train_ids, dtype=np.uint64))
    assert (counts > 0).all()
    if ctx.local_kind != 'processes':  # forked workers open their own files
        assert opened == needed, (ctx.rank, opened, needed)
    # 800 trains in two files of 400: a block inside one file needs only it
    # (with 3 ranks the middle block spans both)
    inside = run.train_ids[lo] < 10400 <= run.train_ids[hi - 1] if hi > lo else False
    assert len(needed) == (2 if inside else 1 if hi > lo else 0), needed
    if ctx.size > 1:
        assert min(files_needed) == 1, files_needed


def test_extra_data_keydata(comm, ctx, run_dir):
    import extra_data as xd
    run = xd.RunDirectory(run_dir)
    kd = run['SA1_XTD2_XGM/DOOCS/MAIN', 'pulseEnergy.photonFlux']
    n = len(kd.train_ids)
    tids = ctx.alloc(shape=n, dtype=np.uint64)
    vals = ctx.alloc(shape=n)

    def kernel(worker_id, index, train_id, value):
        tids[index] = train_id
        vals[index] = np.asarray(value).sum() if value is not None else -1

    ctx.map(kernel, kd)
    ctx.allgather(tids)
    ctx.allgather(vals)
    np.testing.assert_array_equal(tids, np.asarray(kd.train_ids, dtype=np.uint64))
    np.testing.assert_allclose(vals, kd.ndarray())  # one value per train


# ---- a container-sized /dev/shm (run_pytest.py --mpirun 2s) -----------------

def test_small_shm_array_that_does_not_fit(comm):
    limit = int(os.environ.get('PASHA_TEST_SMALL_SHM') or 0)
    if not limit:
        pytest.skip('needs the 16 MiB tmpfs run (run_pytest.py --mpirun 2s)')
    c = psh.MpiContext(comm, local='processes', num_workers=2)
    multi = c.node_size > 1
    too_big = _outcome(c.alloc, shape=(4 * limit) // 8)      # 64 MiB of float64
    fits = c.alloc(shape=(limit // 4) // 8)                   # 4 MiB
    n = len(fits)

    def kernel(worker_id, index, value):
        fits[index] = 2 * value

    c.map(kernel, np.arange(n, dtype=np.float64))
    c.allgather(fits)
    again = _outcome(c.alloc, shape=(4 * limit) // 8)
    c.close()
    if multi:  # a node of several ranks: an MPI window on the 16 MiB tmpfs
        assert too_big[0] in ('MemoryError', 'RemoteRankError'), too_big
        assert 'do not fit' in str(too_big[1]), too_big
        assert again[0] in ('MemoryError', 'RemoteRankError'), again
    np.testing.assert_array_equal(fits, 2 * np.arange(n, dtype=np.float64))


# ---- regressions found by trying it as a new user (2026-11-25) ---------------

def test_bad_fill_fails_on_every_rank(comm, ctx):
    got = [_outcome(ctx.alloc, shape=4, fill='abc'),
           _outcome(ctx.alloc, shape=4, fill=np.ones(3))]
    ok = ctx.alloc(shape=4, fill=np.arange(4.0))
    for kind, e in got:
        assert kind == 'ValueError', (kind, e)
    np.testing.assert_array_equal(ok, np.arange(4.0))


def test_ranks_disagreeing_on_dtype_or_shape(comm, ctx):
    if ctx.size == 1:
        pytest.skip('needs two ranks')
    mine = ctx.rank == 1
    dtype = _outcome(ctx.alloc, shape=4, dtype=np.int64 if mine else np.float64)
    shape = _outcome(ctx.alloc, shape=(2, 3) if mine else (3, 2))
    for kind, e in (dtype, shape):
        assert kind == 'ValueError' and 'shape, dtype, order or fill' in str(e), (kind, e)
    # Each rank's value is named, readably (not as the numbers agreed on).
    others = ', '.join(str(r) for r in range(ctx.size) if r != 1)
    many = 's' if ctx.size > 2 else ''
    assert str(dtype[1]).endswith(f"shape (4,), dtype float64, order 'C', fill 0 on rank{many} {others}; "
                                  "shape (4,), dtype int64, order 'C', fill 0 on rank 1"), dtype
    assert "shape (2, 3), dtype float64, order 'C', fill 0 on rank 1" in str(shape[1]), shape
    sizes = _outcome(ctx.map, lambda w, i, v: None, range(10 + (ctx.rank == 1)))
    assert str(sizes[1]).endswith(f'the number of items: 10 on rank{many} {others}; '
                                  '11 on rank 1'), sizes
    out = ctx.alloc(shape=4)
    ops = _outcome(ctx.reduce, out, 'max' if mine else 'sum')
    assert f"the op: 'sum' on rank{many} {others}; 'max' on rank 1" in str(ops[1]), ops


def test_address_space_limit_on_one_rank(comm):
    # Every rank of a node maps the node's whole window; one whose RLIMIT_AS
    # (ulimit -v) leaves no room for it used to hang inside Open MPI's
    # MPI_Win_allocate_shared, and the others with it.
    import resource
    c = psh.MpiContext(comm, local='threads', num_workers=1)
    # the last rank that shares its node (a rank alone uses no MPI window)
    shares = [r for r, k in enumerate(comm.allgather(c.node_size)) if k > 1]
    if not shares:
        c.close()
        pytest.skip('every rank is alone on its node (no MPI window)')
    last = shares[-1]
    mine = c.rank == last
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if mine:
        with open('/proc/self/statm') as f:
            used = int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
        resource.setrlimit(resource.RLIMIT_AS, (used + (512 << 20), hard))
    try:
        got = _outcome(c.alloc, shape=1 << 30, dtype=np.uint8)
    finally:
        if mine:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    if mine:
        assert got[0] == 'MemoryError' and "this rank's address-space limit" in str(got[1]), got
    else:  # the ranks on its node too (the C context checks each rank's own limit)
        assert got[0] == 'RemoteRankError' and got[1].type_name == 'MemoryError', got
        assert got[1].rank == last and "this rank's address-space limit" in got[1].message, got
    small = c.alloc(shape=5, fill=2.0)
    np.testing.assert_array_equal(small, 2.0)
    c.close()


def test_python_argument_errors_on_one_rank_raise_everywhere(comm, ctx):
    # Errors Python itself raises when binding the arguments (an unknown
    # keyword, a missing or extra argument) used to leave the other ranks
    # waiting in the agreement for ever.
    last = ctx.size - 1
    mine = ctx.rank == last
    out = ctx.alloc(shape=6)
    kernel = functools.partial(_triple, out, ctx.alloc(shape=6, dtype=np.int32))
    got = [
        _outcome(ctx.alloc, shap=3) if mine else _outcome(ctx.alloc, shape=3),
        _outcome(ctx.map, kernel) if mine else _outcome(ctx.map, kernel, np.arange(6.0)),
        _outcome(ctx.map, kernel, np.arange(6.0), progres=True) if mine else
        _outcome(ctx.map, kernel, np.arange(6.0)),
        _outcome(ctx.gather, out, 0, 1) if mine else _outcome(ctx.gather, out, 0),
        _outcome(ctx.allgather) if mine else _outcome(ctx.allgather, out),
        _outcome(ctx.reduce, out, op='sum', rot=0) if mine else _outcome(ctx.reduce, out),
    ]
    after = _outcome(ctx.map, kernel, np.arange(6.0))
    names = ['alloc', 'map', 'map', 'gather', 'allgather', 'reduce']
    for (kind, e), name in zip(got, names):
        if mine:
            assert kind == 'TypeError' and str(e).startswith(f'{name}(): '), (kind, e)
        else:
            assert kind == 'RemoteRankError' and e.rank == last, (kind, e)
            assert e.type_name == 'TypeError' and e.message.startswith(f'{name}(): ')
    assert 'shap' in str(got[0][1])
    assert after[0] == 'ok', after
    ctx.allgather(out)
    np.testing.assert_array_equal(out, 3 * np.arange(6.0))


def test_root_of_another_type_on_one_rank(comm, ctx):
    mine = ctx.rank == ctx.size - 1
    out = ctx.alloc(shape=8)
    got = [_outcome(ctx.gather, out, root='x' if mine else 0),
           _outcome(ctx.gather, out, root=None if mine else 0),
           _outcome(ctx.reduce, out, 'sum', root=1.0 if mine else 0)]
    after = _outcome(ctx.allgather, out)
    for kind, e in got:
        if mine:
            assert kind == 'ValueError', (kind, e)
        else:
            assert kind == 'RemoteRankError' and e.type_name == 'ValueError', (kind, e)
    assert after[0] == 'ok'


def test_bad_comm_on_one_rank(comm):
    mine = comm.Get_rank() == comm.Get_size() - 1
    got = _outcome(psh.MpiContext, 'world' if mine else comm, local='serial')
    if got[0] == 'ok':
        got[1].close()
    if mine:
        assert got[0] == 'TypeError', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].type_name == 'TypeError', got


def test_reduce_of_float16_or_bool_is_a_clear_error(comm, ctx):
    got = [_outcome(ctx.reduce, ctx.alloc(shape=4, dtype=np.float16), 'sum', 0),
           _outcome(ctx.reduce, ctx.alloc(shape=4, dtype=np.bool_), 'max', 0)]
    for kind, e in got:
        assert kind == 'TypeError' and 'MPI type' in str(e), (kind, e)


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError('no string for you')


def _raise_unprintable(bad_index, worker_id, index, value):
    if index == bad_index:
        raise _Unprintable()


def test_exception_that_cannot_be_printed(comm):
    c = psh.MpiContext(comm, local='threads', num_workers=2)
    got = _outcome(c.map, functools.partial(_raise_unprintable, 0), np.arange(20))
    c.close()
    if comm.Get_rank() == 0:
        assert got[0] == '_Unprintable', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].type_name == '_Unprintable', got
        assert 'cannot be turned into a string' in got[1].message


def test_array_of_another_context_is_refused(comm):
    c1 = psh.MpiContext(comm, local='serial')
    c2 = psh.MpiContext(comm, local='serial')
    part = c1.alloc(shape=3, dtype=np.int64, per_worker=True, fill=1)
    got = _outcome(c2.reduce, part, 'sum', 0)
    c1.reduce(part, 'sum', 0)
    c2.close()
    c1.close()
    assert got[0] == 'ValueError' and 'another MPI context' in str(got[1]), got
    if comm.Get_rank() == 0:  # each node once: every worker's row is 1 per node
        nodes = len(set(c1._node_of))
        np.testing.assert_array_equal(part, np.full((c1.num_workers, 3), nodes))


def test_alloc_failing_on_a_rank_alone_on_its_node(comm):
    """A rank alone on its node allocates from libpasha's own memory: its
    failure must reach the other ranks too. No real fault makes libpasha's
    allocation fail on one rank only while the sizes agree (the arena is a
    large reservation, RLIMIT_AS does not touch it, the memory limit is
    read once per process), so the last rank's local allocation is made to
    raise what libpasha raises when memory is short."""
    c = psh.MpiContext(comm, local='serial')
    mine = c.node_size == 1 and c.rank == c.size - 1
    glue = c._c
    if mine:
        class Short:
            def __getattr__(self, name):
                return getattr(glue, name)

            def alloc(self, *args):
                raise MemoryError('psh_alloc: PSH_ENOMEM: not enough memory (injected)')
        c._c = Short()
    got = _outcome(c.alloc, shape=1 << 20, dtype=np.uint8)
    lone = comm.allgather(mine)
    c._c = glue
    small = c.alloc(shape=5, fill=3)
    c.close()
    if not any(lone):
        assert got[0] == 'ok'
    elif mine:
        assert got[0] == 'MemoryError', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].type_name == 'MemoryError', got
    np.testing.assert_array_equal(small, 3)


# ---- map's values (issue 22) -------------------------------------------------

def _square_with_rank(rank, worker_id, index, value):
    return (int(index), float(value) ** 2, rank, worker_id)


def _check_values(got, n, values, ctx):
    """got: map's list; values: the items' values. Every item's value in
    global order; rank r's block computed by rank r's workers."""
    assert isinstance(got, list) and len(got) == n, (type(got), len(got))
    assert [g[0] for g in got] == list(range(n))
    assert [g[1] for g in got] == [float(v) ** 2 for v in values]
    counts = ctx._counts
    for r in range(ctx.size):
        lo, hi = rank_block(n, r, ctx.size)
        assert all(g[2] == r for g in got[lo:hi]), (r, got[lo:hi])
        base = sum(counts[:r])
        assert all(base <= g[3] < base + counts[r] for g in got[lo:hi]), (r, got[lo:hi])


@pytest.mark.parametrize('n', [0, 1, 7, 203])
def test_map_returns_every_value_in_global_order_on_every_rank(comm, ctx, n):
    kernel = functools.partial(_square_with_rank, ctx.rank)
    ctx._counts = comm.allgather(ctx.local_workers)
    arr = np.arange(n, dtype=np.float64) * 0.5
    got = {'array': ctx.map(kernel, arr), 'range': ctx.map(kernel, range(n)),
           'list': ctx.map(kernel, [float(i) for i in range(n)]),
           'chunksize 3': ctx.map(kernel, arr, chunksize=3),
           'chunksize 1000': ctx.map(kernel, range(n), 1000)}
    # every rank got the same list
    same = comm.allgather(repr(got))
    assert len(set(same)) == 1
    for name, values in (('array', arr), ('range', range(n)), ('list', range(n)),
                         ('chunksize 3', arr), ('chunksize 1000', range(n))):
        _check_values(got[name], n, values, ctx)


class _Blocks(psh.Functor):
    """A functor with its own split: shares of 3 items, values index * 10."""

    def __init__(self, n):
        self.n = n

    def split(self, num_workers):
        return [range(i, min(i + 3, self.n)) for i in range(0, self.n, 3)]

    def iterate(self, share):
        for i in share:
            yield i, i * 10


def test_map_values_of_a_functor_with_its_own_split(comm, ctx):
    got = ctx.map(lambda w, i, v: (i, v), _Blocks(31))
    chunked = ctx.map(lambda w, i, v: (i, v), _Blocks(31), chunksize=2)
    none = ctx.map(lambda w, i, v: None, _Blocks(31))
    assert got == [(i, i * 10) for i in range(31)], got
    assert chunked == got
    assert none == [None] * 31


def test_map_values_of_extra_data(comm, ctx, run_dir):
    import extra_data as xd
    run = xd.RunDirectory(run_dir)
    kd = run['SA1_XTD2_XGM/DOOCS/MAIN', 'pulseEnergy.photonFlux']

    def kernel(worker_id, index, train_id, value):
        return int(index), int(train_id), float(np.asarray(value).sum())

    got = ctx.map(kernel, kd)
    chunked = ctx.map(kernel, kd, chunksize=50)
    trains = ctx.map(lambda w, i, tid, data: (i, int(tid)), run)
    assert [g[:2] for g in got] == [(i, int(t)) for i, t in enumerate(kd.train_ids)]
    np.testing.assert_allclose([g[2] for g in got], kd.ndarray())
    assert chunked == got
    assert trains == [(i, int(t)) for i, t in enumerate(run.train_ids)]


def test_map_values_that_do_not_pickle_on_one_rank(comm):
    c = psh.MpiContext(comm, local='threads', num_workers=2)
    last = c.size - 1
    got = _outcome(c.map, lambda w, i, v: (lambda: i) if i == last else i,
                   range(c.size))
    after = c.map(lambda w, i, v: i, range(5))
    c.close()
    if c.rank == last:
        assert got[0] in ('PicklingError', 'AttributeError'), got
    else:
        assert got[0] == 'RemoteRankError' and got[1].rank == last, got
    assert after == list(range(5))


# ---- a failed map's facts as data (issue 22) ---------------------------------

def _fail_at(bad, how, worker_id, index, value):
    if index == bad:
        if how == 'raise':
            raise KeyError(f'no such frame {index}')
        if how == 'exit':
            os._exit(7)
        os.kill(os.getpid(), 9)
    return worker_id


@pytest.mark.parametrize('how', ['raise', 'exit', 'kill'])
def test_failed_map_carries_worker_index_signal_and_status(comm, local, how):
    if how != 'raise' and local != 'processes':
        pytest.skip('a worker process dies only in a process map')
    c = psh.MpiContext(comm, local=local, num_workers=2)
    n = 30 * c.size
    last = c.size - 1
    lo, hi = rank_block(n, last, c.size)
    bad = hi - 1  # the last rank's last item: its last worker's share
    got = _outcome(c.map, functools.partial(_fail_at, bad, how), np.arange(n))
    worker = comm.bcast(c.worker_base + c.local_workers - 1, root=last)
    after = c.map(functools.partial(_fail_at, -1, how), np.arange(n))
    c.close()
    kind, e = got
    if c.rank == last:
        assert kind == ('KeyError' if how == 'raise' else 'WorkerError'), got
    else:
        assert kind == 'RemoteRankError' and e.rank == last, got
        assert e.type_name == ('KeyError' if how == 'raise' else 'WorkerError'), got
    assert (e.worker_id, e.index) == (worker, bad), (e.worker_id, e.index, worker, bad)
    assert e.signal == (9 if how == 'kill' else None), e.signal
    assert e.exit_status == (7 if how == 'exit' else None), e.exit_status
    assert len(after) == n


@pytest.mark.parametrize('local', ['threads', 'processes'])
def test_local_schedule_reaches_the_local_maps(comm, local):
    # MpiContext(schedule='dynamic', chunk=1): each rank's block is handed out
    # one item at a time. The worker that takes a rank's first item waits in
    # it until the rest of the block is done: only the other worker can do
    # it (with static shares worker 0 would wait for its own items and time
    # out). The schedule used to be dropped on the way to the C context.
    n_per_rank = 8
    with psh.MpiContext(comm, local=local, num_workers=2, schedule='dynamic', chunk=1) as c:
        n = n_per_rank * c.size
        ran_by = c.alloc(shape=n, dtype=np.int64, fill=-1)

        def kernel(worker_id, index, value):
            lo, hi = rank_block(n, c.rank, c.size)
            if index == lo:
                import time
                deadline = time.monotonic() + 20
                while (ran_by[lo + 1:hi] < 0).any() and time.monotonic() < deadline:
                    time.sleep(0.001)
            ran_by[index] = worker_id

        c.map(kernel, np.arange(n))
        lo, hi = rank_block(n, c.rank, c.size)
        mine = ran_by[lo:hi].tolist()
        assert set(mine) == {c.worker_base, c.worker_base + 1}, mine
        assert mine[0] not in mine[1:], mine


def test_pin_cpus_reaches_the_local_workers(comm):
    # pin_cpus=True pins each local worker process to one CPU of its mask.
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip('needs 2 CPUs in the affinity mask (mpirun --bind-to none)')
    with psh.MpiContext(comm, local='processes', num_workers=2, pin_cpus=True) as c:
        n = 2 * c.size
        seen = c.alloc(shape=n, dtype=np.int64)
        c.map(lambda w, i, v: seen.__setitem__(i, len(os.sched_getaffinity(0))), np.arange(n))
        c.allgather(seen)  # (simulated nodes: each has its own buffer)
        assert (seen == 1).all(), seen.tolist()
    with psh.MpiContext(comm, local='processes', num_workers=2) as c:
        seen = c.alloc(shape=n, dtype=np.int64)
        c.map(lambda w, i, v: seen.__setitem__(i, len(os.sched_getaffinity(0))), np.arange(n))
        c.allgather(seen)
        assert (seen == cpus).all(), seen.tolist()


@pytest.mark.parametrize('kwargs, match', [
    (dict(persistent=True), 'persistent'), (dict(chunk=-1), 'chunk'), (dict(chunk=1.5), 'chunk'),
    (dict(pinned=True), 'unexpected')])
def test_bad_local_options_fail_on_every_rank(comm, kwargs, match):
    bad = comm.Get_size() - 1  # the last rank alone
    what, e = _outcome(psh.MpiContext, comm, local='threads', **(kwargs if comm.Get_rank() == bad else {}))
    if comm.Get_rank() == bad:
        assert what in ('ValueError', 'TypeError') and match in str(e), (what, e)
    else:
        assert what == 'RemoteRankError' and e.rank == bad and match in e.message, (what, e)


def test_alloc_fill_differing_between_ranks_is_refused(comm):
    # alloc(fill=) on a node-shared buffer: every rank writes it, so ranks
    # asking for different values would silently get one of them.
    with psh.MpiContext(comm, local='threads', num_workers=1) as c:
        a = c.alloc(shape=3, dtype=np.int64, fill=7)  # the same everywhere: fine
        assert (a == 7).all()
        b = c.alloc(shape=2, dtype=np.float64, fill=np.array([1.5, 2.5]))
        assert b.tolist() == [1.5, 2.5]
        if comm.Get_size() == 1:
            return
        what, e = _outcome(c.alloc, shape=3, dtype=np.int64, fill=c.rank + 1)
        assert what == 'ValueError' and 'fill 1' in str(e) and 'fill 2' in str(e), (what, e)
        what, e = _outcome(c.alloc, shape=2, dtype=np.float64, fill=np.array([1.0, float(c.rank)]))
        assert what == 'ValueError' and 'crc32' in str(e), (what, e)
        assert (c.alloc(shape=3, dtype=np.int64, fill=5) == 5).all()  # usable afterwards


# ---- map hooks on an MpiContext -----------------------------------------------

_hook_total = np.zeros(3)
_hook_peak = np.zeros(2)


@psh.with_reduction('_hook_total')
def _add_to_total(worker_id, index, value):
    _hook_total[:] += value
    return index


@psh.with_reduction('_hook_peak', function=np.max)
def _max_to_peak(worker_id, index, value):
    _hook_peak[0] = max(_hook_peak[0], value)
    _hook_peak[1] = max(_hook_peak[1], -value)


def test_with_reduction_sums_every_rank_on_every_node(comm, ctx):
    # Found 2026-12-08: the accumulators are node-shared, so on more than
    # one node each rank's target held only its own node's workers' sums
    # (2 simulated nodes of 40 items: 190 and 590, not 780).
    global _hook_total
    for n in (40, 1, 0):
        _hook_total = np.full(3, 5.0)  # counted once, not once per worker or rank
        values = ctx.map(_add_to_total, np.arange(n, dtype=float))
        assert values == list(range(n))
        np.testing.assert_array_equal(_hook_total, np.full(3, 5.0 + n * (n - 1) / 2))
        assert comm.allgather(_hook_total.tolist()) == [_hook_total.tolist()] * comm.Get_size()


def test_with_reduction_max_on_every_node(comm, ctx):
    global _hook_peak
    _hook_peak = np.array([-1.0, -100.0])
    ctx.map(_max_to_peak, np.arange(30, dtype=float) - 7)
    np.testing.assert_array_equal(_hook_peak, [22.0, 7.0])


class _FailAfter(psh.MapHook):
    def __init__(self, rank):
        self.rank, self.pre, self.post = rank, 0, 0

    def pre_map(self, context, function):
        self.pre += 1

    def post_map(self, context, function):
        self.post += 1
        if context.rank == self.rank:
            raise LookupError(f'post_map failed on rank {context.rank}')


def test_post_map_error_on_one_rank_raises_on_every_rank(comm, ctx):
    # Found 2026-12-08: an error raised after the C map succeeded (here a
    # post_map hook) on one rank was raised there only; the other ranks got
    # their values, or an error about values that did not unpickle.
    last = comm.Get_size() - 1
    hook = _FailAfter(last)
    got = _outcome(ctx.map, hook(lambda w, i, v: i * 2), range(7))
    assert (hook.pre, hook.post) == (1, 1)
    if ctx.rank == last:
        assert got[0] == 'LookupError', got
    else:
        assert got[0] == 'RemoteRankError', got
        e = got[1]
        assert (e.rank, e.type_name, e.message) == (last, 'LookupError', f'post_map failed on rank {last}'), e
    assert ctx.map(lambda w, i, v: i + 1, range(5)) == [1, 2, 3, 4, 5]  # the context still works


def test_pre_map_error_on_one_rank_raises_on_every_rank(comm, ctx):
    class FailBefore(psh.MapHook):
        def pre_map(self, context, function):
            if context.rank == 0:
                raise KeyError('pre_map on rank 0')

    got = _outcome(ctx.map, FailBefore()(lambda w, i, v: i), range(9))
    if ctx.rank == 0:
        assert got[0] == 'KeyError', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].rank == 0 and got[1].type_name == 'KeyError', got
    assert ctx.map(lambda w, i, v: -i, range(3)) == [0, -1, -2]


# ---- numpy-style creation and map_async on an MpiContext ----------------------

def test_numpy_style_creation_on_every_rank(comm, ctx):
    z = ctx.zeros(5)
    f = ctx.full((2, 3), 7, dtype=np.int32)
    o = ctx.ones_like(np.arange(4.0))
    fl = ctx.full_like(np.zeros((2, 2), order='F'), 2.5)
    e = ctx.empty_per_worker(3, dtype=np.int16)
    zw = ctx.zeros_per_worker((2,), dtype=np.int64)
    assert z.tolist() == [0.0] * 5 and z.dtype == np.float64
    assert f.tolist() == [[7] * 3] * 2 and f.dtype == np.int32
    assert o.tolist() == [1.0] * 4
    assert fl.flags.f_contiguous and fl.tolist() == [[2.5, 2.5], [2.5, 2.5]]
    assert e.shape == (ctx.num_workers, 3) and e.dtype == np.int16
    # Rows of every rank's workers, node-shared: each worker counts its items.
    ctx.map(lambda w, i, v: zw.__setitem__((w, 0), zw[w, 0] + 1), range(23))
    ctx.reduce(zw, 'sum', 0)
    if ctx.rank == 0:
        assert zw[:, 0].sum() == 23 and zw[:, 1].sum() == 0, zw


def test_map_async_on_every_rank(comm, ctx):
    future = ctx.map_async(lambda w, i, v: i * 10, range(11))
    assert future.result(timeout=60) == [i * 10 for i in range(11)]
    last = comm.Get_size() - 1

    def kernel(w, i, v):
        if i == 10:
            raise ValueError('item 10')
        return i
    got = _outcome(ctx.map_async(kernel, range(11)).result, timeout=60)
    if ctx.rank == last:
        assert got[0] == 'ValueError', got
    else:
        assert got[0] == 'RemoteRankError' and got[1].rank == last and got[1].index == 10, got


# ---- native kernels on an MpiContext -------------------------------------------

@pytest.fixture(scope='module')
def native_lib():
    import ctypes
    import shutil
    import tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    include = os.path.join(here, '..', '..', '..', 'include')
    cc = shutil.which('cc') or shutil.which('gcc')
    if cc is None or not os.path.exists(os.path.join(include, 'pasha', 'pasha.h')):
        pytest.skip('needs a C compiler and include/pasha/pasha.h')
    with tempfile.TemporaryDirectory(prefix='pasha-mpi-native-') as path:  # each rank its own
        so = os.path.join(path, 'kernels.so')
        subprocess.run([cc, '-O2', '-shared', '-fPIC', '-I', include, '-o', so,
                        os.path.join(here, '..', 'tests', 'native_kernels.c')], check=True)
        yield ctypes.CDLL(so)


def test_native_kernels_map_every_rank_block(comm, ctx, native_lib):
    # Refused with a TypeError until 2026-12-08; the C MPI context runs them.
    import ctypes
    kernel = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p)
    inp = np.arange(1001.0) * 0.5
    out = ctx.alloc(like=inp)
    assert ctx.map(kernel(('triple_it', native_lib)), inp, user_data=out) is None
    lo, hi = rank_block(len(inp), ctx.rank, ctx.size)
    np.testing.assert_array_equal(out[lo:hi], 3 * inp[lo:hi])  # this rank's block, before the gather
    ctx.allgather(out)
    np.testing.assert_array_equal(out, 3 * inp)
    squares = ctx.alloc(300)
    ctx.map(kernel(('square_index', native_lib)), range(300), user_data=squares)
    ctx.allgather(squares)
    np.testing.assert_array_equal(squares, np.arange(300.0) ** 2)
    owner = _owner(7, 20, ctx.size)
    got = _outcome(ctx.map, kernel(('fail_at_7', native_lib)), range(20))
    if ctx.rank == owner:
        assert got[0] == 'WorkerError' and got[1].index == 7 and 'returned 42' in str(got[1]), got
    else:
        assert got[0] == 'RemoteRankError' and got[1].rank == owner and got[1].index == 7, got
    assert ctx.map(lambda w, i, v: i, range(4)) == [0, 1, 2, 3]  # and maps again
