# SPDX-License-Identifier: BSD-3-Clause
"""Issue 24: thread pools inside kernels. numpy's bundled OpenBLAS keeps
a pool of threads; a processes map whose kernel multiplies matrices after
the parent already did (so the parent's BLAS threads exist when libpasha
forks) must give the right products in every kind, never hang. Each case
runs in a subprocess under a time-out, so a hang fails the test."""

import subprocess
import sys
import textwrap

import pytest

KINDS = ['serial', 'threads', 'processes', 'pool']

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import pasha as psh

    kind = sys.argv[1]
    n = 300  # large enough that OpenBLAS multiplies on several threads
    rng = np.random.default_rng(7)
    mats = rng.standard_normal((4, n, n))
    want = np.array([np.trace(m @ m) for m in mats])  # the parent's BLAS threads start here

    if kind == 'serial':
        ctx = psh.SerialContext()
    elif kind == 'threads':
        ctx = psh.ThreadContext(2)
    else:
        ctx = psh.ProcessContext(2, persistent=(kind == 'pool'))
    inp = ctx.alloc(like=mats)
    inp[:] = mats
    out = ctx.alloc(shape=(4,), dtype=np.float64)

    def kernel(worker_id, index, value):
        out[index] = np.trace(value @ value)

    for _ in range(2):
        out[:] = 0
        ctx.map(kernel, inp)
        np.testing.assert_allclose(out, want, rtol=1e-9)
        float(np.trace(mats[0] @ mats[1]))  # the parent's BLAS again, between maps
    print('ok', kind)
''')


@pytest.mark.parametrize('kind', KINDS)
def test_openblas_kernel_after_parent_used_blas(kind):
    try:
        r = subprocess.run([sys.executable, '-c', SCRIPT, kind], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f'{kind}: a map whose kernel uses BLAS hung after the parent used BLAS threads')
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ['ok', kind]
