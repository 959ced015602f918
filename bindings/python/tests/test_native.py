# SPDX-License-Identifier: BSD-3-Clause
"""Native kernels (psh_kernel function pointers via ctypes) in every context."""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

import pasha as psh

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(HERE, '..', '..', '..', 'include')
KERNEL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                          ctypes.c_void_p)


@pytest.fixture(scope='module')
def lib(tmp_path_factory):
    cc = shutil.which('cc') or shutil.which('gcc')
    if cc is None or not os.path.exists(os.path.join(INCLUDE, 'pasha', 'pasha.h')):
        pytest.skip('needs a C compiler and include/pasha/pasha.h')
    so = tmp_path_factory.mktemp('native') / 'kernels.so'
    subprocess.run([cc, '-O2', '-shared', '-fPIC', '-I', INCLUDE, '-o', str(so),
                    os.path.join(HERE, 'native_kernels.c')], check=True)
    return ctypes.CDLL(str(so))


def test_native_over_array(ctx, lib):
    inp = np.random.rand(1000)
    out = ctx.alloc(like=inp)
    ctx.map(KERNEL(('triple_it', lib)), inp, user_data=out)
    np.testing.assert_allclose(out, 3 * inp)


def test_native_over_range(ctx, lib):
    out = ctx.alloc(300)
    ctx.map(KERNEL(('square_index', lib)), range(300), user_data=out)
    np.testing.assert_array_equal(out, np.arange(300.0) ** 2)


def test_native_error(ctx, lib):
    with pytest.raises(psh.WorkerError, match='7'):
        ctx.map(KERNEL(('fail_at_7', lib)), range(20))
