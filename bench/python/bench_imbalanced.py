#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Imbalanced work (item i costs ~i): pasha's dynamic schedule against
concurrent.futures.ProcessPoolExecutor(chunksize=1) and multiprocessing.Pool
(chunksize=1), 2 workers, interleaved rounds, medians (issue 15's row).

    python3 bench/python/bench_imbalanced.py [--rounds 5] [--items 200] [--unit 20000]
"""

import argparse
import concurrent.futures
import multiprocessing
import statistics
import time

import numpy as np

import pasha as psh

UNIT = 20000


def cost(i):
    s = 0
    for k in range(i * UNIT // 100):
        s += k
    return s


def kernel(out, worker_id, index, value):
    out[index] = cost(value)


def main():
    global UNIT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--items', type=int, default=200)
    ap.add_argument('--unit', type=int, default=UNIT)
    args = ap.parse_args()
    UNIT = args.unit
    items = list(range(args.items))
    expect = [cost(i) for i in items]
    ctx = psh.ProcessContext(2, persistent=True, schedule='dynamic')
    out = ctx.alloc(args.items, dtype=np.int64)
    fork = psh.ProcessContext(2, schedule='dynamic')
    out2 = fork.alloc(args.items, dtype=np.int64)
    ppe = concurrent.futures.ProcessPoolExecutor(2)
    mpp = multiprocessing.get_context('fork').Pool(2)
    list(ppe.map(cost, [0, 1]))  # start the workers
    mpp.map(cost, [0, 1])

    import functools
    variants = {
        'pasha pool, dynamic': lambda: ctx.map(functools.partial(kernel, out), items),
        'pasha processes, dynamic': lambda: fork.map(functools.partial(kernel, out2), items),
        'ProcessPoolExecutor(chunksize=1)': lambda: list(ppe.map(cost, items, chunksize=1)),
        'multiprocessing.Pool(chunksize=1)': lambda: mpp.map(cost, items, chunksize=1),
    }
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    assert list(out) == expect and list(out2) == expect
    med = {k: statistics.median(v) for k, v in times.items()}
    best_peer = min(med['ProcessPoolExecutor(chunksize=1)'],
                    med['multiprocessing.Pool(chunksize=1)'])
    print(f'imbalanced work, {args.items} items (item i costs ~i), 2 workers, '
          f'medians of {args.rounds} rounds')
    for name, t in med.items():
        print(f'{name:<36}{t * 1e3:9.1f} ms   {t / best_peer:.3f}x best peer (target <= 1.02x)')
    ppe.shutdown()
    mpp.close()


if __name__ == '__main__':
    main()
