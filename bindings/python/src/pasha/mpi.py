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
import functools
import inspect
import os
import sys
import warnings
import weakref
import zlib
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
          'free': 7, 'close': 8, 'alloc end': 9}
_CALL_NAMES = {v: k for k, v in _CALLS.items()}
_OPS = ('sum', 'min', 'max')
_ALIGN = 64              # where data starts in a window (psh arrays: at least 64)
_MADV_POPULATE_WRITE = 23
_MAX_MSG = 1 << 30       # bytes per message (MPI counts are ints)
_TAG = 0x5053            # point-to-point tag on the context's own communicator
_MAX_ARGS = 5            # integers the ranks agree on in one call
# numpy type chars reduce accepts: the integers, float32/64, long double
# and their complex types (Open MPI 4 has no float16; bool is not a number).
_MPI_NUMBERS = 'bBhHiIlLqQfdgFDG'
_CONTEXTS = weakref.WeakSet()  # live MpiContexts (an array of another one is refused)
_KEPT = []               # windows of closed contexts that arrays still use


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


def _address_space_left():
    """(limit, bytes left) under this process's RLIMIT_AS (ulimit -v), or
    None when it has no such limit. Every rank of a node maps the node's
    whole window: Open MPI hangs or aborts when one of them cannot."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return None
        with open('/proc/self/statm') as f:
            used = int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
    except (ImportError, OSError, ValueError):
        return None
    return soft, soft - used


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


def _bytes_of(a):
    """The bytes of a C-contiguous array, as a flat uint8 view."""
    return a.reshape(-1).view(np.uint8)


def _crc(value):
    """A number for value that is the same in every process (hash() of a
    str is salted per process)."""
    return zlib.crc32(repr(value).encode()) & 0x7fffffff


class _Buffer:
    """One array's memory from alloc: an MPI window (held by the context
    until no array uses it) or libpasha's memory (held by the arrays)."""

    __slots__ = ('address', 'nbytes', 'win', 'root', 'ref')

    def __init__(self, array, root, win):
        self.address = array.__array_interface__['data'][0]
        self.nbytes = array.nbytes
        self.win = win
        self.root = root  # windows: the frombuffer array every view points at
        base = array
        while isinstance(base.base, np.ndarray):
            base = base.base
        self.ref = weakref.ref(base) if win is None else None

    def alive(self):
        return self.root is not None if self.win is not None else self.ref() is not None

    def in_use(self):
        # the slot's reference and getrefcount's argument; views add theirs
        return sys.getrefcount(self.root) > 2

    def holds(self, address, nbytes):
        return self.alive() and self.address <= address and \
            address + nbytes <= self.address + self.nbytes

    def release(self):
        self.root = None
        self.win.Free()


def _by_rank(values, limit=4):
    """'X on rank 0; Y on ranks 1, 2' for a list of each rank's value."""
    groups = {}
    for rank, v in enumerate(values):
        groups.setdefault(v, []).append(rank)
    parts = []
    for v, ranks in list(groups.items())[:limit]:
        shown = ', '.join(map(str, ranks[:8])) + (', ...' if len(ranks) > 8 else '')
        parts.append(f'{v} on rank{"s" if len(ranks) > 1 else ""} {shown}')
    if len(groups) > limit:
        parts.append(f'and {len(groups) - limit} more')
    return '; '.join(parts)


def _warn_if_bound(rank, workers):
    """Warn when this rank's local workers must share fewer CPUs: mpirun
    binds each rank to one core by default (when there are no more ranks
    than cores), and forked workers or threads inherit that."""
    if workers <= 1:
        return
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if 0 < cpus < workers:
        warnings.warn(
            f'MpiContext: rank {rank} has {workers} local workers but may run on {cpus} '
            f'CPU{"s" if cpus > 1 else ""} only (its affinity mask), so they take turns. '
            'mpirun binds each rank to a core unless told otherwise: start the ranks with '
            'mpirun --bind-to none, or give each rank its CPUs (mpirun --map-by slot:PE=N, '
            'srun --cpus-per-task=N)', RuntimeWarning, stacklevel=3)


def _collective(call):
    """A collective method whose arguments are checked inside the agreement:
    a call that Python itself would refuse on one rank (an unknown keyword,
    a missing or extra argument) becomes that TypeError there and a
    RemoteRankError on the other ranks, instead of leaving them waiting."""
    def wrap(method):
        sig = inspect.signature(method)

        @functools.wraps(method)
        def collective(self, *args, **kwargs):
            try:
                sig.bind(self, *args, **kwargs)
            except TypeError as e:
                self._agree(call, TypeError(f'{method.__name__}(): {e}'))
            return method(self, *args, **kwargs)
        return collective
    return wrap


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
            raise ImportError('pasha.MpiContext needs mpi4py: pip install mpi4py (or '
                              "install pasha with its extra: pip install './bindings/python[mpi]')") from e
        self._MPI = MPI
        if comm is None:
            comm = MPI.COMM_WORLD
        self._comm = None
        self._buffers = []  # _Buffer of each alloc, in allocation order
        self._closed = False
        error = None
        try:
            if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
                bad, comm = comm, MPI.COMM_WORLD  # the others are most likely there
                raise TypeError('comm must be an mpi4py intracommunicator, not '
                                f'{type(bad).__name__}')
            if local not in _LOCAL:
                raise ValueError(f"local must be 'serial', 'threads' or 'processes', "
                                 f'not {local!r}')
            if local_options.get('persistent'):
                raise ValueError('an MPI context forks its local workers per map: '
                                 'persistent pools are not supported')
            local_options.pop('persistent', None)
            node_k = _node_size_override()
            if local == 'serial':
                self.local = _LOCAL[local](**local_options)
            else:
                self.local = _LOCAL[local](num_workers, **local_options)
                # Before the agreement: a warning made an error (-W error)
                # is then an error on every rank.
                _warn_if_bound(comm.Get_rank(), self.local.num_workers)
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
        self.local._worker_base = self.worker_base  # kernels get global worker ids (_pasha.c)
        super().__init__(sum(counts))
        _CONTEXTS.add(self)

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
        info = None
        if error is not None:  # before the Allreduce: str() of it may fail
            try:
                info = (type(error).__name__, str(error))
            except Exception:
                info = (type(error).__name__, '(the exception cannot be turned into a string)')
        v[1], v[2] = call, -call
        for i, a in enumerate(args):
            try:
                a = int(a)
            except (TypeError, ValueError):
                if error is None:
                    raise
                a = -1  # a rank with an error may not have computed it
            v[3 + 2 * i], v[4 + 2 * i] = a, -a
        r = np.empty_like(v)
        comm.Allreduce(v, r, op=self._MPI.MIN)
        first = int(r[0])
        if first < size:
            info = comm.bcast(info if first == comm.Get_rank() else None, root=first)
            if error is not None:
                raise error
            raise RemoteRankError(first, info[0], info[1])
        if r[1] != -r[2]:
            raise RuntimeError('the ranks make different calls on the MPI context '
                               f'({_CALL_NAMES.get(int(-r[2]), "?")} on some, '
                               f'{_CALL_NAMES.get(int(r[1]), "?")} on others)')
        return [(int(r[3 + 2 * i]), int(-r[4 + 2 * i])) for i in range(len(args))]

    def _agree(self, call, error=None, args=(), what=(), shown=()):
        """Agree on the call and its args; on a disagreement about what[i],
        name each rank's value (shown[i], readable, or args[i])."""
        if self._closed:  # close() is collective: every rank is closed
            raise ValueError('the MPI context is closed')
        ranges = self._agree_on(self._comm, _CALLS[call], error, args)
        for i, ((lo, hi), name) in enumerate(zip(ranges, what)):
            if lo != hi and name:
                # Every rank has the same ranges, so every rank is here.
                mine = shown[i] if i < len(shown) and shown[i] is not None else args[i]
                values = self._comm.allgather(str(mine))
                raise ValueError(f'the ranks disagree on {name}: {_by_rank(values)}')

    # ---- memory -------------------------------------------------------

    @_collective('alloc')
    def alloc(self, shape: Union[int, Tuple[int, ...], None] = None, dtype: Any = None, *,
              order: Optional[str] = None, fill: Any = None, like: Any = None,
              per_worker: bool = False) -> np.ndarray:
        """Allocate an array in one shared buffer per node (collective).

        The arguments are those of MapContext.alloc; per_worker adds an axis
        of all ranks' workers. Every rank of a node gets a view of the same
        memory, and so do the forked workers of a 'processes' local context.
        """
        nbytes = layout = -1
        error = described = None
        fill_value = None
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
            shape = tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise ValueError('negative dimensions are not allowed')
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if fill is not None and not (np.isscalar(fill) and fill == 0):
                # Checked here, so that writing it later cannot fail on one rank.
                fill_value = np.broadcast_to(np.asarray(fill, dtype=dtype), shape)
            layout = _crc((shape, dtype.str, order))
            described = f'shape {shape}, dtype {dtype}, order {order!r}'
        except Exception as e:
            error = e
        self._agree('alloc', error, (nbytes, layout),
                    ("the array's size in bytes", "the array's shape, dtype or order"),
                    (described, described))
        array = root = win = None
        error = None
        if self.node_size > 1:
            self._reclaim()
            raw, root, win, error = self._node_window(nbytes)
            if error is None:
                array = raw.view(dtype).reshape(shape, order=order) if dtype.itemsize else \
                    np.ndarray(shape, dtype, order=order)
            del raw
        else:
            try:  # alone on its node: libpasha's own shared memory
                array = self.local._alloc(shape, dtype, order, None)
            except Exception as e:
                error = e
        if error is None and fill_value is not None and self.node_rank == 0:
            try:
                array[...] = fill_value
            except Exception as e:
                error = e
        # Every rank learns whether every node made its buffer (and the fill
        # written by a node's first rank is seen by the others after this).
        try:
            self._agree('alloc end', error)
        except BaseException:
            del array, root
            if win is not None:
                win.Free()
            raise
        self._buffers.append(_Buffer(array, root, win))
        return array

    def _node_window(self, nbytes):
        """This node's window of nbytes: (uint8 view, root array, window,
        None) on every rank of the node, or (None, None, None, the error)
        on every rank of the node, leaving no window behind."""
        MPI = self._MPI
        want = nbytes + _ALIGN
        room = _backing_room() if self.node_rank == 0 else None
        where, free = self._node.bcast(room, root=0)
        if free >= 0 and free < want + (1 << 20):
            return None, None, None, MemoryError(
                f'{nbytes} bytes of MPI shared memory do not fit in the {free} bytes free '
                f'in {where}')
        # Every rank maps the whole window: its address-space limit must
        # leave room for it, with some for MPI's own mappings.
        limit = _address_space_left()
        short = limit is not None and limit[1] < want + (64 << 20)
        if self._node.allreduce(int(short), op=MPI.MAX):
            return None, None, None, MemoryError(
                f'{nbytes} bytes of MPI shared memory would pass ' +
                (f"this rank's address-space limit (RLIMIT_AS, ulimit -v: {limit[0]} bytes, "
                 f'{max(limit[1], 0)} left)' if short else
                 'the address-space limit (RLIMIT_AS, ulimit -v) of another rank of this '
                 'node'))
        try:
            win = MPI.Win.Allocate_shared(want if self.node_rank == 0 else 0, 1, comm=self._node)
            ok = 1
        except MPI.Exception:
            win, ok = None, 0
        if self._node.allreduce(ok, op=MPI.MIN) == 0:
            # A rank that got its part keeps it: freeing is collective and
            # the ranks whose call failed have no window.
            return None, None, None, MemoryError(
                f'MPI_Win_allocate_shared of {want} bytes failed on this node')
        win.Set_errhandler(MPI.ERRORS_RETURN)
        mem, _ = win.Shared_query(0)
        root = np.frombuffer(mem, np.uint8)
        del mem
        address = root.__array_interface__['data'][0]
        start = (-address) % _ALIGN
        err = _commit(address, want) if self.node_rank == 0 else 0
        err = self._node.bcast(err, root=0)
        if err:
            del root
            win.Free()
            return None, None, None, MemoryError(
                f'cannot commit {want} bytes of MPI shared memory on this node: '
                f'{os.strerror(err)}')
        return root[start:start + nbytes], root, win, None

    def _reclaim(self, everything=False):
        """Free the windows that no rank of the node uses any more
        (collective over the node; the list of windows is the same on all
        its ranks). everything: keep the ones still used for good (MPI
        frees them when it is finalised), so that an array kept past
        close() stays valid memory instead of crashing."""
        windows = [b for b in self._buffers if b.win is not None]
        if windows:
            used = np.array([b.in_use() for b in windows], np.int32)
            anywhere = np.empty_like(used)
            self._node.Allreduce(used, anywhere, op=self._MPI.MAX)
            for b, busy in zip(windows, anywhere):
                if not busy:
                    b.release()
                elif everything:
                    _KEPT.append(b)
        self._buffers = [b for b in self._buffers if b.alive() and not everything]

    def _find(self, a):
        """Whether ndarray a lies in a buffer of this context."""
        address = a.__array_interface__['data'][0]
        return any(b.holds(address, a.nbytes) for b in self._buffers)

    def _owner(self, a):
        """True: a is in this context's buffers (one per node); False: it is
        private to each rank. Raises if it is in another MpiContext's."""
        if self._find(a):
            return True
        for other in list(_CONTEXTS):
            if other is not self and not other._closed and other._find(a):
                raise ValueError('the array belongs to another MpiContext: gather or reduce '
                                 'it with that context')
        return False

    # ---- map ----------------------------------------------------------

    @_collective('map')
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

    def _check(self, a, root, need_root):
        """Checks shared by gather, allgather and reduce; root as an int."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f'expected a numpy array, not {type(a).__name__}')
        if a.dtype.hasobject:
            raise TypeError(f'dtype {a.dtype} holds Python objects')
        if not need_root:
            return 0
        if not isinstance(root, Integral) or isinstance(root, bool) or \
                not 0 <= root < self.size:
            raise ValueError(f'root {root!r} is not a rank of the context (0..{self.size - 1})')
        return int(root)

    @_collective('gather')
    def gather(self, array: np.ndarray, root: int = 0) -> None:
        """After a map in which each rank wrote its block of the array's
        first axis (the axis a map over an array of that length splits),
        collect every block on root (collective). For an array of this
        context the result is in root's node buffer (every rank of that
        node sees it); only other nodes' blocks travel."""
        self._collect(array, root, False)

    @_collective('allgather')
    def allgather(self, array: np.ndarray) -> None:
        """gather onto every rank (every node's buffer)."""
        self._collect(array, 0, True)

    def _collect(self, a, root, everywhere):
        error = None
        nbytes = n = layout = shared = root_i = -1
        described = None
        try:
            root_i = self._check(a, root, not everywhere)
            if a.ndim == 0:
                raise ValueError('a 0-d array has no rows to gather')
            n = a.shape[0]
            nbytes = a.nbytes
            layout = _crc((a.shape, a.dtype.str))
            shared = int(self._owner(a))
            described = f'shape {a.shape}, dtype {a.dtype}'
        except Exception as e:
            error = e
        self._agree('allgather' if everywhere else 'gather', error,
                    (nbytes, n, root_i, shared, layout),
                    ("the array's size in bytes", 'the number of rows', 'the root',
                     'whether the array is one of the context', "the array's shape or dtype"),
                    (None, None, None, None, described))
        if n == 0 or nbytes == 0:
            return
        node_of = self._node_of if shared else list(range(self.size))
        me = self.rank
        blocks = self._blocks(n)
        requests, unpack = [], []
        # Who receives: root (gather), or one rank per node (allgather: the
        # node's first rank; every rank for private arrays).
        receivers = sorted(set(node_of)) if everywhere else [root_i]
        for dest in receivers:
            for r in range(self.size):
                lo, hi = blocks[r]
                if node_of[r] == node_of[dest] or hi == lo:
                    continue  # already in dest's buffer, or nothing to send
                block = a[lo:hi]
                if me == dest:
                    if block.flags.c_contiguous:
                        requests += self._irecv(_bytes_of(block), r)
                    else:  # F order, strided views: by a contiguous copy
                        tmp = np.empty(block.shape, a.dtype)
                        unpack.append((block, tmp))
                        requests += self._irecv(_bytes_of(tmp), r)
                elif me == r:
                    requests += self._isend(_bytes_of(np.ascontiguousarray(block)), dest)
        self._MPI.Request.Waitall(requests)
        for block, tmp in unpack:
            block[...] = tmp
        if shared:
            self._node.Barrier()  # the node's ranks see what its receiver got

    def _blocks(self, n):
        return [rank_block(n, r, self.size) for r in range(self.size)]

    def _isend(self, buf, dest):
        return [self._comm.Isend(buf[i:i + _MAX_MSG], dest, _TAG)
                for i in range(0, len(buf), _MAX_MSG)]

    def _irecv(self, buf, source):
        return [self._comm.Irecv(buf[i:i + _MAX_MSG], source, _TAG)
                for i in range(0, len(buf), _MAX_MSG)]

    @_collective('reduce')
    def reduce(self, array: np.ndarray, op: str = 'sum', root: int = 0) -> None:
        """Combine the array element-wise over the nodes onto root
        (collective; op 'sum', 'min' or 'max'). The ranks of a node share
        one buffer, so each node contributes once: per_worker rows written
        by each node's workers add up exactly. Arrays not made by an
        MpiContext are private to each rank, and then each rank
        contributes."""
        MPI = self._MPI
        error = None
        nbytes = code = layout = shared = root_i = -1
        described = None
        try:
            root_i = self._check(array, root, True)
            if op not in _OPS:
                raise ValueError(f"op must be 'sum', 'min' or 'max', not {op!r}")
            if array.dtype.char not in _MPI_NUMBERS:
                raise TypeError(f'reduce: dtype {array.dtype} has no MPI type here (integers, '
                                'float32/64, long double and complex of those only)')
            if op != 'sum' and array.dtype.kind == 'c':
                raise ValueError(f'{op} of complex numbers is not defined')
            if not (array.flags.c_contiguous or array.flags.f_contiguous):
                raise ValueError('reduce needs a C- or F-contiguous array (an array from '
                                 'alloc is)')
            nbytes = array.nbytes
            code = _OPS.index(op)
            layout = _crc((array.shape, array.dtype.str, bool(array.flags.c_contiguous)))
            shared = int(self._owner(array))
            described = (f"shape {array.shape}, dtype {array.dtype}, order "
                         f"{'C' if array.flags.c_contiguous else 'F'!r}")
        except Exception as e:
            error = e
        self._agree('reduce', error, (nbytes, code, root_i, shared, layout),
                    ("the array's size in bytes", 'the op', 'the root',
                     'whether the array is one of the context',
                     "the array's shape, dtype or order"),
                    (None, repr(op), None, bool(shared), described))
        if nbytes == 0:
            return
        mpi_op = (MPI.SUM, MPI.MIN, MPI.MAX)[code]
        flat = array.reshape(-1, order='C' if array.flags.c_contiguous else 'F')
        if shared:
            if self._leaders != MPI.COMM_NULL:
                target = self._leader_index[self._node_of[root_i]]
                self._reduce_on(self._leaders, flat, mpi_op, target)
            self._node.Barrier()
        else:
            self._reduce_on(self._comm, flat, mpi_op, root_i)

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

    @_collective('close')
    def close(self) -> None:
        """Free the context's communicators and the node buffers no array
        uses any more (collective). Buffers still used by arrays stay valid
        until MPI is finalised. Call it, or use the context in a with
        block, before MPI is finalised."""
        if self._closed or self._comm is None:
            return
        self._agree('close')
        self._reclaim(everything=True)
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
