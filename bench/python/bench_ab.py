#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Interleaved A/B of two builds of this package: per-map (100 items) and
per-item (3*10^5 items) cost of the quick guide's kernel (returns None) on
a pool, threads and serial, 2 workers, a fresh interpreter per round, the
order alternating; medians and fastest rounds.

    python3 bench/python/bench_ab.py REF_SITE NEW_SITE [ROUNDS]

REF_SITE / NEW_SITE: `pip install --no-deps --no-build-isolation --target
DIR bindings/python` of the two revisions."""
import json, subprocess, sys, statistics
W = r'''
import functools, json, sys, time
import numpy as np, pasha as psh
def triple(outp, w, i, v):
    outp[i] = 3 * v
res = {}
inp = np.random.rand(100); big = np.random.rand(300000)
for name, ctx in [('pool', psh.ProcessContext(2, persistent=True)), ('threads', psh.ThreadContext(2)), ('serial', psh.SerialContext())]:
    o = ctx.alloc(like=inp); k = functools.partial(triple, o); ctx.map(k, inp)
    t = time.perf_counter()
    for _ in range(200): ctx.map(k, inp)
    res['map ' + name] = (time.perf_counter() - t) / 200
    ob = ctx.alloc(like=big); kb = functools.partial(triple, ob); ctx.map(kb, big[:10])
    t = time.perf_counter(); ctx.map(kb, big); res['item ' + name] = (time.perf_counter() - t) / len(big)
print(json.dumps(res))
'''
paths = {'ref': sys.argv[1], 'new': sys.argv[2]}
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
got = {'ref': {}, 'new': {}}
for r in range(rounds):
    for impl in (('ref', 'new') if r % 2 == 0 else ('new', 'ref')):
        out = subprocess.run([sys.executable, '-c', W], env={'PYTHONPATH': paths[impl], 'PASHA_NUM_WORKERS': '2'}, capture_output=True, text=True, check=True)
        for k, v in json.loads(out.stdout).items():
            got[impl].setdefault(k, []).append(v)
for k in got['ref']:
    a, b = statistics.median(got['ref'][k]), statistics.median(got['new'][k])
    print(f'{k:<14} ref {a*1e6:9.3f}us  new {b*1e6:9.3f}us  new/ref {b/a:.3f}  (fastest {min(got["ref"][k])*1e6:.3f} / {min(got["new"][k])*1e6:.3f})')
