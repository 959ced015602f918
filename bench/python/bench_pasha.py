#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Per-map and per-item overhead of pasha on libpasha vs the original pasha 0.1.2.

Both run in this one script, each in its own interpreter (both are imported
as `pasha`): the new package from the current sys.path / --new-path, the
original from --orig-path (a `pip install --target DIR pasha==0.1.2`; made
with pip when missing). Prints a table of medians over --rounds rounds and
the ratios against the targets.

    python3 bench/python/bench_pasha.py [--rounds 7] [--maps 100]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent('''\
    import functools, json, os, sys, time
    import numpy as np
    import pasha as psh
    impl, rounds, maps, items = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    def triple_it(outp, worker_id, index, value):
        outp[index] = 3 * value

    def timed(fn, reps):
        out = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            out.append((time.perf_counter() - t0) / reps)
        return out

    res = {}
    inp = np.random.rand(100)
    big = np.random.rand(items)
    contexts = [('threads', psh.ThreadContext(2)), ('processes', psh.ProcessContext(2))]
    if impl == 'new':
        contexts.insert(0, ('serial', psh.SerialContext()))
        contexts.append(('pool', psh.ProcessContext(2, persistent=True)))
    for name, ctx in contexts:
        outp = ctx.alloc(like=inp)
        kern = functools.partial(triple_it, outp)
        ctx.map(kern, inp)  # warm up
        assert np.allclose(outp, 3 * inp)
        res['map ' + name] = timed(lambda: ctx.map(kern, inp), maps)
        outb = ctx.alloc(like=big)
        kb = functools.partial(triple_it, outb)
        res['item ' + name] = [t / items for t in timed(lambda: ctx.map(kb, big), 1)]
        assert np.allclose(outb, 3 * big)

    if impl == 'new':
        def fork_floor():
            pids = []
            for _ in range(2):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
        fork_floor()
        res['fork floor'] = timed(fork_floor, maps)
    print(json.dumps(res))
''')


def run(impl, path, args):
    env = dict(os.environ)
    if path:
        env['PYTHONPATH'] = path + os.pathsep + env.get('PYTHONPATH', '')
    out = subprocess.run([sys.executable, '-c', WORKER, impl, str(args.rounds), str(args.maps),
                          str(args.items)], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f'{impl}: failed:\n{out.stderr}')
    return {k: statistics.median(v) for k, v in json.loads(out.stdout).items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--maps', type=int, default=100, help='maps per round (per-map overhead)')
    ap.add_argument('--items', type=int, default=200000, help='items of the per-item map')
    ap.add_argument('--orig-path', default=os.path.join('/tmp', 'pasha-0.1.2-site'))
    ap.add_argument('--new-path', default='', help='where the new pasha is installed, if not '
                    'on sys.path')
    ap.add_argument('--json', action='store_true', help='print the medians as JSON too')
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.orig_path, 'pasha')):
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target',
                        args.orig_path, 'pasha==0.1.2'], check=True)
    orig = run('orig', args.orig_path, args)
    new = run('new', args.new_path, args)
    floor = new['fork floor']
    us = 1e6
    print(f'pasha 0.1.2 vs pasha on libpasha: 2 workers, medians of {args.rounds} rounds')
    print(f'{"measure":<26}{"0.1.2":>12}{"libpasha":>12}   ratio / target')
    rows = [
        ('map threads (100 el.)', orig['map threads'], new['map threads'],
         f'{orig["map threads"] / new["map threads"]:.1f}x faster (>= 10x)'),
        ('map processes (100 el.)', orig['map processes'], new['map processes'],
         f'{orig["map processes"] / new["map processes"]:.1f}x faster (>= 3x); '
         f'{new["map processes"] / floor:.2f}x fork floor (<= 1.3x)'),
        ('map pool (100 el.)', orig['map processes'], new['map pool'],
         f'{orig["map processes"] / new["map pool"]:.0f}x faster than 0.1.2 processes (>= 50x)'),
        ('map serial (100 el.)', None, new['map serial'], ''),
        ('fork floor (2 children)', None, floor, 'os.fork()+waitpid() x2'),
        ('per item threads', orig['item threads'], new['item threads'],
         f'{orig["item threads"] / new["item threads"]:.2f}x (>= 1x)'),
        ('per item processes', orig['item processes'], new['item processes'],
         f'{orig["item processes"] / new["item processes"]:.2f}x (>= 1x)'),
        ('per item pool', None, new['item pool'], ''),
        ('per item serial', None, new['item serial'], ''),
    ]
    for name, o, n, note in rows:
        o_s = f'{o * us:10.2f}us' if o is not None else f'{"-":>12}'
        print(f'{name:<26}{o_s}{n * us:10.2f}us   {note}')
    if args.json:
        print(json.dumps({'orig': orig, 'new': new}))


if __name__ == '__main__':
    main()
