#!/usr/bin/env bash
# The Python package as users get it: `python -m build bindings/python` makes
# an sdist and a wheel; the sdist (which must carry libpasha's C/C++ sources)
# is pip-installed into a fresh venv, which then runs the quick guide; the
# wheel must carry COPYING and the extension with libpasha linked in.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${BUILD_DIR:-build-test}/python-package
rm -rf "$work"
mkdir -p "$work"
py=python3
$py -m venv "$work/venv-build"
"$work/venv-build/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip build
"$work/venv-build/bin/python" -m build -o "$work/dist" bindings/python
sdist=$(ls "$work"/dist/pasha-*.tar.gz)
wheel=$(ls "$work"/dist/pasha-*.whl)
tar tzf "$sdist" > "$work/sdist-files.txt"
grep -q '/subprojects/libpasha/src/api.cc$' "$work/sdist-files.txt"
grep -q '/subprojects/libpasha/include/pasha/pasha.h$' "$work/sdist-files.txt"
grep -q '/subprojects/libpasha/COPYING$' "$work/sdist-files.txt"
$py - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert 'pasha/COPYING' in names, names
assert 'pasha/py.typed' in names, names
assert any(n.startswith('pasha/_pasha.') and n.endswith('.so') for n in names), names
print('wheel ok:', len(names), 'files')
PY
$py -m venv "$work/venv-sdist"
"$work/venv-sdist/bin/python" -m pip install -q --disable-pip-version-check "$sdist"
cd "$work"
out=$(PASHA_NUM_WORKERS=2 venv-sdist/bin/python - <<'PY'
import numpy as np
import pasha as psh
inp = np.random.rand(100)
outp = psh.alloc(like=inp)
def triple_it(worker_id, index, value):
    outp[index] = 3 * value
psh.map(triple_it, inp)
print(np.allclose(outp, inp * 3), psh.__version__ == psh.libpasha_version)
PY
)
echo "sdist install: $out"
[ "$out" = "True True" ]
# the extension must not need a libpasha.so from the build machine
ldd venv-sdist/lib/python3*/site-packages/pasha/_pasha*.so > ldd.txt
! grep libpasha ldd.txt
