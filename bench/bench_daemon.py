"""svirtd: whole-process `svirsh list` through the daemon vs `virsh list`, and daemon throughput.

DESIGN.md's target: `svirsh` through `svirtd` costs at most 1.3x `virsh` doing the same thing
on the same libvirt.  Both commands here list the same domains from the same node file: virsh
opens `test:///<node.xml>` itself; svirtd holds one connection to that same URI, and root's
`svirsh --daemon list` (root sees every domain) goes through it.  Each run is a whole process,
fork to exit, timed from here; the variants are interleaved so drift hits them alike.

Variants of the svirsh side, to show where the time goes:
  * `svirsh (venv python -I)`: svirsh's main() from this tree on the venv interpreter (site,
    .pth files - what the installed console script pays);
  * `bin/svirsh (-I)`: the project's isolated launcher (`#!/usr/bin/python3 -I`);
  * `client only (-I -S)`: an interpreter that imports only secured_virt.client and makes the
    same call - the floor the daemon client itself imposes.

Then requests/s and p50/p99 latency through svirtd with 1, 10 and 50 concurrent clients (each
a separate process, one connection per request like svirsh; every request is an audited
`list`).

Needs root (policy files must be root-owned).  Prints a markdown table, writes
bench/out/daemon.json.  Run:  /opt/secured-virt/venv/bin/python bench/bench_daemon.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def write_root(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, 0, 0)
    return path


class Host:
    """A private config, demo UA/PA and node file, audit log and socket; svirtd running."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="svt-bench-", dir="/tmp"))
        self.base.chmod(0o755)
        etc = self.base / "etc"
        etc.mkdir()
        (self.base / "log").mkdir(mode=0o700)
        (self.base / "run").mkdir()
        ua = write_root(etc / "ua.xml", (REPO / "etc/demo/ua.xml").read_text())
        pa = write_root(etc / "pa.xml", (REPO / "etc/demo/pa.xml").read_text())
        self.node = etc / "node.xml"
        shutil.copy(REPO / "etc/demo/node.xml", self.node)
        self.uri = f"test://{self.node}"
        self.socket = str(self.base / "run" / "svirtd.sock")
        conf = {
            "uri": self.uri,
            "ua": ua,
            "pa": pa,
            "audit_log": self.base / "log" / "audit.log",
            "audit_syslog": "no",
            "auth_dir": self.base / "ts",
            "label_store": self.base / "labels.xml",
            "acm_state_dir": self.base / "acm",
            "socket": self.socket,
            "idle_timeout": 60,
        }
        text = "[secured-virt]\n" + "".join(f"{k} = {v}\n" for k, v in conf.items())
        self.config = write_root(etc / "secured-virt.conf", text)
        self.log = open(self.base / "svirtd.log", "wb")  # noqa: SIM115 - closed in stop()
        entry = (
            f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from secured_virt.daemon.server import main; sys.exit(main(sys.argv[1:]))"
        )
        self.proc = subprocess.Popen(
            [PY, "-I", "-c", entry, "--config", str(self.config), "--log-level", "warning"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"svirtd did not start: {self.base / 'svirtd.log'}") from None
                time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


def run_once(argv) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, env=ENV, cwd="/")
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({res.returncode}): {res.stderr.decode()}")
    return dt, res.stdout


def names_in(listing: bytes) -> list[str]:
    rows = listing.decode().splitlines()[2:]
    return sorted(r.split()[1] for r in rows if r.strip())


def whole_process(host: Host, runs: int) -> dict:
    client_only = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from secured_virt.client import call\n"
        "from secured_virt.requests import Request\n"
        f"r = call({host.socket!r}, Request('list', {{}}))\n"
        "sys.stdout.write(' Id Name State\\n---\\n' + ''.join("
        "f\" {d['id']} {d['name']} {d['state']}\\n\" for d in r.data['domains']))\n"
    )
    variants = {
        "virsh list": ["/usr/bin/virsh", "-c", host.uri, "list"],
        "svirsh list (venv python -I)": [
            PY,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from secured_virt.cli.svirsh import main; sys.exit(main())",
            "--daemon",
            "--socket",
            host.socket,
            "list",
        ],
        "svirsh list (bin/svirsh -I)": [
            str(REPO / "bin" / "svirsh"),
            "--daemon",
            "--socket",
            host.socket,
            "list",
        ],
        "client only (-I -S)": [PY, "-I", "-S", "-c", client_only],
    }
    # the same domains, or the comparison means nothing
    outputs = {name: names_in(run_once(argv)[1]) for name, argv in variants.items()}
    reference = outputs["virsh list"]
    for name, got in outputs.items():
        if got != reference:
            raise SystemExit(f"{name} listed {got}, virsh listed {reference}")
    for argv in variants.values():  # warm caches
        run_once(argv)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, argv in variants.items():
            times[name].append(run_once(argv)[0])
    base = statistics.median(times["virsh list"])
    out = {}
    for name, xs in times.items():
        xs.sort()
        med = statistics.median(xs)
        out[name] = {
            "median_ms": round(med * 1000, 2),
            "p90_ms": round(xs[int(len(xs) * 0.9) - 1] * 1000, 2),
            "ratio_to_virsh": round(med / base, 3),
            "runs": len(xs),
        }
    out["domains"] = reference
    return out


LOAD_CLIENT = """
import sys, time, json
sys.path.insert(0, sys.argv[1])
from secured_virt.client import call
from secured_virt.requests import Request
sock, n, go = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
req = Request("list", {})
while time.time() < go:
    time.sleep(0.001)
lat, t0 = [], time.perf_counter()
for _ in range(n):
    s = time.perf_counter()
    r = call(sock, req, password_cb=None, timeout=60)
    lat.append(time.perf_counter() - s)
    assert r.status == 0, r.message
print(json.dumps({"lat": lat, "wall": time.perf_counter() - t0}))
"""


def throughput(host: Host, clients: int, per_client: int) -> dict:
    go = time.time() + 1.0 + clients * 0.03
    procs = [
        subprocess.Popen(
            [PY, "-I", "-S", "-c", LOAD_CLIENT, str(REPO), host.socket, str(per_client), str(go)],
            stdout=subprocess.PIPE,
            env=ENV,
        )
        for _ in range(clients)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode:
            raise SystemExit("a load client failed")
        results.append(json.loads(out))
    lat = sorted(x for r in results for x in r["lat"])
    wall = max(r["wall"] for r in results)
    return {
        "clients": clients,
        "requests": len(lat),
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_daemon needs root (svirtd's policy files must be root-owned)")
        return 2
    runs = 10 if args.quick else 40
    per_client = {1: 300, 10: 100, 50: 40} if not args.quick else {1: 50, 10: 20, 50: 5}
    host = Host()
    try:
        proc = whole_process(host, runs)
        load = [throughput(host, c, n) for c, n in per_client.items()]
    finally:
        host.stop()
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "whole_process": proc,
        "throughput": load,
        "target": "svirsh list via svirtd <= 1.3x virsh list (median wall time)",
    }
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "daemon.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"domains listed by every variant: {', '.join(proc['domains'])}\n")
    print("| command (whole process) | median ms | p90 ms | x virsh |")
    print("|---|---:|---:|---:|")
    for name, r in proc.items():
        if name == "domains":
            continue
        print(f"| {name} | {r['median_ms']} | {r['p90_ms']} | {r['ratio_to_virsh']} |")
    print("\n| concurrent clients | requests | requests/s | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|")
    for r in load:
        print(
            f"| {r['clients']} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} "
            f"| {r['p99_ms']} |"
        )
    print(f"\nwrote {out / 'daemon.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
