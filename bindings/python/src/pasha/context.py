# SPDX-License-Identifier: BSD-3-Clause
"""Map contexts: how a map runs (serially, on threads or on processes).

Every context is a libpasha ``psh_context``; arrays from ``alloc`` are
numpy views of libpasha shared-memory arrays, and ``map`` dispatches one
Python call per share through ``psh_map_blocks``.
"""

import ctypes
import io
import pickle
import struct
import threading
from numbers import Integral

import numpy as np

from . import _pasha
from .functor import Functor

__all__ = ['MapContext', 'SerialContext', 'ThreadContext', 'ProcessContext',
           'WorkerError']

_SERIAL, _THREADS, _PROCESSES = 0, 1, 2
_SCHEDULES = {'static': 0, 'dynamic': 1, 'guided': 2}
_MODE_INPROC, _MODE_FORK, _MODE_POOL = 0, 1, 2
_ERR_SIZE = 1 << 16  # bytes per worker for a pickled exception


class WorkerError(RuntimeError):
    """A worker process died (signal or exit) or the map failed in libpasha."""


def _array_root(a):
    """The uint8 ndarray made by _pasha.alloc_bytes under `a`, or None."""
    while isinstance(a, np.ndarray):
        b = a.base
        if type(b).__name__ == 'PyCapsule':
            return a
        a = b
    return None


def _rebuild_array(addr, nbytes, dtype, shape, strides, offset):
    buf = _pasha.from_address(addr, nbytes)
    return np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset, strides=strides)


class _JobPickler(pickle.Pickler):
    """Pickles arrays in libpasha shared memory by address: the pool's
    workers see that memory live, so they write into the caller's array."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            root = _array_root(obj)
            if root is not None:
                base = root.ctypes.data
                return _rebuild_array, (base, root.nbytes, obj.dtype, obj.shape,
                                        obj.strides, obj.ctypes.data - base)
        return NotImplemented


class _Stopped(BaseException):
    """Raised asynchronously in the other worker threads when one fails."""


def _async_raise(ident, exc_type):
    obj = ctypes.py_object(exc_type) if exc_type is not None else ctypes.c_void_p(None)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), obj)


def _pickle_exception(exc):
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:
        data = pickle.dumps(RuntimeError(f'{type(exc).__name__}: {exc}'))
    return data


def _store_exception(err, exc):
    data = _pickle_exception(exc)
    if len(data) + 8 > len(err):
        data = pickle.dumps(RuntimeError(f'{type(exc).__name__}: {str(exc)[:1000]}'))
    err[8:8 + len(data)] = data
    err[:8] = struct.pack('<Q', len(data))


def _load_exception(err):
    (n,) = struct.unpack('<Q', bytes(err[:8]))
    if n == 0 or n + 8 > len(err):
        return None
    return pickle.loads(bytes(err[8:8 + n]))


def _pool_entry(job, err, share_index, worker_id):
    """Runs one share inside a persistent-pool worker."""
    try:
        function, functor, shares, run_worker = pickle.loads(job)
        run_worker(function, functor, shares[share_index], worker_id)
    except BaseException as e:  # noqa: B902 - passed back to the caller
        _store_exception(err, e)
        return 1
    return 0


_pasha.set_pool_entry(_pool_entry)


def _native_pointer(function):
    """The address of a native kernel, or None for a Python callable."""
    if isinstance(function, ctypes._CFuncPtr):
        return ctypes.cast(function, ctypes.c_void_p).value
    address = getattr(function, 'address', None)  # numba cfunc
    if isinstance(address, int) and hasattr(function, 'native_name'):
        return address
    try:  # cffi function pointer
        import cffi  # noqa: F401
        ffi = cffi.FFI()
        if isinstance(function, ffi.CData):
            return int(ffi.cast('uintptr_t', function))
    except ImportError:
        pass
    return None


class MapContext:
    """Context to execute map operations (the base of all contexts).

    Args:
        num_workers (int): Number of workers of this context.
    """

    def __init__(self, num_workers):
        self.num_workers = num_workers

    @staticmethod
    def _resolve_alloc(shape, dtype, order, like):
        """Fill in shape, dtype and order for alloc from `like` or defaults."""
        if like is not None:
            shape = shape if shape is not None else like.shape
            dtype = dtype if dtype is not None else like.dtype
            if order is None:
                flags = getattr(like, 'flags', None)
                if flags is not None and flags.c_contiguous:
                    order = 'C'
                elif flags is not None and flags.f_contiguous:
                    order = 'F'
                else:
                    order = 'C'
        elif shape is None:
            raise ValueError('array shape must be specified')
        else:
            dtype = dtype if dtype is not None else np.float64
            order = order if order is not None else 'C'
        if isinstance(shape, Integral):
            shape = (shape,)
        elif not isinstance(shape, tuple):
            shape = tuple(shape)
        return shape, dtype, order

    def _alloc(self, shape, dtype, order, fill):
        """Allocate the array in libpasha shared memory (a zero-copy view)."""
        if order not in ('C', 'F'):
            raise ValueError(f"order must be 'C' or 'F', not {order!r}")
        dtype = np.dtype(dtype)
        count = 1
        for s in shape:
            if int(s) < 0:
                raise ValueError('negative dimensions are not allowed')
            count *= int(s)
        raw = _pasha.alloc_bytes(getattr(self, '_ctx', None), count * dtype.itemsize)
        array = raw.view(dtype).reshape(shape, order=order) if dtype.itemsize else \
            np.ndarray(shape, dtype, order=order)
        if fill is not None and not (np.isscalar(fill) and fill == 0):
            array[...] = fill
        return array

    def alloc(self, shape=None, dtype=None, *, order=None, fill=None, like=None,
              per_worker=False):
        """Allocate an array shared with all workers of this context.

        Args:
            shape (int or tuple of ints, optional): Shape of the array.
            dtype (DTypeLike, optional): Data type, float64 by default.
            order ('C' or 'F', optional): Memory order, 'C' by default.
            fill (Scalar or ArrayLike, optional): Initial value; the memory
                is zero-filled when omitted.
            like (ArrayLike): Array to copy shape, dtype and order from.
            per_worker (bool, optional): Add an axis of num_workers, first
                in C order, last in F order.

        Returns:
            (numpy.ndarray) A view of a libpasha shared-memory array.
        """
        shape, dtype, order = self._resolve_alloc(shape, dtype, order, like)
        if per_worker:
            if order == 'C':
                shape = (self.num_workers,) + shape
            elif order == 'F':
                shape = shape + (self.num_workers,)
        return self._alloc(shape, dtype, order, fill)

    @staticmethod
    def run_worker(function, functor, share, worker_id):
        """Call function(worker_id, *entry) for each entry of functor.iterate(share)."""
        for entry in functor.iterate(share):
            function(worker_id, *entry)

    def map(self, function, functor, *, progress=False, user_data=None):
        """Apply function to every element of functor.

        Args:
            function (Callable or native kernel): Called as
                function(worker_id, index, value, ...), or a ctypes/cffi
                function pointer or numba cfunc with the signature
                int(void *, int, size_t, const void *) run without the GIL.
            functor (Functor or Any): What to map over.
            progress (bool or Callable): True: a tqdm bar (a printed line
                without tqdm); a callable: called as progress(done, total)
                with the number of shares finished.
            user_data (int or ndarray, optional): native kernels only: the
                user_data pointer (an address, or an array's data pointer).
        """
        raise NotImplementedError('map')


class _PshContext(MapContext):
    """A context backed by a libpasha psh_context."""

    _kind = _SERIAL

    def __init__(self, num_workers=None, *, persistent=False, schedule='static', chunk=0,
                 pin_cpus=False):
        if schedule not in _SCHEDULES:
            raise ValueError(f'unknown schedule {schedule!r}')
        if num_workers is not None and (not isinstance(num_workers, Integral) or
                                        num_workers < 1):
            raise ValueError('num_workers must be a positive integer')
        self.schedule = schedule
        self.chunk = int(chunk)
        self.persistent = bool(persistent)
        self._ctx = _pasha.Context(self._kind, int(num_workers or 0), self.persistent,
                                   _SCHEDULES[schedule], self.chunk, bool(pin_cpus))
        super().__init__(self._ctx.num_workers)
        self._err = None
        self._job = None

    def _err_buffer(self):
        if self._err is None:
            self._err = _pasha.alloc_bytes(self._ctx, self.num_workers * _ERR_SIZE)
        return self._err

    def _shares(self, functor):
        n = self.num_workers
        if self.schedule != 'static':
            n = n * 4
        return list(functor.split(n))

    def map(self, function, functor, *, progress=False, user_data=None):
        native = _native_pointer(function)
        functor = Functor.try_wrap(functor) if not (native and isinstance(functor, np.ndarray)) \
            else functor
        progress_cb, done_cb = _make_progress(progress)
        try:
            if native is not None:
                status, message = self._map_native(native, functor, user_data)
            else:
                status, message = self._map_python(function, functor, progress_cb)
        finally:
            if done_cb is not None:
                done_cb()
        if status == _pasha.OK:
            return
        if status == _pasha.ECANCELED:
            raise KeyboardInterrupt
        raise WorkerError(message)

    def _map_native(self, address, functor, user_data):
        from .functor import NdarrayFunctor, SequenceFunctor
        if isinstance(user_data, np.ndarray):
            ud = user_data.ctypes.data
        else:
            ud = int(user_data or 0)
        if isinstance(functor, NdarrayFunctor):
            functor = np.asarray(functor.sequence)
        if isinstance(functor, np.ndarray):
            if self.persistent and _array_root(functor) is None:
                # Pool workers do not see memory made after their fork.
                copy = self._alloc(functor.shape, functor.dtype, 'C', None)
                copy[...] = functor
                functor = copy
            return self._ctx.map_native(address, ud, 0, functor, 0)
        if isinstance(functor, SequenceFunctor):
            return self._ctx.map_native(address, ud, len(functor.sequence), None, 0)
        raise ValueError('native kernels map over ndarrays and sequences only')

    def _map_python(self, function, functor, progress_cb):
        shares = self._shares(functor)
        schedule = 0 if self.schedule == 'static' else _SCHEDULES[self.schedule]
        chunk = 0 if self.schedule == 'static' else 1
        run_worker = self.run_worker
        if self._kind != _PROCESSES:
            errors = {}
            running = {}

            def runner(i, w):
                running[w] = threading.get_ident()
                try:
                    run_worker(function, functor, shares[i], w)
                except _Stopped:
                    return 1
                except BaseException as e:  # noqa: B902 - re-raised below
                    errors[i] = e
                    # Stop the other threads now (a share can be long).
                    me = threading.get_ident()
                    for ident in list(running.values()):
                        if ident != me:
                            _async_raise(ident, _Stopped)
                    return 1
                finally:
                    running.pop(w, None)
                return 0

            idents = set()
            track = runner

            def runner(i, w):
                idents.add(threading.get_ident())
                return track(i, w)

            try:
                status, message = self._ctx.map_blocks(len(shares), runner, _MODE_INPROC, None,
                                                       None, 0, schedule, chunk, progress_cb)
            finally:
                if errors:  # drop stop requests that arrived after a share ended
                    for ident in idents:
                        _async_raise(ident, None)
            if errors:
                raise errors[min(errors)]
            return status, message

        err = self._err_buffer()
        err.reshape(self.num_workers, _ERR_SIZE)[:, :8] = 0
        if self.persistent:
            buf = io.BytesIO()
            _JobPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(
                (function, functor, shares, run_worker))
            data = buf.getbuffer()
            if self._job is None or len(self._job) < len(data):
                self._job = _pasha.alloc_bytes(self._ctx, max(len(data), 1 << 16) * 2)
            self._job[:len(data)] = np.frombuffer(data, np.uint8)
            job = self._job[:len(data)]
            status, message = self._ctx.map_blocks(len(shares), None, _MODE_POOL, job, err,
                                                   _ERR_SIZE, schedule, chunk, progress_cb)
        else:
            def runner(i, w):
                try:
                    run_worker(function, functor, shares[i], w)
                except BaseException as e:  # noqa: B902 - passed back to the caller
                    _store_exception(memoryview(err)[w * _ERR_SIZE:(w + 1) * _ERR_SIZE], e)
                    return 1
                return 0

            status, message = self._ctx.map_blocks(len(shares), runner, _MODE_FORK, None, None,
                                                   0, schedule, chunk, progress_cb)
        if status != _pasha.OK:
            for w in range(self.num_workers):
                exc = _load_exception(memoryview(err)[w * _ERR_SIZE:(w + 1) * _ERR_SIZE])
                if exc is not None:
                    raise exc
        return status, message


def _make_progress(progress):
    """(callback for libpasha, finaliser) for map's progress argument."""
    if not progress:
        return None, None
    if callable(progress):
        return progress, None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    state = {}

    def cb(done, total):
        if tqdm is None:
            print(f'\rpasha: {done}/{total} shares', end='', flush=True)
            state['printed'] = True
            return
        bar = state.get('bar')
        if bar is None:
            bar = state['bar'] = tqdm(total=total, unit='share')
        bar.update(done - bar.n)

    def finish():
        if 'bar' in state:
            state['bar'].close()
        elif state.get('printed'):
            print()

    return cb, finish


class SerialContext(_PshContext):
    """Serial map context: runs the map in the calling thread (one worker)."""

    _kind = _SERIAL

    def __init__(self, num_workers=None, **kwargs):
        super().__init__(1, **kwargs)


class ThreadContext(_PshContext):
    """Map context on libpasha's thread pool.

    Args:
        num_workers (int, optional): Number of threads, libpasha's default
            (PASHA_NUM_WORKERS or the CPUs available) if omitted.
        schedule ('static', 'dynamic' or 'guided'): How shares are handed out.
    """

    _kind = _THREADS


class ProcessContext(_PshContext):
    """Map context on forked processes (libpasha's fork per map).

    Args:
        num_workers (int, optional): Number of processes, libpasha's default
            if omitted.
        persistent (bool): Fork the workers once, now, and reuse them; the
            kernel, functor and shares are pickled for every map (arrays
            from alloc travel by reference, functions by name: the workers
            see module globals as they were when the context was made).
        schedule ('static', 'dynamic' or 'guided'): How shares are handed out.
    """

    _kind = _PROCESSES
