# SPDX-License-Identifier: BSD-3-Clause
"""Map hooks: code that runs around a map, on the caller and in each worker.

A hook is a MapHook applied to a kernel as a decorator; it attaches itself
to the kernel's ``_pasha_hooks_`` list. Its stages run:

* ``pre_map(context, function)``: on the caller, before the map;
* ``pre_worker(context, function, worker_id)``: in each worker (its own
  thread or process), once per map, before its first item;
* ``post_worker(context, function, worker_id)``: in each worker, once per
  map, after its last item;
* ``post_map(context, function)``: on the caller, after the map succeeded.

Each stage may return a replacement function (None: keep the one it got):
a function ``pre_map`` returns is the one the workers run, one
``pre_worker`` returns is the one this worker runs, and a replacement keeps
the kernel's hooks. Pre stages run in the order the hooks were applied
(the decorator nearest the function first), post stages in the reverse
order. A worker that takes no item runs no worker stage. In a persistent
pool's worker, ``context`` is a stand-in naming the context's type and
num_workers. On an MpiContext, pre_map and post_map run on every rank
(collective: they may call the context's collective methods), and an
exception post_map raises on one rank is raised on every rank.
"""

import copy as _copy
import types
from inspect import isgeneratorfunction

import numpy as np

__all__ = ['MapHook', 'with_init', 'with_finalize', 'with_local_copies', 'with_reduction']


class MapHook:
    """A hook into the map of the function it decorates (see the module)."""

    def __call__(self, function):
        hooks = getattr(function, '_pasha_hooks_', None)
        if hooks is None:
            hooks = []
            function._pasha_hooks_ = hooks
        hooks.append(self)
        return function

    @staticmethod
    def _with_globals(function, extra):
        """A copy of function whose globals are its own plus extra (the
        original's globals are left alone); it keeps the hooks, defaults,
        keyword defaults, closure and attributes."""
        new = types.FunctionType(function.__code__, dict(function.__globals__, **extra),
                                 function.__name__, function.__defaults__,
                                 function.__closure__)
        new.__kwdefaults__ = function.__kwdefaults__
        new.__qualname__ = function.__qualname__
        new.__dict__.update(function.__dict__)  # _pasha_hooks_ among them
        return new

    def pre_map(self, context, function):
        """On the caller, before the map."""
        return function

    def pre_worker(self, context, function, worker_id):
        """In each worker, before its first item of the map."""
        return function

    def post_worker(self, context, function, worker_id):
        """In each worker, after its last item of the map."""
        return function

    def post_map(self, context, function):
        """On the caller, after the map."""
        return function


class with_init(MapHook):
    """Run init_func(worker_id) in each worker before its first item.

    A generator function runs up to its first ``yield``; its local
    variables then are globals of the kernel in that worker, and it is
    resumed after the worker's last item, so that cleanup after the
    ``yield`` runs (a second ``yield`` is an error).
    """

    def __init__(self, init_func):
        self.init_func = init_func
        self._generators = {}  # worker_id -> the suspended generator

    def __getstate__(self):  # to a pool worker: no generators
        return dict(self.__dict__, _generators={})

    def pre_worker(self, context, function, worker_id):
        if not isgeneratorfunction(self.init_func):
            self.init_func(worker_id)
            return function
        gen = self.init_func(worker_id)
        try:
            next(gen)
        except StopIteration:
            raise RuntimeError('with_init: the generator did not yield') from None
        self._generators[worker_id] = gen
        return self._with_globals(function, dict(gen.gi_frame.f_locals))

    def post_worker(self, context, function, worker_id):
        gen = self._generators.pop(worker_id, None)
        if gen is None:
            return function
        try:
            next(gen)
        except StopIteration:
            return function
        gen.close()
        raise RuntimeError('with_init: the generator yielded more than once')


class with_finalize(MapHook):
    """Run del_func(worker_id, kernel_globals) in each worker after its
    last item (kernel_globals: the globals of the function it ran)."""

    def __init__(self, del_func):
        self.del_func = del_func

    def post_worker(self, context, function, worker_id):
        self.del_func(worker_id, function.__globals__)
        return function


class with_local_copies(MapHook):
    """Give each worker its own copy (deep=True: deep copy) of the named
    globals of the kernel, e.g. a cache or a scratch buffer."""

    def __init__(self, *symbols, deep=False):
        self.symbols = symbols
        self.deep = deep

    def pre_worker(self, context, function, worker_id):
        g = function.__globals__
        make = _copy.deepcopy if self.deep else _copy.copy
        return self._with_globals(function, {s: make(g[s]) for s in self.symbols if s in g})


# The value each per-worker accumulator starts from, by reduction function;
# other functions start every accumulator from the target's value, which
# suits reductions for which repeating a value changes nothing (max, min,
# logical and/or).
_IDENTITIES = {np.sum: 0, np.nansum: 0, np.prod: 1, np.nanprod: 1}


class with_reduction(MapHook):
    """Reduce into the named global arrays of the kernel over per-worker
    accumulators.

    Before the map, each target gets an accumulator per worker (in memory
    every worker sees, from context.empty_per_worker), which the kernel
    sees under the target's name in that worker. After the map the target
    becomes ``function([target, acc_0, ..., acc_n-1], **kwargs)``: its
    initial value counts once. Accumulators start at the function's
    identity (0 for np.sum and np.nansum, 1 for np.prod and np.nanprod),
    for other functions at the target's value.
    """

    def __init__(self, *symbols, function=np.sum, kwargs=dict(axis=0)):
        self.symbols = symbols
        self.reduce_function = function
        self.reduce_kwargs = dict(kwargs)
        self._accumulators = {}
        self._targets = None

    def __getstate__(self):  # to a pool worker: the accumulators, not the caller's globals
        return dict(self.__dict__, _targets=None)

    def pre_map(self, context, function):
        g = function.__globals__
        accumulators = {}
        for symbol in self.symbols:
            if symbol not in g:
                raise ValueError(f"with_reduction: the kernel has no global {symbol!r}")
            target = g[symbol]
            if not hasattr(target, 'shape') or not hasattr(target, 'dtype'):
                raise TypeError(f'with_reduction: {symbol!r} is not an array '
                                f'({type(target).__name__})')
            acc = context.empty_per_worker(target.shape, dtype=target.dtype)
            acc[...] = _IDENTITIES.get(self.reduce_function, target)
            accumulators[symbol] = acc
        self._accumulators = accumulators
        self._targets = g
        return function

    def pre_worker(self, context, function, worker_id):
        return self._with_globals(function, {s: acc[worker_id, ...]
                                             for s, acc in self._accumulators.items()})

    def post_map(self, context, function):
        try:
            for symbol, acc in self._accumulators.items():
                if hasattr(context, '_worker_rows'):  # MpiContext: the other nodes' workers' rows too
                    context._worker_rows(acc)
                target = self._targets[symbol]
                stack = np.concatenate([np.asarray(target)[None], acc])
                self.reduce_function(stack, out=target, **self.reduce_kwargs)
        finally:
            self._accumulators = {}
            self._targets = None
        return function
