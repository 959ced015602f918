#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build and install the pasha package into a build directory, run pytest.

Usage: run_pytest.py BUILD_DIR PACKAGE_SOURCE_DIR [pytest args...]
Exits 77 (meson's "skipped") when numpy, pytest or meson-python are missing.
"""

import importlib.util
import os
import subprocess
import sys


def main():
    build_dir, src = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    missing = [m for m in ('numpy', 'pytest', 'mesonpy', 'pip')
               if importlib.util.find_spec(m) is None]
    if missing:
        print('skipping the Python tests: missing ' + ', '.join(missing))
        return 77
    target = os.path.join(build_dir, 'site')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                    '--no-build-isolation', '--upgrade', '--target', target,
                    '-Cbuild-dir=' + os.path.join(build_dir, 'pybuild'), src], check=True)
    env = dict(os.environ)
    env['PYTHONPATH'] = target + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('PASHA_NUM_WORKERS', '2')
    tests = os.path.join(src, 'tests')
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           '--rootdir', tests, tests] + sys.argv[3:],
                          cwd=build_dir, env=env).returncode


if __name__ == '__main__':
    sys.exit(main())
