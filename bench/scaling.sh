#!/usr/bin/env bash
# Run the benchmark with 1, 2, 4, 8 and 16 workers (one JSON file each) and
# draw the scaling plots and table with bench/plot_scaling.py.
#
#   bench/scaling.sh BUILD_DIR [OUT_DIR] [-- extra bench options]
#
# BUILD_DIR was configured with -Dbench=enabled and built (ninja -C BUILD_DIR).
# OUT_DIR (default docs/scaling) receives workers-N.json, workers-N.txt,
# scaling-*.svg and scaling.md. WORKERS="1 2 4" overrides the worker counts.
# Run it on an otherwise idle machine with at least 16 cores: the figures
# mean nothing when workers outnumber the cores or share them with others.
set -euo pipefail
build=${1:?usage: bench/scaling.sh BUILD_DIR [OUT_DIR] [-- bench options]}
shift
out=docs/scaling
if [[ $# -gt 0 && $1 != -- ]]; then out=$1; shift; fi
[[ ${1:-} == -- ]] && shift
exe=$build/bench/bench
[[ -x $exe ]] || { echo "no $exe: configure with -Dbench=enabled and build" >&2; exit 2; }
mkdir -p "$out"
cores=$(nproc)
for w in ${WORKERS:-1 2 4 8 16}; do
    if (( w > cores )); then echo "note: $w workers on $cores cores: oversubscribed" >&2; fi
    echo "== $w workers" >&2
    "$exe" --workers "$w" --json "$out/workers-$w.json" "$@" | tee "$out/workers-$w.txt" >&2
done
python3 "$(dirname "$0")/plot_scaling.py" "$out" "$out"/workers-*.json
