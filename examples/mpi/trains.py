#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""An EXtra-data run mapped over MPI ranks with pasha.MpiContext.

    pip install './bindings/python[mpi]' extra_data
    mpirun -n 2 --bind-to none python3 -m mpi4py examples/mpi/trains.py [RUN_DIR]

(`--bind-to none`: each rank's workers may use every CPU; `-m mpi4py`: an
uncaught exception on one rank aborts the job instead of leaving the others
waiting.) Without RUN_DIR, rank 0 writes a small mock run (two sequence
files of 400 trains, EXtra-data's own test helpers; the photon flux of
train t set to t / 1000, as the helpers write zeros) into a temporary
directory. Each rank
maps its contiguous block of trains with forked local workers and opens only
the files holding them; the kernel gets the global index and the train id.
Rank 0 checks the train ids gathered from all ranks (and, for the mock
run, every train's flux) and prints how many trains had XGM data and the
per-worker train counts summed over the nodes.
"""

import os
import shutil
import sys
import tempfile

import numpy as np
from mpi4py import MPI

import extra_data as xd
import pasha as psh

SOURCE, KEY = 'SA1_XTD2_XGM/DOOCS/MAIN', 'pulseEnergy.photonFlux'


def mock_run():
    import h5py
    from extra_data.tests import make_examples
    path = tempfile.mkdtemp(prefix='pasha-run-')
    for seq, first in enumerate((10000, 10400)):
        name = os.path.join(path, f'RAW-R0450-DA01-S0000{seq}.h5')
        make_examples.make_fxe_da_file(name, firsttrain=first)
        with h5py.File(name, 'r+') as f:  # a flux to check: train id / 1000
            value = f[f'CONTROL/{SOURCE}/{KEY.replace(".", "/")}/value']
            value[...] = (first + np.arange(len(value))) / 1000
    return path


def main():
    comm = MPI.COMM_WORLD
    mock = len(sys.argv) < 2
    path = comm.bcast(mock_run() if comm.Get_rank() == 0 else None, root=0) if mock \
        else sys.argv[1]
    # num_workers per rank: PASHA_NUM_WORKERS, else the CPUs available
    ctx = psh.MpiContext(comm, local='processes')
    flux = xd.RunDirectory(path)[SOURCE, KEY]
    n = len(flux.train_ids)
    out = ctx.alloc(shape=n)                       # one buffer per node
    tids = ctx.alloc(shape=n, dtype=np.uint64)
    per_worker = ctx.alloc(shape=1, dtype=np.int64, per_worker=True)

    def kernel(worker_id, index, train_id, value):
        out[index] = np.sum(value) if value is not None else np.nan
        tids[index] = train_id
        per_worker[worker_id] += 1

    ctx.map(kernel, flux)                          # trains split over the ranks
    ctx.gather(out, root=0)
    ctx.gather(tids, root=0)
    ctx.reduce(per_worker, 'sum', root=0)
    if ctx.rank == 0:
        assert (tids == flux.train_ids).all()
        if mock:
            assert np.allclose(out, tids / 1000), 'wrong flux'
        print(f'{n} trains over {ctx.size} ranks x {ctx.local_workers} workers; '
              f'{np.isfinite(out).sum()} with XGM data (sum of flux {np.nansum(out):.4g}); '
              f'trains per worker {per_worker[:, 0].tolist()}')
    ctx.close()
    if mock:
        comm.Barrier()
        if comm.Get_rank() == 0:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == '__main__':
    main()
