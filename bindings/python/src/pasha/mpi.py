# SPDX-License-Identifier: BSD-3-Clause
"""One map over the ranks of an MPI communicator (mpi4py).

``MpiContext`` splits a map's items into one contiguous block per rank;
each rank maps its block with a local context (serial, threads or fork per
map) and kernels see global indices and global worker ids. Arrays from
``alloc`` live in one shared buffer per node (an MPI shared-memory window)
that every rank of the node and its forked workers write in place;
``gather``, ``allgather`` and ``reduce`` move only what other nodes need.

Every call is collective and starts with one small ``Allreduce`` in which
the ranks agree that each of them can go ahead, so that an error found on
one rank (bad arguments, a kernel exception, a dead worker) is raised on
every rank instead of leaving the others waiting: the failing rank raises
its own exception, the others ``RemoteRankError``.

mpi4py is imported when the first context is made, never by ``import pasha``.
"""

import ctypes
import os
import sys
from numbers import Integral
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from .context import (MapContext, ProcessContext, SerialContext, ThreadContext,
                      _native_pointer)
from .functor import ExtraDataFunctor, Functor, SequenceFunctor, gen_split_slices

__all__ = ['MpiContext', 'RemoteRankError']


class RemoteRankError(RuntimeError):
    """A collective call failed on another rank.

    Attributes:
        rank (int): the lowest rank on which it failed.
        type_name (str): the type of the exception raised there.
        message (str): its message.
    """

    def __init__(self, rank: int, type_name: str, message: str):
        self.rank = rank
        self.type_name = type_name
        self.message = message
        super().__init__(f'rank {rank}: {type_name}: {message}')

    def __reduce__(self):
        return type(self), (self.rank, self.type_name, self.message)


_LOCAL = {'serial': SerialContext, 'threads': ThreadContext, 'processes': ProcessContext}
_CALLS = {'alloc': 1, 'map': 2, 'map end': 3, 'gather': 4, 'allgather': 5, 'reduce': 6,
          'free': 7, 'close': 8}
_CALL_NAMES = {v: k for k, v in _CALLS.items()}
_OPS = ('sum', 'min', 'max')
_ALIGN = 64              # where data starts in a window (psh arrays: at least 64)
_MADV_POPULATE_WRITE = 23
_MAX_MSG = 1 << 30       # bytes per message (MPI counts are ints)
_TAG = 0x5053            # point-to-point tag on the context's own communicator
_MAX_ARGS = 4            # integers the ranks agree on in one call
_KEPT = []               # windows of closed contexts that arrays still use


def _local_class(base):
    """base with run_worker giving kernels global worker ids (this rank's
    local ids + its offset), at no extra call per item."""

    class Local(base):
        _worker_base = 0

        def run_worker(self, function, functor, share, worker_id):
            w = worker_id + self._worker_base
            for entry in functor.iterate(share):
                function(w, *entry)

    Local.__name__ = Local.__qualname__ = 'Mpi' + base.__name__
    return Local


_LOCAL_CLASSES = {k: _local_class(v) for k, v in _LOCAL.items()}


class _RankBlock(Functor):
    """Items [lo, hi) of a functor whose shares are slices of its items
    (sequences, arrays, EXtra-data): global indices come for free."""

    def __init__(self, functor, lo, hi):
        self.functor, self.lo, self.hi = functor, lo, hi

    def split(self, num_workers):
        return [slice(self.lo + s.start, self.lo + s.stop)
                for s in gen_split_slices(self.hi - self.lo, n_parts=num_workers)]

    def iterate(self, share):
        return self.functor.iterate(share)


class _ShareBlock(Functor):
    """Some of a functor's own shares (any functor: its split over every
    worker of every rank, this rank's part of it)."""

    def __init__(self, functor, shares):
        self.functor, self.shares = functor, shares

    def split(self, num_workers):
        return [self.shares[g] for g in gen_split_slices(len(self.shares), n_parts=num_workers)]

    def iterate(self, group):
        for share in group:
            yield from self.functor.iterate(share)


# Internal functors must not take part in Functor.try_wrap.
for _cls in (_RankBlock, _ShareBlock):
    Functor._functor_types.remove(_cls)
del _cls


def _slice_functor(functor):
    """The number of items of a functor whose shares are slices of its
    items, or None for other functors."""
    t = type(functor)
    if isinstance(functor, SequenceFunctor) and t.split is SequenceFunctor.split:
        return len(functor.sequence)
    if isinstance(functor, ExtraDataFunctor) and t.split is ExtraDataFunctor.split:
        return functor.n_trains
    return None


def rank_block(n: int, rank: int, size: int) -> Tuple[int, int]:
    """Items [lo, hi) of rank among size for n items: contiguous blocks, the
    first n % size ranks one item more (as the C library splits)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _node_size_override():
    env = os.environ.get('PASHA_MPI_NODE_SIZE', '')
    if not env.strip():
        return 0
    try:
        k = int(env)
    except ValueError:
        k = -1
    if k < 0:
        raise ValueError(f'PASHA_MPI_NODE_SIZE={env!r}: not a number of ranks '
                         '(a positive integer, 0 or empty: the real nodes)')
    return k


def _backing_room():
    """Bytes free where Open MPI makes the files of shared windows, or -1."""
    d = os.environ.get('OMPI_MCA_osc_sm_backing_directory') or '/dev/shm'
    try:
        st = os.statvfs(d)
    except OSError:
        return d, -1
    return d, st.f_bavail * st.f_frsize


_libc = None


def _commit(address, nbytes):
    """Fault in [address, address + nbytes) writable: 0 or an errno value
    (a full /dev/shm is an error here, never a SIGBUS in a kernel)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    page = os.sysconf('SC_PAGE_SIZE')
    lo = address & ~(page - 1)
    hi = (address + nbytes + page - 1) & ~(page - 1)
    if hi == lo or _libc.madvise(lo, hi - lo, _MADV_POPULATE_WRITE) == 0:
        return 0
    err = ctypes.get_errno()
    return 0 if err == 22 else err  # EINVAL: kernels before 5.14 (checked by room only)


def _flat_bytes(a):
    """A flat uint8 view of a C- or F-contiguous array, and the axis its
    blocks of rows run along (0 in C order, the last in F order)."""
    if a.flags.c_contiguous:
        order, axis = 'C', 0
    elif a.flags.f_contiguous:
        order, axis = 'F', a.ndim - 1
    else:
        raise ValueError('the array must be C- or F-contiguous (an array from alloc is)')
    if a.ndim == 0:
        raise ValueError('a 0-d array has no rows to gather')
    flat = a.reshape(-1, order=order)
    return flat.view(np.uint8), axis


class MpiContext(MapContext):
    """A map over the ranks of an MPI communicator.

    Args:
        comm (mpi4py.MPI.Intracomm, optional): the ranks, MPI.COMM_WORLD by
            default. The context works on a duplicate of it.
        local ('serial', 'threads' or 'processes'): how each rank maps its
            block ('processes': fork per map).
        num_workers (int, optional): workers per rank, libpasha's default
            (PASHA_NUM_WORKERS or the CPUs available) if omitted.
        schedule, chunk, pin_cpus: passed to the local context.

    The constructor is collective over comm.
    """

    def __init__(self, comm: Any = None, local: str = 'processes',
                 num_workers: Optional[int] = None, **local_options: Any):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError('pasha.MpiContext needs mpi4py: pip install libpasha[mpi] '
                              '(or pip install mpi4py)') from e
        self._MPI = MPI
        if comm is None:
            comm = MPI.COMM_WORLD
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f'comm must be an mpi4py intracommunicator, not {type(comm).__name__}')
        self._comm = None
        self._windows = []  # [window, root ndarray of its memory], in allocation order
        self._shared = []
        self._closed = False
        error = None
        try:
            if local not in _LOCAL:
                raise ValueError(f"local must be 'serial', 'threads' or 'processes', "
                                 f'not {local!r}')
            if local_options.get('persistent'):
                raise ValueError('an MPI context forks its local workers per map: '
                                 'persistent pools are not supported')
            local_options.pop('persistent', None)
            node_k = _node_size_override()
            if local == 'serial':
                self.local = _LOCAL_CLASSES[local](**local_options)
            else:
                self.local = _LOCAL_CLASSES[local](num_workers, **local_options)
        except Exception as e:  # every rank learns of it below
            error = e
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        # The agreement before anything else, on the caller's communicator.
        self._agree_on(comm, 0, error, ())
        self.local_kind = local
        self._comm = comm.Dup()
        c = self._comm
        shared = c.Split_type(MPI.COMM_TYPE_SHARED, self.rank)
        if node_k > 0:
            self._node = shared.Split(shared.Get_rank() // node_k, shared.Get_rank())
            shared.Free()
        else:
            self._node = shared
        self.node_rank = self._node.Get_rank()
        self.node_size = self._node.Get_size()
        self._leaders = c.Split(0 if self.node_rank == 0 else MPI.UNDEFINED, self.rank)
        leader_index = self._leaders.Get_rank() if self._leaders != MPI.COMM_NULL else -1
        mine = self._node.bcast((self.rank, leader_index), root=0)
        table = c.allgather((mine[0], mine[1], self.local.num_workers))
        # node_of[r]: the global rank of r's node leader; leader_index[l]:
        # that leader's rank among the leaders.
        self._node_of = [t[0] for t in table]
        self._leader_index = {t[0]: t[1] for t in table}
        counts = [t[2] for t in table]
        self.local_workers = counts[self.rank]
        self.worker_base = sum(counts[:self.rank])
        self.local._worker_base = self.worker_base
        super().__init__(sum(counts))

    # ---- agreement ----------------------------------------------------

    def _agree_on(self, comm, call, error, args):
        """Collective: raise on every rank if any rank has an error or the
        ranks disagree on the call or its args (a tuple of ints)."""
        # Always the same length, whatever the call: ranks making different
        # calls must still meet in one well-formed Allreduce.
        if len(args) > _MAX_ARGS:
            raise AssertionError('too many arguments to agree on')
        v = np.zeros(3 + 2 * _MAX_ARGS, np.int64)
        size = comm.Get_size()
        v[0] = comm.Get_rank() if error is not None else size
        v[1], v[2] = call, -call
        for i, a in enumerate(args):
            v[3 + 2 * i], v[4 + 2 * i] = a, -a
        r = np.empty_like(v)
        comm.Allreduce(v, r, op=self._MPI.MIN)
        first = int(r[0])
        if first < size:
            info = None
            if first == comm.Get_rank():
                info = (type(error).__name__, str(error))
            info = comm.bcast(info, root=first)
            if error is not None:
                raise error
            raise RemoteRankError(first, info[0], info[1])
        if r[1] != -r[2]:
            raise RuntimeError('the ranks make different calls on the MPI context '
                               f'({_CALL_NAMES.get(int(-r[2]), "?")} on some, '
                               f'{_CALL_NAMES.get(int(r[1]), "?")} on others)')
        return [(int(r[3 + 2 * i]), int(-r[4 + 2 * i])) for i in range(len(args))]

    def _agree(self, call, error=None, args=(), what=()):
        if self._closed:  # close() is collective: every rank is closed
            raise ValueError('the MPI context is closed')
        ranges = self._agree_on(self._comm, _CALLS[call], error, args)
        for (lo, hi), name in zip(ranges, what):
            if lo != hi and name:
                raise ValueError(f'the ranks disagree on {name} ({lo} to {hi})')

    # ---- memory -------------------------------------------------------

    def alloc(self, shape: Union[int, Tuple[int, ...], None] = None, dtype: Any = None, *,
              order: Optional[str] = None, fill: Any = None, like: Any = None,
              per_worker: bool = False) -> np.ndarray:
        """Allocate an array in one shared buffer per node (collective).

        The arguments are those of MapContext.alloc; per_worker adds an axis
        of all ranks' workers. Every rank of a node gets a view of the same
        memory, and so do the forked workers of a 'processes' local context.
        """
        nbytes = 0
        error = None
        try:
            shape, dtype, order = self._resolve_alloc(shape, dtype, order, like)
            if per_worker:
                shape = (self.num_workers,) + shape if order == 'C' else shape + (self.num_workers,)
            if order not in ('C', 'F'):
                raise ValueError(f"order must be 'C' or 'F', not {order!r}")
            dtype = np.dtype(dtype)
            if dtype.hasobject:
                raise TypeError(f'alloc: dtype {dtype} holds Python objects, which cannot '
                                'be shared between ranks; use a numeric dtype')
            count = 1
            for s in shape:
                if int(s) < 0:
                    raise ValueError('negative dimensions are not allowed')
                count *= int(s)
            nbytes = count * dtype.itemsize
        except Exception as e:
            error = e
        self._agree('alloc', error, (nbytes,), ("the array's size in bytes",))
        if self.node_size == 1:
            array = self.local._alloc(shape, dtype, order, None)
        else:
            self._reclaim()
            raw = self._node_window(nbytes)
            array = raw.view(dtype).reshape(shape, order=order) if dtype.itemsize else \
                np.ndarray(shape, dtype, order=order)
            del raw
        self._shared.append((array.__array_interface__['data'][0], nbytes))
        if fill is not None and not (np.isscalar(fill) and fill == 0):
            if self.node_rank == 0:
                array[...] = fill
            self._node.Barrier()
        return array

    def _node_window(self, nbytes):
        """This node's window of nbytes, agreed on every rank: a uint8 view
        of it. The nodes that made theirs free them when another did not."""
        MPI = self._MPI
        want = nbytes + _ALIGN
        error = None
        win = None
        room = _backing_room() if self.node_rank == 0 else None
        where, free = self._node.bcast(room, root=0)
        if free >= 0 and free < want + (1 << 20):
            error = MemoryError(f'{nbytes} bytes of MPI shared memory do not fit in the '
                                f'{free} bytes free in {where}')
        else:
            try:
                win = MPI.Win.Allocate_shared(want if self.node_rank == 0 else 0, 1,
                                              comm=self._node)
                ok = 1
            except MPI.Exception:
                ok = 0
            if self._node.allreduce(ok, op=MPI.MIN) == 0:
                # A rank that got its part keeps it: freeing is collective
                # and the ranks whose call failed have no window.
                win = None
                error = MemoryError(f'MPI_Win_allocate_shared of {want} bytes failed on '
                                    f'this node')
            else:
                win.Set_errhandler(MPI.ERRORS_RETURN)
                mem, _ = win.Shared_query(0)
                root = np.frombuffer(mem, np.uint8)
                del mem
                address = root.__array_interface__['data'][0]
                start = (-address) % _ALIGN
                raw = root[start:start + nbytes]
                err = _commit(address, want) if self.node_rank == 0 else 0
                err = self._node.bcast(err, root=0)
                if err:
                    del raw, root
                    win.Free()
                    win = None
                    error = MemoryError(f'cannot commit {want} bytes of MPI shared memory on '
                                        f'this node: {os.strerror(err)}')
        try:
            self._agree('alloc', error)
        except BaseException:
            if win is not None:
                del raw, root
                win.Free()
            raise
        # Views of the window's memory keep `root` alive (numpy points them
        # at it): its reference count says whether any array still uses it.
        self._windows.append([win, root])
        return raw

    def _reclaim(self, everything=False):
        """Free the windows that no rank of the node uses any more
        (collective over the node; the list of windows is the same on all
        its ranks). everything: keep the ones still used for good (MPI
        frees them when it is finalised), so that an array kept past
        close() stays valid memory instead of crashing."""
        if not self._windows:
            return
        used = np.array([sys.getrefcount(w[1]) > 2 for w in self._windows], np.int32)
        anywhere = np.empty_like(used)
        self._node.Allreduce(used, anywhere, op=self._MPI.MAX)
        keep = []
        for entry, busy in zip(self._windows, anywhere):
            if not busy:
                address = entry[1].__array_interface__['data'][0]
                self._shared = [(b, n) for b, n in self._shared
                                if not address <= b < address + entry[1].nbytes]
                entry[1] = None
                entry[0].Free()
            elif everything:
                _KEPT.append(entry)
            else:
                keep.append(entry)
        self._windows = keep

    def _is_shared(self, a):
        """Whether a lies in a buffer of this context (one per node)."""
        address = a.__array_interface__['data'][0]
        return any(b <= address and address + a.nbytes <= b + n for b, n in self._shared)

    # ---- map ----------------------------------------------------------

    def map(self, function: Callable[..., Any], functor: Any, *,
            progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None) -> None:
        """Apply function(worker_id, index, value) to every element, each
        rank its contiguous block, with global indices and worker ids
        (collective).

        A kernel exception or a dead worker on one rank is raised on every
        rank once each has finished its block: the failing rank raises its
        own exception, the others RemoteRankError.
        """
        error = None
        n = -1
        local_functor = None
        try:
            if _native_pointer(function) is not None:
                raise TypeError('MpiContext maps Python kernels; native kernels run on '
                                'the C MPI context (pasha_mpi.h)')
            if not callable(function):
                raise TypeError(f'the kernel must be callable, not {type(function).__name__}')
            if not isinstance(functor, Functor):
                functor = Functor.try_wrap(functor)
            n = _slice_functor(functor)
            if n is not None:
                lo, hi = rank_block(n, self.rank, self.size)
                local_functor = _RankBlock(functor, lo, hi)
            else:
                k = self.num_workers * (1 if self.local.schedule == 'static' else 4)
                shares = list(functor.split(k))
                n = len(shares)
                lo = n * self.worker_base // self.num_workers
                hi = n * (self.worker_base + self.local_workers) // self.num_workers
                local_functor = _ShareBlock(functor, shares[lo:hi])
        except Exception as e:
            error = e
        self._agree('map', error, (n,), ('the number of items',))
        error = None
        if progress is True and self.rank != 0:
            progress = False  # one bar, rank 0's block
        try:
            self.local.map(function, local_functor, progress=progress)
        except BaseException as e:  # KeyboardInterrupt too: the others must learn of it
            error = e
        self._agree('map end', error)

    # ---- collectives on arrays -----------------------------------------

    def _blocks(self, n):
        return [rank_block(n, r, self.size) for r in range(self.size)]

    def _check_array(self, a, root, need_root=True):
        if not isinstance(a, np.ndarray):
            raise TypeError(f'expected a numpy array, not {type(a).__name__}')
        if need_root and (not isinstance(root, Integral) or not 0 <= root < self.size):
            raise ValueError(f'root {root!r} is not a rank of the context (0..{self.size - 1})')
        flat, axis = _flat_bytes(a)
        return flat, axis

    def gather(self, array: np.ndarray, root: int = 0) -> None:
        """After a map in which each rank wrote its block of the array's
        slowest axis (axis 0 in C order, the last in F order), collect every
        block on root (collective). For an array of this context the result
        is in root's node buffer (every rank of that node sees it)."""
        self._collect(array, root, False)

    def allgather(self, array: np.ndarray) -> None:
        """gather onto every rank (every node's buffer)."""
        self._collect(array, 0, True)

    def _collect(self, a, root, everywhere):
        error = None
        nbytes = n = -1
        shared = False
        try:
            flat, axis = self._check_array(a, root, not everywhere)
            n = a.shape[axis]
            nbytes = a.nbytes
            shared = self._is_shared(a)
        except Exception as e:
            error = e
        self._agree('allgather' if everywhere else 'gather', error,
                    (nbytes, n, int(root) if not everywhere else 0, int(shared)),
                    ("the array's size in bytes", 'the number of rows', 'the root',
                     'whether the array is shared'))
        if n == 0 or nbytes == 0:
            return
        row = nbytes // n
        node_of = self._node_of if shared else list(range(self.size))
        me = self.rank
        blocks = self._blocks(n)
        requests = []

        def span(r):
            lo, hi = blocks[r]
            return flat[lo * row:hi * row]

        # Who receives: root (gather) or one rank per node (allgather: the
        # node's leader, or every rank for private arrays).
        if everywhere:
            receivers = sorted(set(node_of))
        else:
            receivers = [root]
        for dest in receivers:
            for r in range(self.size):
                if node_of[r] == node_of[dest]:
                    continue  # already in dest's buffer
                if me == dest:
                    requests += self._irecv(span(r), r)
                elif me == r:
                    requests += self._isend(span(r), dest)
        self._MPI.Request.Waitall(requests)
        if shared:
            self._node.Barrier()  # the node's ranks see what its receiver got

    def _isend(self, buf, dest):
        return [self._comm.Isend(buf[i:i + _MAX_MSG], dest, _TAG)
                for i in range(0, len(buf), _MAX_MSG)]

    def _irecv(self, buf, source):
        return [self._comm.Irecv(buf[i:i + _MAX_MSG], source, _TAG)
                for i in range(0, len(buf), _MAX_MSG)]

    def reduce(self, array: np.ndarray, op: str = 'sum', root: int = 0) -> None:
        """Combine the array element-wise over the nodes onto root
        (collective; op 'sum', 'min' or 'max'). The ranks of a node share
        one buffer, so each node contributes once: per_worker rows written
        by each node's workers add up exactly. Arrays not made by this
        context are private to each rank, and then each rank contributes."""
        MPI = self._MPI
        error = None
        nbytes = -1
        code = -1
        shared = False
        try:
            self._check_array(array, root)
            if op not in _OPS:
                raise ValueError(f"op must be 'sum', 'min' or 'max', not {op!r}")
            if op != 'sum' and array.dtype.kind == 'c':
                raise ValueError(f'{op} of complex numbers is not defined')
            from mpi4py.util import dtlib
            try:
                dtlib.from_numpy_dtype(array.dtype)
            except (ValueError, TypeError, KeyError) as e:
                raise TypeError(f'reduce: dtype {array.dtype} has no MPI type') from e
            if array.dtype.kind not in 'iufc':
                raise TypeError(f'reduce: dtype {array.dtype} is not a number type')
            nbytes = array.nbytes
            code = _OPS.index(op)
            shared = self._is_shared(array)
        except Exception as e:
            error = e
        self._agree('reduce', error, (nbytes, code, int(root), int(shared)),
                    ("the array's size in bytes", 'the op', 'the root',
                     'whether the array is shared'))
        if nbytes == 0:
            return
        mpi_op = (MPI.SUM, MPI.MIN, MPI.MAX)[code]
        flat = array.reshape(-1, order='C' if array.flags.c_contiguous else 'F')
        if shared:
            if self._leaders != MPI.COMM_NULL:
                target = self._leader_index[self._node_of[root]]
                self._reduce_on(self._leaders, flat, mpi_op, target)
            self._node.Barrier()
        else:
            self._reduce_on(self._comm, flat, mpi_op, root)

    def _reduce_on(self, comm, flat, op, root):
        step = max(1, _MAX_MSG // max(1, flat.itemsize))
        MPI = self._MPI
        for i in range(0, len(flat), step):
            part = flat[i:i + step]
            if comm.Get_rank() == root:
                comm.Reduce(MPI.IN_PLACE, part, op=op, root=root)
            else:
                comm.Reduce(part, None, op=op, root=root)

    # ---- lifetime -----------------------------------------------------

    def close(self) -> None:
        """Free the context's communicators and the node buffers no array
        uses any more (collective). Buffers still used by arrays stay valid
        until MPI is finalised. Call it, or use the context in a with
        block, before MPI is finalised."""
        if self._closed or self._comm is None:
            return
        self._agree('close')
        self._reclaim(everything=True)
        self._windows = []
        self._shared.clear()
        if self._leaders != self._MPI.COMM_NULL:
            self._leaders.Free()
        self._node.Free()
        self._comm.Free()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f'<MpiContext rank {self.rank} of {self.size}, local {self.local_kind!r} '
                f'x {self.local_workers}, {self.num_workers} workers>')
