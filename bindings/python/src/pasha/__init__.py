# SPDX-License-Identifier: BSD-3-Clause
"""pasha: parallel map over shared memory, on libpasha.

A drop-in replacement for the Python package pasha 0.1.2: the same API,
running on libpasha's contexts, shared-memory arrays and map machinery.
"""

from functools import wraps
from typing import Any, Callable, Optional, Union

import numpy as np

from ._pasha import version as _libpasha_version
from . import _pasha
from .context import (  # noqa: F401
    MapContext, HeapContext, SerialContext, ThreadContext, ProcessContext, WorkerError)
from .context import _deprecated
from .util import (  # noqa: F401
    MapHook, with_init, with_finalize, with_local_copies, with_reduction)
from .functor import (  # noqa: F401
    Functor, SequenceFunctor, NdarrayFunctor, DataArrayFunctor, ExtraDataFunctor,
    gen_split_slices)
# mpi imports mpi4py only when an MpiContext is made.
from .mpi import MpiContext, RemoteRankError  # noqa: F401

# The repository's one version (meson.build's project version; every copy is
# checked by tools/check-version.py, and the build checks that libpasha's
# meson version is the Python project's).
__version__ = '0.2.0'
libpasha_version = _libpasha_version()

# The public names of pasha 0.1.2 (which had no __all__: its public names);
# this package's additions (WorkerError, MpiContext, RemoteRankError) are
# attributes of the module, left out of `import *` as 0.1.2 had them.
__all__ = ['MapContext', 'SerialContext', 'ThreadContext', 'ProcessContext',
           'SequenceFunctor', 'NdarrayFunctor', 'DataArrayFunctor', 'ExtraDataFunctor',
           'get_default_context', 'set_default_context', 'alloc', 'map']

_default_context: Optional[MapContext] = None


def cpu_count() -> int:
    """The default number of workers, as libpasha counts it (psh_cpu_count):
    PASHA_NUM_WORKERS if set, else the smallest of the CPUs this process
    may run on (affinity), the cgroup CPU quota rounded up and
    SLURM_CPUS_PER_TASK. ValueError naming the variable when
    PASHA_NUM_WORKERS (or SLURM_CPUS_PER_TASK) is not a whole number in
    1..4096."""
    return _pasha.cpu_count()


def get_default_context() -> MapContext:
    """The default map context (a ProcessContext until set otherwise)."""
    global _default_context
    if _default_context is None:
        _default_context = ProcessContext()
    return _default_context


def set_default_context(ctx_or_method: Union[MapContext, str], *args: Any,
                        **kwargs: Any) -> None:
    """Set the default map context.

    Args:
        ctx_or_method (MapContext or str): a context, or 'serial',
            'threads', 'processes' or 'mpi' with further arguments passed
            to the new context's constructor (for 'mpi': comm=, local=,
            num_workers=, as MpiContext takes them).
    """
    if isinstance(ctx_or_method, str):
        classes = {'serial': SerialContext, 'threads': ThreadContext,
                   'processes': ProcessContext, 'mpi': MpiContext}
        if ctx_or_method not in classes:
            raise ValueError('invalid map method')
        ctx = classes[ctx_or_method](*args, **kwargs)
    else:
        ctx = ctx_or_method
    global _default_context
    _default_context = ctx


@wraps(MapContext.alloc)
def alloc(*args: Any, **kwargs: Any) -> np.ndarray:
    return get_default_context().alloc(*args, **kwargs)


@wraps(MapContext.map)
def map(function: Callable[..., Any], functor: Any, chunksize: Optional[int] = None,
        **kwargs: Any) -> Optional[list]:
    if chunksize is not None:  # (a context of its own may not take it)
        kwargs['chunksize'] = chunksize
    return get_default_context().map(function, functor, **kwargs)


@wraps(MapContext.map_async)
def map_async(function: Callable[..., Any], functor: Any, chunksize: Optional[int] = None,
              **kwargs: Any):
    if chunksize is not None:
        kwargs['chunksize'] = chunksize
    return get_default_context().map_async(function, functor, **kwargs)


def _on_default(name):
    method = getattr(MapContext, name)

    @wraps(method)
    def create(*args, **kwargs):
        return getattr(get_default_context(), name)(*args, **kwargs)
    create.__doc__ = f'{name} on the default context: ' + (method.__doc__ or '')
    return create


empty = _on_default('empty')
zeros = _on_default('zeros')
ones = _on_default('ones')
full = _on_default('full')
empty_like = _on_default('empty_like')
zeros_like = _on_default('zeros_like')
ones_like = _on_default('ones_like')
full_like = _on_default('full_like')
empty_per_worker = _on_default('empty_per_worker')
zeros_per_worker = _on_default('zeros_per_worker')
ones_per_worker = _on_default('ones_per_worker')
full_per_worker = _on_default('full_per_worker')


def array(shape, dtype=np.float64, order='C'):
    """Deprecated: empty."""
    _deprecated('array', 'empty')
    return get_default_context().empty(shape, dtype, order)


def array_like(prototype, dtype=None, order='K', shape=None):
    """Deprecated: empty_like."""
    _deprecated('array_like', 'empty_like')
    return get_default_context().empty_like(prototype, dtype, order, shape)


def array_per_worker(shape, dtype=np.float64, order='C'):
    """Deprecated: empty_per_worker."""
    _deprecated('array_per_worker', 'empty_per_worker')
    return get_default_context().empty_per_worker(shape, dtype, order)
