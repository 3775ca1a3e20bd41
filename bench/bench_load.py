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
t, c = time.perf_counter(), time.process_time()
pol = rbac.load(sys.argv[2], sys.argv[3], CAT, owner_uid=os.geteuid())
dt, dc = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"s": dt, "cpu_s": dc,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "native": pol.native, "users": len(pol.users)}))
"""

#: the same load, step by step as rbac.loader.loads takes it, each step's CPU time: where the
#: time goes (CPU, not wall: on a shared machine the wall time of a 50 ms step is mostly
#: the neighbours')
PHASES = r"""
import gc, json, os, sys, time
sys.path.insert(0, sys.argv[1])
import rbac
from rbac import loader, xmlsafe
from rbac.builder import PolicyBuilder
from rbac.engine import RbacPolicy
CAT = {i: f"op{i}" for i in range(1, 64)}
out = {}
def step(name, f, *a, **kw):
    c = time.process_time()
    r = f(*a, **kw)
    out[name] = out.get(name, 0.0) + time.process_time() - c
    return r
gc.disable()  # as loads() does
owner = os.geteuid()
ua = step("read files", rbac.read_trusted, sys.argv[2], max_size=1 << 25, owner_uid=owner)
pa = step("read files", rbac.read_trusted, sys.argv[3], max_size=1 << 25, owner_uid=owner)
b = PolicyBuilder(CAT, ua_name="ua.xml", pa_name="pa.xml")
for kind, data in (("pa", pa), ("ua", ua)):
    tree = step("parse", xmlsafe.parse, data, kind)
    step("schema validation", xmlsafe.validate, tree, kind, kind)
    step(f"read {kind.upper()} into the builder", getattr(loader, "read_" + kind), tree, kind, b)
    del tree
b.set_digest(step("digest", loader.policy_digest, ua, pa))
model = step("model (checks)", b.model)
pol = step("engine (Python)", RbacPolicy, model, native=False)
if hasattr(pol, "_native_index"):
    step("C index build", pol._native_index)
print(json.dumps(out))
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
        phases: list[dict] = []
        for _ in range(args.runs):
            d = files["100k users / 1k roles / 100k VMs"]
            phases.append(
                json.loads(
                    subprocess.run(
                        [sys.executable, "-I", "-c", PHASES, str(REPO), d / "ua.xml", d / "pa.xml"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
            )
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
            "cpu_s_median": round(statistics.median(r.get("cpu_s", r["s"]) for r in rs), 3),
            "peak_mb_median": round(statistics.median(r["peak_mb"] for r in rs), 1),
            "runs": rs,
        }
    info["loadavg_after"] = machine()["loadavg"]
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    steps = {k: round(statistics.median(p.get(k, 0.0) for p in phases), 3) for k in phases[0]}
    doc = {**info, "results": results, "phases_cpu_s": steps, "phase_runs": phases}
    (out / "load.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"{info['date']}, commit {info['commit']}, load {info['machine']['loadavg']} -> "
        f"{info['loadavg_after']}; {args.runs} fresh-process loads per row\n"
    )
    print(
        "| rbac | size | load + validate + compile, wall (median; every run) | CPU time "
        "(median) | peak RSS of the process (median) |"
    )
    print("|---|---|---:|---:|---:|")
    for name, per in results.items():
        for label, r in per.items():
            every = ", ".join(f"{x['s']:.2f}" for x in r["runs"])
            print(
                f"| {name} | {label} | {r['load_s_median']:.2f} s ({every}) | "
                f"{r['cpu_s_median']:.2f} s | {r['peak_mb_median']:.0f} MB |"
            )
    total = sum(steps.values())
    print(
        f"\nWhere the CPU time of a 100k-user load goes (rbac.loads step by step, {args.runs} "
        f"fresh processes, medians, {total:.2f} s in all):\n"
    )
    print("| step | CPU time | share |")
    print("|---|---:|---:|")
    for k, v in steps.items():
        print(f"| {k} | {v * 1000:.0f} ms | {v / total:.0%} |")
    print(f"\nwrote {out / 'load.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
