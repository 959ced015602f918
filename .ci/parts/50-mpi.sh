#!/usr/bin/env bash
# The MPI context: build with -Dmpi=enabled -Dwerror=true and run the mpi
# suite (the test program under mpirun with 1, 2 and 4 ranks, also cut into
# one-rank and two-rank "nodes", the example and a tiny benchmark run; the
# behaviour suite of tests/mpi/behaviours.txt from C, Fortran and Python on
# 1, 2 and 4 ranks, mpi-behaviours-python skipped (77) without mpi4py).
# CI runs as root: Open MPI needs to be told that this is deliberate.
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
meson setup build-ci-mpi -Dmpi=enabled -Dwerror=true -Dtests=disabled >/dev/null
ninja -C build-ci-mpi >/dev/null
meson test -C build-ci-mpi --suite mpi --print-errorlogs
# The header is installed only in MPI builds.
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C build-ci-mpi --destdir "$dest" >/dev/null
test -f "$dest"/usr/local/include/pasha/pasha_mpi.h
test -f "$dest"/usr/local/include/pasha/pasha_mpi.hpp
echo "mpi: ok"
