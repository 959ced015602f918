#!/bin/sh
# Run test-mpi-full under mpirun with Open MPI's shared-window files on a
# 16 MiB tmpfs, in a private mount namespace. Skipped (77) where unshare or
# mount is not allowed (not root).
# usage: test-mpi-full.sh MPIRUN RANKS PROGRAM
set -eu
mpirun=$1 ranks=$2 prog=$3
dir=$(mktemp -d)
trap 'rmdir "$dir"' EXIT
unshare -m sh -c '
  mount -t tmpfs -o size=16m pasha-mpi-full "$1" 2>/dev/null || exit 77
  OMPI_MCA_osc_sm_backing_directory=$1 exec "$2" -n "$3" --oversubscribe -x OMPI_MCA_osc_sm_backing_directory "$4"
' sh "$dir" "$mpirun" "$ranks" "$prog" || rc=$?
rc=${rc:-0}
if [ "$rc" = 1 ] && ! unshare -m true 2>/dev/null; then exit 77; fi
exit "$rc"
