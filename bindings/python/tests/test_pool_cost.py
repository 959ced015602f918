# SPDX-License-Identifier: BSD-3-Clause
"""Issue 15: a persistent pool keeps the job of the last map (the caller its
pickled bytes, a worker its unpickled objects) while nothing it depends on
has changed. These tests change, between two maps, each thing a kernel can
depend on, in the caller and in the worker, and check the next map sees it."""

import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pasha as psh

from conftest import make_context

SCALE = 2


def _pool(num_workers=2):
    return make_context('pool', num_workers)


def test_same_job_is_pickled_once():
    """The fast path exists: the second map of an unchanged job sends the
    same serial (the workers keep what they unpickled)."""
    ctx = _pool()
    inp = np.arange(20.0)
    out = ctx.alloc(like=inp)

    def kernel(worker_id, index, value):
        out[index] = 3 * value
    ctx.map(kernel, inp)
    serial = ctx._serial
    ctx.map(kernel, inp)
    assert ctx._serial == serial
    np.testing.assert_array_equal(out, 3 * inp)
    out[:] = 0
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, 3 * inp)


def test_a_changed_module_global_is_seen():
    global SCALE
    ctx = _pool()
    inp = np.arange(10.0)
    out = ctx.alloc(like=inp)

    def kernel(worker_id, index, value):
        out[index] = SCALE * value
    old = SCALE
    try:
        ctx.map(kernel, inp)
        np.testing.assert_array_equal(out, 2 * inp)
        SCALE = 5
        ctx.map(kernel, inp)
        np.testing.assert_array_equal(out, 5 * inp)
    finally:
        SCALE = old


def test_a_changed_closure_cell_default_and_attribute_are_seen():
    ctx = _pool()
    inp = np.arange(10.0)
    out = ctx.alloc(like=inp)
    factor = 2

    def kernel(worker_id, index, value, offset=0):
        out[index] = factor * value + offset + getattr(kernel, 'extra', 0)
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, 2 * inp)
    factor = 7
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, 7 * inp)
    kernel.__defaults__ = (100,)
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, 7 * inp + 100)
    kernel.extra = 1000
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, 7 * inp + 1100)


def test_a_changed_list_in_a_closure_is_seen():
    ctx = _pool()
    out = ctx.alloc(4)
    weights = [1.0, 1.0, 1.0, 1.0]

    def kernel(worker_id, index, value):
        out[index] = weights[index] * value
    ctx.map(kernel, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(out, [1, 2, 3, 4])
    weights[2] = 10.0  # in place: the list is the same object
    ctx.map(kernel, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(out, [1, 2, 30, 4])


def test_an_ordinary_array_changed_in_place_is_seen():
    ctx = _pool()
    inp = np.arange(10.0)
    out = ctx.alloc(like=inp)

    def kernel(worker_id, index, value):
        out[index] = value + 1
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, np.arange(10.0) + 1)
    inp[3] = 100.0  # same object, same address: new contents
    ctx.map(kernel, inp)
    assert out[3] == 101.0
    inp[:] = -1.0
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, 0.0)


def test_same_kernel_different_functors_and_output_arrays():
    """The same kernel object mapped with other arguments, and partials of
    it over output arrays of identical contents at other addresses."""
    ctx = _pool()

    def kernel(out, worker_id, index, value):
        out[index] = 3 * value
    a, b = ctx.alloc(6), ctx.alloc(6)  # both zero: identical bytes
    ctx.map(functools.partial(kernel, a), np.arange(6.0))
    ctx.map(functools.partial(kernel, b), np.arange(6.0) + 1)
    np.testing.assert_array_equal(a, 3 * np.arange(6.0))
    np.testing.assert_array_equal(b, 3 * (np.arange(6.0) + 1))
    c = ctx.alloc(6)
    p = functools.partial(kernel, c)
    for seq in ([1.0] * 6, [2.0] * 6, list(range(6)), range(6), (5,) * 6):
        ctx.map(p, seq)
        np.testing.assert_array_equal(c, 3 * np.asarray(seq, dtype=float))
    ctx.map(p, np.ones(6, dtype=np.int8))
    np.testing.assert_array_equal(c, 3.0)
    # a view of the output array at another offset
    d = ctx.alloc(12)
    ctx.map(functools.partial(kernel, d[:6]), np.arange(6.0))
    ctx.map(functools.partial(kernel, d[6:]), np.arange(6.0) + 10)
    np.testing.assert_array_equal(d, 3 * np.r_[np.arange(6.0), np.arange(6.0) + 10])


def test_a_worker_that_changes_its_copies_gets_fresh_ones():
    """A kernel that writes to what it was shipped (an ordinary array's
    rows, a mutable default, a global of its own) changes only its worker's
    copy: the next map must start from the caller's values again."""
    ctx = _pool(1)  # one worker: it runs every item of every map
    rows = np.ones((4, 3))
    out = ctx.alloc(4)

    def doubles_its_row(worker_id, index, row):
        row *= 2
        out[index] = row.sum()
    for _ in range(3):
        ctx.map(doubles_its_row, rows)
        np.testing.assert_array_equal(out, 6.0)
    np.testing.assert_array_equal(rows, 1.0)

    def memo_kernel(worker_id, index, value, memo={}):
        out[index] = memo.get(index, value)
        memo[index] = -1.0
    for _ in range(3):
        ctx.map(memo_kernel, [5.0, 6.0, 7.0, 8.0])
        np.testing.assert_array_equal(out, [5, 6, 7, 8])

    count = [0]

    def counter(worker_id, index, value):
        count[0] += 1
        out[index] = count[0]
    for _ in range(3):
        ctx.map(counter, [0, 0, 0, 0])
        np.testing.assert_array_equal(out, [1, 2, 3, 4])


GLOBALS_SCRIPT = textwrap.dedent('''\
    import functools
    import numpy as np
    import pasha as psh
    ctx = psh.ProcessContext(2, persistent=True)
    inp = np.random.rand(100)
    outp = ctx.alloc(like=inp)
    scale = 3
    def triple_it(outp, worker_id, index, value):
        outp[index] = scale * value
    kern = functools.partial(triple_it, outp)
    ok = []
    for step in range(4):
        ctx.map(kern, inp)
        ok.append(bool(np.allclose(outp, scale * inp)))
        if step == 1:
            scale = 4.5          # a __main__ global
        if step == 2:
            inp[:] = np.random.rand(100)
    hits = ctx._serial
    one = psh.ProcessContext(1, persistent=True)  # one worker: runs every map
    first = inp[:1]
    def bump(worker_id, index, value):
        global scale
        scale = scale + 1        # in the worker only
        outp[index] = scale
    for step in range(3):
        one.map(bump, first)
        ok.append(float(outp[0]) == 5.5)
    ok.append(one._serial == 1)
    print(all(ok), ok, hits)
''')


def test_main_module_kernel_globals():
    """A kernel of __main__ (shipped by value with its globals) over the
    same arrays: a changed global or array is seen, a global the kernel
    rebinds in its worker is the caller's again at the next map."""
    out = subprocess.run([sys.executable, '-c', GLOBALS_SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0] == 'True', out.stdout
    # 4 maps, two changes: three pickles, not four
    assert int(words[-1]) == 3, out.stdout


@pytest.mark.parametrize('kind', ['serial', 'threads', 'processes', 'pool'])
def test_every_kind_after_a_failed_map(kind):
    """A map that raised leaves nothing stale behind: the next one runs."""
    ctx = make_context(kind)
    out = ctx.alloc(8)
    state = {'fail': True}

    def kernel(worker_id, index, value):
        if state['fail'] and index == 5:
            raise KeyError('five')
        out[index] = value * 2
    with pytest.raises(KeyError):
        ctx.map(kernel, np.arange(8.0))
    state['fail'] = False
    ctx.map(kernel, np.arange(8.0))
    np.testing.assert_array_equal(out, 2 * np.arange(8.0))


def test_the_kept_job_keeps_no_array_alive():
    """The caller keeps what it needs to recognise the last job, not the
    job's arrays: a shared array dropped after a map is freed."""
    import gc
    import weakref
    ctx = _pool()
    out = ctx.alloc(100)
    inp = np.arange(100.0)

    def kernel(worker_id, index, value):
        out[index] = value
    ctx.map(kernel, inp)
    ctx.map(kernel, inp)  # the kept job
    np.testing.assert_array_equal(out, inp)
    refs = [weakref.ref(out), weakref.ref(inp), weakref.ref(kernel)]
    del out, inp, kernel
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_a_new_object_at_a_dead_ones_address_is_not_taken_for_it():
    ctx = _pool()
    for step in range(30):
        out = ctx.alloc(4)  # often at the address of the last one

        def kernel(worker_id, index, value):
            out[index] = value + step
        ctx.map(kernel, [0.0, 1.0, 2.0, 3.0])
        np.testing.assert_array_equal(out, np.arange(4.0) + step)
        del out, kernel


def test_uncacheable_jobs_are_pickled_every_map():
    """A kernel pickled by reference (a module function), an object the key
    does not know: each map pickles its job again, and is right."""
    ctx = _pool()
    out = ctx.alloc(3)

    class Box:
        def __init__(self, v):
            self.v = v
    box = Box(2.0)

    def kernel(worker_id, index, value):
        out[index] = box.v * value
    serial = ctx._serial
    for v in (2.0, 3.0, 4.0):
        box.v = v  # inside an object the key does not look into
        ctx.map(kernel, [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(out, v * np.arange(1.0, 4.0))
    assert ctx._serial == serial + 3
    ctx.map(_module_kernel, [(out, 0, 9.0)])
    assert out[0] == 9.0


def _module_kernel(worker_id, index, entry):
    arr, i, v = entry
    arr[i] = v


def _by_reference_kernel(out, worker_id, index, value):
    out[index] = value * 10


def _other_kernel(out, worker_id, index, value):
    out[index] = -1.0


def test_a_kernel_pickled_by_reference_is_kept_while_its_name_is_it():
    """A module-level kernel travels by module and name: the job is kept
    while the module's attribute of that name is still that function;
    rebound, cloudpickle ships the function by value, and so it runs."""
    ctx = _pool()
    out = ctx.alloc(4)
    inp = np.arange(4.0)
    kernel = functools.partial(_by_reference_kernel, out)
    ctx.map(kernel, inp)
    serial = ctx._serial
    ctx.map(kernel, inp)
    assert ctx._serial == serial
    np.testing.assert_array_equal(out, inp * 10)
    module = sys.modules[__name__]
    original = module._by_reference_kernel
    module._by_reference_kernel = _other_kernel
    try:
        out[:] = 0
        ctx.map(kernel, inp)  # still the original function
        assert ctx._serial == serial + 1
        np.testing.assert_array_equal(out, inp * 10)
    finally:
        module._by_reference_kernel = original


def test_keys_see_aliasing_and_identity():
    from pasha import context as pctx
    a = [1.0, 2.0]
    b = [1.0, 2.0]
    same = pctx._job_key(((a, a), None))
    other = pctx._job_key(((a, b), None))
    assert same is not None and other is not None
    assert not pctx._same_key(same, other)
    assert pctx._same_key(same, pctx._job_key(((a, a), None)))
    ctx = _pool()
    x, y = ctx.alloc(4), ctx.alloc(4)  # same (zero) contents, other addresses
    assert not pctx._same_key(pctx._job_key((x,)), pctx._job_key((y,)))
    assert not pctx._same_key(pctx._job_key((x[:2],)), pctx._job_key((x[2:],)))
    z = np.zeros(3)
    k = pctx._job_key((z,))
    z[1] = -0.0  # equal to 0.0, other bytes
    assert not pctx._same_key(k, pctx._job_key((z,)))
    assert pctx._job_key((object(),)) is None
    assert pctx._job_key((np.zeros(2, dtype=object),)) is None


def test_a_kernel_that_names_a_module():
    """numpy named through a global: the job is kept; rebinding the name to
    another module, or an import (sys.modules grows), makes a new one."""
    ctx = _pool()
    out = ctx.alloc(5)

    def kernel(worker_id, index, value):
        out[index] = np.sqrt(value)
    inp = np.array([0.0, 1.0, 4.0, 9.0, 16.0])
    ctx.map(kernel, inp)
    serial = ctx._serial
    ctx.map(kernel, inp)
    assert ctx._serial == serial
    np.testing.assert_array_equal(out, [0, 1, 2, 3, 4])
    import math
    lib = np

    def kernel2(worker_id, index, value):
        out[index] = value + len(lib.__name__)
    ctx.map(kernel2, inp)
    np.testing.assert_array_equal(out, inp + len('numpy'))
    lib = math  # another module under the same name
    ctx.map(kernel2, inp)
    np.testing.assert_array_equal(out, inp + len('math'))
    assert ctx._serial == serial + 2
    sys.modules['_pasha_test_fake_module'] = math
    try:
        ctx.map(kernel2, inp)
        assert ctx._serial == serial + 3
    finally:
        del sys.modules['_pasha_test_fake_module']


def test_a_kept_job_that_raises_reports_the_item():
    """The job is kept (same serial), what it reads in shared memory makes
    it raise: the error names the item, and the next map runs."""
    ctx = _pool()
    flags = ctx.alloc(8, dtype=np.int64)
    out = ctx.alloc(8)

    def kernel(worker_id, index, value):
        if flags[index]:
            raise ValueError(f'flagged {index}')
        out[index] = value
    inp = np.arange(8.0)
    ctx.map(kernel, inp)
    serial = ctx._serial
    flags[6] = 1
    with pytest.raises(ValueError, match='flagged 6'):
        ctx.map(kernel, inp)
    assert ctx._serial == serial  # the same job: the raise came from the kept one
    flags[6] = 0
    out[:] = 0
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, inp)
    ctx.map(kernel, inp)
    np.testing.assert_array_equal(out, inp)
