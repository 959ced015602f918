#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""copy-mod.py on a rebuild: OUT (DIR/NAME.mod, the installed copy) already
exists and is the newest NAME.mod under DIR; the copy must still come from
the library's private directory (it failed with SameFileError)."""
import os
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
with tempfile.TemporaryDirectory() as d:
    os.mkdir(os.path.join(d, 'libx.so.p'))
    src = os.path.join(d, 'libx.so.p', 'x.mod')
    out = os.path.join(d, 'x.mod')
    with open(src, 'w') as f:
        f.write('new module\n')
    with open(out, 'w') as f:
        f.write('old copy\n')
    t = time.time()
    os.utime(src, (t - 10, t - 10))  # the previous copy is newer than the rebuilt module
    os.utime(out, (t, t))
    r = subprocess.run([sys.executable, os.path.join(here, 'copy-mod.py'), d, 'x.mod', out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f'copy-mod.py failed: {r.stderr.strip()}')
    with open(out) as f:
        got = f.read()
    if got != 'new module\n':
        sys.exit(f'copy-mod.py copied {got!r}, not the module of libx.so.p')
print('copy-mod: ok')
