# SPDX-License-Identifier: BSD-3-Clause
"""Fixtures: every test that takes `ctx` runs in all four kinds of context."""

import pytest

import pasha as psh

KINDS = ['serial', 'threads', 'processes', 'pool']


def make_context(kind, num_workers=2, **kwargs):
    if kind == 'serial':
        return psh.SerialContext(**kwargs)
    if kind == 'threads':
        return psh.ThreadContext(num_workers, **kwargs)
    if kind == 'processes':
        return psh.ProcessContext(num_workers, **kwargs)
    return psh.ProcessContext(num_workers, persistent=True, **kwargs)


@pytest.fixture(params=KINDS)
def ctx(request):
    return make_context(request.param)
