#!/usr/bin/env python3
"""Copy the compiled module NAME.mod of the library built in DIR to OUT.
Meson writes modules into the target's private directory (DIR/<lib>.p/);
the newest NAME.mod there is the one. Usage: copy-mod.py DIR NAME.mod OUT"""
import glob
import os
import shutil
import sys

d, name, out = sys.argv[1:4]
found = glob.glob(os.path.join(d, '*.p', name)) + glob.glob(os.path.join(d, name))
# OUT itself (it may be DIR/NAME.mod) is never the source: a rebuild found it newest.
found = [f for f in found if not (os.path.exists(out) and os.path.samefile(f, out))]
if not found:
    sys.exit('copy-mod.py: no %s under %s' % (name, d))
src = max(found, key=os.path.getmtime)
# The compiler may write NAME.mod straight into DIR, which can be OUT itself.
if not (os.path.exists(out) and os.path.samefile(src, out)):
    shutil.copyfile(src, out)
