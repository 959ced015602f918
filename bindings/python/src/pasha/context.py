# SPDX-License-Identifier: BSD-3-Clause
"""Map contexts: how a map runs (serially, on threads or on processes).

Every context is a libpasha ``psh_context``; arrays from ``alloc`` are
numpy views of libpasha shared-memory arrays, and ``map`` dispatches one
call per item (or per share of a functor of its own) through one
``psh_map_ext``, returning the kernel's values.
"""

import ctypes
import functools
import io
import marshal
import os
import pickle
import re
import struct
import sys
import threading
import traceback
import types
import warnings
from concurrent.futures import Future
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

__all__ = ['MapContext', 'HeapContext', 'SerialContext', 'ThreadContext', 'ProcessContext',
           'WorkerError']

_SERIAL, _THREADS, _PROCESSES = 0, 1, 2
_SCHEDULES = {'static': 0, 'dynamic': 1, 'guided': 2}
_SCHEDULE_CONTEXT = -1
_MODE_INPROC, _MODE_FORK, _MODE_POOL = 0, 1, 2
_ERR_SIZE = 1 << 16  # bytes per worker for a pickled exception
_ERR_HEADER = _pasha.ERR_HEADER
_SLOT_HEADER = _pasha.SLOT_HEADER  # [exception length, item index, results length, 0]
# An ordinary ndarray at least this large reaching a pool map by value is
# copied once into shared memory for the map instead of being pickled.
_BIG_ARRAY = 1 << 20


class WorkerError(RuntimeError):
    """A worker process died (signal or exit) or the map failed in libpasha.

    Attributes (None where they do not apply): worker_id (the id the
    kernels got), index (the item the worker was on), signal (that ended
    the worker process), exit_status (of a worker process that exited).
    Exceptions a kernel raised are re-raised as themselves, with the same
    attributes (signal and exit_status None)."""

    def __init__(self, message='', worker_id=None, index=None, signal=None, exit_status=None):
        super().__init__(message)
        self.worker_id = worker_id
        self.index = index
        self.signal = signal
        self.exit_status = exit_status


def _tag(exc, worker_id, index):
    """A kernel's exception, re-raised: where it came from, as attributes."""
    for name, value in (('worker_id', worker_id), ('index', index if index >= 0 else None),
                        ('signal', None), ('exit_status', None)):
        try:
            setattr(exc, name, value)
        except (AttributeError, TypeError):  # an exception type with __slots__
            pass
    return exc


def _worker_error(message, info, slot_index=None, itemwise=True):
    """The WorkerError of a failed map from its psh_error_info (info: code,
    worker_id with the worker base added, index, signal, exit_status,
    callback); slot_index: the item the worker last started, as it
    recorded it in its slot (a process map), -1: none."""
    code, worker_id, index, sig, status, callback = info
    worker_id = worker_id if worker_id >= 0 else None
    if slot_index is not None and slot_index >= 0:
        index = slot_index
    elif not itemwise or index < 0:
        index = None  # libpasha's index is a share's, not an item's
    died = code == _pasha.EWORKER
    sig = sig if died and sig > 0 else None
    status = status if died and status >= 0 else None
    if sig is not None:
        import signal as _signal
        try:
            name = _signal.Signals(sig).name
        except ValueError:
            name = 'unknown'
        text = f'worker {worker_id} was killed by signal {sig} ({name})'
    elif status is not None:
        text = f'worker {worker_id} exited with status {status}'
    elif died:
        text = f'worker {worker_id} died'
    else:
        text = message or 'failed'
    where = f'on item {index}: ' if index is not None else ''
    return WorkerError(f'map: {where}{text}', worker_id, index, sig, status)


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
        if obj is self._ctx:  # named by the kernel or its hooks: a stand-in there
            return _InPoolWorker, (type(obj).__name__, obj.num_workers)
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
    room = len(slot) - _SLOT_HEADER
    if len(data) > room:
        data = pickle.dumps((RuntimeError(f'{type(exc).__name__}: {str(exc)[:1000]}'),
                             tb[-(room // 2):], index))
    slot[_SLOT_HEADER:_SLOT_HEADER + len(data)] = data
    slot[:8] = struct.pack('<q', len(data))


def _load_exception(slot, function=None):
    (n,) = struct.unpack('<q', bytes(slot[:8]))
    if n <= 0 or n + _SLOT_HEADER > len(slot):
        return None
    exc, tb, index = pickle.loads(bytes(slot[_SLOT_HEADER:_SLOT_HEADER + n]))
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


# ---- the values of a map, from worker processes -------------------------
#
# A worker process keeps the values its kernel returned (None is not kept)
# and, after its last item of the map, pickles them once into its slot of
# the error buffer (shared memory), or, when they do not fit, into a file
# in /dev/shm whose name the slot holds; the caller reads every slot once.

def _results_dir():
    d = '/dev/shm'
    return d if os.path.isdir(d) and os.access(d, os.W_OK) else None


def _store_results(slot, indices, values):
    """In a worker process, at its end: the values it computed, to the caller."""
    try:
        data = pickle.dumps((indices, values), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if _cloudpickle is None:
            raise
        data = _cloudpickle.dumps((indices, values), protocol=pickle.HIGHEST_PROTOCOL)
    room = len(slot) - _SLOT_HEADER
    if len(data) <= room:
        slot[_SLOT_HEADER:_SLOT_HEADER + len(data)] = data
        slot[16:24] = struct.pack('<q', len(data))
        return
    import tempfile
    fd, path = tempfile.mkstemp(prefix='pasha-results-', dir=_results_dir())
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
    except BaseException:
        os.unlink(path)
        raise
    name = os.fsencode(path)
    slot[_SLOT_HEADER:_SLOT_HEADER + len(name)] = name
    slot[16:24] = struct.pack('<q', -len(name))


def _load_results(slot, keep=True):
    """In the caller: (indices, values) a worker stored in slot, or None
    (keep False: only remove the file they may be in)."""
    (n,) = struct.unpack('<q', bytes(slot[16:24]))
    if n == 0 or abs(n) + _SLOT_HEADER > len(slot):
        return None
    if n > 0:
        return pickle.loads(bytes(slot[_SLOT_HEADER:_SLOT_HEADER + n])) if keep else None
    path = os.fsdecode(bytes(slot[_SLOT_HEADER:_SLOT_HEADER - n]))
    try:
        if not keep:
            return None
        with open(path, 'rb') as f:
            return pickle.loads(f.read())
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _collect_run_worker(run_worker, function, functor, share, worker_id):
    """A context's own run_worker, its kernel's values kept as a share's:
    a list, or their number when all are None."""
    values = []

    def keep(*args):
        values.append(function(*args))

    run_worker(keep, functor, share, worker_id)
    if all(v is None for v in values):
        return len(values)
    return values


def _share_values(per_share):
    """The values of a map over shares, in item order."""
    out = []
    for v in per_share:
        if v is None:
            continue
        if type(v) is int:
            out.extend([None] * v)
        else:
            out.extend(v)
    return out


# ---- map hooks in the workers --------------------------------------------

class _WorkerHooks:
    """The worker stages of a map's hooks (pasha.util.MapHook): begin runs
    pre_worker before a worker's first item and gives the function it runs;
    end runs post_worker after its last; once per worker per map."""

    def __init__(self, context, function, hooks):
        self.context = context
        self.function = function
        self.hooks = hooks

    def begin(self, worker_id):
        fn = self.function
        for hook in self.hooks:
            fn = _keep_hooks(hook.pre_worker(self.context, fn, worker_id), fn, self.hooks)
        return fn

    def end(self, worker_id, fn):
        for hook in reversed(self.hooks):
            fn = _keep_hooks(hook.post_worker(self.context, fn, worker_id), fn, self.hooks)


def _hooks_of(function):
    hooks = getattr(function, '_pasha_hooks_', None)
    return list(hooks) if hooks else None


def _keep_hooks(new, old, hooks):
    """The function a hook stage returned (None: the one it was given),
    with the hooks attached."""
    if new is None:
        return old
    if new is not old and getattr(new, '_pasha_hooks_', None) is None:
        try:
            new._pasha_hooks_ = hooks
        except (AttributeError, TypeError):
            pass
    return new


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


# cloudpickle's own list of the globals it ships with a by-value function
# (the names its code reads or writes as globals, nested code included).
_extract_code_globals = getattr(sys.modules.get('cloudpickle.cloudpickle'),
                                '_extract_code_globals', None)
_shipped_names_cache = {}


def _shipped_names(code):
    """The globals cloudpickle ships with a by-value function of code (its
    base globals, then the names its code reads as globals): the segments
    of a split key. Without cloudpickle's list: _global_names."""
    if _extract_code_globals is None:
        return _global_names(code)
    entry = _shipped_names_cache.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    try:
        names = _BASE_GLOBALS + tuple(sorted(_extract_code_globals(code)))
    except Exception:  # a cloudpickle whose helper differs: the superset
        names = _global_names(code)
    if len(_shipped_names_cache) >= _CACHE_MAX:
        _shipped_names_cache.clear()
    _shipped_names_cache[id(code)] = (code, names)
    return names


def _split_key(job):
    """The caller's key of a pool job with the globals its by-value
    functions read as separate segments (ids, vals, segs, bounds, flags,
    values), or None when it cannot be cached (_pasha.job_key, split=True).
    A key kept between maps drops the values (key[:5])."""
    return _pasha.job_key(job, False, None, _MISSING, functools.partial, SequenceFunctor,
                          NdarrayFunctor, _shipped_names, _BY_VALUE_MODULES, _BIG_ARRAY, True)


# A pool job's bytes: [kind][base serial][base length][base pickle][delta].
# Kind 0: one pickle, not kept; 1: the base pickle (the job, then the list
# of the workers' copies of the globals dicts its by-value functions use);
# 2: the base pickle of map `base serial` and a delta: the new values of
# globals that changed since (a list of (dict index, name, bound, value)).
_JOB_HEAD = struct.Struct('<qq')
_JOB_KIND2 = struct.Struct('<Bqq')
_PLAIN_TYPES = frozenset((int, float, bool, complex, str, bytes, type(None), range))
_JOB_DATA = 1 + _JOB_HEAD.size
_SEG_NONDATA, _SEG_SHARED = 1, 2
# Whether a pool map may send only the globals that changed (tests turn it
# off to compare with full sends).
_JOB_DELTA = True


class _JobBase:
    """The caller's record of the base pickle a pool's workers hold: its
    split key, serial and length, each segment's index in the workers'
    list of globals dicts (-1: none), and the segments sent by value since
    (dirty: every later delta sends them again)."""

    __slots__ = ('key', 'serial', 'length', 'targets', 'dirty')

    def __init__(self, key, serial, length, targets):
        self.key = key
        self.serial = serial
        self.length = length
        self.targets = targets
        self.dirty = frozenset()


def _same_key(a, b):
    return a is not None and b is not None and _pasha.same_key(a, b)


# In a pool worker: the job of the last map (serial, job, key, base serial,
# the globals dicts of the base, the ids in _worker_shared its delta added),
# and the shared-memory views _rebuild_array made for it.
_worker_job = None
_worker_shared = {}


def _pool_entry(job, serial):
    """In a pool worker: the job of map `serial` (see _JOB_HEAD). A worker
    keeps what it unpickled while its copies are unchanged (a kernel may
    write to them): the same serial again reuses it; a delta on the base it
    holds rebinds the globals the delta names; anything else unpickles the
    base (a new worker, a changed copy), then applies the delta."""
    global _worker_job
    last = _worker_job
    kind = job[0]
    if last is not None and (last[0] == serial or (kind == 2 and last[3] ==
                                                   _JOB_HEAD.unpack_from(job, 1)[0])):
        if not _same_key(_job_key(last[1], True, _worker_shared), last[2]):
            last = None
        elif last[0] == serial:
            return last[1]
    else:
        last = None
    _worker_job = None
    if kind == 0:
        _worker_shared.clear()
        t = pickle.loads(job[1:])
        _worker_shared.clear()
        return t
    base_serial, length = _JOB_HEAD.unpack_from(job, 1)
    if last is None:
        _worker_shared.clear()
        u = pickle.Unpickler(io.BytesIO(job[_JOB_DATA:_JOB_DATA + length]))
        t = u.load()
        targets = u.load()
    else:
        t, targets = last[1], last[4]
        for i in last[5]:  # the last delta's arrays: their names are rebound now
            _worker_shared.pop(i, None)
    added = ()
    if kind == 2:
        n = len(_worker_shared)
        for index, name, bound, value in pickle.loads(job[_JOB_DATA + length:]):
            if bound:
                targets[index][name] = value
            else:
                targets[index].pop(name, None)
        if len(_worker_shared) > n:
            added = list(_worker_shared)[n:]
    _worker_job = (serial, t, _job_key(t, True, _worker_shared), base_serial, targets, added)
    return t


def _flush_stdio():
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except Exception:
            pass


_pasha.set_hooks(_pool_entry, _store_exception, _flush_stdio, _store_results,
                 _collect_run_worker)


def _exiting():
    _pasha._at_exit()


import atexit  # noqa: E402

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
        """Allocate the array in libpasha shared memory (a zero-copy view),
        or with the subclass's own empty when it has one."""
        if type(self).empty is not MapContext.empty:
            array = self.empty(shape, dtype=dtype, order=order)
            array[...] = 0 if fill is None else fill  # alloc zero-fills
            return array
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

    # ---- numpy-style creation: everything comes from empty ------------

    def empty(self, shape: Union[int, Tuple[int, ...]], dtype: Any = np.float64,
              order: str = 'C') -> np.ndarray:
        """A new array (as numpy.empty) shared with every worker of this
        context. A subclass that implements only empty gets every other
        creation method (and alloc) from it."""
        return self.alloc(_shape_tuple(shape), dtype, order=_check_order(order))

    def zeros(self, shape, dtype=np.float64, order='C'):
        """As numpy.zeros, shared with every worker."""
        return self._filled(_shape_tuple(shape), 0, dtype, order)

    def ones(self, shape, dtype=np.float64, order='C'):
        """As numpy.ones, shared with every worker."""
        return self._filled(_shape_tuple(shape), 1, dtype, order)

    def full(self, shape, fill_value, dtype=np.float64, order='C'):
        """As numpy.full (dtype float64 unless given), shared with every worker."""
        return self._filled(_shape_tuple(shape), fill_value, dtype, order)

    def empty_like(self, prototype, dtype=None, order='K', shape=None):
        """As numpy.empty_like, shared with every worker."""
        return self.empty(*_like(prototype, dtype, order, shape))

    def zeros_like(self, prototype, dtype=None, order='K', shape=None):
        """As numpy.zeros_like, shared with every worker."""
        shape, dtype, order = _like(prototype, dtype, order, shape)
        return self._filled(shape, 0, dtype, order)

    def ones_like(self, prototype, dtype=None, order='K', shape=None):
        """As numpy.ones_like, shared with every worker."""
        shape, dtype, order = _like(prototype, dtype, order, shape)
        return self._filled(shape, 1, dtype, order)

    def full_like(self, prototype, fill_value, dtype=None, order='K', shape=None):
        """As numpy.full_like, shared with every worker."""
        shape, dtype, order = _like(prototype, dtype, order, shape)
        return self._filled(shape, fill_value, dtype, order)

    def empty_per_worker(self, shape, dtype=np.float64, order='C'):
        """empty with shape (num_workers,) + shape: one array per worker,
        indexed by the worker id."""
        return self.empty((self.num_workers,) + _shape_tuple(shape), dtype, order)

    def zeros_per_worker(self, shape, dtype=np.float64, order='C'):
        """zeros with shape (num_workers,) + shape."""
        return self.zeros((self.num_workers,) + _shape_tuple(shape), dtype, order)

    def ones_per_worker(self, shape, dtype=np.float64, order='C'):
        """ones with shape (num_workers,) + shape."""
        return self.ones((self.num_workers,) + _shape_tuple(shape), dtype, order)

    def full_per_worker(self, shape, fill_value, dtype=np.float64, order='C'):
        """full with shape (num_workers,) + shape."""
        return self.full((self.num_workers,) + _shape_tuple(shape), fill_value, dtype, order)

    def _filled(self, shape, value, dtype, order):
        array = self.empty(shape, dtype=dtype, order=order)
        plain = type(self).empty is MapContext.empty and type(self).alloc is MapContext.alloc
        zero = np.isscalar(value) and value == 0
        if not (plain and zero and not array.dtype.hasobject):  # psh memory is zeroed
            array[...] = value
        return array

    # ---- the names of pasha before 0.1 (deprecated) -----------------------

    def array(self, shape, dtype=np.float64, order='C'):
        """Deprecated: empty."""
        _deprecated('array', 'empty')
        return self.empty(shape, dtype, order)

    def array_like(self, prototype, dtype=None, order='K', shape=None):
        """Deprecated: empty_like."""
        _deprecated('array_like', 'empty_like')
        return self.empty_like(prototype, dtype, order, shape)

    def array_per_worker(self, shape, dtype=np.float64, order='C'):
        """Deprecated: empty_per_worker."""
        _deprecated('array_per_worker', 'empty_per_worker')
        return self.empty_per_worker(shape, dtype, order)

    @staticmethod
    def run_worker(function, functor, share, worker_id):
        """Call function(worker_id, *entry) for each entry of functor.iterate(share)."""
        for entry in functor.iterate(share):
            function(worker_id, *entry)

    def map(self, function: Callable[..., Any], functor: Any, chunksize: Optional[int] = None,
            *, progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None) -> Optional[list]:
        """Apply function to every element of functor.

        Args:
            function (Callable or native kernel): Called as
                function(worker_id, index, value, ...), or a ctypes/cffi
                function pointer or numba cfunc with the signature
                int(void *, int, size_t, const void *) run without the GIL.
            functor (Functor or Any): What to map over.
            chunksize (int, optional): The number of items a worker takes
                at a time (handed out dynamically); None: the context's
                schedule. Serial contexts ignore it. The values are the
                same either way.
            progress (bool or Callable): True: a tqdm bar (a printed line
                without tqdm); a callable: called as progress(done, total)
                with the number of shares finished.
            user_data (int or ndarray, optional): native kernels only: the
                user_data pointer (an address, or an array's data pointer).

        Returns:
            (list) The kernel's return values in item order (None for
            native kernels).
        """
        raise NotImplementedError('map')

    def map_async(self, function: Callable[..., Any], functor: Any,
                  chunksize: Optional[int] = None, **kwargs: Any) -> 'Future':
        """map in a background thread: a concurrent.futures.Future of the
        list map returns (or of its exception). Maps on one context run one
        at a time; a map_async started while another map runs waits."""
        future = Future()

        def run():
            if not future.set_running_or_notify_cancel():
                return
            try:
                if chunksize is not None:
                    kwargs['chunksize'] = chunksize
                values = self.map(function, functor, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(values)

        threading.Thread(target=run, name='pasha-map_async', daemon=True).start()
        return future


def _shape_tuple(shape):
    if isinstance(shape, Integral):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _check_order(order):
    if order not in ('C', 'F'):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    return order


def _like(prototype, dtype, order, shape):
    """(shape, dtype, order) of the *_like methods, as numpy picks them."""
    if not (hasattr(prototype, 'shape') and hasattr(prototype, 'dtype')):
        prototype = np.asarray(prototype)
    dtype = prototype.dtype if dtype is None else dtype
    shape = tuple(prototype.shape) if shape is None else _shape_tuple(shape)
    if order in ('K', 'A'):
        flags = getattr(prototype, 'flags', None)
        order = 'F' if flags is not None and flags.f_contiguous and not flags.c_contiguous \
            else 'C'
    return shape, dtype, _check_order(order)


def _deprecated(old, new, stacklevel=3):
    warnings.warn(f'pasha: {old} is deprecated, use {new}', DeprecationWarning,
                  stacklevel=stacklevel)


class HeapContext(MapContext):
    """A context whose arrays are ordinary numpy arrays on the heap: shared
    by threads of this process, not by other processes. Its own map runs
    serially in the calling thread (worker 0); it is a base for contexts
    whose workers share the address space.

    Args:
        num_workers (int): Number of workers (the first axis of the
            *_per_worker arrays).
    """

    def __init__(self, num_workers: int = 1):
        super().__init__(num_workers)

    def empty(self, shape, dtype=np.float64, order='C'):
        return np.empty(_shape_tuple(shape), dtype=dtype, order=_check_order(order))

    def map(self, function, functor, chunksize=None, *, progress=False, user_data=None):
        _check_chunksize(chunksize)
        if _native_pointer(function) is not None:
            raise ValueError('HeapContext runs Python kernels only')
        functor = Functor.try_wrap(functor)
        hooks = _hooks_of(function)
        for hook in hooks or ():
            function = _keep_hooks(hook.pre_map(self, function), function, hooks)
        worker = _WorkerHooks(self, function, hooks or [])
        fn = worker.begin(0)
        values = []
        for share in functor.split(1):
            got = _collect_run_worker(self.run_worker, fn, functor, share, 0)
            values.extend([None] * got if type(got) is int else got)
        worker.end(0, fn)
        for hook in reversed(hooks or ()):
            function = _keep_hooks(hook.post_map(self, function), function, hooks)
        return values


class _InPoolWorker(HeapContext):
    """The context a persistent pool's job names (its kernel, a map hook),
    as the pool's worker sees it: the caller's context does not travel. A
    map on it runs serially in the worker (as a nested map does), with the
    worker's id; its arrays are the worker's own."""

    def __init__(self, context_type, num_workers):
        super().__init__(num_workers)
        self.context_type = context_type

    def map(self, function, functor, chunksize=None, *, progress=False, user_data=None):
        _check_chunksize(chunksize)
        wid = _pasha.current_worker()
        functor = Functor.try_wrap(functor)
        hooks = _hooks_of(function)
        for hook in hooks or ():
            function = _keep_hooks(hook.pre_map(self, function), function, hooks)
        values = []
        for share in functor.split(1):
            got = _collect_run_worker(self.run_worker, function, functor, share,
                                      0 if wid is None else wid)
            values.extend([None] * got if type(got) is int else got)
        for hook in reversed(hooks or ()):
            function = _keep_hooks(hook.post_map(self, function), function, hooks)
        return values

    def __repr__(self):
        return f'<{self.context_type} in a pool worker, {self.num_workers} workers>'


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
        self._lock = threading.Lock()
        self._err = None
        self._job = None
        self._job_len = 0
        self._job_key = None  # the split key of the last map's job, if cacheable
        self._job_base = None  # _JobBase: the base pickle in self._job, if kept
        self._job_view = None  # a memoryview of self._job
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

    def map(self, function: Callable[..., Any], functor: Any, chunksize: Optional[int] = None,
            *, progress: Union[bool, Callable[[int, int], Any]] = False,
            user_data: Any = None) -> Optional[list]:
        chunksize = _check_chunksize(chunksize)
        native = _native_pointer(function)
        if native is not None:
            if not isinstance(functor, np.ndarray):
                functor = Functor.try_wrap(functor)
            status, message, info = self._map_native(native, functor, user_data)
            if status == _pasha.OK:
                return None
            if status == _pasha.ECANCELED:
                raise KeyboardInterrupt
            raise _worker_error(message, info)
        if not isinstance(functor, Functor):
            functor = Functor.try_wrap(functor)
        hooks = _hooks_of(function)
        if hooks:
            for hook in hooks:
                function = _keep_hooks(hook.pre_map(self, function), function, hooks)
        if progress:
            progress_cb, done_cb = _make_progress(progress)
            try:
                values = self._map_python(function, functor, progress_cb, chunksize, hooks)
            finally:
                if done_cb is not None:
                    done_cb()
        else:
            values = self._map_python(function, functor, None, chunksize, hooks)
        if hooks:
            for hook in reversed(hooks):
                function = _keep_hooks(hook.post_map(self, function), function, hooks)
        return values

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

    def _map_python(self, function, functor, progress_cb, chunksize, hooks):
        ftype = type(functor)
        itemwise = _itemwise(ftype) and type(self).run_worker is MapContext.run_worker
        parallel = self._kind != _SERIAL
        if itemwise:
            seq = functor.sequence
            n = len(seq)
            shares = None
            if chunksize is not None and parallel:
                schedule, chunk = _SCHEDULES['dynamic'], chunksize
            else:
                schedule, chunk = _SCHEDULE_CONTEXT, 0
        else:
            seq = None
            total = _functor_length(functor) if chunksize is not None and parallel else None
            if total is not None:
                shares = list(functor.split(max(1, -(-total // chunksize))))
            elif chunksize is not None and parallel:
                shares = list(functor.split(self.num_workers * 4))
            else:
                shares = self._shares(functor)
            n = len(shares)
            if self.schedule == 'static' and chunksize is None:
                schedule, chunk = 0, 0
            else:
                schedule, chunk = _SCHEDULES['dynamic' if chunksize else self.schedule], 1
        run_worker = None if type(self).run_worker is MapContext.run_worker else self.run_worker
        if hooks:
            worker_hooks = _WorkerHooks(self, function, hooks)
            begin, end = worker_hooks.begin, worker_hooks.end
        else:
            begin = end = None
        if self._kind == _PROCESSES and _pasha.current_worker() is None:
            with self._lock:  # one process map at a time: the slots and the job are the context's
                return self._map_processes(function, functor, progress_cb, itemwise, seq, n,
                                           shares, run_worker, schedule, chunk, begin, end)
        # In this process: a serial, thread or nested map (a kernel's map runs
        # serially in its worker, with its worker id).
        opts = _map_options(itemwise, function, functor, seq, shares, run_worker, schedule,
                            chunk, progress_cb, self._worker_base, begin, end)
        status, message, errors, values, info = self._ctx.map(n, **opts)
        if status == _pasha.OK and not errors:  # (a post_worker hook may fail late)
            if itemwise:
                return values if values is not None else [None] * n
            return _share_values(values if values is not None else ())
        if errors:
            index, exc, worker_id = min(errors, key=lambda e: e[0] if e[0] >= 0 else sys.maxsize)
            raise _tag(exc, worker_id, index)
        if status == _pasha.ECANCELED:
            raise KeyboardInterrupt
        raise _worker_error(message, info, itemwise=itemwise)

    def _map_processes(self, function, functor, progress_cb, itemwise, seq, n, shares,
                       run_worker, schedule, chunk, begin, end):
        err = self._err_buffer()
        temps = []
        if self.persistent:
            job = (function, functor, shares, run_worker, begin, end)
            key = _split_key(job)
            if key is None or not _same_key(key, self._job_key):
                if key is None or not self._send_delta(key):
                    self._send_job(job, key, temps)
            del job
            opts = _map_options(itemwise, None, None, None, None, None, schedule, chunk,
                                progress_cb, self._worker_base, None, None)
            status, message, _, _, info = self._ctx.map(
                n, mode=_MODE_POOL, job=self._job[:self._job_len], serial=self._serial,
                err=err, err_size=_ERR_SIZE, **opts)
            if status != _pasha.OK:
                self._job_key = None
        else:
            opts = _map_options(itemwise, function, functor, seq, shares, run_worker, schedule,
                                chunk, progress_cb, self._worker_base, begin, end)
            status, message, _, _, info = self._ctx.map(
                n, mode=_MODE_FORK, err=err, err_size=_ERR_SIZE, **opts)
        del temps
        # [exception length, item index, results length] of each worker's slot
        heads = [_SLOT_HEAD.unpack_from(err, _ERR_HEADER + w * _ERR_SIZE)
                 for w in range(self.num_workers)]
        slots = [memoryview(err)[_ERR_HEADER + w * _ERR_SIZE:_ERR_HEADER + (w + 1) * _ERR_SIZE]
                 for w, h in enumerate(heads)] if status != _pasha.OK or \
            any(h[0] or h[2] for h in heads) else None
        if status == _pasha.OK and not any(h[0] for h in heads):
            values = [None] * n
            for w, h in enumerate(heads):
                if h[2]:
                    for i, v in zip(*_load_results(slots[w])):
                        values[i] = v
            return values if itemwise else _share_values(values)
        found = []
        for w, slot in enumerate(slots):
            _load_results(slot, keep=False)
            got = _load_exception(slot, function)
            if got is not None:
                found.append(got + (w + self._worker_base,))
        if found:
            index, exc, worker_id = min(found, key=lambda e: e[0] if e[0] >= 0 else sys.maxsize)
            raise _tag(exc, worker_id, index)
        if status == _pasha.ECANCELED:
            raise KeyboardInterrupt
        if info is None:  # libpasha succeeded; a worker's late failure left no exception
            info = (_pasha.EKERNEL, -1, -1, 0, -1, '')
        local = info[1] - self._worker_base
        slot_index = struct.unpack_from('<q', slots[local], 8)[0] \
            if 0 <= local < len(slots) else None
        raise _worker_error(message, info, slot_index, itemwise)


    def _send_job(self, job, key, temps):
        """Pickle a pool job whole into self._job (a new serial); a
        cacheable one (key not None) becomes the base of later deltas."""
        self._job_key = self._job_base = None
        buf = io.BytesIO()
        pickler = _JobPickler(buf, self, temps)
        if key is None:
            buf.write(b'\x00')
            pickler.dump(job)
        else:
            buf.write(bytes(_JOB_DATA))
            pickler.dump(job)
            # The workers' copies of the globals dicts of the by-value
            # functions (cloudpickle's globals_ref: one per dict of the
            # caller), pickled as references to the objects above.
            refs = getattr(pickler, 'globals_ref', None)
            refs = refs if isinstance(refs, dict) else {}
            dicts, where, targets = [], {}, []
            for g, _ in key[2]:
                i = where.get(id(g))
                if i is None:
                    copy = refs.get(id(g))
                    i = where[id(g)] = len(dicts) if copy is not None else -1
                    if copy is not None:
                        dicts.append(copy)
                targets.append(i)
            pickler.dump(dicts)
        self._serial += 1
        data = buf.getbuffer()
        length = len(data)
        if key is not None:
            _JOB_HEAD.pack_into(data, 1, self._serial, length - _JOB_DATA)
            data[0] = 1
        self._store_job(data, 0)
        data.release()
        # Keep the key only if pickling left it as it was (a reducer may
        # change what it pickles).
        if key is not None and not temps and _same_key(_split_key(job), key):
            self._job_key = key = key[:5]
            self._job_base = _JobBase(key, self._serial, length - _JOB_DATA, targets)

    def _store_job(self, data, offset):
        """Write data at offset in self._job (the bytes before offset kept)."""
        end = offset + len(data)
        if self._job is None or len(self._job) < end:
            job = _pasha.alloc_bytes(self._ctx, max(end, 1 << 16) * 2)
            if offset:
                job[:offset] = self._job[:offset]
            self._job = job
            self._job_view = memoryview(job)
        self._job_view[offset:end] = data
        self._job_len = end

    def _send_delta(self, key):
        """If the job differs from the base the workers hold only in the
        values of globals (plain data, shared with nothing else in the
        job), write a delta after the base (a new serial): every global
        that differed from the base at any map since, with its value now.
        False: the job must be sent whole."""
        base = self._job_base
        if base is None or not _JOB_DELTA:
            return False
        changed = _pasha.split_diff(key, base.key)
        if changed is None:
            return False
        dirty = base.dirty.union(changed)
        segs, flags, values, targets = key[2], key[4], key[5], base.targets
        items = []
        plain = True  # atoms only: pickle's own pickler is as good and faster
        for i in sorted(dirty):
            if flags[i + 1] & (_SEG_NONDATA | _SEG_SHARED) or targets[i] < 0:
                return False
            name, value = segs[i][1], values[i]
            if value is _MISSING:
                items.append((targets[i], name, False, None))
            else:
                items.append((targets[i], name, True, value))
                plain = plain and type(value) in _PLAIN_TYPES
        if plain:
            data = pickle.dumps(items, pickle.HIGHEST_PROTOCOL)
        else:
            buf = io.BytesIO()
            temps = []
            _JobPickler(buf, self, temps).dump(items)
            if temps:
                return False
            data = buf.getvalue()
        if len(data) > max(base.length, 4096):
            return False  # (a delta larger than the base: a new base)
        self._serial += 1
        self._store_job(data, _JOB_DATA + base.length)
        self._job_view[:_JOB_DATA] = _JOB_KIND2.pack(2, base.serial, base.length)
        base.dirty = dirty
        self._job_key = key[:5]
        return True


_SLOT_HEAD = struct.Struct('<qqq')


def _map_options(itemwise, function, functor, seq, shares, run_worker, schedule, chunk,
                 progress, worker_base, begin, end):
    """Context.map's keyword arguments, the defaults left out (each one
    passed costs the call)."""
    opts = {'itemwise': True, 'seq': seq} if itemwise else {'functor': functor, 'shares': shares}
    if function is not None:
        opts['function'] = function
    else:
        opts.pop('seq', None), opts.pop('functor', None), opts.pop('shares', None)
    if run_worker is not None:
        opts['run_worker'] = run_worker
    if schedule != _SCHEDULE_CONTEXT:
        opts['schedule'] = schedule
    if chunk:
        opts['chunk'] = chunk
    if progress is not None:
        opts['progress'] = progress
    if worker_base:
        opts['worker_base'] = worker_base
    if begin is not None:
        opts['begin'] = begin
        opts['end'] = end
    return opts


def _check_chunksize(chunksize):
    if chunksize is None:
        return None
    if isinstance(chunksize, bool) or not isinstance(chunksize, Integral) or chunksize < 1:
        raise ValueError(f'chunksize must be a positive integer or None, not {chunksize!r}')
    return int(chunksize)


def _functor_length(functor):
    """The number of items of a functor, or None when it cannot tell."""
    if isinstance(functor, SequenceFunctor):
        return len(functor.sequence)
    n = getattr(functor, 'n_trains', None)
    if isinstance(n, Integral):
        return int(n)
    try:
        return len(functor)
    except TypeError:
        return None


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
