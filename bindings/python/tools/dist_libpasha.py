#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""meson dist script of the Python package: put libpasha's sources into the
sdist. In the repository, subprojects/libpasha is a symlink to the
repository root, which an sdist cannot carry; this replaces it in the dist
tree by a copy of the repository's git-tracked files (the C/C++ sources,
headers, meson files, COPYING), so that `pip install` of the sdist builds
libpasha from source. The package's own COPYING (a symlink to the
repository's) becomes a copy of the file, as PEP 639's license-files needs a
file in the sdist."""

import os
import shutil
import subprocess


def main():
    src = os.environ['MESON_SOURCE_ROOT']
    dist = os.environ['MESON_DIST_ROOT']
    root = os.path.realpath(os.path.join(src, 'subprojects', 'libpasha'))
    licence = os.path.join(dist, 'COPYING')
    if os.path.islink(licence):
        os.unlink(licence)
        shutil.copy2(os.path.join(root, 'COPYING'), licence)
    dest = os.path.join(dist, 'subprojects', 'libpasha')
    if os.path.islink(dest) or os.path.isfile(dest):
        os.unlink(dest)
    elif os.path.isdir(dest):
        return  # already a real directory (an sdist being rebuilt)
    files = subprocess.run(['git', '-C', root, 'ls-files', '-z'], check=True,
                           capture_output=True).stdout.decode().split('\0')
    for f in files:
        if not f or f.startswith('bindings/python/subprojects/'):
            continue
        path = os.path.join(root, f)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        target = os.path.join(dest, f)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(path, target)


if __name__ == '__main__':
    main()
