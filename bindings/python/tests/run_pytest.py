#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build and install the pasha package into a build directory, run pytest.

Usage: run_pytest.py BUILD_DIR PACKAGE_SOURCE_DIR [--python newest|all|PATH]
                     [--mpirun RUNS] [pytest args...]

--python newest (the default) runs the suite on the newest CPython 3.9+ on
the machine (python3.X on PATH, or under pyenv's versions), --python all on
every one of them, --python PATH on that interpreter. An interpreter without
the test dependencies gets a venv, made once and kept in
$PASHA_PYTHON_VENVS (default ~/.cache/libpasha/python-venvs/3.X), with the
packages of tools/deps/python.pip installed from PyPI.
Exits 77 (meson's "skipped") when no usable Python is found or a venv
cannot be made (no network); 1 when a run fails.

--mpirun RUNS runs the MPI suite (tests-mpi/) instead, once per run in the
comma-separated RUNS: N (mpirun -n N), NxK (N ranks cut into simulated
nodes of K ranks, PASHA_MPI_NODE_SIZE=K) or Ns (N ranks with Open MPI's
shared-window files on a 16 MiB tmpfs in a private mount namespace, the
tests marked for it only; skipped where unshare/mount are not allowed). It
exits 77 when mpirun is not found or the interpreter has no mpi4py.
"""

import glob
import os
import shutil
import subprocess
import sys

MIN = (3, 9)
NEEDED = ('numpy', 'pytest', 'mesonpy', 'pip', 'cloudpickle')
HERE = os.path.dirname(os.path.abspath(__file__))
PIP_FILE = os.path.join(HERE, '..', '..', '..', 'tools', 'deps', 'python.pip')
CORE_PKGS = ['numpy', 'meson-python>=0.13', 'meson>=1.0', 'ninja', 'pytest', 'cloudpickle']


def version_of(python):
    try:
        out = subprocess.run([python, '-c', 'import sys; print("%d %d" % sys.version_info[:2])'],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        major, minor = out.stdout.split()
        return int(major), int(minor)
    except ValueError:
        return None


def find_pythons():
    """{(3, X): path} of the CPython interpreters 3.9+ found."""
    found = {}
    candidates = []
    for minor in range(MIN[1], 20):
        path = shutil.which(f'python3.{minor}')
        if path:
            candidates.append(path)
    root = os.environ.get('PYENV_ROOT', os.path.expanduser('~/.pyenv'))
    candidates += sorted(glob.glob(os.path.join(root, 'versions', '3.*', 'bin', 'python3.*[0-9]')))
    candidates.append(sys.executable)
    for path in candidates:
        v = version_of(path)
        if v is not None and v >= MIN and v not in found:
            found[v] = path
    return found


def has_deps(python):
    code = ('import importlib.util, sys; '
            f'sys.exit(any(importlib.util.find_spec(m) is None for m in {NEEDED!r}))')
    return subprocess.run([python, '-c', code]).returncode == 0


def venv_python(python, version):
    """A venv of python with the test dependencies (made once), or None."""
    base = os.environ.get('PASHA_PYTHON_VENVS',
                          os.path.join(os.environ.get('XDG_CACHE_HOME',
                                                      os.path.expanduser('~/.cache')),
                                       'libpasha', 'python-venvs'))
    venv = os.path.join(base, '%d.%d' % version)
    vpy = os.path.join(venv, 'bin', 'python')
    if os.path.exists(vpy) and has_deps(vpy):
        return vpy
    print(f'run_pytest: making a venv for Python {version[0]}.{version[1]} in {venv}', flush=True)
    if subprocess.run([python, '-m', 'venv', venv]).returncode != 0:
        return None
    pip = [vpy, '-m', 'pip', 'install', '-q', '--disable-pip-version-check']
    subprocess.run(pip + ['--upgrade', 'pip'])  # --config-settings needs pip >= 22.1
    if subprocess.run(pip + CORE_PKGS).returncode != 0:
        return None
    if os.path.exists(PIP_FILE):  # the optional ones (xarray, EXtra-data...)
        subprocess.run(pip + ['-r', PIP_FILE])
    return vpy if has_deps(vpy) else None


def run_mpi(python, env, build_dir, src, runs, pytest_args):
    """The MPI suite under mpirun, once per run: 0, 1, or 77 (no mpirun/mpi4py)."""
    mpirun = shutil.which('mpirun') or shutil.which('mpiexec')
    if mpirun is None:
        print('skipping the MPI suite: no mpirun')
        return 77
    has = [python, '-c', 'import mpi4py']
    if subprocess.run(has, env=env).returncode != 0:
        # A venv made before mpi4py joined tools/deps/python.pip.
        in_venv = [python, '-c', 'import sys; sys.exit(sys.prefix == sys.base_prefix)']
        if subprocess.run(in_venv).returncode == 0:
            subprocess.run([python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
                            'mpi4py'])
        if subprocess.run(has, env=env).returncode != 0:
            print(f'skipping the MPI suite: {python} has no mpi4py')
            return 77
    env = dict(env)
    # CI runs as root; Open MPI refuses that unless told it is deliberate.
    env.setdefault('OMPI_ALLOW_RUN_AS_ROOT', '1')
    env.setdefault('OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', '1')
    # No CMA/ptrace in containers: the shared-memory transport copies instead.
    env.setdefault('OMPI_MCA_btl_vader_single_copy_mechanism', 'none')
    tests = os.path.join(src, 'tests-mpi')
    failed = []
    for run in runs.split(','):
        small = run.endswith('s')
        ranks, _, node = run.rstrip('s').partition('x')
        env['PASHA_MPI_NODE_SIZE'] = node
        print(f'run_pytest: mpirun -n {ranks}' + (f' (nodes of {node})' if node else '') +
              (' (16 MiB tmpfs for the windows)' if small else ''), flush=True)
        # --bind-to none: each rank's local workers may use every CPU (mpirun
        # binds a rank to one core by default when ranks <= cores).
        cmd = [mpirun, '-n', ranks, '--oversubscribe', '--bind-to', 'none']
        for name in ('PYTHONPATH', 'PASHA_NUM_WORKERS', 'PASHA_MPI_NODE_SIZE',
                     'PASHA_TEST_SMALL_SHM', 'OMPI_MCA_osc_sm_backing_directory'):
            cmd += ['-x', name]
        cmd += [python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--color=no',
                '--rootdir', tests, tests] + pytest_args
        run_env = dict(env, PASHA_TEST_SMALL_SHM='', OMPI_MCA_osc_sm_backing_directory=env.get(
            'OMPI_MCA_osc_sm_backing_directory', '/dev/shm'))
        if small:
            if shutil.which('unshare') is None or subprocess.run(
                    ['unshare', '-m', 'true'], capture_output=True).returncode != 0:
                print('run_pytest: skipped (no private mount namespace: not root?)')
                continue
            import tempfile
            where = tempfile.mkdtemp(prefix='pasha-small-shm-')
            run_env.update(PASHA_TEST_SMALL_SHM=str(16 << 20),
                           OMPI_MCA_osc_sm_backing_directory=where)
            cmd = ['unshare', '-m', 'sh', '-c',
                   'mount -t tmpfs -o size=16m pasha-small-shm "$0" && exec "$@"', where] + \
                cmd + ['-k', 'small_shm']
        rc = subprocess.run(cmd, cwd=build_dir, env=run_env).returncode
        if small:
            os.rmdir(where)
        if rc != 0:
            failed.append(run)
    # The example a new user starts from (it checks the gathered train ids).
    example = os.path.join(src, '..', '..', 'examples', 'mpi', 'trains.py')
    if os.path.exists(example):
        env['PASHA_MPI_NODE_SIZE'] = ''
        print('run_pytest: mpirun -n 2 examples/mpi/trains.py', flush=True)
        cmd = [mpirun, '-n', '2', '--oversubscribe', '--bind-to', 'none', '-x', 'PYTHONPATH',
               python, example]
        if subprocess.run(cmd, cwd=build_dir, env=env).returncode != 0:
            failed.append('examples/mpi/trains.py')
    if failed:
        print('run_pytest: MPI runs failed: ' + ', '.join(failed))
    return 1 if failed else 0


def run_one(python, version, build_dir, src, pytest_args, mpi_runs=None):
    """0 passed, 1 failed, 77 skipped."""
    if not has_deps(python):
        python = venv_python(python, version)
        if python is None:
            print(f'skipping Python {version}: no venv with ' + ', '.join(NEEDED))
            return 77
    tag = 'py%d.%d' % version
    target = os.path.join(build_dir, tag, 'site')
    print(f'run_pytest: Python {version[0]}.{version[1]} ({python})', flush=True)
    r = subprocess.run([python, '-m', 'pip', 'install', '--quiet', '--no-deps',
                        '--no-build-isolation', '--upgrade', '--target', target,
                        '--config-settings=build-dir=' + os.path.join(build_dir, tag, 'pybuild'), src])
    if r.returncode != 0:
        return 1
    env = dict(os.environ)
    env['PYTHONPATH'] = target + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('PASHA_NUM_WORKERS', '2')
    if mpi_runs:
        return run_mpi(python, env, build_dir, src, mpi_runs, pytest_args)
    tests = os.path.join(src, 'tests')
    r = subprocess.run([python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                        '--rootdir', tests, tests] + pytest_args, cwd=build_dir, env=env)
    return 0 if r.returncode == 0 else 1


def main():
    build_dir, src = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rest = sys.argv[3:]
    which = 'newest'
    if rest[:1] == ['--python']:
        which, rest = rest[1], rest[2:]
    mpi_runs = None
    if rest[:1] == ['--mpirun']:
        mpi_runs, rest = rest[1], rest[2:]
    if which in ('newest', 'all'):
        pythons = find_pythons()
        if not pythons:
            print('skipping the Python tests: no CPython 3.9+ found')
            return 77
        chosen = sorted(pythons.items())
        if which == 'newest':
            chosen = chosen[-1:]
    else:
        v = version_of(which)
        if v is None or v < MIN:
            print(f'{which}: not a CPython 3.9+')
            return 1
        chosen = [(v, which)]
    results = {}
    for version, python in chosen:
        results[version] = run_one(python, version, build_dir, src, rest, mpi_runs)
    for version, rc in results.items():
        print('run_pytest: Python %d.%d: %s' % (version + ({0: 'passed', 1: 'FAILED',
                                                             77: 'skipped'}[rc],)))
    if any(rc == 1 for rc in results.values()):
        return 1
    if all(rc == 77 for rc in results.values()):
        return 77
    return 0


if __name__ == '__main__':
    sys.exit(main())
