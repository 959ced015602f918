# SPDX-License-Identifier: BSD-3-Clause
"""The MPI suite runs on every rank of one mpirun (run_pytest.py --mpirun N).

Each test makes the same collective calls on every rank and asserts only
after the last of them, so that an assertion failing on one rank cannot
leave the others waiting. A test that hangs anyway (a bug) dumps every
thread's stack and exits the rank after PASHA_MPI_TEST_TIMEOUT seconds
(default 120), which ends the whole mpirun.
"""

import faulthandler
import os

import pytest

MPI = pytest.importorskip('mpi4py.MPI')


@pytest.fixture(autouse=True)
def _hang_guard():
    faulthandler.dump_traceback_later(int(os.environ.get('PASHA_MPI_TEST_TIMEOUT', '120')),
                                      exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.fixture(params=['serial', 'threads', 'processes'])
def local(request):
    return request.param


@pytest.fixture
def ctx(comm, local):
    import pasha as psh
    c = psh.MpiContext(comm, local=local, num_workers=2)
    yield c
    c.close()
