#!/usr/bin/env bash
# The Python package's pytest suite on every CPython 3.9+ found (python3.X
# on PATH, or under pyenv's versions), each in its own venv (made once by
# run_pytest.py, with tools/deps/python.pip). The README test command has
# already run it on the newest one. Fails when any version fails; a
# machine with no Python 3.9+ at all skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The meson test's own directory: the newest version's build is reused.
out=${BUILD_DIR:-build-test}/bindings/python/tests
mkdir -p "$out"
rc=0
python3 bindings/python/tests/run_pytest.py "$out" bindings/python --python all || rc=$?
if [ "$rc" = 77 ]; then
    echo "python-versions: no CPython 3.9+ found, skipped"
    exit 0
fi
exit "$rc"
