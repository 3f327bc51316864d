#!/usr/bin/env python3
"""build_summary.py results.csv [startup.csv] -> markdown: rbuild beside Buildah.

results.csv: engine,workload,run,phase,seconds,maxrss_kb,bytes,note with engines named
rbuild-<fs> and buildah-<fs> (fs = ext4 | tmpfs), as tests/bench/build.sh writes it.
Prints, per file system, the medians of both engines, the rbuild/Buildah ratios next to
the targets of issue 6, rbuild's peak RSS, and BuildKit's baseline figures from
../shared/bench/README.md (measured once on this machine class; rbuild must beat them).
"""
import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["W1-tiny", "W2-apt", "W3-manyfiles", "W4-multistage", "W5a-arm64-tiny", "W5b-arm64-apt"]
# (phase, workload) -> target ratio rbuild / Buildah (issue 6); W4 is cold + push.
TARGETS = {
    ("cold", "W1-tiny"): 0.3,
    ("warm", "W1-tiny"): 0.1,
    ("change", "W1-tiny"): 0.2,
    ("cold", "W3-manyfiles"): 0.35,
    ("cold+push", "W4-multistage"): 0.4,
    ("cold", "W2-apt"): 1.0,
    ("cold", "W5a-arm64-tiny"): 1.0,
    ("cold", "W5b-arm64-apt"): 1.0,
}
# BuildKit 0.11 rootless, from ../shared/bench/README.md (cold, warm, one-file; seconds).
BUILDKIT = {
    "W1-tiny": (0.41, 0.11, 0.27),
    "W2-apt": (9.87, 0.09, 0.19),
    "W3-manyfiles": {"ext4": (10.78, 0.08, 7.45), "tmpfs": (1.88, 0.06, 1.93)},
    "W4-multistage": (9.03, 0.09, 5.90),
    "W5a-arm64-tiny": (0.53, 0.08, 0.39),
    "W5b-arm64-apt": (83.76, 0.09, 0.52),
}


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def main(path, startup=None):
    secs = defaultdict(list)  # (engine, wl, phase) -> [s]
    rss = defaultdict(list)  # (engine, wl) -> [kb]
    per_run = defaultdict(dict)  # (engine, wl, run) -> phase -> s
    failed = defaultdict(int)
    own = defaultdict(list)  # (engine, wl) -> [kb]: rbuild's own processes
    with open(path) as f:
        for r in csv.DictReader(f):
            if r.get("note", "").startswith("FAILED"):
                failed[(r["engine"], r["workload"])] += 1
                continue
            if r["phase"].startswith("own_rss") and r["maxrss_kb"]:
                own[(r["engine"], r["workload"])].append(int(r["maxrss_kb"]))
                continue
            if r["phase"].startswith("size") or not r["seconds"]:
                continue
            s = float(r["seconds"])
            secs[(r["engine"], r["workload"], r["phase"])].append(s)
            per_run[(r["engine"], r["workload"], r["run"])][r["phase"]] = s
            if r["maxrss_kb"]:
                rss[(r["engine"], r["workload"])].append(int(r["maxrss_kb"]))
    if not own:
        # Older result files: read the peak RSS debug lines of rbuild's logs.
        import glob
        import os
        import re
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        for log in glob.glob(os.path.join(os.path.dirname(os.path.abspath(path)), "rbuild-*-r*-*.log")):
            name = os.path.basename(log)
            m = re.match(r"(rbuild-[a-z0-9]+)-(W[^-]+-[^-]+(?:-[^-]+)?)-r\d+-", name)
            if not m:
                continue
            with open(log, errors="replace") as f:
                vals = [int(v) for v in re.findall(r"peak_rss_kb=(\d+)", ansi.sub("", f.read()))]
            if vals:
                own[(m.group(1), m.group(2))].append(max(vals))
    for (e, w, run), ph in per_run.items():
        if "cold" in ph and "push" in ph:
            secs[(e, w, "cold+push")].append(ph["cold"] + ph["push"])
    fss = sorted({e.split("-", 1)[1] for (e, _, _) in secs if "-" in e})
    for fs in fss:
        rb, bh = f"rbuild-{fs}", f"buildah-{fs}"
        wls = sorted({w for (e, w, _) in secs if e in (rb, bh)},
                     key=lambda w: ORDER.index(w) if w in ORDER else 99)
        print(f"\n### {fs}: medians in seconds, ratio rbuild / Buildah (target)\n")
        print("| workload | phase | rbuild | Buildah | ratio | target | BuildKit | runs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for w in wls:
            for ph in ["cold", "warm", "change", "push", "cold+push"]:
                a, b = med(secs[(rb, w, ph)]), med(secs[(bh, w, ph)])
                if a is None and b is None:
                    continue
                ratio = a / b if a is not None and b else None
                t = TARGETS.get((ph, w))
                mark = ""
                if t is not None and ratio is not None:
                    mark = " ok" if ratio <= t else " MISSED"
                bk = BUILDKIT.get(w)
                if isinstance(bk, dict):
                    bk = bk.get(fs)
                idx = {"cold": 0, "warm": 1, "change": 2}.get(ph)
                bkv = fmt(bk[idx]) if bk and idx is not None else ""
                runs = len(secs[(rb, w, ph)])
                fails = failed.get((rb, w), 0)
                runs_s = f"{runs}" + (f" ({fails} failed)" if fails else "")
                print(f"| {w} | {ph} | {fmt(a)} | {fmt(b)} | {fmt(ratio)} | "
                      f"{'' if t is None else ('<= ' + fmt(t)) + mark} | {bkv} | {runs_s} |")
        print("\nPeak RSS in MB. rbuild's own: the largest rbuild process (the build, a sandbox")
        print("helper), from its debug log; tree: GNU time's largest process of the whole tree,")
        print("the build's own commands (apt, dpkg, ...) included, as Buildah's figure is.\n")
        print("| workload | rbuild own (target < 50) | rbuild tree | Buildah tree |")
        print("|---|---:|---:|---:|")
        for w in wls:
            o = max(own[(rb, w)]) / 1024 if own[(rb, w)] else None
            a = max(rss[(rb, w)]) / 1024 if rss[(rb, w)] else None
            b = max(rss[(bh, w)]) / 1024 if rss[(bh, w)] else None
            mark = "" if o is None else (" ok" if o < 50 else " MISSED")
            print(f"| {w} | {fmt(o, 1)}{mark} | {fmt(a, 1)} | {fmt(b, 1)} |")
    if startup:
        try:
            with open(startup) as f:
                rows = [line.strip().split(",") for line in f if line.strip()]
        except OSError:
            rows = []
        for row in rows:
            try:
                if row[1] == "per_run_step_us":  # older files: one line, ext4
                    fs, per, floor, mapped = "ext4", int(row[2]), int(row[4]), int(row[6])
                else:
                    fs, per, floor, mapped = row[1], int(row[2]), int(row[3]), int(row[4])
                print(f"\nSandbox overhead per RUN step on {fs} (21 x `RUN true` minus 1, / 20): "
                      f"{per / 1000:.1f} ms; `unshare -Urmpf --mount-proc true`: {floor / 1000:.1f} ms "
                      f"(ratio {per / floor:.2f}, target <= 2); with 65536 ids through newuidmap "
                      f"(`unshare --map-auto`): {mapped / 1000:.1f} ms (ratio {per / mapped:.2f})")
            except (ValueError, IndexError, ZeroDivisionError):
                continue

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
