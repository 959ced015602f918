#!/usr/bin/env bash
# The manylinux wheel, as users install it (issue 25): build, `auditwheel
# repair` (libpasha linked into the extension, nothing grafted; `auditwheel
# show` gives a manylinux tag), then in a fresh venv with pip resolving
# `pasha` offline from local folders: ours, then a package that requires
# `pasha`, keeps ours; `pip check` clean; uninstall + reinstall; ours over
# the original pasha 0.1.2; then the package's test suite on the installed
# wheel. By default on the newest CPython found; PASHA_WHEEL_PYTHONS=all:
# every CPython 3.9+ (about 1 min each here), or a list of interpreters.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${BUILD_DIR:-build-test}/wheel
rc=0
# shellcheck disable=SC2086
python3 bindings/python/tools/check_wheel.py "$work" bindings/python \
    --python ${PASHA_WHEEL_PYTHONS:-newest} || rc=$?
if [ "$rc" = 77 ]; then
    echo "wheel: no CPython 3.9+ found, skipped"
    exit 0
fi
exit "$rc"
