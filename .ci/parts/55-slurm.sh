#!/usr/bin/env bash
# The docs/slurm scripts under a real Slurm (issues 25 and 26): a one-node
# cluster on this machine (tools/slurm/cluster.sh: munged, slurmctld and
# slurmd, their state in a temporary directory, stopped at the end by the
# PIDs it started), libpasha with MPI and Fortran installed into a scratch
# prefix with its examples, and each installed script sbatch'ed as a user
# would, its printed results checked against values computed here:
#   C        pasha-mpi.sbatch      example-mpi     2 tasks x 1 CPU, and the
#            script's own defaults (1 task x 2 CPUs), and PASHA_NUM_WORKERS=3
#   Fortran  pasha-fortran.sbatch  calibrate_mpi built by CMake against the
#            prefix (pasha::pasha_fortran_mpi), 2 tasks x 1 CPU
#   Python   pasha-python.sbatch   trains.py (pasha.MpiContext, mpi4py,
#            EXtra-data) from a venv active at sbatch time, 2 tasks x 1 CPU
#   srun --mpi=pmix (the alternative the scripts name)  2 tasks x 1 CPU
# and in each, the worker count: libpasha's default must follow the
# allocation (one worker per rank of 1 CPU, two in a task of 2 CPUs).
# Before that, calibrate_mpi is built from the prefix with pkg-config
# (pasha-fortran-mpi.pc) and CMake and run under plain mpirun.
# Needs root and tools/deps/slurm.apt; skipped without them outside CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

missing=""
for p in sbatch squeue scontrol slurmctld slurmd munged mpirun mpif90 cmake; do
    command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || missing+=" $p"
done
# Each job asks for 2 CPUs: a 1-CPU machine would leave them pending.
[ "$(nproc)" -ge 2 ] || { echo "slurm: skipped: the jobs need 2 CPUs, this machine has $(nproc)"; exit 0; }
if [ -n "$missing" ] || [ "$(id -u)" -ne 0 ]; then
    why=${missing:+missing:$missing}
    [ "$(id -u)" -eq 0 ] || why="not root (the daemons run as root) ${why}"
    if [ "${CI:-}" = true ]; then echo "slurm: $why"; exit 1; fi
    echo "slurm: skipped: $why"
    exit 0
fi

build=$root/${PASHA_CI_BUILD_PREFIX:-build}-ci-slurm
work=$(mktemp -d /tmp/pasha-slurm.XXXXXX)
pip_pid=
cleanup() {
    local rc=$?
    if [ -n "$pip_pid" ]; then kill "$pip_pid" 2>/dev/null || true; wait "$pip_pid" 2>/dev/null || true; fi
    "$root/tools/slurm/cluster.sh" stop "$work/cluster" || true
    rm -rf "$work" "$build"
    exit $rc
}
trap cleanup EXIT
prefix=$work/prefix
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
unset PASHA_NUM_WORKERS PASHA_MPI_NODE_SIZE
t0=$SECONDS

# 1. libpasha with MPI, Fortran and the examples, into the prefix.
{ meson setup "$build" --prefix "$prefix" -Dmpi=enabled -Dfortran=enabled -Dexamples=enabled \
        -Dtests=disabled -Dwerror=true &&
  meson compile -C "$build" -j"${PASHA_CI_JOBS:-2}" &&
  meson install -C "$build"; } > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
pcdir=$(dirname "$(find "$prefix" -name pasha.pc | head -n1)")
export PKG_CONFIG_PATH=$pcdir
libdir=$(pkg-config --variable=libdir pasha)
ex=$prefix/libexec/pasha
sb=$prefix/share/pasha/slurm
for f in "$ex/example-mpi" "$ex/calibrate_mpi" "$ex/trains.py" "$sb/pasha-mpi.sbatch" \
         "$sb/pasha-fortran.sbatch" "$sb/pasha-python.sbatch" "$pcdir/pasha-fortran-mpi.pc" \
         "$libdir/libpasha_fortran_mpi.so.0" \
         "$libdir/cmake/pasha/pashaFortranTargets.cmake"; do
    [ -e "$f" ] || { echo "slurm: not installed: ${f#"$prefix"/}"; exit 1; }
done
[ -n "$(find "$prefix/include/pasha/fortran" -name pasha_mpi.mod)" ] ||
    { echo "slurm: pasha_mpi.mod not installed"; exit 1; }
echo "slurm: installed into a prefix ($((SECONDS - t0)) s)"

# check_calibrate FILE FRAMES WORKERS: the line calibrate.c or
# calibrate_mpi.f90 printed, against the sum computed here (both write
# raw = (i + p) % 1000 for pixel p of frame i, offset p % 7, gain
# 1 + (p % 3) / 2: every term is a multiple of 0.5, so the sums are exact).
check_calibrate() {
    python3 - "$@" <<'PY'
import re, sys
path, frames, workers, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if kind == 'c':
    pixels = [(p, p) for p in range(512 * 128)]               # (offset/gain index, raw shift)
else:  # Fortran: ROWS=64, COLS=32, raw(r,c,i) = (i+r+c) % 1000, p = r + 64 (c-1) for the constants
    pixels = [(r + 64 * (c - 1), r + c) for c in range(1, 33) for r in range(1, 65)]
twice = 0  # twice the expected sum, an integer
for k, shift in pixels:
    g2 = 2 + k % 3
    for i in range(frames):
        twice += ((i + shift) % 1000 - k % 7) * g2
text = open(path).read()
m = re.search(r'^(\d+) frames on (\d+) workers: sum (\S+) \(gathered (\S+), expected (\S+)\)$', text, re.M)
if not m:
    sys.exit(f'{path}: no result line in:\n{text}')
want = twice / 2
got = [float(m.group(k)) for k in (3, 4, 5)]
if int(m.group(1)) != frames or float(m.group(5)) != want or \
        any(abs(v - want) > 1e-6 * abs(want) for v in got):
    sys.exit(f'{path}: {m.group(0)!r}, but {frames} frames sum to {want:.1f}')
if int(m.group(2)) != workers:
    sys.exit(f'{path}: {m.group(2)} workers over all ranks, {workers} expected (the allocation): {m.group(0)!r}')
print(f'slurm: {path.rsplit("/", 1)[-1]}: {m.group(0)}')
PY
}

# 2. A venv with the Python package, built in the background while the
# Fortran consumers build and the C jobs run (pip, from the source tree;
# its dependencies numpy, mpi4py, extra_data come from tools/deps/python.pip
# through --system-site-packages: CI is offline).
python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation "$root/bindings/python" > "$work/pip.log" 2>&1 &
pip_pid=$!

# 3. The Fortran example built against the prefix, as users would.
mkdir "$work/fortran" && cd "$work/fortran"
cp "$root/bindings/fortran/mpi/calibrate_mpi.f90" .
mpif90 calibrate_mpi.f90 $(pkg-config --cflags --libs pasha-fortran-mpi) -Wl,-rpath,"$libdir" \
    -o calibrate_pc
cmake -S "$root/tests/consumers/fortran-mpi" -B cm -DCMAKE_PREFIX_PATH="$prefix" \
    -DPASHA_FORTRAN_MPI_SOURCE="$work/fortran/calibrate_mpi.f90" > cmake.log 2>&1 &&
    cmake --build cm >> cmake.log 2>&1 || { cat cmake.log; exit 1; }
for prog in calibrate_pc cm/calibrate_mpi; do
    PASHA_NUM_WORKERS=2 mpirun -n 2 --oversubscribe -x PASHA_NUM_WORKERS "./$prog" 12 > "$prog.out"
    check_calibrate "$prog.out" 12 4 fortran
done
echo "slurm: Fortran MPI example built from the prefix with pkg-config and CMake: ok"

# 4. The cluster, and the jobs, all submitted at once (the node runs them
# as its CPUs allow), from a directory of their own.
"$root/tools/slurm/cluster.sh" start "$work/cluster"
export SLURM_CONF=$work/cluster/slurm.conf
mkdir "$work/jobs" && cd "$work/jobs"
shape=(-N 1 --ntasks-per-node=2 --cpus-per-task=1)
frames=24
declare -A job
job[c]=$(sbatch --parsable "${shape[@]}" -o c.out "$sb/pasha-mpi.sbatch" "$ex/example-mpi" $frames)
job[c-defaults]=$(sbatch --parsable -o c-defaults.out "$sb/pasha-mpi.sbatch" "$ex/example-mpi" $frames)
job[c-workers]=$(PASHA_NUM_WORKERS=3 sbatch --parsable "${shape[@]}" -o c-workers.out \
    "$sb/pasha-mpi.sbatch" "$ex/example-mpi" $frames)
job[fortran]=$(sbatch --parsable "${shape[@]}" -o fortran.out "$sb/pasha-fortran.sbatch" \
    "$work/fortran/cm/calibrate_mpi" $frames)
wait $pip_pid || { cat "$work/pip.log"; exit 1; }
pip_pid=
"$work/venv/bin/python" -c 'import pasha, mpi4py, extra_data, h5py'
echo "slurm: venv with pasha $("$work/venv/bin/python" -c 'import pasha; print(pasha.__version__)') ($((SECONDS - t0)) s)"
job[python]=$(. "$work/venv/bin/activate" && sbatch --parsable "${shape[@]}" -o python.out \
    "$sb/pasha-python.sbatch" "$ex/trains.py")
job[srun-pmix]=$(sbatch --parsable "${shape[@]}" -o srun-pmix.out \
    --wrap "srun --mpi=pmix $ex/example-mpi $frames")

# Wait (generously: a loaded machine) for every job to leave the queue.
deadline=$((SECONDS + 400))
while [ -n "$(squeue -h -o %i 2>/dev/null)" ]; do
    if [ $SECONDS -gt $deadline ]; then
        echo "slurm: jobs still queued after 400 s:"; squeue; scontrol show job
        tail -n 30 "$work"/cluster/*.log; exit 1
    fi
    sleep 1
done
fail=0
for name in "${!job[@]}"; do
    state=$(scontrol -o show job "${job[$name]}" | grep -o 'JobState=[A-Z]* .*ExitCode=[0-9:]*' || true)
    case $state in
        JobState=COMPLETED*ExitCode=0:0) ;;
        *) echo "slurm: job $name (${job[$name]}): ${state:-unknown}"; cat "$name.out" || true; fail=1 ;;
    esac
done
[ $fail -eq 0 ] || { tail -n 30 "$work"/cluster/slurmd.log; exit 1; }

# 5. The results: 2 ranks x 1 CPU -> 1 worker each; 1 task of 2 CPUs -> 2.
# Every check runs; any failure fails the part at the end.
check_calibrate c.out $frames 2 c || fail=1
check_calibrate c-defaults.out $frames 2 c || fail=1
check_calibrate c-workers.out $frames 6 c || fail=1
check_calibrate srun-pmix.out $frames 2 c || fail=1
check_calibrate fortran.out $frames 2 fortran || fail=1
python3 - python.out <<'PY' || fail=1
import re, sys
text = open(sys.argv[1]).read()
# trains.py's mock run: 800 trains 10000..10799, flux = train id / 1000.
want = sum(range(10000, 10800)) / 1000
m = re.search(r'^800 trains over 2 ranks x (\d+) workers; 800 with XGM data '
              r'\(sum of flux (\S+)\); trains per worker \[([\d, ]+)\]$', text, re.M)
if not m:
    sys.exit(f'python.out: no result line (800 trains over 2 ranks) in:\n{text}')
per_worker = [int(v) for v in m.group(3).split(',')]
if float(m.group(2)) != float(f'{want:.4g}') or sum(per_worker) != 800 or \
        len(per_worker) != 2 * int(m.group(1)):
    sys.exit(f'python.out: {m.group(0)!r}: flux sum {want:.4g} and 800 trains over the workers expected')
if int(m.group(1)) != 1:
    sys.exit(f'python.out: {m.group(1)} workers per rank, 1 expected (1 CPU per task): {m.group(0)!r}')
print(f'slurm: python.out: {m.group(0)}')
PY
[ $fail -eq 0 ] || { echo "slurm: FAILED"; exit 1; }
echo "slurm: ok ($((SECONDS - t0)) s)"
