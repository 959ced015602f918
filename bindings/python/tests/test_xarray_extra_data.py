# SPDX-License-Identifier: BSD-3-Clause
"""xarray DataArrays and EXtra-data runs (real files from EXtra-data's own
mock-data helpers) in every context."""

import functools

import numpy as np
import pytest

import pasha as psh


def _sum_row(out, worker_id, index, row):
    out[index] = float(row.sum())


def test_dataarray(ctx):
    xr = pytest.importorskip('xarray')
    data = np.arange(60.0).reshape(3, 4, 5)
    da = xr.DataArray(data, dims=('a', 'b', 'c'))
    assert type(psh.functor.Functor.try_wrap(da)) is psh.DataArrayFunctor
    out = ctx.alloc(4)
    ctx.map(functools.partial(_sum_row, out), psh.DataArrayFunctor(da, dim='b'))
    np.testing.assert_array_equal(out, data.sum(axis=(0, 2)))
    out = ctx.alloc(3)
    ctx.map(functools.partial(_sum_row, out), da)
    np.testing.assert_array_equal(out, data.sum(axis=(1, 2)))


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    pytest.importorskip('extra_data')
    make_examples = pytest.importorskip('extra_data.tests.make_examples')
    path = tmp_path_factory.mktemp('xfel_run')
    make_examples.make_fxe_da_file(str(path / 'RAW-R0450-DA01-S00001.h5'))
    return path


def _train_record(tids, counts, worker_id, index, train_id, data):
    tids[index] = train_id
    if data is None:
        counts[index] = 0
    elif isinstance(data, dict):
        counts[index] = len(data)
    else:
        counts[index] = np.asarray(data).shape[0] if np.ndim(data) else 1


def test_extra_data_collection(ctx, run_dir):
    import extra_data as xd
    run = xd.RunDirectory(str(run_dir)).select('SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.*')
    tids = ctx.alloc(len(run.train_ids), dtype=np.uint64)
    counts = ctx.alloc(len(run.train_ids), dtype=np.int64)
    assert type(psh.functor.Functor.try_wrap(run)) is psh.ExtraDataFunctor
    ctx.map(functools.partial(_train_record, tids, counts), run)
    np.testing.assert_array_equal(tids, run.train_ids)
    assert (counts == 1).all()  # one source per train


def test_extra_data_keydata_with_empty_trains(ctx, run_dir):
    import extra_data as xd
    run = xd.RunDirectory(str(run_dir))
    kd = run['FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput', 'data.image.pixels']
    tids = ctx.alloc(len(kd.train_ids), dtype=np.uint64)
    counts = ctx.alloc(len(kd.train_ids), dtype=np.int64, fill=-1)
    ctx.map(functools.partial(_train_record, tids, counts), kd)
    np.testing.assert_array_equal(tids, kd.train_ids)
    assert len(tids) == 400 and (counts == 0).all()

    kd = run['SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos']
    tids = ctx.alloc(len(kd.train_ids), dtype=np.uint64)
    counts = ctx.alloc(len(kd.train_ids), dtype=np.int64)
    ctx.map(functools.partial(_train_record, tids, counts), kd)
    np.testing.assert_array_equal(tids, kd.train_ids)
    assert (counts == 1).all()


@pytest.fixture(scope='module')
def lpd_run_dir(tmp_path_factory):
    make_examples = pytest.importorskip('extra_data.tests.make_examples')
    path = tmp_path_factory.mktemp('lpd_run')
    make_examples.make_lpd_run_mini_missed_train(str(path))
    return path


def test_extra_data_keydata_missed_train(ctx, lpd_run_dir):
    import extra_data as xd
    run = xd.RunDirectory(str(lpd_run_dir))
    kd = run['FXE_DET_LPD1M-1/DET/1CH0:xtdf', 'image.data']
    expected = kd.data_counts(labelled=False)
    assert 0 in expected  # the helper's missed train
    tids = ctx.alloc(len(kd.train_ids), dtype=np.uint64)
    counts = ctx.alloc(len(kd.train_ids), dtype=np.int64, fill=-1)
    ctx.map(functools.partial(_train_record, tids, counts), kd)
    np.testing.assert_array_equal(tids, kd.train_ids)
    np.testing.assert_array_equal(counts, expected)


def _source_record(tids, nkeys, firsts, worker_id, index, train_id, data):
    assert isinstance(data, dict)  # never None
    tids[index] = train_id
    nkeys[index] = len(data)
    if 'beamPosition.ixPos.value' in data:
        firsts[index] = float(np.asarray(data['beamPosition.ixPos.value']).ravel()[0])
    return sorted(data)


def test_extra_data_sourcedata(ctx, run_dir):
    """SourceData (EXtra-data >= 1.10): the kernel gets the source's dict
    {key: value} for each train, index aligned with train_ids."""
    import extra_data as xd
    if not hasattr(xd, 'SourceData'):
        pytest.skip('EXtra-data without SourceData')
    run = xd.RunDirectory(str(run_dir))
    sd = run['SA1_XTD2_XGM/DOOCS/MAIN'].select_keys('beamPosition.*')
    assert isinstance(sd, xd.SourceData)
    assert type(psh.functor.Functor.try_wrap(sd)) is psh.ExtraDataFunctor
    n = len(sd.train_ids)
    tids = ctx.zeros(n, dtype=np.uint64)
    nkeys = ctx.full(n, -1, dtype=np.int64)
    firsts = ctx.full(n, np.nan)
    keys = ctx.map(functools.partial(_source_record, tids, nkeys, firsts), sd, chunksize=7)
    np.testing.assert_array_equal(tids, sd.train_ids)
    assert (nkeys == len(sd.keys())).all() and nkeys[0] > 0
    assert keys == [sorted(sd.keys())] * n
    np.testing.assert_array_equal(firsts, sd['beamPosition.ixPos'].ndarray().astype(float))


def test_extra_data_sourcedata_without_data(ctx, run_dir):
    """A source with no data in a train gives an empty dict, never None."""
    import extra_data as xd
    if not hasattr(xd, 'SourceData'):
        pytest.skip('EXtra-data without SourceData')
    run = xd.RunDirectory(str(run_dir))
    sd = run['FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput']
    n = len(sd.train_ids)
    tids = ctx.zeros(n, dtype=np.uint64)
    nkeys = ctx.full(n, -1, dtype=np.int64)
    firsts = ctx.full(n, np.nan)
    got = ctx.map(functools.partial(_source_record, tids, nkeys, firsts), sd)
    np.testing.assert_array_equal(tids, sd.train_ids)
    assert n == 400 and (nkeys == 0).all() and got == [[]] * n


def _keydata_shape(worker_id, index, train_id, data):
    return (int(train_id), type(data).__name__, data.shape, str(data.dtype))


def test_extra_data_keydata_empty_train_is_an_empty_array(ctx, run_dir):
    import extra_data as xd
    run = xd.RunDirectory(str(run_dir))
    kd = run['FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput', 'data.image.pixels']
    got = ctx.map(_keydata_shape, kd)
    assert [g[0] for g in got] == [int(t) for t in kd.train_ids]
    assert set(g[1:] for g in got) == {('ndarray', (0,) + kd.entry_shape, str(kd.dtype))}
