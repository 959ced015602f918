#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The calibration workload from Python: MpiContext over the ranks of one
mpirun next to a local ProcessContext (no MPI), interleaved.

    mpirun -n R python3 bench/python/bench_mpi.py [--frames N] [--rounds K] [--workers W]

1000 frames of 512x128 float32 by default, out = (raw - offset) * gain,
one frame per item; an MpiContext(local='processes', num_workers=W) maps
them over the R ranks (each rank its block, W forked workers per rank).
A round's time is the slowest rank's map between two barriers. In the
same rounds, alternating with it, rank 0 alone maps the same frames on a
local ProcessContext(R x W) (as many workers as all ranks have) while the other ranks wait without spinning
(Ibarrier polled every millisecond). Prints medians and fastest rounds,
ms per map, and their ratio.
"""

import argparse
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import pasha as psh


def idle_wait(comm):
    """A barrier that sleeps instead of spinning (MPI's Barrier polls)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.001)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=1000)
    p.add_argument('--rounds', type=int, default=9)
    p.add_argument('--workers', type=int, default=1, help='local workers per rank')
    a = p.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    shape = (a.frames, 512, 128)

    ctx = psh.MpiContext(comm, local='processes', num_workers=a.workers)
    raw = ctx.alloc(shape=shape, dtype=np.float32)
    out = ctx.alloc(shape=shape, dtype=np.float32)
    offset = np.full((512, 128), 2.0, np.float32)
    gain = np.full((512, 128), 0.5, np.float32)
    if ctx.node_rank == 0:
        rng = np.random.default_rng(1)
        for i in range(a.frames):
            raw[i] = rng.random((512, 128), dtype=np.float32) * 4096
    comm.Barrier()

    def kernel(worker_id, index, frame):
        np.multiply(np.subtract(frame, offset, out=out[index]), gain, out=out[index])

    local = ref_raw = ref_out = None
    if rank == 0:
        local = psh.ProcessContext(num_workers=size * a.workers)
        ref_raw = local.alloc(like=raw)
        ref_raw[...] = raw
        ref_out = local.alloc(like=raw)

    def ref_kernel(worker_id, index, frame):
        np.multiply(np.subtract(frame, offset, out=ref_out[index]), gain, out=ref_out[index])

    t_mpi, t_ref = [], []
    for r in range(a.rounds + 1):  # round 0 warms up
        comm.Barrier()
        t0 = time.perf_counter()
        ctx.map(kernel, raw)
        dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        if rank == 0:
            t0 = time.perf_counter()
            local.map(ref_kernel, ref_raw)
            dr = time.perf_counter() - t0
        idle_wait(comm)
        if r:
            t_mpi.append(dt * 1e3)
            if rank == 0:
                t_ref.append(dr * 1e3)

    ctx.allgather(out)
    expect = (raw[::97] - offset) * gain
    ok = np.allclose(out[::97], expect)
    ok = comm.allreduce(ok, op=MPI.LAND)
    if rank == 0:
        if not ok or not np.allclose(ref_out[::97], expect):
            print('bench_mpi: wrong result', file=sys.stderr)
            return 1
        mm, rm = statistics.median(t_mpi), statistics.median(t_ref)
        print(f'calibration, {a.frames} frames of 512x128 float32, {a.rounds} rounds, '
              f'{size} ranks x {a.workers} workers; ms per map, median (fastest)')
        print(f'  ProcessContext({size * a.workers}), rank 0 alone   {rm:9.1f} ({min(t_ref):.1f})')
        print(f'  MpiContext {size} x {a.workers} processes      {mm:9.1f} ({min(t_mpi):.1f})')
        print(f'  ratio MPI / local                   {mm / rm:9.3f} '
              f'({min(t_mpi) / min(t_ref):.3f})')
    ctx.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
