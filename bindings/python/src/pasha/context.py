# SPDX-License-Identifier: BSD-3-Clause
"""Map contexts: how a map runs (serially, on threads or on processes).

Every context is a libpasha ``psh_context``; arrays from ``alloc`` are
numpy views of libpasha shared-memory arrays, and ``map`` dispatches one
Python call per share through ``psh_map_blocks``.
"""

import ctypes
import functools
import io
import marshal
import pickle
import re
import struct
import sys
import traceback
import types
import warnings
from numbers import Integral
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from . import _pasha
from .functor import Functor, NdarrayFunctor, SequenceFunctor

try:
    import cloudpickle as _cloudpickle
    _Pickler = _cloudpickle.CloudPickler
except ImportError:  # pragma: no cover - cloudpickle is a dependency
    _cloudpickle = None
    _Pickler = pickle.Pickler

__all__ = ['MapContext', 'SerialContext', 'ThreadContext', 'ProcessContext',
           'WorkerError']

_SERIAL, _THREADS, _PROCESSES = 0, 1, 2
_SCHEDULES = {'static': 0, 'dynamic': 1, 'guided': 2}
_SCHEDULE_CONTEXT = -1
_MODE_INPROC, _MODE_FORK, _MODE_POOL = 0, 1, 2
_ERR_SIZE = 1 << 16  # bytes per worker for a pickled exception
_ERR_HEADER = _pasha.ERR_HEADER
# An ordinary ndarray at least this large reaching a pool map by value is
# copied once into shared memory for the map instead of being pickled.
_BIG_ARRAY = 1 << 20


class WorkerError(RuntimeError):
    """A worker process died (signal or exit) or the map failed in libpasha."""


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (as
    concurrent.futures attaches it: the __cause__ of the re-raised one)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


def _array_root(a):
    """(address, nbytes, offset) of the live libpasha array holding ndarray
    a's memory, or None: by address range, whatever a's base objects are."""
    if not isinstance(a, np.ndarray):
        return None
    return _pasha.find_region(a)


def _rebuild_array(addr, nbytes, dtype, shape, strides, offset):
    buf = _pasha.from_address(addr, nbytes)
    a = np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset, strides=strides)
    _worker_shared[id(a)] = a
    return a


_warned_big = False


# The set of modules cloudpickle was told to pickle by value
# (cloudpickle.register_pickle_by_value), or None when this cloudpickle
# keeps it elsewhere: then no by-reference decision is cached.
_BY_VALUE_MODULES = None
if _cloudpickle is not None:
    for _name in ('cloudpickle.cloudpickle', 'cloudpickle'):
        _BY_VALUE_MODULES = getattr(sys.modules.get(_name), '_PICKLE_BY_VALUE_MODULES', None)
        if isinstance(_BY_VALUE_MODULES, set):
            break
        _BY_VALUE_MODULES = None

# Caches of the pool's pickling, bounded (cleared when full); each holds
# its objects, so an id is not reused while cached.
_CACHE_MAX = 512
# Functions and classes cloudpickle pickles by reference (importable by
# module and name): id -> (object, module name, name). A hit is checked as
# cloudpickle checks (the module's attribute of that name is the object,
# no module is registered to be pickled by value), in a few lookups.
_by_reference = {}
# Code objects (immutable) -> their marshal bytes, in the caller ...
_code_bytes = {}
# ... and marshal bytes -> code object, in a pool worker.
_code_objects = {}
_CodeType = types.CodeType
_FunctionType = types.FunctionType
_parent_override = getattr(_Pickler, 'reducer_override', None)


def _load_code(data):
    """In a pool worker: the code object of marshal bytes (cached: code
    objects are immutable, so one is shared by every map that ships it)."""
    code = _code_objects.get(data)
    if code is None:
        if len(_code_objects) >= _CACHE_MAX:
            _code_objects.clear()
        code = _code_objects[data] = marshal.loads(data)
    return code


def _rebuild_small(data, dtype, shape, order):
    """In a pool worker: a writable copy of a small ordinary array."""
    return np.frombuffer(data, dtype).reshape(shape, order=order)


class _JobPickler(_Pickler):
    """Pickles a pool job with cloudpickle (closures, lambdas, functions
    defined after the pool was made). Arrays in libpasha shared memory
    travel by address: the workers see that memory live. A large ordinary
    array is copied once into shared memory for this map.

    Every map pickles its job afresh (global values, closure cells,
    defaults and arrays may change between maps); what cannot change is
    cached: the marshal bytes of code objects (immutable), and which
    functions and classes are pickled by reference."""

    def __init__(self, file, ctx, temps):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._ctx = ctx
        self._temps = temps
        self._copies = {}

    def reducer_override(self, obj):
        t = type(obj)
        if t is _FunctionType or issubclass(t, type):
            if _parent_override is None:
                return NotImplemented
            entry = _by_reference.get(id(obj))
            if entry is not None and entry[0] is obj and not _BY_VALUE_MODULES and \
                    getattr(sys.modules.get(entry[1]), entry[2], None) is obj and \
                    getattr(obj, '__module__', None) == entry[1]:
                return NotImplemented  # as cloudpickle would decide again
            r = _parent_override(self, obj)
            if r is NotImplemented and _BY_VALUE_MODULES is not None:
                module = getattr(obj, '__module__', None)
                name = getattr(obj, '__qualname__', None)
                if isinstance(module, str) and isinstance(name, str) and '.' not in name:
                    if len(_by_reference) >= _CACHE_MAX:
                        _by_reference.clear()
                    _by_reference[id(obj)] = (obj, module, name)
            return r
        if t is _CodeType:
            entry = _code_bytes.get(id(obj))
            if entry is None or entry[0] is not obj:
                try:
                    data = marshal.dumps(obj)
                except ValueError:  # a constant marshal cannot write: cloudpickle's way
                    return NotImplemented
                if len(_code_bytes) >= _CACHE_MAX:
                    _code_bytes.clear()
                entry = _code_bytes[id(obj)] = (obj, data)
            return _load_code, (entry[1],)
        if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
            region = _pasha.find_region(obj)
            if region is None and obj.nbytes >= _BIG_ARRAY:
                copy = self._copies.get(id(obj))
                if copy is None:
                    copy = self._ctx._alloc(obj.shape, obj.dtype, 'C', None)
                    copy[...] = obj
                    self._copies[id(obj)] = copy
                    self._temps.append((obj, copy))
                    _warn_big_copy(obj)
                obj = copy
                region = _pasha.find_region(obj)
            dt = obj.dtype
            plain = dt.kind in 'biufc' and dt.isnative  # dt.str names it exactly
            if region is not None:
                return _rebuild_array, (region[0], region[1], dt.str if plain else dt,
                                        obj.shape, obj.strides, region[2])
            if t is np.ndarray and obj.size and plain:
                # Its bytes, the dtype as a string: cheaper both ways than
                # numpy's own reduction (the dtype object, _reconstruct).
                if obj.flags.c_contiguous:
                    return _rebuild_small, (bytearray(obj.data), dt.str, obj.shape, 'C')
                if obj.flags.f_contiguous:
                    return _rebuild_small, (bytearray(obj.T.data), dt.str, obj.shape, 'F')
        # Anything else: cloudpickle's override handles classes and
        # functions only (above), so pickle's own reduction follows.
        return NotImplemented


def _warn_big_copy(obj):
    global _warned_big
    if _warned_big:
        return
    _warned_big = True
    warnings.warn(
        f'pasha: an ordinary numpy array of {obj.nbytes} bytes {obj.shape} reaches a pool '
        'map by value: it is copied into shared memory for every map. Allocate it with '
        'psh.alloc (or ctx.alloc) to share it without a copy.', ResourceWarning, stacklevel=5)


def _pickle_exception(exc, tb, index):
    dumps = _cloudpickle.dumps if _cloudpickle is not None else pickle.dumps
    try:
        data = dumps((exc, tb, index))
        pickle.loads(data)
    except Exception:
        data = pickle.dumps((RuntimeError(f'{type(exc).__name__}: {exc}'), tb, index))
    return data


def _store_exception(slot, exc, index):
    """In a worker process: pickle exc (and its traceback text) into slot."""
    tb = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    data = _pickle_exception(exc, tb, index)
    room = len(slot) - 16
    if len(data) > room:
        data = pickle.dumps((RuntimeError(f'{type(exc).__name__}: {str(exc)[:1000]}'),
                             tb[-(room // 2):], index))
    slot[16:16 + len(data)] = data
    slot[:8] = struct.pack('<q', len(data))


def _load_exception(slot, function=None):
    (n,) = struct.unpack('<q', bytes(slot[:8]))
    if n <= 0 or n + 16 > len(slot):
        return None
    exc, tb, index = pickle.loads(bytes(slot[16:16 + n]))
    if tb and function is not None:
        try:
            tb = _fix_dynamic_frames(tb, function)
        except Exception:  # the traceback as it came is still useful
            pass
    if tb:
        exc.__cause__ = _RemoteTraceback('\n"""\n' + tb + '"""')
    return index, exc


_DYNAMIC_FRAME = re.compile(r'  File "<dynamic-code>", line (\d+), in (\S+)\n')


def _code_files(function):
    """{code name: file name} of the code reachable from a kernel (itself,
    the functions it defines and the global functions it names)."""
    import functools
    import types
    f = function
    while isinstance(f, functools.partial):
        f = f.func
    if not hasattr(f, '__code__'):
        f = getattr(f, '__call__', f)
    files = {}
    stack = []
    code = getattr(f, '__code__', None)
    if code is not None:
        stack.append(code)
        glb = getattr(f, '__globals__', {})
        for name in code.co_names:
            g = glb.get(name)
            if isinstance(g, types.FunctionType):
                stack.append(g.__code__)
    seen = set()
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        files.setdefault(c.co_name, c.co_filename)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return files


def _fix_dynamic_frames(tb, function):
    """cloudpickle names the file of code it ships by value "<dynamic-code>":
    put back the kernel's file and source lines."""
    if '<dynamic-code>' not in tb:
        return tb
    import linecache
    files = _code_files(function)

    def repl(m):
        name = files.get(m.group(2))
        if not name:
            return m.group(0)
        src = linecache.getline(name, int(m.group(1))).strip()
        return f'  File "{name}", line {m.group(1)}, in {m.group(2)}\n' + \
            (f'    {src}\n' if src else '')
    return _DYNAMIC_FRAME.sub(repl, tb)


# ---- the job of the last map, kept while provably unchanged -------------
#
# A pool map ships (function, functor, shares, run_worker). When nothing the
# pickled bytes depend on has changed since the last map (every object by
# identity, mutable containers by identity and content, ordinary arrays by
# their bytes, shared arrays by address, shape, strides and dtype), the
# caller keeps the bytes and the serial of the last map and pickles nothing.
# A worker then keeps the objects it unpickled for that serial, if they too
# are unchanged in it (a kernel may write to its copies: a global, a closure
# cell, an ordinary array); else it unpickles the same bytes again. Objects
# of any other kind make a job uncacheable: it is pickled every map.

class _Missing:
    """A name not bound in a kernel's globals, an empty closure cell."""


_MISSING = _Missing()
_BASE_GLOBALS = ('__package__', '__name__', '__path__', '__file__')
_global_names_cache = {}


def _global_names(code):
    """The names a code object and the code nested in it can look up (a
    superset of the globals cloudpickle ships with a function), and the
    names of cloudpickle's base globals."""
    entry = _global_names_cache.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    names = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if type(k) is _CodeType)
    if len(_global_names_cache) >= _CACHE_MAX:
        _global_names_cache.clear()
    names = _BASE_GLOBALS + tuple(sorted(names))
    _global_names_cache[id(code)] = (code, names)
    return names


def _job_key(job, worker=False, shared=None):
    """The key of job (a tuple), or None when it cannot be cached (in C:
    _pasha.job_key says what it records)."""
    return _pasha.job_key(job, worker, shared, _MISSING, functools.partial, SequenceFunctor,
                          NdarrayFunctor, _global_names, _BY_VALUE_MODULES, _BIG_ARRAY)


def _same_key(a, b):
    return a is not None and b is not None and _pasha.same_key(a, b)


# In a pool worker: the job of the last map, its serial and key, and the
# shared-memory views _rebuild_array made for it.
_worker_job = None
_worker_shared = {}


def _pool_entry(job, serial):
    """In a pool worker: the job of map `serial` (job[0]: whether the caller
    may send the same serial again; job[1:]: the pickle)."""
    global _worker_job
    last = _worker_job
    if last is not None and last[0] == serial:
        if _same_key(_job_key(last[1], True, _worker_shared), last[2]):
            return last[1]
    _worker_job = None
    _worker_shared.clear()
    t = pickle.loads(job[1:])
    if job[0]:
        _worker_job = (serial, t, _job_key(t, True, _worker_shared))
    else:
        _worker_shared.clear()
    return t


def _flush_stdio():
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except Exception:
            pass


_pasha.set_hooks(_pool_entry, _store_exception, _flush_stdio)


def _exiting():
    _pasha._at_exit()


import atexit  # noqa: E402
import os  # noqa: E402

atexit.register(_exiting)
if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_pasha._after_fork_child)

_cffi = None  # the cffi module, False when it is not installed


def _native_pointer(function):
    """The address of a native kernel, or None for a Python callable."""
    global _cffi
    if isinstance(function, ctypes._CFuncPtr):
        return ctypes.cast(function, ctypes.c_void_p).value
    address = getattr(function, 'address', None)  # numba cfunc
    if isinstance(address, int) and hasattr(function, 'native_name'):
        return address
    if _cffi is None:
        # Look only when cffi is loaded: a cffi pointer implies it is.
        if 'cffi' not in sys.modules:
            return None
        import cffi
        _cffi = cffi.FFI()
    if _cffi and isinstance(function, _cffi.CData):
        return int(_cffi.cast('uintptr_t', function))
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
        if dtype.hasobject:
            if getattr(self, '_kind', _SERIAL) == _PROCESSES:
                raise TypeError(f'alloc: dtype {dtype} holds Python objects, which cannot be '
                                'shared with worker processes; use a numeric dtype, or a '
                                'SerialContext or ThreadContext')
            array = np.empty(shape, dtype, order=order)
            if fill is not None:
                array[...] = fill
            return array
        raw = _pasha.alloc_bytes(getattr(self, '_ctx', None), count * dtype.itemsize)
        array = raw.view(dtype).reshape(shape, order=order) if dtype.itemsize else \
            np.ndarray(shape, dtype, order=order)
        if fill is not None and not (np.isscalar(fill) and fill == 0):
            array[...] = fill
        return array

    def alloc(self, shape: Union[int, Tuple[int, ...], None] = None, dtype: Any = None, *,
              order: Optional[str] = None, fill: Any = None, like: Any = None,
              per_worker: bool = False) -> np.ndarray:
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

    def map(self, function: Callable[..., Any], functor: Any, *,
            progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None) -> None:
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

    _worker_base = 0  # added to the worker ids kernels get (MpiContext's local contexts)
    _kind = _SERIAL

    def __init__(self, num_workers: Optional[int] = None, *, persistent: bool = False,
                 schedule: str = 'static', chunk: int = 0, pin_cpus: bool = False):
        if schedule not in _SCHEDULES:
            raise ValueError(f'unknown schedule {schedule!r}')
        if num_workers is not None and (not isinstance(num_workers, Integral) or
                                        num_workers < 1):
            raise ValueError('num_workers must be a positive integer')
        self._setup(_pasha.Context(self._kind, int(num_workers or 0), bool(persistent),
                                   _SCHEDULES[schedule], int(chunk), bool(pin_cpus)),
                    persistent, schedule, chunk)

    @classmethod
    def _from_capsule(cls, capsule, *, persistent=False, schedule='static', chunk=0):
        """A context over the psh_context * a PyCapsule named
        "pasha.psh_context" holds; the context takes over the capsule's
        reference. On _PshContext: a SerialContext, ThreadContext or
        ProcessContext by the psh_context's kind; on one of those, the kind
        must be that class's. persistent, schedule and chunk say what the
        psh_context was made with (they choose how maps are driven)."""
        if schedule not in _SCHEDULES:
            raise ValueError(f'unknown schedule {schedule!r}')
        ctx = _pasha.Context._from_capsule(capsule)
        kinds = {_SERIAL: SerialContext, _THREADS: ThreadContext, _PROCESSES: ProcessContext}
        if cls is _PshContext:
            cls = kinds.get(ctx.kind, cls)
        if ctx.kind != cls._kind:
            del ctx  # the reference is given back
            raise ValueError(f'{cls.__name__}._from_capsule: the psh_context is not of that '
                             'kind')
        self = cls.__new__(cls)
        self._setup(ctx, persistent, schedule, chunk)
        return self

    def _setup(self, ctx, persistent, schedule, chunk):
        self.schedule = schedule
        self.chunk = int(chunk)
        self.persistent = bool(persistent)
        self._ctx = ctx
        MapContext.__init__(self, self._ctx.num_workers)
        self._err = None
        self._job = None
        self._job_len = 0
        self._job_key = None  # the key of the job in self._job, if cacheable
        self._serial = 0

    def _err_buffer(self):
        if self._err is None:
            self._err = _pasha.alloc_bytes(self._ctx, _ERR_HEADER + self.num_workers * _ERR_SIZE)
        return self._err

    def _shares(self, functor):
        n = self.num_workers
        if self.schedule != 'static':
            n = n * 4
        return list(functor.split(n))

    def map(self, function: Callable[..., Any], functor: Any, *,
            progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None) -> None:
        native = _native_pointer(function)
        if native is not None:
            if not isinstance(functor, np.ndarray):
                functor = Functor.try_wrap(functor)
            status, message = self._map_native(native, functor, user_data)
            if status == _pasha.OK:
                return
            if status == _pasha.ECANCELED:
                raise KeyboardInterrupt
            raise WorkerError(_describe_failure(message, None))
        if not isinstance(functor, Functor):
            functor = Functor.try_wrap(functor)
        if progress:
            progress_cb, done_cb = _make_progress(progress)
            try:
                self._map_python(function, functor, progress_cb)
            finally:
                if done_cb is not None:
                    done_cb()
        else:
            self._map_python(function, functor, None)

    def _map_native(self, address, functor, user_data):
        from .functor import NdarrayFunctor
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
        ftype = type(functor)
        itemwise = _itemwise(ftype) and type(self).run_worker is MapContext.run_worker
        if itemwise:
            seq = functor.sequence
            n = len(seq)
            shares = None
            schedule, chunk = _SCHEDULE_CONTEXT, 0
        else:
            seq = None
            shares = self._shares(functor)
            n = len(shares)
            if self.schedule == 'static':
                schedule, chunk = 0, 0
            else:
                schedule, chunk = _SCHEDULES[self.schedule], 1
        run_worker = None if type(self).run_worker is MapContext.run_worker else self.run_worker
        kind = self._kind
        if kind != _PROCESSES:
            status, message, errors = self._ctx.map(
                n, itemwise=itemwise, function=function, functor=functor, seq=seq,
                shares=shares, run_worker=run_worker, mode=_MODE_INPROC, schedule=schedule,
                chunk=chunk, progress=progress_cb, worker_base=self._worker_base)
            if status == _pasha.OK:
                return
            if errors:
                raise min(errors, key=lambda e: e[0] if e[0] >= 0 else sys.maxsize)[1]
            if status == _pasha.ECANCELED:
                raise KeyboardInterrupt
            raise WorkerError(_describe_failure(message, None, self._worker_base))

        err = self._err_buffer()
        temps = []
        if self.persistent:
            job = (function, functor, shares, run_worker)
            key = _job_key(job)
            if key is None or not _same_key(key, self._job_key):
                buf = io.BytesIO()
                buf.write(b'\x01' if key is not None else b'\x00')
                _JobPickler(buf, self, temps).dump(job)
                data = buf.getbuffer()
                if self._job is None or len(self._job) < len(data):
                    self._job = _pasha.alloc_bytes(self._ctx, max(len(data), 1 << 16) * 2)
                self._job[:len(data)] = np.frombuffer(data, np.uint8)
                self._job_len = len(data)
                data.release()
                self._serial += 1
                # Keep the key only if pickling left it as it was (a
                # reducer may change what it pickles).
                self._job_key = key if key is not None and not temps and \
                    _same_key(_job_key(job), key) else None
            del job
            status, message, _ = self._ctx.map(
                n, itemwise=itemwise, mode=_MODE_POOL, job=self._job[:self._job_len],
                serial=self._serial, err=err, err_size=_ERR_SIZE, schedule=schedule,
                chunk=chunk, progress=progress_cb, worker_base=self._worker_base)
            if status != _pasha.OK:
                self._job_key = None
        else:
            status, message, _ = self._ctx.map(
                n, itemwise=itemwise, function=function, functor=functor, seq=seq,
                shares=shares, run_worker=run_worker, mode=_MODE_FORK, err=err,
                err_size=_ERR_SIZE, schedule=schedule, chunk=chunk, progress=progress_cb,
                worker_base=self._worker_base)
        del temps
        if status == _pasha.OK:
            return
        found = []
        for w in range(self.num_workers):
            slot = memoryview(err)[_ERR_HEADER + w * _ERR_SIZE:_ERR_HEADER + (w + 1) * _ERR_SIZE]
            got = _load_exception(slot, function)
            if got is not None:
                found.append(got)
        if found:
            raise min(found, key=lambda e: e[0] if e[0] >= 0 else sys.maxsize)[1]
        if status == _pasha.ECANCELED:
            raise KeyboardInterrupt
        raise WorkerError(_describe_failure(message, err, self._worker_base))


_ITEMWISE = {}


def _itemwise(ftype):
    """Whether a functor type iterates its sequence item by item (as
    SequenceFunctor does): then the map runs item by item in C."""
    r = _ITEMWISE.get(ftype)
    if r is None:
        r = _ITEMWISE[ftype] = (issubclass(ftype, SequenceFunctor) and
                                ftype.split is SequenceFunctor.split and
                                ftype.iterate is SequenceFunctor.iterate)
    return r


def _describe_failure(message, err, worker_base=0):
    """A WorkerError message from libpasha's, naming the item index (not
    the share), the worker id the kernels saw (libpasha's local id plus
    worker_base, an MPI rank's offset) and the Python call (map)."""
    message = re.sub(r'^psh_map(_blocks)?(_ext)?: ', '', message or 'failed')
    m = re.search(r'worker (\d+)', message)
    if m is not None:
        w = int(m.group(1))
        if worker_base:
            message = message[:m.start(1)] + str(w + worker_base) + message[m.end(1):]
        if err is not None:
            off = _ERR_HEADER + w * _ERR_SIZE
            (index,) = struct.unpack('<q', bytes(err[off + 8:off + 16]))
            message = re.sub(r' at index \d+', '', message)
            if index >= 0:
                return f'map: on item {index}: {message}'
    return f'map: {message}'


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
            print(f'\rpasha: {done}/{total}', end='', flush=True)
            state['printed'] = True
            return
        bar = state.get('bar')
        if bar is None:
            bar = state['bar'] = tqdm(total=total)
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
            kernel, functor and shares are pickled for a map (arrays from
            alloc travel by reference, functions by name: the workers see
            module globals as they were when the context was made), unless
            nothing they depend on changed since the last map: then the
            workers reuse what they unpickled for it.
        schedule ('static', 'dynamic' or 'guided'): How shares are handed out.
    """

    _kind = _PROCESSES
