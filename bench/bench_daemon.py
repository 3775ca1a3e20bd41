"""svirtd under load: 50 concurrent clients x 100 mixed requests, latency and throughput.

DESIGN.md's target on this 2-core machine: p99 <= 50 ms and >= 1,500 requests/s, with no
errors and the audit chain intact.  (Whole-process `svirsh` against `virsh` is
bench_client.py.)

Each client is a separate process running as the non-root user `svt-bench` (setpriv), with
one connection per request like svirsh, all released at the same instant.  Client i owns
vm-i of a 50-domain test-driver node and cycles through ten requests:

    list --all, dominfo vm-i, start|destroy vm-i, domstate vm-i, suspend vm-i (denied),
    list --all, dominfo vm-(i+1), destroy|start vm-i, dominfo vm-i, suspend vm-i (denied)

so 60 % reads, 20 % state changes, 20 % refusals.  Every reply must have the expected status
(0, or 3 for the refusals).  After each run the audit log is checked: the hash chain
verifies; exactly one decision record per allowed request and one outcome record per allowed
request linked to it; and every refusal accounted for, either as its own denied record or
counted in a `suppressed` record (the per-uid flood limit of access/audit.py: all 50 clients
are one uid, so most of their 1,000 refusals are summarised, as they would be in production).

Latency is per request as the client sees it (connect to reply); figures are the median and
p99 over all requests of all runs and the requests/s of each run (all requests / wall time
from the common start to the last reply).  svirtd's CPU per request (user + system, all its
threads, from /proc, over the load only) and the clients' (their own os.times() from the
start signal on) say how much of the machine one request costs, which the wall-clock
figures of a shared machine cannot: 2 cores / (both) is the rate an idle machine could
sustain at most.  With ``--before TREE`` the daemon
of another checkout is measured in the same sitting, runs interleaved.  Each daemon is also
loaded with the connection alone (``, connection only`` rows: every request an unknown
command, answered before the service and the audit; ``--no-floor`` skips it), the floor
under every request, so the report can say how much of svirtd's time is the connection and
how much the service, libvirt and the audit.  The node of those rows is a test-driver file
inside svirtd's own process, as DESIGN.md's target is stated: a libvirt call is a function
call.  In production svirtd talks to libvirtd, and each call is a round trip to it; the
``domains inside libvirtd`` row (``--no-libvirtd`` skips it) runs the same load on the same
50 domains defined in libvirtd's own test driver (``test+unix:///default``, one state for
every connection), with libvirtd's CPU per request beside svirtd's.  Not judged against the
target, which is stated for the in-process node.  The ``no admission queue`` row
(``--no-unqueued`` skips it) is the same load on the same svirtd with its admission queue off
(``svirtd_active_requests = 0``, every request in the service at once): the peer of the
queue, measured in the same sitting; with the libvirtd row, so is ``domains inside libvirtd,
no admission queue``.

The judged load is closed: no client waits between a reply and its next request, so 50
requests are always outstanding and the mean latency is 50 / the rate served, whatever
svirtd does with them.  The ``at 1500 requests/s offered`` row (``--offered RATE``, 0 skips
it) is the latency at the target's rate and no more: each client's requests are due at fixed
times (50 / RATE seconds apart, the clients spread evenly), and each is timed from when it was
due, so a request that could not be sent on time is charged its lateness (no coordinated
omission).  Not judged either.  Needs root.  Writes bench/out/daemon.json.

    /opt/secured-virt/venv/bin/python bench/bench_daemon.py [--runs N] [--before TREE]

Exits 1 on an error, an audit problem, or a missed target (named on stderr).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchhost import (
    BENCH_USER,
    ENV,
    PY,
    REPO,
    Host,
    as_user,
    bench_user,
    libvirtd_pid,
    machine,
    stamp,
)

CLIENTS = 50
PER_CLIENT = 100
#: DESIGN.md's target for this load on this 2-core machine
TARGET_P99_MS = 50.0
TARGET_RPS = 1500.0
#: the paced load's first second is its warm-up (svirtd's worker threads started, the clients'
#: first connections): its requests are sent and checked, not timed (at most half of them)
WARMUP_S = 1.0

#: the same requests straight into Service.handle, one after the other in one process (no
#: socket, no thread, no other request at the same moment): what the service itself costs
SERVICE_ALONE = r"""
import os, pwd, sys, time, json
sys.path.insert(0, sys.argv[1])
from secured_virt.access.identity import Identity
from secured_virt.config import load_config
from secured_virt.requests import Request
from secured_virt.service import Service
svc = Service(load_config(sys.argv[2], caller_uid=0), watch_events=True)  # as svirtd
u = pwd.getpwnam(sys.argv[3])
me = Identity(uid=u.pw_uid, gid=u.pw_gid, user=u.pw_name, groups=(u.pw_gid,), via="svirtd",
              pid=os.getpid())
reqs = []
for _ in range(int(sys.argv[4])):
    for i in range(50):
        mine, other = "vm-%03d" % i, "vm-%03d" % ((i + 1) % 50)
        first, second = ("destroy", "start") if i % 2 else ("start", "destroy")
        reqs += [("list", {"all": True}), ("dominfo", {"domain": mine}), (first, {"domain": mine}),
                 ("domstate", {"domain": mine}), ("suspend", {"domain": mine}),
                 ("list", {"all": True}), ("dominfo", {"domain": other}),
                 (second, {"domain": mine}), ("dominfo", {"domain": mine}),
                 ("suspend", {"domain": mine})]
bad = 0
t0 = time.process_time()
for cmd, args in reqs:
    bad += svc.handle(me, Request(cmd, args)).status not in (0, 3)
cpu = time.process_time() - t0
svc.audit.close()
print(json.dumps({"requests": len(reqs), "cpu_ms_per_request": round(cpu * 1000 / len(reqs), 3),
                  "errors": bad}))
"""

LOAD_CLIENT = r"""
import os, sys, time, json
sys.path.insert(0, sys.argv[1])
from secured_virt.client import call
from secured_virt.requests import Request
sock, i, n, go = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
mine, other = "vm-%03d" % i, "vm-%03d" % ((i + 1) % 50)
cycle = [  # the two "start"s become start/destroy as the VM's state asks, below
    ("list", {"all": True}, 0), ("dominfo", {"domain": mine}, 0), ("start", {"domain": mine}, 0),
    ("domstate", {"domain": mine}, 0), ("suspend", {"domain": mine}, 3),
    ("list", {"all": True}, 0), ("dominfo", {"domain": other}, 0),
    ("start", {"domain": mine}, 0), ("dominfo", {"domain": mine}, 0),
    ("suspend", {"domain": mine}, 3),
]
if sys.argv[7] == "floor":  # the connection alone: a command svirtd answers without the service
    cycle = [("no-such-command", {}, 2)]
# paced (the offered-rate load): request k is due at go + offset + k * pace, and its latency
# runs from when it was due, so a request that could not start on time is charged its lateness
pace, offset, warm = float(sys.argv[8]), float(sys.argv[9]), int(sys.argv[10])
if pace and len(cycle) > 1:
    # client i starts at request i of the cycle: clients' schedules are in step, and started
    # at the same request, all 50 lists would be due in one period, then all 50 starts...
    cycle = cycle[i % len(cycle):] + cycle[:i % len(cycle)]
running = sys.argv[6] == "1"  # the first start/destroy met must suit the VM's state
for j, (cmd, args, want) in enumerate(cycle):
    if cmd == "start":
        cycle[j] = ("destroy" if running else "start", args, want)
        running = not running
while time.time() < go:
    time.sleep(0.0005)
t0 = os.times()
lat, bad, counts, bycmd = [], [], {}, {}
for k in range(n):
    cmd, args, want = cycle[k % len(cycle)]
    if pace:
        due = go + offset + k * pace
        if due > time.time():
            time.sleep(due - time.time())
        s = time.perf_counter() - max(0.0, time.time() - due)
    else:
        s = time.perf_counter()
    try:
        r = call(sock, Request(cmd, args), password_cb=None, timeout=120)
        status, msg = r.status, r.message
    except Exception as exc:
        status, msg = -1, repr(exc)
    if k >= warm:  # the warm-up's requests are checked and counted, not timed
        lat.append(time.perf_counter() - s)
        bycmd.setdefault(cmd, []).append(lat[-1])
    counts[cmd] = counts.get(cmd, 0) + 1
    if status != want:
        bad.append([cmd, status, msg])
t1 = os.times()
end = time.time()
if pace:  # the others' last requests are not slowed down by this interpreter's exit
    while time.time() < go + (n + 1) * pace:
        time.sleep(0.005)
print(json.dumps({"lat": lat, "end": end, "n": n, "bad": bad[:5], "nbad": len(bad),
                  "counts": counts, "bycmd": bycmd,
                  "cpu": t1.user - t0.user + t1.system - t0.system}))
"""


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process so far, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_run(
    host: Host,
    tree: Path,
    clients: int,
    per_client: int,
    floor: bool = False,
    lvd=None,
    rate: float = 0.0,
) -> dict:
    """One load; ``lvd``: libvirtd's pid when the domains live in it (its CPU counted too).
    ``rate``: requests/s offered by all clients together, each client's requests due at fixed
    times (spread evenly between the clients) and timed from when they were due; 0: every
    client sends its next request as soon as it has the last reply (the judged load)."""
    user = as_user(bench_user())
    cpu_before = cpu_seconds(host.proc.pid)
    lvd_before = cpu_seconds(lvd) if lvd else 0.0
    go = time.time() + 2.0 + clients * 0.04  # every interpreter is up before the start
    running = {n: i % 2 == 1 for i, n in enumerate(host.names)}  # as benchhost writes them
    procs = [
        subprocess.Popen(
            [
                *user,
                PY,
                "-I",
                "-S",
                "-c",
                LOAD_CLIENT,
                str(tree),
                host.socket,
                str(i),
                str(per_client),
                str(go),
                "1" if running[f"vm-{i:03d}"] else "0",
                "floor" if floor else "mix",
                repr(clients / rate if rate else 0.0),
                repr(i / rate if rate else 0.0),
                str(min(int(WARMUP_S * rate / clients), per_client // 2) if rate else 0),
            ],
            stdout=subprocess.PIPE,
            env=ENV,
            cwd="/",
        )
        for i in range(clients)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=1200)
        if p.returncode:
            raise SystemExit("a load client failed")
        results.append(json.loads(out))
    daemon_cpu = cpu_seconds(host.proc.pid) - cpu_before
    lvd_cpu = cpu_seconds(lvd) - lvd_before if lvd else None
    writes, admission = daemon_account(host)
    lat = sorted(x for r in results for x in r["lat"])
    sent = sum(r["n"] for r in results)  # the timed ones and the paced load's warm-up
    wall = max(r["end"] for r in results) - go
    counts = collections.Counter()
    bycmd: dict[str, list[float]] = collections.defaultdict(list)
    for r in results:
        counts.update(r["counts"])
        for cmd, xs in r["bycmd"].items():
            bycmd[cmd].extend(xs)
    return {
        "requests": len(lat),
        "requests_per_s": round(sent / wall, 1),
        "max_ms": round(lat[-1] * 1000, 2),
        "daemon_cpu_ms_per_request": round(daemon_cpu * 1000 / sent, 3),
        "libvirtd_cpu_ms_per_request": None if lvd_cpu is None else round(lvd_cpu * 1000 / sent, 3),
        "client_cpu_ms_per_request": round(sum(r["cpu"] for r in results) * 1000 / sent, 3),
        "errors": sum(r["nbad"] for r in results),
        "error_samples": [b for r in results for b in r["bad"]][:5],
        "lat": lat,
        "bycmd": dict(bycmd),
        "counts": dict(counts),
        "audit_writes": writes,
        "admission": admission,
    }


def daemon_account(host: Host) -> tuple[dict | None, dict | None]:
    """svirtd's own account of the load, from its status: its audit writes (audit.writes.recent,
    the last 1,024 group-commit writes: records per write, sync times) and its admission queue
    (daemon.admission: how many requests waited for their turn, and how long); each None from
    a tree without it."""
    from secured_virt import client

    try:
        data = client.admin_status(host.socket).data or {}
    except client.ClientError:
        return None, None
    writes = (data.get("audit") or {}).get("writes", {}).get("recent")
    return writes, (data.get("daemon") or {}).get("admission")


def idle_sync(directory: Path, rounds: int = 300, size: int = 9000) -> dict:
    """The audit's write on an idle machine: append ``size`` bytes (about one write of the
    load's, ~20 records) and fdatasync, on the file system the bench's audit logs live on,
    before any load; the peer of the load's sync times (``daemon_account``)."""
    path = directory / "idle-sync.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    times = []
    try:
        line = b"x" * (size - 1) + b"\n"
        for _ in range(rounds):
            os.write(fd, line)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
            time.sleep(0.001)
    finally:
        os.close(fd)
        path.unlink()
    return {"sync_ms_p50": pct(times, 0.5), "sync_ms_p99": pct(times, 0.99), "rounds": rounds}


def service_alone(tree: Path, rounds: int) -> dict:
    """SERVICE_ALONE on a fresh host of the same 50 domains (see there)."""
    host = Host(domains=50)
    try:
        out = subprocess.run(
            [PY, "-I", "-c", SERVICE_ALONE, str(tree), str(host.config), BENCH_USER, str(rounds)],
            capture_output=True,
            text=True,
            env=ENV,
            cwd="/",
        )
    finally:
        host.stop()
    if out.returncode:
        raise SystemExit(f"the service-alone run failed:\n{out.stderr}")
    return json.loads(out.stdout)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] * 1000, 2)


def check_audit(host: Host, counts: dict) -> dict:
    """The chain verifies and every decision and outcome is there exactly once."""
    sys.path.insert(0, str(REPO))
    from secured_virt.access import audit

    res = audit.verify(str(host.audit_log))
    recs = list(audit.read(str(host.audit_log)))
    decisions = [r for r in recs if r.get("type") == "decision"]
    allowed = [r for r in decisions if r["verdict"] == "allowed"]
    denied = [r for r in decisions if r["verdict"] == "denied"]
    outcomes = [r for r in recs if r.get("type") == "outcome"]
    suppressed = sum(r.get("dropped", 0) for r in recs if r.get("type") == "suppressed")
    want_allowed = sum(v for k, v in counts.items() if k != "suspend")
    want_denied = counts.get("suspend", 0)
    refs = collections.Counter(r["ref"] for r in outcomes)
    seq_allowed = {r["seq"] for r in allowed}
    ok = (
        res.ok
        and len(allowed) == want_allowed
        and len(outcomes) == want_allowed
        and set(refs) == seq_allowed
        and max(refs.values(), default=1) == 1
        and len(denied) + suppressed == want_denied
    )
    return {
        "chain": res.message,
        "allowed_decisions": len(allowed),
        "outcomes": len(outcomes),
        "denied_records": len(denied),
        "denied_in_summaries": suppressed,
        "requests_allowed": want_allowed,
        "requests_denied": want_denied,
        "ok": ok,
    }


def check_floor_audit(host: Host) -> dict:
    """The connection-only load decides nothing: no record at all (the log may not exist)."""
    if not host.audit_log.exists():
        return {"chain": "no audit log: nothing decided", "records": 0, "ok": True}
    sys.path.insert(0, str(REPO))
    from secured_virt.access import audit

    res = audit.verify(str(host.audit_log))
    n = sum(1 for _ in audit.read(str(host.audit_log)))
    return {"chain": res.message, "records": n, "ok": res.ok and n == 0}


#: the row of the same load with the domains in libvirtd's test driver (a round trip per call)
IN_LIBVIRTD = "svirtd, domains inside libvirtd"
#: the row of the same load with the admission queue off: every request in the service at once
UNQUEUED = "svirtd, no admission queue"
IN_LIBVIRTD_UNQUEUED = "svirtd, domains inside libvirtd, no admission queue"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="load runs per daemon (interleaved)")
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--per-client", type=int, default=PER_CLIENT)
    ap.add_argument("--before", type=Path, help="another checkout whose svirtd to compare")
    ap.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the connection-only load (an unknown command, answered before the service)",
    )
    ap.add_argument(
        "--offered",
        type=float,
        default=TARGET_RPS,
        help="also load svirtd at this many requests/s offered (paced clients, latency from "
        "each request's due time; not judged); 0 skips it",
    )
    ap.add_argument(
        "--no-unqueued",
        action="store_true",
        help="skip the peer loads with svirtd's admission queue off (svirtd_active_requests = 0)",
    )
    ap.add_argument(
        "--no-libvirtd",
        action="store_true",
        help="skip the load on the same domains inside libvirtd (test+unix:///default)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_daemon needs root (svirtd's policy files must be root-owned)")
        return 2
    info = stamp()
    probe = Host(domains=1)  # the same file system as the loads' audit logs
    try:
        info["idle_sync"] = idle_sync(probe.base / "log")
        info["syslog"] = probe.syslog
    finally:
        probe.stop()
    # name -> (checkout, connection only, requests/s offered or 0 for the closed loop,
    #          configuration keys of its own)
    trees = {"svirtd": (REPO, False, 0.0, {})}
    if args.before is not None:
        trees["svirtd BEFORE"] = (args.before, False, 0.0, {})
    if not args.no_unqueued:  # the peer of the admission queue: everyone in at once
        trees[UNQUEUED] = (REPO, False, 0.0, {"svirtd_active_requests": 0})
    if not args.no_floor:  # what the connection alone costs: the floor under every request
        for name, (tree, _, _, _) in list(trees.items()):
            if name != UNQUEUED:
                trees[f"{name}, connection only"] = (tree, True, 0.0, {})
    if args.offered:  # the latency of a host serving the target's rate, not more
        for name, (tree, _, _, _) in list(trees.items()):
            if not name.endswith("connection only") and name != UNQUEUED:
                trees[f"{name} at {args.offered:g} requests/s offered"] = (
                    tree,
                    False,
                    args.offered,
                    {},
                )
    if not args.no_libvirtd:  # the same load with every libvirt call a round trip to libvirtd
        trees[IN_LIBVIRTD] = (REPO, False, 0.0, {})
        if not args.no_unqueued:
            trees[IN_LIBVIRTD_UNQUEUED] = (REPO, False, 0.0, {"svirtd_active_requests": 0})
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    alone: list[dict] = []  # the service alone, once per run (with the floor)
    for _ in range(args.runs):
        for name, (tree, floor, rate, conf) in trees.items():
            in_libvirtd = name in (IN_LIBVIRTD, IN_LIBVIRTD_UNQUEUED)
            host = Host(domains=50, in_libvirtd=in_libvirtd, conf=conf).start_daemon(tree)
            lvd = libvirtd_pid() if in_libvirtd else None
            try:
                r = load_run(host, tree, args.clients, args.per_client, floor, lvd, rate)
                host.stop_daemon()  # close() writes the pending summaries
                r["audit"] = check_floor_audit(host) if floor else check_audit(host, r["counts"])
            finally:
                host.stop()
            runs[name].append(r)
        if not args.no_floor:
            alone.append(service_alone(REPO, max(1, args.clients * args.per_client // 500)))
    info["loadavg_after"] = machine()["loadavg"]
    if alone:
        info["service_alone"] = {
            "cpu_ms_per_request_median": statistics.median(a["cpu_ms_per_request"] for a in alone),
            "runs": alone,
        }
    summary = {}
    for name, rs in runs.items():
        for r in rs:  # each run's own p50/p99, beside its CPU per request (see the text)
            r["p50_ms"], r["p99_ms"] = pct(r["lat"], 0.5), pct(r["lat"], 0.99)
        lat = sorted(x for r in rs for x in r.pop("lat"))
        per_cmd: dict[str, list[float]] = collections.defaultdict(list)
        for r in rs:
            for cmd, xs in r.pop("bycmd").items():
                per_cmd[cmd].extend(xs)
        summary[name] = {
            "by_command": {
                cmd: {"p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99), "n": len(xs)}
                for cmd, xs in sorted(per_cmd.items())
            },
            "runs": len(rs),
            "requests": len(lat),
            "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": pct(lat, 0.99),
            "requests_per_s_median": statistics.median(r["requests_per_s"] for r in rs),
            "requests_per_s_runs": [r["requests_per_s"] for r in rs],
            "daemon_cpu_ms_per_request": statistics.median(
                r["daemon_cpu_ms_per_request"] for r in rs
            ),
            "client_cpu_ms_per_request": statistics.median(
                r["client_cpu_ms_per_request"] for r in rs
            ),
            "libvirtd_cpu_ms_per_request": rs[0]["libvirtd_cpu_ms_per_request"]
            and statistics.median(r["libvirtd_cpu_ms_per_request"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "audit_ok": all(r["audit"]["ok"] for r in rs),
            "audit_writes": [r["audit_writes"] for r in rs],
            "admission": [r["admission"] for r in rs],
            "per_run": rs,
        }
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "daemon.json").write_text(json.dumps({**info, "results": summary}, indent=2) + "\n")
    print(
        f"{info['date']}, commit {info['commit']}, load {info['machine']['loadavg']} -> "
        f"{info['loadavg_after']}; {args.clients} clients x {args.per_client} requests, "
        f"{args.runs} run(s) each; the audit also to syslog ({info['syslog']} receiver)\n"
    )
    print(
        "| daemon | requests | p50 ms | p99 ms | requests/s (median; runs) "
        "| CPU ms/request: svirtd, clients | errors | audit |"
    )
    print("|---|---:|---:|---:|---|---|---:|---|")
    for name, s in summary.items():
        rps = ", ".join(str(x) for x in s["requests_per_s_runs"])
        audit_txt = "intact, complete" if s["audit_ok"] else "PROBLEM: see daemon.json"
        if name.endswith("connection only") and s["audit_ok"]:
            audit_txt = "nothing decided, nothing written"
        print(
            f"| {name} | {s['requests']} | {s['p50_ms']} | {s['p99_ms']} | "
            f"{s['requests_per_s_median']} ({rps}) | {s['daemon_cpu_ms_per_request']}, "
            f"{s['client_cpu_ms_per_request']}"
            + (
                f" (libvirtd {s['libvirtd_cpu_ms_per_request']})"
                if s["libvirtd_cpu_ms_per_request"]
                else ""
            )
            + " | "
            f"{s['errors']} | {audit_txt} |"
        )
    print("\n| daemon | command | n | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for name, s in summary.items():
        for cmd, c in s["by_command"].items():
            print(f"| {name} | {cmd} | {c['n']} | {c['p50_ms']} | {c['p99_ms']} |")
    for name, s in summary.items():
        a = s["per_run"][-1]["audit"]
        print(f"\n{name}, last run's audit: {json.dumps(a)}")
        if s["errors"]:
            print(f"{name}: errors, e.g. {s['per_run'][0]['error_samples']}")
    floor = summary.get("svirtd, connection only")
    ours = summary["svirtd"]
    if len(ours["per_run"]) > 1:
        each = "; ".join(
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['requests_per_s']} requests/s at "
            f"{r['daemon_cpu_ms_per_request']} ms CPU/request"
            for r in ours["per_run"]
        )
        print(
            f"\nsvirtd's runs one by one: {each}.  The same code and load; what differs "
            f"between runs is how fast this shared machine was at the time, and the CPU each "
            f"request cost svirtd follows it, with the throughput and the latency after it."
        )
    unqueued = summary.get(UNQUEUED)
    queues = [a for a in ours.get("admission", []) if a and a.get("limit")]
    if unqueued is not None and queues:

        def tail(s):  # p99 over the closed load's mean latency, 50 / the rate served
            return s["p99_ms"] / (args.clients * 1000 / s["requests_per_s_median"])

        each = "; ".join(
            f"{a['waited']} of {a['admitted']} requests waited, p50 {a.get('wait_ms_p50')} ms, "
            f"p99 {a.get('wait_ms_p99')} ms, {a['outlived_slow']} outlived the slow time"
            for a in queues
        )
        print(
            f"\nThe admission queue (`svirtd_active_requests = {queues[0]['limit']}`, the "
            f"default; docs/protocol.md): svirtd lets that many requests into the service at "
            f"once and the others wait their turn in arrival order.  With it, p99 "
            f"{ours['p99_ms']} ms at {ours['requests_per_s_median']} requests/s and "
            f"{ours['daemon_cpu_ms_per_request']} ms CPU/request, {tail(ours):.2f} times the "
            f"mean latency; without it (`{UNQUEUED}`, the same svirtd with "
            f"`svirtd_active_requests = 0`, runs interleaved), p99 {unqueued['p99_ms']} ms at "
            f"{unqueued['requests_per_s_median']} requests/s and "
            f"{unqueued['daemon_cpu_ms_per_request']} ms CPU/request, {tail(unqueued):.2f} "
            f"times the mean.  With 50 requests always outstanding the mean is set by the rate "
            f"(50 / requests/s) and the queue cannot lower it; what it changes is how evenly "
            f"the wait is shared.  Without it every request competes with all the others at "
            f"each point where it lets go of the interpreter lock (each libvirt call: a "
            f"start's ~28, a listing's ~250 when it asks libvirt for all 50 rows rather than "
            f"the kept ones; an audit sync), and the requests that pass many such points "
            f"(starts, lists) make the tail.  svirtd's own account of the queue (`svirt-admin "
            f"status`: daemon.admission, each run): {each}."
        )
        inside, inside_unq = summary.get(IN_LIBVIRTD), summary.get(IN_LIBVIRTD_UNQUEUED)
        if inside is not None and inside_unq is not None:
            print(
                f"\nThe same comparison with the domains inside libvirtd, as in production: "
                f"with the queue p99 {inside['p99_ms']} ms at "
                f"{inside['requests_per_s_median']} requests/s ({tail(inside):.2f} times the "
                f"mean), without it (`{IN_LIBVIRTD_UNQUEUED}`) p99 {inside_unq['p99_ms']} ms "
                f"at {inside_unq['requests_per_s_median']} requests/s ({tail(inside_unq):.2f} "
                f"times the mean).  A list waiting for a listing other lists share does not "
                f"count against the limit while it waits (secured_virt/waiting.py).  In the "
                f"queue's first version it counted; it then kept other lists out of the "
                f"listing they could have shared (each listing a round trip to libvirtd per "
                f"domain), and on this load svirtd served a fifth to a quarter fewer requests "
                f"a second than without the queue (three sittings on 2026-12-07)."
            )
    paced = summary.get(f"svirtd at {args.offered:g} requests/s offered")
    if paced is not None:
        each = "; ".join(
            f"p99 {r['p99_ms']} ms at {r['daemon_cpu_ms_per_request']} ms CPU/request "
            f"({r['daemon_cpu_ms_per_request'] * r['requests_per_s'] / 1000:.0%})"
            for r in paced["per_run"]
        )
        busy = paced["daemon_cpu_ms_per_request"] * min(
            args.offered, paced["requests_per_s_median"]
        )
        print(
            f"\nAt the target's rate and no more (`svirtd at {args.offered:g} requests/s "
            f"offered`): the same {args.clients} clients and requests, but each client sends on "
            f"a fixed schedule ({args.clients / args.offered * 1000:.1f} ms between its "
            f"requests, the clients' schedules spread evenly, client i starting at request i "
            f"of the cycle so that the mix is the same at every moment) instead of as soon as "
            f"it has its last reply, and each request is timed from when it was due, so one "
            f"that could not be sent on time is charged its lateness.  The first "
            f"{WARMUP_S:g} s of each run is a warm-up, sent and checked but not timed.  "
            f"svirtd then spends {busy / 1000:.0%} of its one CPU (CPU per request x the rate "
            f"served) and answers p50 {paced['p50_ms']} ms, p99 {paced['p99_ms']} ms, at "
            f"{paced['requests_per_s_median']} requests/s (median of the runs; per command "
            f"in the table above).  Not judged: the target is stated for the closed load, "
            f"whose latency the {args.clients} requests always outstanding set; this row is "
            f"what a host serving that rate sees.  Unlike the closed load's, an open load's "
            f"queue has no bound as the CPU it needs nears all of svirtd's one CPU, so this "
            f"row follows the machine's speed at the time even more than the others; its runs "
            f"one by one: {each}."
        )
    if floor is not None:
        f_cpu, m_cpu = floor["daemon_cpu_ms_per_request"], ours["daemon_cpu_ms_per_request"]
        print(
            f"\nWhere svirtd's time goes (this run): the connection alone (accept, the "
            f"worker's wake-up, the peer's credentials, hello, one request frame and its "
            f"reply, close; an unknown command answered before the service) costs svirtd "
            f"{f_cpu} ms CPU per request of the mix's {m_cpu} ({f_cpu / m_cpu:.0%}); the "
            f"service, libvirt and the audit the rest.  That load alone served "
            f"{floor['requests_per_s_median']} requests/s at p99 {floor['p99_ms']} ms on "
            f"this machine; an idle 2-core machine could serve at most "
            f"{2000 / (m_cpu + ours['client_cpu_ms_per_request']):.0f} requests/s of the mix "
            f"(2 cores / (svirtd + client CPU per request)), and svirtd, whose threads all "
            f"run on one CPU (`svirtd_one_cpu = yes`, the default: daemon/cpu.py says why), "
            f"at most {1000 / m_cpu:.0f} (1 core / svirtd's CPU per request).  The 50 "
            f"clients never pause, so a request's mean latency is 50 / the requests served "
            f"per second ({50000 / ours['requests_per_s_median']:.1f} ms here): a p99 within "
            f"{TARGET_P99_MS:g} ms needs the tail within twice the mean at the target's rate."
        )
    writes = [w for w in ours["audit_writes"] if w]
    if writes:
        idle = info["idle_sync"]
        each = "; ".join(
            f"{w['records_per_write']} records a write, sync p50 {w['sync_ms_p50']} ms, "
            f"p99 {w['sync_ms_p99']} ms"
            + (
                f", callers waited p50 {w['wait_ms_p50']} ms, p99 {w['wait_ms_p99']} ms"
                if "wait_ms_p50" in w
                else ""
            )
            for w in writes
        )
        print(
            f"\nThe audit's writes under this load (svirtd's own count, `svirt-admin status`: "
            f"audit.writes, its last 1,024 group-commit writes, each run): {each}.  The same "
            f"append and fdatasync on the same file system with the machine idle, before the "
            f"loads: p50 {idle['sync_ms_p50']} ms, p99 {idle['sync_ms_p99']} ms "
            f"({idle['rounds']} rounds).  Every allowed read waits for one such write, a "
            f"start or destroy for two (its decision before the action, its outcome before "
            f"the reply), and a request arriving while a write is under way waits for it to "
            f"end first: the sync's time under load is a floor under the latency that no CPU "
            f"spent in svirtd explains.  On this host's ext4 an fdatasync that extends the "
            f"file goes through the kernel's block layer and its worker threads, and those "
            f"wait for a CPU that the 50 clients and svirtd keep busy (with 20 busy "
            f"processes on 2 cores, perf sched timehist shows the woken threads waiting "
            f"~4 ms each).  A caller's wait (from handing its records over to their being on "
            f"disk: the write under way, its own batch's, and the wake-up after it, when the "
            f"callers of a batch take their turns at the GIL) is most of an allowed request's "
            f"time in svirtd, and most of it is not the disk: with svirtd's writing thread at "
            f"real-time priority for its write and sync (tried, interleaved with the code as "
            f"it is, 4 runs each), the sync under this load fell to p50 0.4-0.55 ms, the "
            f"batches to 21-24 records, but the callers still waited p50 12-16 ms and the p99 "
            f"did not improve (79.6 against 65.7 ms): what they wait for is their turn at the "
            f"one CPU.  Writing "
            f"and syncing from the other CPU (tried: the writing thread moved there for its "
            f"fdatasync) makes the sync much shorter, but the batches smaller, the CPU per "
            f"request higher and the p99 worse: a request that does not wait for the disk "
            f"waits for the CPU instead, and the CPU is what bounds this load (above)."
        )
    if alone and floor is not None:
        s_cpu = info["service_alone"]["cpu_ms_per_request_median"]
        f_cpu = floor["daemon_cpu_ms_per_request"]
        print(
            f"\nThe service alone: the same mix straight into `Service.handle`, one request "
            f"after the other in one process (no socket, no thread, nothing at the same "
            f"moment), {alone[0]['requests']} requests a run, costs {s_cpu} ms CPU per "
            f"request (median of {len(alone)} runs; errors: "
            f"{sum(a['errors'] for a in alone)}).  With the connection alone (its row "
            f"above, itself under 50 clients) that is {s_cpu + f_cpu:.3f} ms: one Python "
            f"process, which runs on one core at a time, could serve at most "
            f"{1000 / (s_cpu + f_cpu):.0f} requests/s of this mix, before what serving 50 "
            f"requests at once adds to the service itself (the mix's row)."
        )
    print(f"\nwrote {out / 'daemon.json'}")
    missed = []
    if ours["p99_ms"] > TARGET_P99_MS:
        missed.append(f"p99 {ours['p99_ms']} ms > {TARGET_P99_MS:g} ms")
    if ours["requests_per_s_median"] < TARGET_RPS:
        missed.append(f"{ours['requests_per_s_median']} requests/s < {TARGET_RPS:g}")
    if missed:
        print(f"svirtd missed DESIGN.md's target: {'; '.join(missed)}", file=sys.stderr)
    ok = all(s["audit_ok"] and not s["errors"] for s in summary.values())
    return 0 if ok and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
