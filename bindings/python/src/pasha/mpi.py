# SPDX-License-Identifier: BSD-3-Clause
"""One map over the ranks of an MPI communicator (mpi4py), on libpasha's C
MPI context (pasha_mpi.h, compiled into pasha._pasha_mpi on the engine of
pasha._pasha): each rank maps one contiguous block of the items with a local
context; kernels see global indices and worker ids; arrays from ``alloc``
live in one shared window per node. Every call is collective and agreed in
C, so an error on one rank is raised on every rank: its own exception there,
``RemoteRankError`` on the others. What is left here is argument handling
and numpy views. mpi4py is imported by the first context, never by
``import pasha``."""

import functools
import inspect
import os
import pickle
import sys
import warnings
from numbers import Integral
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from . import _pasha
from .context import (_ERR_HEADER, _ERR_SIZE, _PROCESSES, _SCHEDULES, _SERIAL, _THREADS, MapContext,
                      _PshContext, _check_chunksize, _functor_length, _itemwise, _native_pointer)
from .functor import Functor

__all__ = ['MpiContext', 'RemoteRankError']
_KINDS = {'serial': _SERIAL, 'threads': _THREADS, 'processes': _PROCESSES}
_DTYPES = {np.dtype(t): i for i, t in enumerate('i1 u1 i2 u2 i4 u4 i8 u8 f4 f8 c8 c16'.split())}
_OPS = ('sum', 'min', 'max')
_KEPT = []  # node buffers still used by arrays when their context closed (kept for good)


class RemoteRankError(RuntimeError):
    """A collective call failed on another rank: ``rank`` (the lowest failing
    one), ``type_name`` and ``message`` of its exception there; for a map,
    ``worker_id``, ``index``, ``signal`` and ``exit_status`` (None where they
    do not apply), as that rank's exception carries them."""

    def __init__(self, rank: int, type_name: str, message: str, worker_id=None, index=None,
                 signal=None, exit_status=None):
        self.rank, self.type_name, self.message = rank, type_name, message
        self.worker_id, self.index, self.signal, self.exit_status = worker_id, index, signal, exit_status
        super().__init__(f'rank {rank}: {type_name}: {message}')

    def __reduce__(self):
        return type(self), (self.rank, self.type_name, self.message, self.worker_id, self.index,
                            self.signal, self.exit_status)


def rank_block(n: int, rank: int, size: int) -> Tuple[int, int]:
    """Items [lo, hi) of rank among size for n items (as the C library splits)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _describe(e):
    """What other ranks learn of exception e (its str() may fail)."""
    try:
        text = str(e)
    except Exception:
        text = '(the exception cannot be turned into a string)'
    return (type(e).__name__, text) + tuple(getattr(e, a, None) for a in
                                            ('worker_id', 'index', 'signal', 'exit_status'))


def _agreed(e):
    try:
        e._pasha_agreed = True  # every rank raises in this call: no more agreement
    except AttributeError:
        pass
    return e


def _by_rank(values):
    """'X on rank 0; Y on ranks 1, 2' for a list of each rank's value."""
    groups = {}
    for rank, v in enumerate(values):
        groups.setdefault(v, []).append(str(rank))
    return '; '.join(f'{v} on rank{"s" if len(r) > 1 else ""} {", ".join(r)}' for v, r in groups.items())


def _collective(method):
    """A collective call: an error on one rank before the C context was
    reached (Python's own argument binding, the binding's checks) joins the
    other ranks' call as a refusal; every rank then raises (see _fail)."""
    sig = inspect.signature(method)

    @functools.wraps(method)
    def collective(self, *args, **kwargs):
        if self._ctx is None:  # close() is collective: closed on every rank
            raise ValueError('the MPI context is closed')
        calls, self._shown = self._c.state(self._cap)[0], []
        try:
            try:
                sig.bind(self, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f'{method.__name__}(): {e}') from None
            return method(self, *args, **kwargs)
        except BaseException as e:  # KeyboardInterrupt too: the others must learn of it
            if getattr(e, '_pasha_agreed', False):
                raise
            self._fail(e, calls)
    return collective


class MpiContext(_PshContext):
    """A map over the ranks of comm (an mpi4py intracommunicator,
    MPI.COMM_WORLD by default; the context works on a duplicate). local:
    'serial', 'threads' or 'processes' (fork per map) for each rank's block;
    num_workers: per rank (libpasha's default if omitted); schedule and chunk
    as for the local contexts. The constructor is collective."""

    def __init__(self, comm: Any = None, local: str = 'processes',
                 num_workers: Optional[int] = None, **local_options: Any):
        try:
            from mpi4py import MPI
            from . import _pasha_mpi
        except ImportError as e:
            raise ImportError('pasha.MpiContext needs mpi4py and pasha built with MPI (pasha._pasha_mpi): '
                              "pip install mpi4py './bindings/python[mpi]'") from e
        self._c, self._ctx, self._arrays = _pasha_mpi, None, []
        comm, error, kind, workers = MPI.COMM_WORLD if comm is None else comm, None, -1, 0
        schedule, chunk = local_options.pop('schedule', 'static'), local_options.pop('chunk', 0)
        try:
            if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
                bad, comm = comm, MPI.COMM_WORLD  # the others are most likely there
                raise TypeError(f'comm must be an mpi4py intracommunicator, not {type(bad).__name__}')
            if local not in _KINDS:
                raise ValueError(f"local must be 'serial', 'threads' or 'processes', not {local!r}")
            if local_options.pop('persistent', False):
                raise ValueError('an MPI context forks its local workers per map: persistent pools '
                                 'are not supported')
            local_options.pop('pin_cpus', None)
            if local_options:
                raise TypeError(f'MpiContext: unexpected arguments {sorted(local_options)}')
            if num_workers is not None and (not isinstance(num_workers, Integral) or num_workers < 1):
                raise ValueError('num_workers must be a positive integer')
            workers = 1 if local == 'serial' else int(num_workers or _pasha.default_num_workers())
            _warn_if_bound(comm.Get_rank(), workers)
            if schedule not in _SCHEDULES:
                raise ValueError(f'unknown schedule {schedule!r}')
            kind = _KINDS[local]
        except Exception as e:  # every rank learns of it: C refuses local_kind -1
            error = e
        try:
            cap = _pasha_mpi.create(comm.py2f(), kind, workers)
        except Exception as e:
            first = next((r for r, b in enumerate(comm.allgather(error is not None)) if b), None)
            info = comm.bcast(_describe(error) if first == comm.Get_rank() else None, root=first or 0)
            raise error if error is not None else e if first is None else RemoteRankError(first, *info)
        self._cap, self.local_kind, self.local_workers, self._kind = cap, local, workers, kind
        self._setup(_pasha.Context._from_capsule(cap), False, schedule, chunk)
        (self.rank, self.size, self.node_rank, self.node_size, self._node_of,
         self.worker_base) = _pasha_mpi.info(cap, workers)

    def _exchange(self, obj):
        """Every rank's obj (collective)."""
        return [pickle.loads(b) for b in self._c.exchange(self._cap, pickle.dumps(obj, -1))]

    def _fail(self, own, calls):
        """After own was raised here in a collective call: a call that never
        reached the C context is refused there (every rank fails it); then
        each rank that failed raises its own error, the others
        RemoteRankError naming the lowest failing rank."""
        c_error = own
        if self._c.state(self._cap)[0] == calls:
            try:
                self._c.collect(self._cap, None, -1, 0)
            except Exception as e:
                c_error = e
        _, first, mine = self._c.state(self._cap)
        if first == -2:  # the ranks made different calls
            raise _agreed(RuntimeError(str(c_error))) from c_error
        if first == -1:  # they passed different values: name each rank's
            for pairs in zip(*self._exchange(self._shown)):
                values = [str(v) for _, v in pairs]
                if len(set(values)) > 1:
                    raise _agreed(ValueError(f'the ranks disagree on {pairs[0][0]}: '
                                             f'{_by_rank(values)}')) from c_error
            raise _agreed(c_error if isinstance(c_error, ValueError) else ValueError(str(c_error)))
        info = self._exchange(_describe(own) if first == self.rank else None)[first]
        if mine or first == self.rank:
            raise _agreed(own)
        raise _agreed(RemoteRankError(first, *info)) from c_error

    def _err_buffer(self):  # the workers' error slots: this rank's own memory
        if self._err is None:
            self._err = _pasha.alloc_bytes(None, _ERR_HEADER + self.num_workers * _ERR_SIZE)
        return self._err

    @_collective
    def alloc(self, shape: Union[int, Tuple[int, ...], None] = None, dtype: Any = None, *,
              order: Optional[str] = None, fill: Any = None, like: Any = None,
              per_worker: bool = False) -> np.ndarray:
        """MapContext.alloc, in one shared buffer per node that every rank of
        the node and its forked workers write in place (collective)."""
        shape, dtype, order = self._resolve_alloc(shape, dtype, order, like)
        if per_worker:
            shape = (self.num_workers,) + shape if order == 'C' else shape + (self.num_workers,)
        dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
        if order not in ('C', 'F'):
            raise ValueError(f"order must be 'C' or 'F', not {order!r}")
        if dtype.hasobject:
            raise TypeError(f'alloc: dtype {dtype} holds Python objects, which cannot be shared '
                            'between ranks; use a numeric dtype')
        if any(s < 0 for s in shape):
            raise ValueError('negative dimensions are not allowed')
        filler = None if fill is None or (np.isscalar(fill) and fill == 0) else \
            np.broadcast_to(np.asarray(fill, dtype=dtype), shape)  # checked before any rank allocates
        slow = shape[::-1] if order == 'F' else shape
        rows, items = (slow[0], int(np.prod(slow[1:], dtype=np.int64))) if shape else (1, 1)
        code = _DTYPES.get(dtype.newbyteorder('='), -1)
        described = f'shape {shape}, dtype {dtype}, order {order!r}'
        self._shown = [("the array's size", f'{rows * items * dtype.itemsize} bytes')]
        raw = self._c.alloc(self._cap, code, rows, items * (dtype.itemsize if code < 0 else 1))
        self._reclaim()
        layouts = self._exchange(described)
        if len(set(layouts)) > 1:  # the same bytes, not the same array: freed together
            del raw
            raise _agreed(ValueError("the ranks disagree on the array's shape, dtype or order: "
                                     f'{_by_rank(layouts)}'))
        array = raw.reshape(-1).view(dtype).reshape(shape, order=order) if dtype.itemsize else \
            np.ndarray(shape, dtype, order=order)
        if filler is not None:
            array[...] = filler  # every rank of a node the same values
            self._exchange(None)  # written everywhere before any rank reads
        self._arrays.append(raw.base)  # the capsule that frees the psh array
        return array

    def _reclaim(self, everything=False):
        """Free together the node buffers that no rank uses any more (freeing
        a window is collective over the node); everything: keep the rest for
        good (they stay valid until MPI is finalized)."""
        if self._arrays:
            used = [any(u) for u in zip(*self._exchange([sys.getrefcount(r) > 3
                                                         for r in self._arrays]))]
            _KEPT.extend(r for r, u in zip(self._arrays, used) if u and everything)
            self._arrays = [r for r, u in zip(self._arrays, used) if u and not everything]

    @_collective
    def map(self, function: Callable[..., Any], functor: Any, chunksize: Optional[int] = None, *,
            progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None) -> list:
        """Apply function(worker_id, index, value) to every element, each rank
        its contiguous block, with global indices and worker ids (collective).
        Returns the kernel's values in global item order, on every rank."""
        if _native_pointer(function) is not None:
            raise TypeError('MpiContext maps Python kernels; native kernels run on the C MPI '
                            'context (pasha_mpi.h)')
        if not callable(function):
            raise TypeError(f'the kernel must be callable, not {type(function).__name__}')
        chunksize = _check_chunksize(chunksize)
        functor = functor if isinstance(functor, Functor) else Functor.try_wrap(functor)
        self._shown = [('the number of items', _functor_length(functor))]
        itemwise = _itemwise(type(functor)) and type(self).run_worker is MapContext.run_worker
        values = super().map(function, functor, chunksize,
                             progress=progress if progress is not True or self.rank == 0 else False)
        if itemwise:  # a list of every item, this rank's block filled; else this rank's items
            values = values[slice(*rank_block(len(values), self.rank, self.size))]
        own, info = None, None
        try:
            mine = pickle.dumps((values if any(v is not None for v in values) else len(values), None), -1)
        except Exception as e:
            own, mine = e, pickle.dumps((0, _describe(e)), -1)
        parts = [pickle.loads(b) for b in self._c.exchange(self._cap, mine)]
        for r, (_, info) in enumerate(parts):
            if info is not None:
                raise _agreed(own if own is not None else RemoteRankError(r, *info))
        return [v for part, _ in parts for v in ([None] * part if type(part) is int else part)]

    def _collect(self, a, op, root, op_name=None):
        if not isinstance(a, np.ndarray):
            raise TypeError(f'expected a numpy array, not {type(a).__name__}')
        if op != -2 and (not isinstance(root, Integral) or isinstance(root, bool) or
                         not 0 <= root < self.size):
            raise ValueError(f'root {root!r} is not a rank of the context (0..{self.size - 1})')
        if op == 99:
            raise ValueError(f"op must be 'sum', 'min' or 'max', not {op_name!r}")
        code = _DTYPES.get(a.dtype.newbyteorder('='), -1)
        if op >= 0 and (code < 0 or a.dtype.hasobject):
            raise TypeError(f'reduce: dtype {a.dtype} has no MPI type here (integers, float32/64 '
                            'and complex64/128 only)')
        if op in (1, 2) and a.dtype.kind == 'c':
            raise ValueError(f'{op_name} of complex numbers is not defined')
        if op < 0 and (a.ndim == 0 or a.dtype.hasobject):
            raise ValueError(f'cannot gather a 0-d array or one of Python objects ({a.dtype})')
        if op >= 0 and not (a.flags.c_contiguous or a.flags.f_contiguous):
            raise ValueError('reduce needs a C- or F-contiguous array (an array from alloc is)')
        self._shown = [("the array's shape, dtype or order",
                        f"shape {a.shape}, dtype {a.dtype}, order {'C' if a.flags.c_contiguous else 'F'!r}"),
                       ('the op', repr(op_name)), ('the root', root)]
        b = a.T if op >= 0 and not a.flags.c_contiguous else a  # reduce: element-wise, any order
        whole = self._c.is_whole(b)  # 1: a whole C-order array of alloc, 2: part of one
        if whole == 1:
            return self._c.collect(self._cap, b, op, int(root))
        # an array private to each rank, or one in F order gathered along its
        # first axis: through a private C-order copy
        rows = a.shape[0] if op < 0 else 1
        tmp = self._c.alloc(None, code, rows, (a.size // rows if rows else 0) *
                            (a.itemsize if code < 0 else 1))
        view = tmp.reshape(-1).view(a.dtype).reshape(a.shape)
        view[...] = a
        self._c.collect(self._cap, tmp, op, int(root))
        if op == -2 or self.rank == root:
            a[...] = view
        if whole:
            self._exchange(None)  # the node's ranks see what was written

    @_collective
    def gather(self, array: np.ndarray, root: int = 0) -> None:
        """After a map in which each rank wrote its block of the array's first
        axis, every block on root (for an array of this context: in root's
        node buffer, only other nodes' blocks travel). Collective."""
        self._collect(array, -1, root)

    @_collective
    def allgather(self, array: np.ndarray) -> None:
        """gather onto every rank (every node's buffer)."""
        self._collect(array, -2, 0)

    @_collective
    def reduce(self, array: np.ndarray, op: str = 'sum', root: int = 0) -> None:
        """Combine the array element-wise onto root ('sum', 'min' or 'max';
        collective): an array of this context once per node (its ranks share
        it: per_worker rows add up exactly), any other once per rank."""
        self._collect(array, _OPS.index(op) if op in _OPS else 99, root, op)

    def close(self) -> None:
        """Free the context and the node buffers no array uses (collective);
        buffers still used stay valid until MPI is finalized. Call it (or use
        a with block) before MPI is finalized."""
        if self._ctx is not None:
            self._reclaim(everything=True)
            self._ctx = self._cap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f'<MpiContext rank {self.rank} of {self.size}, local {self.local_kind!r} '
                f'x {self.local_workers}, {self.num_workers} workers>')


def _warn_if_bound(rank, workers):
    """mpirun binds each rank to one core by default: its workers take turns."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 0
    if 0 < cpus < workers:
        warnings.warn(
            f'MpiContext: rank {rank} has {workers} local workers but may run on {cpus} '
            f'CPU{"s" if cpus > 1 else ""} only (its affinity mask), so they take turns. mpirun '
            'binds each rank to a core unless told otherwise: start the ranks with mpirun '
            '--bind-to none, or give each rank its CPUs (mpirun --map-by slot:PE=N, srun '
            '--cpus-per-task=N)', RuntimeWarning, stacklevel=3)
