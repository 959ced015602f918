#!/usr/bin/env bash
# Benchmark smoke run: build bench/ with -Dbench=enabled -Dwerror=true, run
# every workload at tiny sizes (--quick) through bench/scaling.sh with 1 and
# 2 workers, and check that the JSON and the plots come out. No timing is
# checked: this machine's figures mean nothing.
set -euo pipefail
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
meson setup "$out/build" -Dbench=enabled -Dwerror=true -Dtests=disabled -Dexamples=disabled >/dev/null
ninja -C "$out/build" >/dev/null
# The C++ API's benchmark (bench/cpp): runs and checks its answers.
"$out/build/bench/cpp/bench_cpp" --quick --rounds 3 >/dev/null
WORKERS="1 2" bench/scaling.sh "$out/build" "$out" -- --quick --rounds 3 2>/dev/null >/dev/null
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for w in (1, 2):
    d = json.load(open(f"{out}/workers-{w}.json"))
    assert d["workers"] == w, d["workers"]
    assert set(d["workloads"]) == {"a", "b", "b'", "c", "d", "f"}, d["workloads"].keys()
    assert len(d["targets"]) == 12, d["targets"]
    assert all(v["median"] > 0 for k in ("a", "b", "b'", "d", "f") for v in d["workloads"][k].values())
    assert 0.5 < d["e"]["workers_pss_gib"] / d["e"]["array_gib"] < 1.5, d["e"]
for f in ("scaling.md", "scaling-a.svg", "scaling-d.svg", "scaling-f.svg"):
    assert open(f"{out}/{f}").read().strip(), f
PY
echo "bench: ok"
