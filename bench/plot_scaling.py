#!/usr/bin/env python3
"""Draw the scaling of the libpasha benchmark over worker counts.

    python3 bench/plot_scaling.py OUT_DIR workers-1.json workers-2.json ...

Reads the --json files of bench runs made with different --workers and
writes, in OUT_DIR, one SVG per workload (scaling-a.svg, ...: the median
time per map against the number of workers, log-log, one line per
variant) and scaling.md (the same numbers as Markdown tables, plus the
speed-up over the plain loop for (a)). Standard library only: no
matplotlib needed.
"""
import json
import math
import os
import sys

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
TITLES = {
    "a": "(a) calibration, 1000 frames 512x128 float32",
    "b": "(b) per-map latency, 100 trivial items",
    "c": "(c) per-item overhead, empty kernel",
    "d": "(d) imbalanced items (cost ~ index)",
    "f": "(f) reduction: histogram + sum of 1000 frames into per-worker rows",
}


def load(paths):
    runs = []
    for p in paths:
        with open(p) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: r["workers"])
    return runs


def series(runs, wid):
    """{variant: [(workers, median), ...]} and the unit of workload wid."""
    out, unit = {}, ""
    for r in runs:
        for name, v in r.get("workloads", {}).get(wid, {}).items():
            out.setdefault(name, []).append((r["workers"], v["median"]))
            unit = v["unit"]
    return out, unit


def nice_ticks(lo, hi):
    """Powers of ten (and 2x, 5x) covering [lo, hi] on a log axis."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            t = m * 10 ** e
            if lo / 1.0001 <= t <= hi * 1.0001:
                ticks.append(t)
        e += 1
    return ticks or [lo, hi]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_plot(path, title, unit, data):
    W, H, L, R, T, B = 760, 460, 80, 250, 40, 50
    xs = sorted({w for pts in data.values() for w, _ in pts})
    ys = [y for pts in data.values() for _, y in pts if y > 0]
    if not xs or not ys:
        return False
    xlo, xhi = min(xs), max(xs)
    if xlo == xhi:
        xhi = xlo * 2
    ylo, yhi = min(ys) / 1.2, max(ys) * 1.2

    def px(x):
        return L + (math.log(x) - math.log(xlo)) / (math.log(xhi) - math.log(xlo)) * (W - L - R)

    def py(y):
        return H - B - (math.log(y) - math.log(ylo)) / (math.log(yhi) - math.log(ylo)) * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="24" font-size="15">{esc(title)}</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
         f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">workers</text>',
         f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
         f'text-anchor="middle">median {esc(unit)} (log)</text>']
    for x in xs:
        o.append(f'<line x1="{px(x):.1f}" y1="{T}" x2="{px(x):.1f}" y2="{H - B}" stroke="#ddd"/>')
        o.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x}</text>')
    for t in nice_ticks(ylo, yhi):
        o.append(f'<line x1="{L}" y1="{py(t):.1f}" x2="{W - R}" y2="{py(t):.1f}" stroke="#eee"/>')
        o.append(f'<text x="{L - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for i, (name, pts) in enumerate(sorted(data.items())):
        c = COLORS[i % len(COLORS)]
        pts = [(w, y) for w, y in sorted(pts) if y > 0]
        if not pts:
            continue
        o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                 % (c, " ".join(f"{px(w):.1f},{py(y):.1f}" for w, y in pts)))
        for w, y in pts:
            o.append(f'<circle cx="{px(w):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
        ly = T + 10 + 18 * i
        o.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        o.append(f'<text x="{W - R + 36}" y="{ly + 4}">{esc(name)}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    return True


def md_table(runs, wid, unit, data):
    ws = [r["workers"] for r in runs]
    lines = [f"### {TITLES.get(wid, wid)} ({unit}, median)", "",
             "| variant | " + " | ".join(f"{w} w" for w in ws) + " |",
             "|---|" + "---:|" * len(ws)]
    for name in data:
        vals = dict(data[name])
        lines.append(f"| {name} | " + " | ".join(
            f"{vals[w]:.3g}" if w in vals else "" for w in ws) + " |")
    if wid == "a" and "plain loop" in data:
        base = dict(data["plain loop"])
        lines += ["", "Speed-up over the plain loop of the same run:", "",
                  "| variant | " + " | ".join(f"{w} w" for w in ws) + " |",
                  "|---|" + "---:|" * len(ws)]
        for name in data:
            if name == "plain loop":
                continue
            vals = dict(data[name])
            lines.append(f"| {name} | " + " | ".join(
                f"{base[w] / vals[w]:.2f}x" if w in vals and w in base and vals[w] > 0 else ""
                for w in ws) + " |")
    return lines + [""]


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, runs = argv[1], load(argv[2:])
    os.makedirs(out, exist_ok=True)
    md = ["# libpasha scaling", "",
          "Made by bench/scaling.sh from " + ", ".join(os.path.basename(p) for p in argv[2:]) + ".", ""]
    for wid in "abcdf":  # (b') runs under a busy-loop process: not a scaling figure
        data, unit = series(runs, wid)
        if not data:
            continue
        if svg_plot(os.path.join(out, f"scaling-{wid}.svg"), TITLES[wid], unit, data):
            md.append(f"![{wid}](scaling-{wid}.svg)")
            md.append("")
        md += md_table(runs, wid, unit, data)
    e = [(r["workers"], r["e"]) for r in runs if "e" in r]
    if e:
        md += ["### (e) zero copy: growth of the process tree's PSS while processes fill the array", "",
               "| workers | array GiB | tree PSS growth GiB | workers' PSS GiB | caller RSS after GiB |",
               "|---:|---:|---:|---:|---:|"]
        for w, x in e:
            md.append(f"| {w} | {x['array_gib']:.3f} | {x.get('tree_pss_growth_gib', float('nan')):.3f} | "
                      f"{x['workers_pss_gib']:.3f} | {x['caller_rss_after_gib']:.3f} |")
        md.append("")
    with open(os.path.join(out, "scaling.md"), "w") as f:
        f.write("\n".join(md))
    print(f"wrote {out}/scaling.md and scaling-*.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
