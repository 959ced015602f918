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
