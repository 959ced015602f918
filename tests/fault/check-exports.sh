#!/bin/sh
# The library exports exactly the functions pasha.h declares (psh_*), nothing
# else, and carries the SONAME libpasha.so.0 (libpasha_mpi.so.0 for the MPI
# library, which alone may need libmpi).
set -eu
lib="$1"
shift  # the rest: the public headers
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
declared=$(cat "$@" | tr '\n' ' ' | grep -o 'PSH_API[^;]*;' | grep -o 'psh_[a-z0-9_]*[[:space:]]*(' \
           | tr -d '( ' | sort -u)
if [ "$exported" != "$declared" ]; then
    echo "exported and declared symbols differ:"
    printf '%s\n' "$exported" > /tmp/psh-exported.$$
    printf '%s\n' "$declared" | diff /tmp/psh-exported.$$ - || true
    rm -f /tmp/psh-exported.$$
    exit 1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
case "$soname" in
    libpasha.so.0)
        if readelf -d "$lib" | grep NEEDED | grep -q libmpi; then
            echo "libpasha.so.0 needs MPI: the MPI context belongs in libpasha_mpi"; exit 1
        fi ;;
    libpasha_mpi.so.0) ;;
    *) echo "SONAME is $soname, not libpasha.so.0 or libpasha_mpi.so.0"; exit 1 ;;
esac
echo "ok: $(printf '%s\n' "$exported" | wc -l) psh_ symbols exported, exactly those the headers declare; SONAME $soname"
