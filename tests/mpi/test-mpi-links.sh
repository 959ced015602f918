#!/bin/sh
# libpasha_mpi stands on libpasha: it needs libpasha.so.0 and defines none
# of the engine's dynamic symbols (only pasha_mpi.h's, the rest undefined
# references into libpasha).
set -eu
mpi_lib="$1" core_lib="$2"
readelf -d "$mpi_lib" | grep -q 'NEEDED.*\[libpasha\.so\.0\]' || { echo "libpasha_mpi does not link libpasha.so.0"; exit 1; }
core=$(nm -D --defined-only "$core_lib" | awk '{print $3}' | sort)
mine=$(nm -D --defined-only "$mpi_lib" | awk '{print $3}' | sort)
both=$(printf '%s\n' "$core" | comm -12 - "$(printf '%s\n' "$mine" > /tmp/psh-mpi-syms.$$; echo /tmp/psh-mpi-syms.$$)")
rm -f /tmp/psh-mpi-syms.$$
if [ -n "$both" ]; then echo "libpasha_mpi defines engine symbols:"; echo "$both"; exit 1; fi
undefined=$(nm -D --undefined-only "$mpi_lib" | awk '{print $2}' | grep -c '^psh_' || true)
[ "$undefined" -ge 1 ] || { echo "libpasha_mpi takes nothing from libpasha"; exit 1; }
echo "ok: libpasha_mpi needs libpasha.so.0, defines $(printf '%s\n' "$mine" | wc -l) symbols of its own, none of the engine's"
