# SPDX-License-Identifier: BSD-3-Clause
"""Functors: what a map iterates over, and how it is split among workers."""

import math
import sys
from collections.abc import Sequence
from os import getpid

import numpy as np

__all__ = ['gen_split_slices', 'Functor', 'SequenceFunctor', 'NdarrayFunctor',
           'DataArrayFunctor', 'ExtraDataFunctor']


def gen_split_slices(total_len, part_len=None, n_parts=None):
    """Slices that split a sequence of total_len into pieces.

    Args:
        total_len (int): Length of the full sequence.
        part_len (int, optional): Length of each piece; or
        n_parts (int, optional): Number of pieces (ignored with part_len).

    Returns:
        (list of slice) slice(i*n//parts, (i+1)*n//parts) for each piece.
    """
    if part_len is None:
        if n_parts is None:
            raise ValueError('must specify either part_len or n_parts')
    else:
        n_parts = math.ceil(total_len / part_len)
    return [slice(i * total_len // n_parts, (i + 1) * total_len // n_parts)
            for i in range(n_parts)]


class Functor:
    """Something a map can iterate over, split into shares for workers.

    Subclasses register themselves for automatic wrapping (see try_wrap).
    """

    _functor_types = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Functor._functor_types.append(cls)

    @classmethod
    def try_wrap(cls, value):
        """Return value as a Functor: itself, value._pasha_functor_(), or the
        one registered type whose wrap(value) is not None.

        Raises:
            ValueError: when no or several registered types match.
        """
        if isinstance(value, Functor):
            return value
        if hasattr(value, '_pasha_functor_'):
            return value._pasha_functor_()
        functor = None
        for functor_type in Functor._functor_types:
            candidate = functor_type.wrap(value)
            if candidate is not None:
                if functor is not None:
                    raise ValueError('default functor is ambiguous')
                functor = candidate
        if functor is None:
            raise ValueError(f'no default functor for {type(value)}')
        return functor

    @classmethod
    def wrap(cls, value):
        """A functor of this type for value, or None if it does not apply."""
        return None

    def split(self, num_workers):
        """The shares of the work, one per work unit."""
        raise NotImplementedError('split')

    def iterate(self, share):
        """Yield (index, *values) for each element of share."""
        raise NotImplementedError('iterate')


class SequenceFunctor(Functor):
    """Maps over any collections.abc.Sequence (or ArrayLike); the kernel gets
    the index and the value."""

    def __init__(self, sequence):
        self.sequence = sequence

    @classmethod
    def wrap(cls, value):
        if isinstance(value, Sequence):
            return cls(value)
        return None

    def split(self, num_workers):
        return gen_split_slices(len(self.sequence), n_parts=num_workers)

    def iterate(self, share):
        yield from zip(range(*share.indices(len(self.sequence))), self.sequence[share])


class NdarrayFunctor(SequenceFunctor):
    """Maps over a numpy array along an axis (the first by default)."""

    def __init__(self, array, axis=None):
        self.sequence = np.swapaxes(array, 0, axis) if axis is not None else array

    @classmethod
    def wrap(cls, value):
        if isinstance(value, np.ndarray):
            return cls(value)
        return None


class DataArrayFunctor(NdarrayFunctor):
    """Maps over an xarray DataArray along a dimension (the first by default);
    wraps automatically only when xarray is already imported."""

    def __init__(self, array, dim=None):
        self.sequence = array.transpose(dim, ...) if dim is not None else array

    @classmethod
    def wrap(cls, value):
        if 'xarray' not in sys.modules:
            return None
        import xarray as xr
        if isinstance(value, xr.DataArray):
            return cls(value)
        return None


class ExtraDataFunctor(Functor):
    """Maps over the trains of an EXtra-data DataCollection, SourceData or
    KeyData; the kernel gets (index, train_id, data), index aligned with
    the object's train_ids. data: for a DataCollection the train's dict of
    sources, as EXtra-data's trains() gives it; for a SourceData the source's dict {key: value} for the train,
    an empty dict when it has no data; for a KeyData the train's array, an
    empty array (shape (0,) + entry_shape) when it has no data. Never None.
    Files are reopened when iterating in a child process."""

    def __init__(self, obj):
        self.obj = obj
        self.n_trains = len(self.obj.train_ids)
        self._parent_pid = getpid()

    @classmethod
    def wrap(cls, value):
        if 'extra_data' not in sys.modules:
            return None
        import extra_data as xd
        types = (xd.DataCollection, xd.keydata.KeyData)
        source_data = getattr(xd, 'SourceData', None)  # EXtra-data >= 1.10
        if source_data is not None:
            types += (source_data,)
        if isinstance(value, types):
            return cls(value)
        return None

    def split(self, num_workers):
        return gen_split_slices(self.n_trains, n_parts=num_workers)

    def iterate(self, share):
        from extra_data import DataCollection, KeyData
        subobj = self.obj.select_trains(np.s_[share])
        if getpid() != self._parent_pid:
            for f in subobj.files:
                f.close()
        indices = range(*share.indices(self.n_trains))
        if isinstance(subobj, KeyData):
            empty = np.zeros((0,) + tuple(subobj.entry_shape), dtype=subobj.dtype)
            for index, train_id, data in zip(indices, subobj.train_ids, _per_train(subobj)):
                yield index, train_id, empty if data is _NO_DATA else data
        elif isinstance(subobj, DataCollection):
            where = {int(t): i for i, t in zip(indices, subobj.train_ids)}
            for train_id, data in subobj.trains():
                yield where[int(train_id)], train_id, data
        else:  # SourceData
            keys = sorted(subobj.keys())
            columns = [_per_train(subobj[key]) for key in keys]
            for index, train_id, *values in zip(indices, subobj.train_ids, *columns):
                yield index, train_id, {k: v for k, v in zip(keys, values) if v is not _NO_DATA}


_NO_DATA = object()


def _per_train(kd):
    """A KeyData's value for every one of its train_ids (_NO_DATA where the
    train has none, also trains EXtra-data's own iterator skips: in no
    chunk)."""
    found = kd.trains(include_empty=True)
    pending = next(found, None)
    for train_id in kd.train_ids:
        if pending is not None and pending[0] == train_id:
            yield _NO_DATA if pending[1] is None else pending[1]
            pending = next(found, None)
        else:
            yield _NO_DATA
