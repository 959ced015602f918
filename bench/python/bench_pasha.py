#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Per-map and per-item overhead of pasha on libpasha vs the original pasha 0.1.2.

Both run in this one script, alternating round by round, each in its own
interpreter (both are imported
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
    # processes first: the original's ThreadPool threads can deadlock a later fork
    contexts = [('processes', psh.ProcessContext(2)), ('threads', psh.ThreadContext(2)),
                ('serial', psh.SerialContext())]
    if impl == 'new':
        contexts.append(('pool', psh.ProcessContext(2, persistent=True)))
    for name, ctx in contexts:
        outp = ctx.alloc(like=inp)
        kern = functools.partial(triple_it, outp)
        ctx.map(kern, inp)  # warm up
        assert np.allclose(outp, 3 * inp)
        res['map ' + name] = timed(lambda: ctx.map(kern, inp), maps)
        if name == 'pool':
            # The same map with a global of the kernel changed before each
            # one: the pool sends the global's new value (a delta on the
            # job its workers keep), not the whole job.
            def scaled(outp, worker_id, index, value):
                outp[index] = scale * value
            ks = functools.partial(scaled, outp)

            def changed():
                global scale
                scale += 1.0
                ctx.map(ks, inp)
            scale = 3.0
            changed()
            assert np.allclose(outp, scale * inp)
            res['map pool changed'] = timed(changed, maps)
            assert np.allclose(outp, scale * inp)
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
    """One round of every measurement of impl, in a fresh interpreter."""
    env = dict(os.environ)
    if path:
        env['PYTHONPATH'] = path + os.pathsep + env.get('PYTHONPATH', '')
    for attempt in range(3):
        try:
            out = subprocess.run([sys.executable, '-c', WORKER, impl, '1', str(args.maps),
                                  str(args.items)], env=env, capture_output=True, text=True,
                                 check=False, timeout=120)
            break
        except subprocess.TimeoutExpired:  # the original can hang in its pool
            print(f'{impl}: a round hung for 120 s; run again', file=sys.stderr)
    else:
        sys.exit(f'{impl}: hung 3 times')
    if out.returncode != 0:
        sys.exit(f'{impl}: failed:\n{out.stderr}')
    return {k: v[0] for k, v in json.loads(out.stdout).items()}


def measure(args):
    """Rounds alternate between the two packages, so that the load of a
    shared machine falls on both alike. Returns ({orig}, {new}) of lists."""
    rounds = {'orig': {}, 'new': {}}
    for _ in range(args.rounds):
        for impl, path in (('orig', args.orig_path), ('new', args.new_path)):
            for k, v in run(impl, path, args).items():
                rounds[impl].setdefault(k, []).append(v)
    return rounds['orig'], rounds['new']


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--maps', type=int, default=100, help='maps per round (per-map overhead)')
    ap.add_argument('--items', type=int, default=1000000, help='items of the per-item map')
    ap.add_argument('--orig-path', default=os.path.join('/tmp', 'pasha-0.1.2-site'))
    ap.add_argument('--new-path', default='', help='where the new pasha is installed, if not '
                    'on sys.path')
    ap.add_argument('--json', action='store_true', help='print the medians as JSON too')
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.orig_path, 'pasha')):
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target',
                        args.orig_path, 'pasha==0.1.2'], check=True)
    orig_r, new_r = measure(args)
    orig = {k: statistics.median(v) for k, v in orig_r.items()}
    new = {k: statistics.median(v) for k, v in new_r.items()}
    best_o = {k: min(v) for k, v in orig_r.items()}
    best_n = {k: min(v) for k, v in new_r.items()}
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
        ('map serial (100 el.)', orig['map serial'], new['map serial'],
         f'{new["map serial"] / orig["map serial"]:.2f}x 0.1.2 serial (<= 1.0x)'),
        ('map threads vs serial', orig['map serial'], new['map threads'],
         f'{new["map threads"] / orig["map serial"]:.2f}x 0.1.2 serial (<= 2x)'),
        ('map pool vs serial', orig['map serial'], new['map pool'],
         f'{new["map pool"] / orig["map serial"]:.2f}x 0.1.2 serial (<= 3x)'),
        ('map pool, job changed', orig['map serial'], new['map pool changed'],
         f'{new["map pool changed"] / orig["map serial"]:.2f}x 0.1.2 serial (<= 2x; a global '
         'changed before each map: its value sent)'),
        ('fork floor (2 children)', None, floor, 'os.fork()+waitpid() x2'),
        ('per item threads', orig['item threads'], new['item threads'],
         f'{new["item threads"] / orig["item threads"]:.2f}x 0.1.2 (<= 0.7x)'),
        ('per item processes', orig['item processes'], new['item processes'],
         f'{new["item processes"] / orig["item processes"]:.2f}x 0.1.2 (<= 0.7x)'),
        ('per item serial', orig['item serial'], new['item serial'],
         f'{new["item serial"] / orig["item serial"]:.2f}x 0.1.2 (<= 0.7x)'),
        ('per item pool', orig['item processes'], new['item pool'],
         f'{new["item pool"] / orig["item processes"]:.2f}x 0.1.2 processes'),
    ]
    for name, o, n, note in rows:
        o_s = f'{o * us:10.2f}us' if o is not None else f'{"-":>12}'
        print(f'{name:<26}{o_s}{n * us:10.2f}us   {note}')
    print('fastest rounds: ' + ', '.join(
        f'{k} {best_o[k] * us:.2f}/{best_n[k] * us:.2f}us' if k in best_o else
        f'{k} {best_n[k] * us:.2f}us' for k in best_n))
    if args.json:
        print(json.dumps({'orig': orig_r, 'new': new_r}))


if __name__ == '__main__':
    main()
