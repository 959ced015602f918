#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""A pool map with a global changed before each map (issue 24) against
pasha 0.1.2's serial map, in many short loops.

bench_pasha.py times each measure once per round (one loop of 100 maps in a
fresh interpreter, a few rounds): on a shared machine its medians are mostly
the load. This one runs, in each of --rounds fresh interpreters per package
(alternating), --loops loops of --maps maps and keeps every loop's time per
map; it prints the fastest loop (what the code costs) and the median loop
(what the machine gave) of: 0.1.2's serial map, the new package's serial
map, its pool map with an unchanged job, and with a global of the kernel
changed before each map. The kernel, input and output are bench_pasha.py's
(the quick guide's, 100 elements, 2 workers).

    python3 bench/python/bench_pool_delta.py --new-path DIR [--orig-path DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent('''\
    import functools, json, sys, time
    import numpy as np
    import pasha as psh
    impl, loops, maps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def triple_it(outp, worker_id, index, value):
        outp[index] = 3 * value

    def scaled(outp, worker_id, index, value):
        outp[index] = scale * value

    def timed(fn):
        fn()
        out = []
        for _ in range(loops):
            t0 = time.perf_counter()
            for _ in range(maps):
                fn()
            out.append((time.perf_counter() - t0) / maps)
        return out

    res = {}
    inp = np.random.rand(100)
    ctx = psh.SerialContext()
    outp = ctx.alloc(like=inp)
    kern = functools.partial(triple_it, outp)
    res['serial'] = timed(lambda: ctx.map(kern, inp))
    assert np.allclose(outp, 3 * inp)
    if impl == 'new':
        pool = psh.ProcessContext(2, persistent=True)
        outp = pool.alloc(like=inp)
        kern = functools.partial(triple_it, outp)
        res['pool'] = timed(lambda: pool.map(kern, inp))
        assert np.allclose(outp, 3 * inp)
        ks = functools.partial(scaled, outp)
        scale = 3.0

        def changed():
            global scale
            scale += 1.0
            pool.map(ks, inp)
        res['pool changed'] = timed(changed)
        assert np.allclose(outp, scale * inp)
    print(json.dumps(res))
''')


def run(impl, path, args):
    env = dict(os.environ)
    if path:
        env['PYTHONPATH'] = path + os.pathsep + env.get('PYTHONPATH', '')
    out = subprocess.run([sys.executable, '-c', WORKER, impl, str(args.loops), str(args.maps)],
                         env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit(f'{impl}: failed:\n{out.stderr}')
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--loops', type=int, default=20)
    ap.add_argument('--maps', type=int, default=50)
    ap.add_argument('--orig-path', default=os.path.join('/tmp', 'pasha-0.1.2-site'))
    ap.add_argument('--new-path', default='')
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.orig_path, 'pasha')):
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target',
                        args.orig_path, 'pasha==0.1.2'], check=True)
    times = {}
    for _ in range(args.rounds):
        for impl, path in (('orig', args.orig_path), ('new', args.new_path)):
            for k, v in run(impl, path, args).items():
                times.setdefault(f'{impl} {k}', []).extend(v)
    us = 1e6
    best = {k: min(v) * us for k, v in times.items()}
    med = {k: statistics.median(v) * us for k, v in times.items()}
    n = args.rounds * args.loops
    print(f'fastest / median of {n} loops of {args.maps} maps (us per map), ratio to '
          '0.1.2 serial (fastest / median)')
    base_b, base_m = best['orig serial'], med['orig serial']
    for k in ('orig serial', 'new serial', 'new pool', 'new pool changed'):
        print(f'{k:<20}{best[k]:9.2f} /{med[k]:9.2f}   {best[k] / base_b:5.2f}x / '
              f'{med[k] / base_m:5.2f}x')


if __name__ == '__main__':
    main()
