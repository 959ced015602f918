#!/usr/bin/env python3
"""Negative tests of check-version.py: on a scratch copy of the files it
reads, the real tree passes, and each drifted copy (one file at a time set
to another version) fails naming that file. Usage: check-version-negative.py"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, '..')
checker = os.path.join(here, 'check-version.py')

FILES = ['meson.build', 'include/pasha/pasha_version.h', 'bindings/python/pyproject.toml',
         'bindings/python/meson.build', 'bindings/python/src/pasha/__init__.py',
         'bindings/julia/Project.toml', 'bindings/fortran/pasha.f90', 'CHANGELOG.md']


def run(tree):
    p = subprocess.run([sys.executable, checker, tree], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def main():
    version = re.search(r"version\s*:\s*'([^']+)'", open(os.path.join(root, 'meson.build')).read()).group(1)
    major, minor, patch = version.split('.')
    other = '%d.%d.%d' % (int(major), int(minor) + 1, int(patch))
    crates = [os.path.relpath(os.path.join(d, 'Cargo.toml'), root)
              for d, _, fs in os.walk(os.path.join(root, 'bindings', 'rust'))
              if 'Cargo.toml' in fs and 'target' not in d.split(os.sep)]
    files = FILES + crates
    # One drift per copy: (file, old text, new text).
    drifts = [
        ('include/pasha/pasha_version.h', '#define PSH_VERSION_MINOR %d' % int(minor),
         '#define PSH_VERSION_MINOR %d' % (int(minor) + 1)),
        ('include/pasha/pasha_version.h', 'PSH_VERSION_STRING "%s"' % version, 'PSH_VERSION_STRING "%s"' % other),
        ('bindings/python/pyproject.toml', "version = '%s'" % version, "version = '%s'" % other),
        ('bindings/python/meson.build', "version : '%s'" % version, "version : '%s'" % other),
        # the distribution must stay `pasha` (the successor of pasha 0.1.2)
        ('bindings/python/pyproject.toml', "name = 'pasha'", "name = 'libpasha'"),
        ('bindings/python/src/pasha/__init__.py', "'%s'" % version, "'%s'" % other),
        ('bindings/julia/Project.toml', 'version = "%s"' % version, 'version = "%s"' % other),
        ('bindings/fortran/pasha.f90', 'PSH_VERSION_PATCH = %d' % int(patch),
         'PSH_VERSION_PATCH = %d' % (int(patch) + 1)),
        ('bindings/fortran/pasha.f90', "'%s'" % version, "'%s'" % other),
        ('CHANGELOG.md', '## %s' % version, '## %s' % other),
    ]
    # Crates: the literal version of [package] or [workspace.package] (a
    # member that says version.workspace = true has none of its own).
    for c in crates:
        text = open(os.path.join(root, c)).read()
        for section in ('[workspace.package]', '[package]'):
            at = text.find(section)
            if at >= 0 and re.match(r'[^\[]*?^version\s*=\s*"', text[at + len(section):], re.M | re.S):
                drifts.append((c, section, 'version = "%s"' % version, 'version = "%s"' % other))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        def fresh():
            shutil.rmtree(os.path.join(tmp, 't'), ignore_errors=True)
            for f in files:
                dst = os.path.join(tmp, 't', f)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy(os.path.join(root, f), dst)
            return os.path.join(tmp, 't')
        rc, out = run(fresh())
        if rc != 0:
            print('FAIL: the real tree does not pass:\n' + out)
            return 1
        print('ok - the real tree passes')
        for d in drifts:
            f, old, new = d[0], d[-2], d[-1]
            at_section = d[1] if len(d) == 4 else None
            t = fresh()
            path = os.path.join(t, f)
            text = open(path).read()
            start = text.find(at_section) if at_section else 0
            if old not in text[start:]:
                print('FAIL: %r not found in %s (the test is out of date)' % (old, f))
                failures += 1
                continue
            open(path, 'w').write(text[:start] + text[start:].replace(old, new, 1))
            rc, out = run(t)
            if rc == 1 and f in out:
                print('ok - %s drifted to %s: detected' % (f, new))
            else:
                print('FAIL: %s drifted (%s) not detected (status %d):\n%s' % (f, new, rc, out))
                failures += 1
    print('%d of %d drifts detected' % (len(drifts) - failures, len(drifts)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
