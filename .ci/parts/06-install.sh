#!/usr/bin/env bash
# Install libpasha (shared and static, MPI and Fortran parts when their
# toolchains are present) into a scratch prefix and build outside consumers
# from tests/consumers, as users would, from directories outside the tree:
#   C with pkg-config (shared, and --static against libpasha.a),
#   C with CMake find_package (pasha::pasha, pasha::pasha_static; a wrong
#     version is refused), Fortran with pasha-fortran.pc (use pasha),
#   MPI with pasha-mpi.pc and CMake's pasha::pasha_mpi (under mpirun -n 2).
# Each program checks what it computes; this script checks what they print.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD/tests/consumers
build=$PWD/${PASHA_CI_BUILD_PREFIX:-build}-install
work=$(mktemp -d)
trap 'rm -rf "$work" "$build"' EXIT
prefix=$work/prefix
sum=332833500   # sum of i*i for i < 1000

{ meson setup "$build" --prefix "$prefix" -Ddefault_library=both -Dmpi=auto -Dfortran=auto \
        -Dtests=disabled -Dexamples=disabled &&
  meson compile -C "$build" -j"${PASHA_CI_JOBS:-2}" &&
  meson install -C "$build"; } > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
pcdir=$(dirname "$(find "$prefix" -name pasha.pc | head -n1)")
export PKG_CONFIG_PATH=$pcdir
libdir=$(pkg-config --variable=libdir pasha)
rpath="-Wl,-rpath,$libdir"
expect() {  # expect FILE PATTERN...: every pattern is a line of FILE
    local f=$1; shift
    for p in "$@"; do grep -qx -- "$p" "$f" || { echo "install: '$p' not in output:"; cat "$f"; exit 1; }; done
}
cd "$work"

# C, shared, pkg-config; libpasha must not need MPI even in MPI builds.
cc -std=c11 -Wall -Werror "$src/consumer.c" $(pkg-config --cflags --libs pasha) "$rpath" -o c-shared
./c-shared > out.txt
expect out.txt "libpasha $(pkg-config --modversion pasha) (200)" "threads: sum $sum" "processes: sum $sum"
readelf -d c-shared | grep -q 'NEEDED.*libpasha.so.0' || { echo "install: c-shared does not use libpasha.so.0"; exit 1; }
if readelf -d "$libdir/libpasha.so.0" | grep NEEDED | grep -q libmpi; then echo "install: libpasha.so.0 needs MPI"; exit 1; fi
if pkg-config --cflags --libs pasha | grep -qi mpi; then echo "install: pasha.pc mentions MPI"; exit 1; fi
echo "install: C via pkg-config (shared): ok"

# C, static: a directory holding only libpasha.a, as a static-only install.
mkdir staticlib && cp "$libdir/libpasha.a" staticlib/
cc -std=c11 -Wall -Werror "$src/consumer.c" $(pkg-config --cflags pasha) -L"$work/staticlib" \
   $(pkg-config --static --libs pasha) -o c-static
if readelf -d c-static | grep -q 'NEEDED.*libpasha'; then echo "install: c-static needs libpasha.so"; exit 1; fi
./c-static > out.txt
expect out.txt "threads: sum $sum" "processes: sum $sum"
echo "install: C via pkg-config --static (libpasha.a): ok"

# C, CMake: find_package(pasha 0.2 CONFIG REQUIRED) with only CMAKE_PREFIX_PATH.
cmake_args=(-DCMAKE_PREFIX_PATH="$prefix" -DPASHA_CONSUMER_STATIC=ON)
have_mpi=false
if [ -f "$pcdir/pasha-mpi.pc" ]; then have_mpi=true; cmake_args+=(-DPASHA_CONSUMER_MPI=ON); fi
cmake -S "$src" -B cm "${cmake_args[@]}" >cmake.log || { cat cmake.log; exit 1; }
cmake --build cm -j"${PASHA_CI_JOBS:-2}" >>cmake.log || { cat cmake.log; exit 1; }
cm/consumer > out.txt
expect out.txt "threads: sum $sum" "processes: sum $sum"
cm/consumer_static > out.txt
expect out.txt "threads: sum $sum" "processes: sum $sum"
if readelf -d cm/consumer_static | grep -q 'NEEDED.*libpasha'; then echo "install: consumer_static needs libpasha.so"; exit 1; fi
for v in 0.3 1.0; do   # versions the installed 0.2 does not satisfy
    if cmake -S "$src" -B "cm-$v" -DCMAKE_PREFIX_PATH="$prefix" -DPASHA_WANT_VERSION=$v >/dev/null 2>&1; then
        echo "install: find_package(pasha $v) accepted version $(pkg-config --modversion pasha)"; exit 1
    fi
done
echo "install: C via CMake (pasha::pasha, pasha::pasha_static; 0.3 and 1.0 refused): ok"

# Fortran: pasha-fortran.pc, from a clean directory.
if [ -f "$pcdir/pasha-fortran.pc" ]; then
    mkdir fortran && (cd fortran && cp "$src/consumer.f90" . &&
        gfortran consumer.f90 $(pkg-config --cflags --libs pasha-fortran) "$rpath" -o f-consumer &&
        ./f-consumer > ../out.txt)
    expect out.txt "kind 1: sum $sum." "kind 2: sum $sum."
    echo "install: Fortran via pasha-fortran.pc: ok"
else
    echo "install: no Fortran compiler: Fortran consumer skipped"
fi

# MPI: pasha-mpi.pc with plain cc, and CMake's pasha::pasha_mpi.
if $have_mpi; then
    # libpasha_mpi stands on libpasha (one engine), and pasha-mpi.pc brings it.
    readelf -d "$libdir/libpasha_mpi.so.0" | grep -q 'NEEDED.*\[libpasha\.so\.0\]' ||
        { echo "install: libpasha_mpi.so.0 does not link libpasha.so.0"; exit 1; }
    pkg-config --libs pasha-mpi | grep -q -- '-lpasha\b' || { echo "install: pasha-mpi.pc does not bring pasha"; exit 1; }
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
    cc -std=c11 -Wall -Werror "$src/consumer_mpi.c" $(pkg-config --cflags --libs pasha-mpi) "$rpath" -o c-mpi
    mpirun -n 2 --oversubscribe ./c-mpi > out.txt
    expect out.txt "mpi: 2 ranks, sum $sum, every rank agrees"
    mpirun -n 2 --oversubscribe cm/consumer_mpi > out.txt
    expect out.txt "mpi: 2 ranks, sum $sum, every rank agrees"
    echo "install: MPI via pasha-mpi.pc and CMake pasha::pasha_mpi: ok"
else
    echo "install: no MPI found: MPI consumers skipped"
fi
echo "install: ok"
