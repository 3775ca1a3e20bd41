"""Loading UA/PA from real files: time at 100k users and peak memory at 10k users.

DESIGN.md / issue 18 targets: load + validate + compile of 100k users / 1k roles / 100k VMs
in <= 1 s, and the peak memory of loading 10k users / 1k roles / 100k VMs <= 100 MB.

The policies are bench_rbac.py's (a hosting provider's shape: role blocks of VMs, a
hierarchy, scoped grants, expiring assignments, separation sets), written as UA/PA files.
Each load runs in a fresh interpreter (``rbac.load`` from the files, C index built), so the
peak is that process's maximum resident set (ru_maxrss, the interpreter and its imports
included, as a daemon pays it) and no load warms the next.  Figures are the median of the
runs; every run is kept in the JSON.  With ``--before TREE`` another checkout's rbac is
loaded too, runs interleaved.  Writes bench/out/load.json.

    /opt/secured-virt/venv/bin/python bench/bench_load.py [--runs N] [--before TREE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rbac import Data
from benchhost import REPO, machine, stamp

ONE_LOAD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
import rbac
CAT = {i: f"op{i}" for i in range(1, 64)}
t = time.perf_counter()
pol = rbac.load(sys.argv[2], sys.argv[3], CAT, owner_uid=os.geteuid())
dt = time.perf_counter() - t
print(json.dumps({"s": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "native": pol.native, "users": len(pol.users)}))
"""

SIZES = {
    "100k users / 1k roles / 100k VMs": (100_000, 1000, 100_000),
    "10k users / 1k roles / 100k VMs": (10_000, 1000, 100_000),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, help="another checkout whose rbac to load")
    args = ap.parse_args()
    info = stamp()
    trees = {"rbac": REPO}
    if args.before is not None:
        trees["rbac BEFORE"] = args.before
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-load.") as tmp:
        files = {}
        for label, (u, r, v) in SIZES.items():
            d = Path(tmp, str(u))
            d.mkdir()
            data = Data(u, r, v)
            (d / "ua.xml").write_text(data.ua_xml())
            (d / "pa.xml").write_text(data.pa_xml())
            files[label] = d
        runs = {(t, s): [] for t in trees for s in SIZES}
        for _ in range(args.runs):
            for label, d in files.items():
                for name, tree in trees.items():
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-I",
                            "-c",
                            ONE_LOAD,
                            str(tree),
                            str(d / "ua.xml"),
                            str(d / "pa.xml"),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    runs[(name, label)].append(json.loads(out))
    for (name, label), rs in runs.items():
        results.setdefault(name, {})[label] = {
            "load_s_median": round(statistics.median(r["s"] for r in rs), 3),
            "peak_mb_median": round(statistics.median(r["peak_mb"] for r in rs), 1),
            "runs": rs,
        }
    info["loadavg_after"] = machine()["loadavg"]
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps({**info, "results": results}, indent=2) + "\n")
    print(
        f"{info['date']}, commit {info['commit']}, load {info['machine']['loadavg']} -> "
        f"{info['loadavg_after']}; {args.runs} fresh-process loads per row\n"
    )
    print("| rbac | size | load + validate + compile (median) | peak RSS of the process (median) |")
    print("|---|---|---:|---:|")
    for name, per in results.items():
        for label, r in per.items():
            every = ", ".join(f"{x['s']:.2f}" for x in r["runs"])
            print(
                f"| {name} | {label} | {r['load_s_median']:.2f} s ({every}) | "
                f"{r['peak_mb_median']:.0f} MB |"
            )
    print(f"\nwrote {out / 'load.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
