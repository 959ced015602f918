#!/bin/sh
# Run test-mpi-full under mpirun with Open MPI's shared-window files on a
# 16 MiB tmpfs, in a private mount namespace. Skipped (77) where unshare or
# mount is not allowed (not root).
# With a 4th argument "split", only the second half of the ranks (a node of
# their own: PASHA_MPI_NODE_SIZE=RANKS/2) has its files there.
# usage: test-mpi-full.sh MPIRUN RANKS PROGRAM [split]
set -eu
mpirun=$1 ranks=$2 prog=$3 mode=${4:-}
dir=$(mktemp -d)
trap 'rmdir "$dir"' EXIT
unshare -m sh -c '
  mount -t tmpfs -o size=16m pasha-mpi-full "$1" 2>/dev/null || exit 77
  if [ "$5" = split ]; then
    half=$(($3 / 2))
    PASHA_MPI_NODE_SIZE=$half exec "$2" --oversubscribe -x PASHA_MPI_NODE_SIZE -n "$half" "$4" split : \
      -n "$half" env OMPI_MCA_osc_sm_backing_directory="$1" "$4" split
  fi
  OMPI_MCA_osc_sm_backing_directory=$1 exec "$2" -n "$3" --oversubscribe -x OMPI_MCA_osc_sm_backing_directory "$4"
' sh "$dir" "$mpirun" "$ranks" "$prog" "$mode" || rc=$?
rc=${rc:-0}
if [ "$rc" = 1 ] && ! unshare -m true 2>/dev/null; then exit 77; fi
exit "$rc"
