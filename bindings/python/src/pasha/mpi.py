# SPDX-License-Identifier: BSD-3-Clause
"""MpiContext: a map over the ranks of an MPI communicator (mpi4py) that drives libpasha's C MPI context
(pasha_mpi.h, in pasha._pasha_mpi on pasha._pasha's engine); here: argument handling and numpy views."""

import functools
import inspect
import os
import warnings
import zlib
from numbers import Integral
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from . import _pasha
from .context import (_ERR_HEADER, _ERR_SIZE, _PROCESSES, _SCHEDULES, _SERIAL, _THREADS, MapContext,
                      _PshContext, _functor_length, _itemwise, _native_pointer)
from .functor import ExtraDataFunctor, Functor, SequenceFunctor, gen_split_slices

__all__ = ['MpiContext', 'RemoteRankError']
_KINDS = {'serial': _SERIAL, 'threads': _THREADS, 'processes': _PROCESSES}
_KEPT = []  # node buffers still used by arrays when their context closed (valid until MPI ends)


class _RankAligned(Functor):  # a functor whose shares are slices of items, split in each rank's block
    def __init__(self, functor, size):  # (n_trains: the number of items, as _functor_length reads it)
        self.functor, self.size, self.n_trains = functor, size, _functor_length(functor)

    def split(self, parts):  # the same number of shares for every rank: C gives rank r its block
        blocks = [rank_block(self.n_trains, r, self.size) for r in range(self.size)]
        return [slice(lo + s.start, lo + s.stop) for lo, hi in blocks
                for s in gen_split_slices(hi - lo, n_parts=-(-parts // self.size))]

    def iterate(self, share): return self.functor.iterate(share)  # noqa: E704


class RemoteRankError(RuntimeError):
    """A collective call failed on another rank: ``rank`` (the lowest failing one), ``type_name``, ``message``
    and (None where not applicable) ``worker_id``, ``index`` (global), ``signal``, ``exit_status`` there."""

    def __init__(self, rank: int, type_name: str, message: str, *where: Optional[int]):
        super().__init__(f'rank {rank}: {type_name}: {message}')
        self.rank, self.type_name, self.message = rank, type_name, message
        self._where = (where + (None,) * 4)[:4]
        self.worker_id, self.index, self.signal, self.exit_status = self._where

    def __reduce__(self):
        return type(self), (self.rank, self.type_name, self.message) + self._where


def rank_block(n: int, rank: int, size: int) -> Tuple[int, int]:
    """Items [lo, hi) of rank among size for n items, as the C context splits them."""
    lo = rank * (n // size) + min(rank, n % size)
    return lo, lo + n // size + int(rank < n % size)


def _collective(method):  # a collective call: an error raised on one rank is raised on every rank
    sig = inspect.signature(method)

    @functools.wraps(method)
    def collective(self, *args, **kwargs):
        calls, self._shown = self._c.state(self._cap)[0], []  # (a closed context raises here)
        try:
            try:
                sig.bind(self, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f'{method.__name__}(): {e}') from None
            return method(self, *args, **kwargs)
        except BaseException as e:  # KeyboardInterrupt too: every rank raises what fail says
            self._c.fail(self._cap, e, calls, self._shown, RemoteRankError)
    return collective


class MpiContext(_PshContext):
    """A map over the ranks of comm (mpi4py, COMM_WORLD by default), each rank its block of the items on
    a local context, local 'serial', 'threads' or 'processes' (fork per map), of num_workers workers
    (libpasha's default if omitted); kernels see global indices and worker ids. Collective, as every call."""

    def __init__(self, comm: Any = None, local: str = 'processes', num_workers: Optional[int] = None, *,
                 schedule: str = 'static', chunk: int = 0, **local_options: Any):
        try:
            from mpi4py import MPI
            from . import _pasha_mpi
        except ImportError as e:
            raise ImportError("pasha.MpiContext needs mpi4py and pasha built with an MPI C library: "
                              "pip install mpi4py './bindings/python[mpi]'") from e
        self._c, self._ctx, self._cap, self._arrays, error, workers = _pasha_mpi, None, None, [], None, 0
        comm = MPI.COMM_WORLD if comm is None else comm
        try:
            if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
                bad, comm = comm, MPI.COMM_WORLD  # the other ranks are most likely there
                raise TypeError(f'comm must be an mpi4py intracommunicator, not {type(bad).__name__}')
            if local not in _KINDS or schedule not in _SCHEDULES:
                raise ValueError(f"local must be 'serial', 'threads' or 'processes', not {local!r}" if local
                                 not in _KINDS else f'unknown schedule {schedule!r}')
            if local_options.pop('persistent', False):
                raise ValueError('an MPI context forks its local workers per map: no persistent pools')
            if set(local_options) - {'pin_cpus'}:
                raise TypeError(f'MpiContext: unexpected arguments {sorted(local_options)}')
            for name, v, least in (('num_workers', num_workers, 1), ('chunk', chunk, 0)):
                if v is not None and (isinstance(v, bool) or not isinstance(v, Integral) or v < least):
                    raise ValueError(f'{name} must be an integer >= {least}, not {v!r}')
            workers = 1 if local == 'serial' else int(num_workers or _pasha.cpu_count())
            if 0 < (cpus := len(os.sched_getaffinity(0))) < workers:  # mpirun binds each rank to a core
                warnings.warn(f'MpiContext: rank {comm.Get_rank()} has {workers} local workers but may '
                              f'run on {cpus} CPU{"s" if cpus > 1 else ""} only (its affinity mask), so they '
                              'take turns: ask for fewer, or give each rank more CPUs (mpirun --bind-to none, '
                              '--map-by slot:PE=N; srun --cpus-per-task=N)', RuntimeWarning, 2)
        except Exception as e:  # every rank learns of it: C refuses local kind -1
            error = e
        cap = _pasha_mpi.create(comm.py2f(), -1 if error else _KINDS[local], workers, _SCHEDULES.get(schedule, 0),
                                0 if error else chunk, bool(local_options.get('pin_cpus')), error, RemoteRankError)
        self._cap, self.local_kind, self.local_workers, self._kind = cap, local, workers, _KINDS[local]
        self._setup(_pasha.Context._from_capsule(cap), False, schedule, chunk)
        self.rank, self.size, self.node_rank, self.node_size, self._node_of, self.worker_base = \
            _pasha_mpi.info(cap, workers)

    def _err_buffer(self):  # the workers' error slots: this rank's own memory
        if self._err is None:
            self._err = _pasha.alloc_bytes(None, _ERR_HEADER + self.num_workers * _ERR_SIZE)
        return self._err

    @_collective
    def alloc(self, shape: Union[int, Tuple[int, ...], None] = None, dtype: Any = None, *,
              order: Optional[str] = None, fill: Any = None, like: Any = None,
              per_worker: bool = False) -> np.ndarray:
        """MapContext.alloc, in one shared buffer per node for all its ranks and workers."""
        shape, dtype, order = self._resolve_alloc(shape, dtype, order, like)
        if per_worker:  # an axis of all ranks' workers
            shape = (self.num_workers,) + shape if order == 'C' else shape + (self.num_workers,)
        dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
        filler = None if fill is None or (np.isscalar(fill) and fill == 0) else \
            np.broadcast_to(np.asarray(fill, dtype=dtype), shape)  # checked before any rank allocates
        described = f'shape {shape}, dtype {dtype}, order {order!r}, fill ' + ('0' if filler is None else repr(
            fill)[:60] if np.isscalar(fill) else f'crc32 {zlib.crc32(np.asarray(fill, dtype).tobytes()):08x}')
        self._shown = [("the array's size", f'{int(np.prod(shape, dtype=object)) * dtype.itemsize} bytes'),
                       ("the array's shape, dtype, order or fill", described)]
        array = self._c.alloc(self._cap, shape, dtype, order)  # checks the rest
        self._arrays = self._c.reclaim(self._cap, self._arrays, None)  # the buffers no rank uses go
        if len(set(self._c.exchange(self._cap, described))) > 1:  # the same bytes, not the same array
            del array  # freed together; _pasha_mpi.fail names each rank's layout
            raise ValueError(described)
        if filler is not None:
            array[...] = filler  # every rank of a node writes the same values
            self._c.exchange(self._cap, None)  # ... before any rank reads them
        self._arrays.append(array.base)  # the capsule that frees the psh array
        return array

    @_collective
    def map(self, function: Callable[..., Any], functor: Any, chunksize: Optional[int] = None, *,
            progress: Union[bool, Callable[[int, int], Any]] = False, user_data: Any = None) -> list:
        """MapContext.map: the kernel's values in global item order, on every rank."""
        if _native_pointer(function) is not None:  # (ctypes, cffi, numba): the C map, statuses, no values
            self._shown = [('the number of items', len(functor) if hasattr(functor, '__len__') else None)]
            return super().map(function, functor, chunksize, user_data=user_data)
        if not callable(function):
            raise TypeError(f'MpiContext maps Python or native kernels, not {type(function).__name__}')
        functor = functor if isinstance(functor, Functor) else Functor.try_wrap(functor)
        self._shown = [('the number of items', _functor_length(functor))]
        itemwise = _itemwise(type(functor)) and type(self).run_worker is MapContext.run_worker
        if not itemwise and type(functor).split in (SequenceFunctor.split, ExtraDataFunctor.split):
            functor = _RankAligned(functor, self.size)  # (gather's blocks are rank blocks of the items)
        self._mapped = False
        try:
            values = super().map(function, functor, chunksize, progress=progress if progress is not True or
                                 self.rank == 0 else False)  # (one progress bar)
        except Exception as e:  # after the C map succeeded (a post_map hook): values agrees on it
            if not self._mapped:
                raise
            values = e
        return self._c.values(self._cap, values, itemwise, RemoteRankError)  # every rank's, in order

    def _map_python(self, *args):
        values = super()._map_python(*args)
        self._mapped = True
        return values

    def _worker_rows(self, acc):  # a per_worker array's rows of other nodes' workers into this node's buffer
        if len(set(self._node_of)) > 1:  # (hooks: with_reduction; collective, inside map)
            rows = np.ascontiguousarray(acc[self.worker_base:self.worker_base + self.local_workers])
            for (node, lo, theirs) in self._c.exchange(self._cap, (self._node_of[self.rank], self.worker_base, rows)):
                if node != self._node_of[self.rank]:
                    acc[lo:lo + len(theirs)] = theirs  # every rank of a node writes the same values ...
            self._c.exchange(self._cap, None)  # ... before any rank reads them

    def _collect(self, a, op, root, op_name=None):
        if isinstance(a, np.ndarray):  # what each rank passed, named if they disagree
            self._shown = [("the array's shape, dtype or order", f"shape {a.shape}, dtype {a.dtype}, order "
                            f"{'C' if a.flags.c_contiguous else 'F'!r}"),
                           ('the op', repr(op_name)), ('the root', root)]
        self._c.collect(self._cap, a, op, root, op_name)  # checks the rest

    @_collective
    def gather(self, array: np.ndarray, root: int = 0) -> None:
        """Every rank's block of the array's first axis (as a map writes it) onto root's node."""
        self._collect(array, -1, root)

    @_collective
    def allgather(self, array: np.ndarray) -> None:
        """gather onto every rank."""
        self._collect(array, -2, 0)

    @_collective
    def reduce(self, array: np.ndarray, op: str = 'sum', root: int = 0) -> None:
        """op ('sum', 'min', 'max') element-wise onto root: once per node for an array of alloc."""
        self._collect(array, ('sum', 'min', 'max').index(op) if op in ('sum', 'min', 'max') else 99, root, op)

    def close(self) -> None:
        """Free the context and unused buffers (others stay until MPI_Finalize, before which to call it)."""
        if self._ctx is not None:
            self._arrays = self._c.reclaim(self._cap, self._arrays, _KEPT)  # the used ones: for good
            self._ctx = self._cap = None

    def __enter__(self): return self  # noqa: E704

    def __exit__(self, *exc): self.close()  # noqa: E704

    def __repr__(self):
        return (f'<MpiContext rank {self.rank} of {self.size}, local {self.local_kind!r} x '
                f'{self.local_workers}, {self.num_workers} workers>')

