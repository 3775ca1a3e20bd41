"""What handing out an sVirt category pair costs: policy.mcs.PairAllocator against random retry.

Issue 15's target: allocation ≤ 10 µs median.  Each scenario holds a host in a steady state —
N VMs hold pairs; every round one more VM allocates and a random holder releases — and times
each ``allocate`` call alone:

  * ``empty``:      no other VM runs;
  * ``1k``:         1,000 VMs run (no realm categories);
  * ``realm 90%`` / ``realm 99%`` / ``realm full-1``: one realm owns c1023, its VMs' pairs are
    (c1023, c_j), and 90 % / 99 % / all but one of its 1,023 pairs are held.

The peer (``policy.mcs.NaiveAllocator``) is libvirt's way: draw two categories, discard equal
draws, retry while the pair is taken; it is timed on the same states in the same process.
Last, ``HostCategories.reserve`` on the libvirt test driver shows what the host side adds (the
flock, the state check, the record file replaced, unsynced): that is the cost a start pays,
next to the seconds QEMU takes to come up — once as svirtd pays it (the state kept in memory
between allocations) and once rebuilt from the running domains every time, as a fresh process
(root's direct svirsh) or a changed generation makes it.

Prints a markdown table and writes bench/out/categories.json.
Run:  /opt/secured-virt/venv/bin/python bench/bench_categories.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from policy.mcs import NaiveAllocator, PairAllocator  # noqa: E402

REALM = {"acme": 1023}


def steady(alloc, held: int, realm: str | None, rounds: int, seed: int) -> list[float]:
    """Fill to ``held`` pairs, then time ``rounds`` allocations, each followed by the release
    of a random holder (so the occupancy stays put)."""
    rng = random.Random(seed)
    keys = []
    for i in range(held):
        alloc.allocate(f"pre{i}", realm)
        keys.append(f"pre{i}")
    times = []
    clock = time.perf_counter_ns
    for i in range(rounds):
        key = f"r{i}"
        t0 = clock()
        alloc.allocate(key, realm)
        times.append((clock() - t0) / 1000)
        keys.append(key)
        j = rng.randrange(len(keys))
        keys[j], keys[-1] = keys[-1], keys[j]
        alloc.release(keys.pop())
    return times


def host_reserve(rounds: int, refresh: float | None = None) -> list[float]:
    from secured_virt.backends.libvirt_backend import LibvirtBackend
    from secured_virt.shype.categories import HostCategories

    backend = LibvirtBackend("test:///default")
    with tempfile.TemporaryDirectory() as tmp:
        kw = {} if refresh is None else {"refresh": refresh}
        host = HostCategories(tmp, lambda: backend, **kw)
        times = []
        for i in range(rounds):
            t0 = time.perf_counter_ns()
            host.reserve(f"k{i}", f"k{i}")
            times.append((time.perf_counter_ns() - t0) / 1000)
            host.release(f"k{i}")
    backend.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20000)
    args = ap.parse_args()
    cap = 1023  # pairs (c1023, c_j), j = 0..1022
    scenarios = [
        ("empty", 0, None),
        ("1k", 1000, None),
        ("realm 90%", int(cap * 0.90), "acme"),
        ("realm 99%", int(cap * 0.99), "acme"),
        ("realm full-1", cap - 1, "acme"),
    ]
    rows = []
    for name, held, realm in scenarios:
        ours = steady(PairAllocator(realm_categories=REALM), held, realm, args.rounds, 1)
        peer_rounds = args.rounds if held < 1000 else max(200, args.rounds // 20)
        peer = steady(NaiveAllocator(realm_categories=REALM), held, realm, peer_rounds, 1)
        rows.append(
            {
                "scenario": name,
                "held": held,
                "median_us": statistics.median(ours),
                "p99_us": sorted(ours)[int(len(ours) * 0.99)],
                "peer_median_us": statistics.median(peer),
                "peer_p99_us": sorted(peer)[int(len(peer) * 0.99)],
            }
        )
    reserve = host_reserve(max(200, args.rounds // 50))
    rebuilt = host_reserve(max(200, args.rounds // 50), refresh=0.0)
    print(
        f"category pair allocation, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| state | held | PairAllocator median | p99 | random retry median | p99 | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['held']:,} | **{r['median_us']:.2f} µs** | "
            f"{r['p99_us']:.2f} µs | {r['peer_median_us']:.2f} µs | {r['peer_p99_us']:.2f} µs "
            f"| {r['peer_median_us'] / r['median_us']:.1f}x |"
        )
    med = statistics.median(reserve)
    print(
        f"\nHostCategories.reserve on test:///default (flock, state check, record file "
        f"replaced unsynced): state kept (svirtd) median {med:.0f} µs, p99 "
        f"{sorted(reserve)[int(len(reserve) * 0.99)]:.0f} µs; rebuilt from the running domains "
        f"each time median {statistics.median(rebuilt):.0f} µs, p99 "
        f"{sorted(rebuilt)[int(len(rebuilt) * 0.99)]:.0f} µs"
    )
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "categories.json").write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "rows": rows,
                "reserve_median_us": med,
                "reserve_rebuilt_median_us": statistics.median(rebuilt),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
