# SPDX-License-Identifier: BSD-3-Clause
# WORK IN PROGRESS (helper mpi, not installed, not imported): MpiContext on the C MPI
# context through pasha._pasha_mpi. 81 of the tests-mpi tests pass on 2 ranks with it (the
# tests adapted as noted in the report); it replaces mpi.py once the rest pass.
"""One map over the ranks of an MPI communicator (mpi4py), on libpasha's C
MPI context (pasha_mpi.h, compiled into pasha._pasha_mpi on this module's
engine): items split in one contiguous block per rank, each mapped by a
local context, global indices and worker ids; arrays in one shared window
per node. Every call is collective and agreed in C, so an error on one rank
is raised on every rank: its own exception there, RemoteRankError on the
others. mpi4py is imported by the first context, never by ``import pasha``.
"""

import functools
import inspect
import os
import sys
import warnings
from numbers import Integral
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from . import _pasha
from .context import (_ERR_SIZE, _PROCESSES, _SCHEDULES, _SERIAL, _THREADS, _PshContext,
                      _native_pointer)
from .functor import Functor

__all__ = ['MpiContext', 'RemoteRankError']


class RemoteRankError(RuntimeError):
    """A collective call failed on another rank: ``rank`` (the lowest
    failing one), ``type_name`` and ``message`` of its exception."""

    def __init__(self, rank: int, type_name: str, message: str):
        self.rank, self.type_name, self.message = rank, type_name, message
        super().__init__(f'rank {rank}: {type_name}: {message}')

    def __reduce__(self):
        return type(self), (self.rank, self.type_name, self.message)


_KINDS = {'serial': _SERIAL, 'threads': _THREADS, 'processes': _PROCESSES}
_DTYPES = {np.dtype(t): i for i, t in enumerate(
    'i1 u1 i2 u2 i4 u4 i8 u8 f4 f8 c8 c16'.split())}  # psh_dtype codes
_OPS = ('sum', 'min', 'max')
_KEPT = []  # arrays' memory still in use when their context closed


def rank_block(n: int, rank: int, size: int) -> Tuple[int, int]:
    """Items [lo, hi) of rank among size for n items (as the C library splits)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _describe(e):
    try:
        return type(e).__name__, str(e)
    except Exception:
        return type(e).__name__, '(the exception cannot be turned into a string)'


def _agreed(e):
    """Mark an exception every rank has raised already."""
    try:
        e._pasha_agreed = True
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
    """Arguments Python itself refuses on one rank (an unknown keyword, a
    missing one) are that rank's TypeError, and every rank's error."""
    sig = inspect.signature(method)

    @functools.wraps(method)
    def collective(self, *args, **kwargs):
        if getattr(self, '_ctx', None) is None:
            raise ValueError('the MPI context is closed')  # close() is collective
        try:
            sig.bind(self, *args, **kwargs)
        except TypeError as e:
            self._refused(TypeError(f'{method.__name__}(): {e}'))
        return method(self, *args, **kwargs)
    return collective


class MpiContext(_PshContext):
    """A map over the ranks of comm (MPI.COMM_WORLD by default; the context
    works on a duplicate). local: 'serial', 'threads' or 'processes' (fork
    per map); num_workers: per rank (libpasha's default if omitted);
    schedule, chunk, pin_cpus as for the local contexts. Collective."""

    def __init__(self, comm: Any = None, local: str = 'processes',
                 num_workers: Optional[int] = None, **local_options: Any):
        try:
            from mpi4py import MPI
            from . import _pasha_mpi
        except ImportError as e:
            raise ImportError('pasha.MpiContext needs mpi4py and an MPI build of pasha: pip '
                              "install './bindings/python[mpi]'") from e
        self._c, comm = _pasha_mpi, MPI.COMM_WORLD if comm is None else comm
        error, kind = None, -1
        try:
            if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
                bad, comm = comm, MPI.COMM_WORLD  # the others are most likely there
                raise TypeError(f'comm must be an mpi4py intracommunicator, not {type(bad).__name__}')
            if local not in _KINDS:
                raise ValueError(f"local must be 'serial', 'threads' or 'processes', not {local!r}")
            if local_options.pop('persistent', False):
                raise ValueError('an MPI context forks its local workers per map: persistent '
                                 'pools are not supported')
            self.schedule = local_options.pop('schedule', 'static')
            self.chunk = int(local_options.pop('chunk', 0))
            local_options.pop('pin_cpus', None)
            if local_options:
                raise TypeError(f'unexpected arguments {sorted(local_options)}')
            if self.schedule not in _SCHEDULES:
                raise ValueError(f'unknown schedule {self.schedule!r}')
            if num_workers is not None and (not isinstance(num_workers, Integral) or num_workers < 1):
                raise ValueError('num_workers must be a positive integer')
            workers = 1 if local == 'serial' else int(num_workers or _pasha.default_num_workers())
            _warn_if_bound(comm.Get_rank(), workers)
            kind = _KINDS[local]
        except Exception as e:  # every rank learns of it: C refuses local_kind -1
            error = e
        self._comm, self.persistent, self.local_kind = comm.Dup(), False, local
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        try:
            cap = _pasha_mpi.create(comm.py2f(), kind, 0 if error else workers)
        except Exception as e:
            self._raise(error, e, None)
        self._cap, self._ctx = cap, _pasha.Context._from_capsule(cap)
        self._kind = _PROCESSES if local == 'processes' else _THREADS
        self.node_rank, self.node_size, self._node_of = _pasha_mpi.node_info(cap)
        super(_PshContext, self).__init__(self._ctx.num_workers)
        self.local_workers = workers
        self.worker_base = int(np.sum(self._comm.allgather(workers)[:self.rank]))
        self._err = self._job = self._job_key = None
        self._job_len = self._serial = 0
        self._arrays = []  # (root array, node-shared) of each alloc, freed together

    def _raise(self, own, c_error, cap=0):
        """After a call failed on every rank: own exception on the rank whose
        error C spread, RemoteRankError naming it on the others."""
        first = self._c.failed_rank(self._cap if cap == 0 else cap) if cap is not None else \
            next((r for r, e in enumerate(self._comm.allgather(own is not None)) if e), -1)
        if first == -2:  # the ranks made different calls
            raise _agreed(RuntimeError(str(c_error))) from c_error
        if first < 0:  # they passed different values
            raise _agreed(c_error if isinstance(c_error, ValueError) else ValueError(str(c_error)))
        info = self._comm.bcast(_describe(own or c_error) if first == self.rank else None, root=first)
        if first == self.rank or (own is not None and own is not c_error):
            raise _agreed(own or c_error)  # every rank with an error of its own raises it
        raise _agreed(RemoteRankError(first, *info)) from c_error

    def _shares(self, functor):  # a split failing on one rank fails all
        try:
            return super()._shares(functor)
        except Exception as e:
            self._refused(e)

    def _refused(self, error):
        try:
            self._c.collect(self._cap, None, -1, 0)  # refused: every rank fails
        except Exception as e:
            self._raise(error, e)

    def _err_buffer(self):  # the workers' error slots: this rank's own memory
        if self._err is None:
            self._err = _pasha.alloc_bytes(None, _pasha.ERR_HEADER + self.num_workers * _ERR_SIZE)
        return self._err

    @_collective
    def alloc(self, shape: Union[int, Tuple[int, ...], None] = None, dtype: Any = None, *,
              order: Optional[str] = None, fill: Any = None, like: Any = None,
              per_worker: bool = False) -> np.ndarray:
        """MapContext.alloc, in one shared window per node (collective)."""
        error, code, rows, items, fill_value = None, 99, 0, 0, None
        try:
            shape, dtype, order = self._resolve_alloc(shape, dtype, order, like)
            if per_worker:
                shape = (self.num_workers,) + shape if order == 'C' else shape + (self.num_workers,)
            if order not in ('C', 'F'):
                raise ValueError(f"order must be 'C' or 'F', not {order!r}")
            dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
            if dtype.hasobject:
                raise TypeError(f'alloc: dtype {dtype} holds Python objects, which cannot be '
                                'shared between ranks; use a numeric dtype')
            if any(s < 0 for s in shape):
                raise ValueError('negative dimensions are not allowed')
            if fill is not None and not (np.isscalar(fill) and fill == 0):
                fill_value = np.broadcast_to(np.asarray(fill, dtype=dtype), shape)
            slow = shape[::-1] if order == 'F' else shape
            rows, items = (slow[0], int(np.prod(slow[1:], dtype=np.int64))) if shape else (1, 1)
            code = _DTYPES.get(dtype.newbyteorder('='), -1)
            items *= dtype.itemsize if code < 0 else 1
        except Exception as e:
            error = e
        try:
            raw = self._c.alloc(self._cap, code, rows, items)
        except Exception as e:
            self._raise(error, e)
        self._reclaim()  # every rank is here: the C call agreed
        described = f'shape {shape}, dtype {dtype}, order {order!r}'
        layouts = self._comm.allgather(described)
        if len(set(layouts)) > 1:  # the same bytes, not the same array
            raise _agreed(ValueError(f"the ranks disagree on the array's shape, dtype or order: "
                                     f'{_by_rank(layouts)}'))
        array = raw.reshape(-1).view(dtype).reshape(shape, order=order) if dtype.itemsize else \
            np.ndarray(shape, dtype, order=order)
        if fill_value is not None:
            array[...] = fill_value  # every rank the same values: no race that matters
            self._comm.Barrier()
        self._arrays.append(raw.base)  # the capsule: every view's base
        return array

    def _reclaim(self, everything=False):
        """Free together the arrays no rank uses any more (freeing a node
        window is collective); everything: keep the rest for good."""
        if self._arrays:
            used = np.array([sys.getrefcount(r) > 3 for r in self._arrays], np.int32)
            self._comm.Allreduce(self._MPI().IN_PLACE, used, op=self._MPI().MAX)
            _KEPT.extend(r for r, u in zip(self._arrays, used) if u and everything)
            self._arrays = [r for r, u in zip(self._arrays, used) if u and not everything]

    def _MPI(self):
        from mpi4py import MPI
        return MPI

    @_collective
    def map(self, function: Callable[..., Any], functor: Any, *,
            progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None, chunksize: Optional[int] = None) -> Any:
        """Apply function(worker_id, index, value) to every element, each rank
        its block, with global indices and worker ids (collective)."""
        error = None
        try:
            if _native_pointer(function) is not None:
                raise TypeError('MpiContext maps Python kernels; native kernels run on the C '
                                'MPI context (pasha_mpi.h)')
            if not callable(function):
                raise TypeError(f'the kernel must be callable, not {type(function).__name__}')
            functor = functor if isinstance(functor, Functor) else Functor.try_wrap(functor)
        except Exception as e:
            error = e
        if error is not None:
            self._refused(error)
        kwargs = {} if chunksize is None else {'chunksize': chunksize}
        try:
            mine = super().map(function, functor, progress=progress if progress is not True or
                               self.rank == 0 else False, **kwargs)
        except BaseException as e:  # KeyboardInterrupt too: the others learnt of it in C
            if getattr(e, '_pasha_agreed', False):
                raise
            self._raise(e, e)
        # the kernels' return values, each rank's block in turn (issue 22)
        return None if mine is None else [v for part in self._comm.allgather(mine) for v in part]

    def _collect(self, a, op, root, op_name=None):
        error, need_root = None, op != -2
        try:
            if op == 99:
                raise ValueError(f"op must be 'sum', 'min' or 'max', not {op_name!r}")
            if not isinstance(a, np.ndarray):
                raise TypeError(f'expected a numpy array, not {type(a).__name__}')
            if need_root and (not isinstance(root, Integral) or isinstance(root, bool) or
                              not 0 <= root < self.size):
                raise ValueError(f'root {root!r} is not a rank of the context (0..{self.size - 1})')
            if op in (1, 2) and a.dtype.kind == 'c':
                raise ValueError(f'{op_name} of complex numbers is not defined')
            if op >= 0 and _DTYPES.get(a.dtype.newbyteorder('=')) is None:
                raise TypeError(f'reduce: dtype {a.dtype} has no MPI type here (integers, '
                                'float32/64 and complex64/128 only)')
            if op < 0 and a.ndim == 0:
                raise ValueError('a 0-d array has no rows to gather')
            if op >= 0 and not (a.flags.c_contiguous or a.flags.f_contiguous):
                raise ValueError('reduce needs a C- or F-contiguous array (an array from alloc is)')
        except Exception as e:
            error = e
        try:
            if error is not None:
                return self._c.collect(self._cap, None, op, 0)
            if self._c.is_whole(a) and (op >= 0 or a.flags.c_contiguous):
                return self._c.collect(self._cap, a, op, int(root))
            # a private array (or an F-order one, gathered along its first axis): a copy
            flat = a.reshape(-1, order='A') if op >= 0 else a
            rows = 1 if op >= 0 else a.shape[0]
            code = _DTYPES.get(a.dtype.newbyteorder('='), -1)
            items = flat.size // max(rows, 1) * (a.itemsize if code < 0 else 1)
            tmp = self._c.alloc(None, code, rows, items) if rows else None
            if tmp is None:
                return self._c.collect(self._cap, self._c.alloc(None, code, 0, 0), op, int(root))
            view = tmp.view(a.dtype).reshape(flat.shape if op >= 0 else a.shape)
            view[...] = flat
            self._c.collect(self._cap, tmp, op, int(root))
            if op == -2 or self.rank == root:
                flat[...] = view
        except Exception as e:
            self._raise(error, e)

    @_collective
    def gather(self, array: np.ndarray, root: int = 0) -> None:
        """After a map in which each rank wrote its block of the array's first
        axis, every block on root (for an array of this context: in root's
        node buffer). Collective."""
        self._collect(array, -1, root)

    @_collective
    def allgather(self, array: np.ndarray) -> None:
        """gather onto every rank (every node's buffer)."""
        self._collect(array, -2, 0)

    @_collective
    def reduce(self, array: np.ndarray, op: str = 'sum', root: int = 0) -> None:
        """Combine the array element-wise onto root ('sum', 'min' or 'max';
        collective): an array of this context once per node, any other once
        per rank."""
        self._collect(array, _OPS.index(op) if op in _OPS else 99, root, op)

    def close(self) -> None:
        """Free the context and the windows no array uses (collective)."""
        if getattr(self, '_ctx', None) is not None:
            self._reclaim(everything=True)
            self._ctx = self._cap = None
            self._comm.Free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f'<MpiContext rank {self.rank} of {self.size}, local {self.local_kind!r} '
                f'x {self.local_workers}, {self.num_workers} workers>')


def _warn_if_bound(rank, workers):
    """mpirun binds each rank to one core by default: the workers take turns."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 0
    if 0 < cpus < workers:
        warnings.warn(
            f'MpiContext: rank {rank} has {workers} local workers but may run on {cpus} '
            f'CPU{"s" if cpus > 1 else ""} only (its affinity mask), so they take turns. Start the '
            'ranks with mpirun --bind-to none, or give each rank its CPUs (mpirun --map-by '
            'slot:PE=N, srun --cpus-per-task=N)', RuntimeWarning, stacklevel=3)
