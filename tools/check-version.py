#!/usr/bin/env python3
"""Check that every copy of libpasha's version agrees with meson.build.

Usage: check-version.py [ROOT]

The one version source is project(version:) in ROOT/meson.build. Checked
against it: include/pasha/pasha_version.h (PSH_VERSION_MAJOR/MINOR/PATCH,
PSH_VERSION_STRING), the Python package (pyproject.toml, its meson.build,
__version__), every Rust crate's Cargo.toml under bindings/rust, Julia's
Project.toml, the Fortran module's PSH_VERSION_* constants, and the newest
release heading of CHANGELOG.md. Exit status 1 and one line per
disagreement otherwise. Standard library only.
"""
import glob
import os
import re
import sys


def read(root, rel):
    with open(os.path.join(root, rel), encoding='utf-8') as f:
        return f.read()


def meson_version(root):
    m = re.search(r"project\s*\([^)]*?\bversion\s*:\s*'([^']+)'", read(root, 'meson.build'), re.S)
    if not m:
        raise SystemExit('check-version: no project(version:) in meson.build')
    return m.group(1)


def toml_section_value(text, section, key):
    """The string value of key in [section] of a TOML file (None if absent)."""
    current = None
    for line in text.splitlines():
        s = line.strip()
        h = re.match(r'\[\s*([^\]]+?)\s*\]$', s)
        if h:
            current = h.group(1)
            continue
        if current == section:
            m = re.match(r'%s\s*=\s*(["\'])([^"\']*)\1' % re.escape(key), s)
            if m:
                return m.group(2)
            if re.match(r'%s\s*\.\s*workspace\s*=\s*true' % re.escape(key), s):
                return 'workspace'
    return None


def found_versions(root):
    """Yield (where, version found or None) for every copy."""
    major, minor, patch = (meson_version(root).split('.') + ['?', '?'])[:3]
    h = read(root, 'include/pasha/pasha_version.h')
    for part in ('MAJOR', 'MINOR', 'PATCH'):
        m = re.search(r'#define\s+PSH_VERSION_%s\s+(\d+)' % part, h)
        yield 'include/pasha/pasha_version.h PSH_VERSION_%s' % part, (m.group(1) if m else None)
    m = re.search(r'#define\s+PSH_VERSION_STRING\s+"([^"]*)"', h)
    yield 'include/pasha/pasha_version.h PSH_VERSION_STRING', (m.group(1) if m else None)

    yield 'bindings/python/pyproject.toml', toml_section_value(read(root, 'bindings/python/pyproject.toml'),
                                                                'project', 'version')
    m = re.search(r"project\s*\([^)]*?\bversion\s*:\s*'([^']+)'", read(root, 'bindings/python/meson.build'), re.S)
    yield 'bindings/python/meson.build', (m.group(1) if m else None)
    m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", read(root, 'bindings/python/src/pasha/__init__.py'), re.M)
    yield 'bindings/python/src/pasha/__init__.py __version__', (m.group(1) if m else None)

    crates = sorted(glob.glob(os.path.join(root, 'bindings', 'rust', '**', 'Cargo.toml'), recursive=True))
    crates = [c for c in crates if os.sep + 'target' + os.sep not in c]
    if not crates:
        yield 'bindings/rust/**/Cargo.toml', None
    for c in crates:
        rel = os.path.relpath(c, root)
        text = read(root, rel)
        ws = toml_section_value(text, 'workspace.package', 'version')
        if ws is not None:
            yield rel + ' [workspace.package]', ws
        pv = toml_section_value(text, 'package', 'version')
        if pv is None and '[package]' in text:
            yield rel + ' [package]', None
        elif pv is not None and pv != 'workspace':
            yield rel + ' [package]', pv

    yield 'bindings/julia/Project.toml', toml_section_value('[top]\n' + read(root, 'bindings/julia/Project.toml'),
                                                            'top', 'version')

    f = read(root, 'bindings/fortran/pasha.f90')
    for part in ('MAJOR', 'MINOR', 'PATCH'):
        m = re.search(r'PSH_VERSION_%s\s*=\s*(\d+)' % part, f, re.I)
        yield 'bindings/fortran/pasha.f90 PSH_VERSION_%s' % part, (m.group(1) if m else None)
    m = re.search(r"PSH_VERSION_STRING\s*=\s*'([^']*)'", f, re.I)
    yield 'bindings/fortran/pasha.f90 PSH_VERSION_STRING', (m.group(1) if m else None)

    m = re.search(r'^##\s*\[?(\d+\.\d+\.\d+)', read(root, 'CHANGELOG.md'), re.M)
    yield 'CHANGELOG.md (newest release heading)', (m.group(1) if m else None)


def check(root):
    version = meson_version(root)
    parts = dict(zip(('MAJOR', 'MINOR', 'PATCH'), version.split('.')))
    problems, n = [], 0
    for where, found in found_versions(root):
        n += 1
        want = version
        for part, value in parts.items():
            if where.endswith('PSH_VERSION_' + part):
                want = str(int(value))
        if found is None:
            problems.append('%s: no version found (meson.build has %s)' % (where, version))
        elif found != want:
            problems.append('%s: %s, but meson.build has %s (want %s)' % (where, found, version, want))
    # The Python distribution is `pasha`, the successor of the original
    # pasha 0.1.2 on PyPI: its name, and a version that pip sees as newer.
    name = toml_section_value(read(root, 'bindings/python/pyproject.toml'), 'project', 'name')
    n += 1
    if name != 'pasha':
        problems.append("bindings/python/pyproject.toml: distribution name %r, want 'pasha' "
                        "(the successor of pasha 0.1.2)" % name)
    try:
        newer = tuple(int(x) for x in version.split('.')[:3]) > (0, 1, 2)
    except ValueError:
        newer = False
    if not newer:
        problems.append('meson.build: version %s is not newer than the original pasha 0.1.2' % version)
    return version, problems, n


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    version, problems, n = check(root)
    for p in problems:
        print(p)
    if problems:
        print('FAIL: %d of %d version copies disagree with meson.build (%s)' % (len(problems), n, version))
        return 1
    print('OK: %d version copies agree with meson.build: %s' % (n, version))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
