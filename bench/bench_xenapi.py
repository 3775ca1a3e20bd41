"""The secured Xen-API under load: login, VM.get_all_records over 1,000 VMs, 100 sessions x 100.

Issue 16's targets on this 2-core machine:

* ``session.login_with_password`` <= 0.3 s, not counting PAM's own delay (pam_wrapper's
  pam_matrix has none, so the measured time is all ours: HTTPS + XML-RPC + svirtd + PAM stack);
* ``VM.get_all_records`` over 1,000 VMs the caller may see <= 50 ms;
* 100 concurrent sessions x 100 calls each, p99 <= 100 ms: ``VM.get_record`` and
  ``VM.get_power_state`` alternating over the caller's VMs, after each session listed its VMs
  once (``VM.get_all``, not timed: a listing of 1,000 VMs is the Service's ``list``, measured
  above, and 100 of them at once would measure only that).

The whole real stack runs: svirtd as root (test driver node with 1,000 VMs, PAM through
pam_wrapper), svirt-xenapi as its own uid, clients with the PyPI ``XenAPI`` over HTTPS (TLS
connection kept per client thread, like a long-lived tool).  The audit chain is verified at
the end.  Needs root.  Prints markdown tables (bench/run_all.py puts them in RESULTS.md),
writes bench/out/xenapi.json, and exits 1 when a target is missed.

``get_all_records`` is also taken apart, on the same answer: the HTTPS round trip until the
last byte of the XML-RPC answer has arrived (svirtd's listing, the front-end's records and
encoding, TLS), and the client's own parsing of that answer (``xmlrpc.client``, what every
Python Xen-API client does with it), which no server can make faster; and ``VM.get_all``'s
round trip on the same connection, the same gated listing with an answer of 1,000 refs, which
is what svirtd's ``list`` and the hop cost before any record is written; and the CPU each
process spent per ``get_all_records`` call (svirtd, svirt-xenapi, the client).  The answer
is streamed (svirtd's rows go out in parts, docs/xenapi.md), so the client's parse overlaps
svirtd's work: the call takes less than the sum of these parts.  For the concurrent
run, the CPU each process spent per call (svirtd, svirt-xenapi, the client threads) says
where the time goes on two cores.

    /opt/secured-virt/venv/bin/python bench/bench_xenapi.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests" / "xenapi"), str(REPO / "tests" / "daemon"), str(REPO)]

N_VMS = 1000
DOMAIN = """  <domain type="test">
    <name>bench-{i:04d}</name><uuid>{uuid}</uuid>
    <metadata><svirt:vm xmlns:svirt="https://secured-virt.org/xmlns/svirt/1">
      <svirt:owner>svt-alice</svirt:owner></svirt:vm></metadata>
    <memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type></os>
  </domain>
"""
PA_ROLE = """  <Role name="BenchTeam">
    <ManageVM type="pattern"><VM pattern="bench-*"/></ManageVM>
    <ControlOperation><Accept><operation name="list"/><operation name="dominfo"/>
      <operation name="domstate"/><operation name="start"/></Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


def node_xml(path: Path) -> None:
    import uuid

    doms = "".join(
        DOMAIN.format(i=i, uuid=uuid.uuid5(uuid.NAMESPACE_DNS, f"bench-{i}")) for i in range(N_VMS)
    )
    path.write_text(
        "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>"
        "<active>2</active><mhz>2400</mhz><model>x86_64</model></cpu>"
        f"<memory>16777216</memory>\n{doms}</node>\n"
    )
    path.chmod(0o644)


TARGETS = {"login": 0.3, "get_all_records": 0.050, "concurrent_p99": 0.100}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_call(conn: http.client.HTTPSConnection, token: str, method: str) -> bytes:
    """One XML-RPC call on a kept pinned HTTPS connection; the answer's bytes, unparsed."""
    import xmlrpc.client

    conn.request("POST", "/", xmlrpc.client.dumps((token,), method).encode(),
                 {"Content-Type": "text/xml"})  # fmt: skip
    return conn.getresponse().read()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    import conftest as xc  # tests/xenapi/conftest.py: the real svirtd + svirt-xenapi
    from svtd_helpers import write_root_file

    from secured_virt.access.audit import verify

    src = Path(
        subprocess.run(["/usr/bin/mktemp", "-d", "/tmp/svt-src.XXXXXX"], capture_output=True,
                       text=True, check=True).stdout.strip()
    )  # fmt: skip
    subprocess.run(["/bin/cp", "-r", str(REPO / "secured_virt"), str(REPO / "rbac"),
                    str(REPO / "policy"), str(src)], check=True)  # fmt: skip
    subprocess.run(["/bin/chmod", "-R", "a+rX", str(src)], check=True)
    node = Path(tempfile.mkdtemp(prefix="xb-node-", dir="/tmp")) / "node.xml"
    node.parent.chmod(0o755)
    node_xml(node)
    env = xc.XenEnv(src, uri=f"test://{node}", session_max_per_user=200)
    try:
        ua = xc.UA.replace(
            '<User name="svt-alice"><UserRole role="WebTeam"/>',
            '<User name="svt-alice"><UserRole role="BenchTeam"/>',
        )
        write_root_file(env.env.ua, ua)
        write_root_file(env.env.pa, env.env.pa.read_text().replace("</RolePolicyDefinition>",
                                                                    PA_ROLE))  # fmt: skip
        time.sleep(2.5)  # svirtd's watcher reloads UA/PA
        out: dict = {"machine": subprocess.run(["uname", "-srm"], capture_output=True,
                                               text=True).stdout.strip()}  # fmt: skip
        # 1. login (one TLS connection per login, like a fresh client)
        logins = []
        for _ in range(10 if args.quick else 30):
            t = time.perf_counter()
            s = env.login("svt-alice")
            logins.append(time.perf_counter() - t)
            s.xenapi.session.logout()
        out["login_s"] = {"median": statistics.median(logins), "p99": pct(logins, 0.99)}
        # 2. get_all_records over 1,000 VMs
        s = env.login("svt-alice")
        recs = s.xenapi.VM.get_all_records()
        assert len(recs) == N_VMS, len(recs)
        lat = []
        pids = {"svirtd": env.svirtd.proc.pid, "svirt-xenapi": env.frontend.pid}
        cpu0 = {k: cpu_s(v) for k, v in pids.items()} | {"client": time.process_time()}
        for _ in range(10 if args.quick else 30):
            t = time.perf_counter()
            s.xenapi.VM.get_all_records()
            lat.append(time.perf_counter() - t)
        cpu1 = {k: cpu_s(v) for k, v in pids.items()} | {"client": time.process_time()}
        out["get_all_records_1000_s"] = {
            "median": statistics.median(lat),
            "p99": pct(lat, 0.99),
            # where the time goes, each process's own CPU (a busy machine stretches the wall
            # time, not these): svirtd's list, the front-end's hop, the client's parse
            "cpu_ms_per_call": {k: (cpu1[k] - cpu0[k]) * 1000 / len(lat) for k in cpu0},
        }
        # taken apart: the round trip to the answer's last byte, then the client's parse of it
        import xmlrpc.client

        token = s.handle
        trip, parse, parse_cpu, listing = [], [], [], []
        conn = http.client.HTTPSConnection("127.0.0.1", env.port, context=env.context())
        raw_call(conn, token, "VM.get_all")  # the TLS handshake, before the clock
        for _ in range(10 if args.quick else 30):
            t = time.perf_counter()
            body = raw_call(conn, token, "VM.get_all_records")
            trip.append(time.perf_counter() - t)
            t, c = time.perf_counter(), time.process_time()
            answer = xmlrpc.client.loads(body)[0][0]
            parse.append(time.perf_counter() - t)
            parse_cpu.append(time.process_time() - c)
            # the same gated listing with a small answer (1,000 refs): svirtd's list + the hop
            t = time.perf_counter()
            raw_call(conn, token, "VM.get_all")
            listing.append(time.perf_counter() - t)
        conn.close()
        assert answer["Status"] == "Success" and len(answer["Value"]) == N_VMS, answer.keys()
        out["get_all_records_parts_s"] = {
            "answer_bytes": len(body),
            "round_trip_median": statistics.median(trip),
            "client_parse_median": statistics.median(parse),
            "client_parse_cpu_median": statistics.median(parse_cpu),
            "listing_round_trip_median": statistics.median(listing),
        }
        refs = sorted(recs)
        # 3. 100 sessions x 100 calls
        n_sess, n_calls = 100, (30 if args.quick else 100)
        sessions = [env.login("svt-alice") for _ in range(n_sess)]
        for sess in sessions:  # each session's one listing (VM.get_all), before the clock
            sess.xenapi.VM.get_all()
        lats: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        go = threading.Event()

        def client(k: int) -> None:
            sess, mine, local = sessions[k], [], []
            go.wait()
            for j in range(n_calls):
                ref = refs[(k * 7 + j) % N_VMS]
                t = time.perf_counter()
                try:
                    if j % 2:
                        sess.xenapi.VM.get_power_state(ref)
                    else:
                        mine.append(sess.xenapi.VM.get_record(ref)["uuid"] == ref)
                except Exception as exc:
                    with lock:
                        errors.append(repr(exc)[:200])
                local.append(time.perf_counter() - t)
            with lock:
                lats.extend(local)
                if not all(mine):
                    errors.append("a record for the wrong VM")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(n_sess)]
        for t in threads:
            t.start()
        cpu0 = {k: cpu_s(v) for k, v in pids.items()} | {"client": time.process_time()}
        t0 = time.perf_counter()
        go.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu1 = {k: cpu_s(v) for k, v in pids.items()} | {"client": time.process_time()}
        out["concurrent"] = {
            "sessions": n_sess,
            "calls_each": n_calls,
            "median_s": statistics.median(lats),
            "p99_s": pct(lats, 0.99),
            "calls_per_s": len(lats) / wall,
            "errors": len(errors),
            "first_errors": errors[:3],
            "cpu_ms_per_call": {k: (cpu1[k] - cpu0[k]) * 1000 / len(lats) for k in cpu0},
        }
        out["audit_chain_ok"] = verify(env.env.audit_log).ok
        (HERE / "out").mkdir(exist_ok=True)
        (HERE / "out" / "xenapi.json").write_text(json.dumps(out, indent=2))
    finally:
        env.stop()
        subprocess.run(["/bin/rm", "-rf", str(src), str(node.parent)], check=False)
    return report(out)


def report(out: dict) -> int:
    """The markdown RESULTS.md shows; 1 when a target is missed or anything went wrong."""
    ms = 1000
    lg, ga, parts, cc = (out["login_s"], out["get_all_records_1000_s"],
                         out["get_all_records_parts_s"], out["concurrent"])  # fmt: skip
    met = {
        "login": lg["median"] <= TARGETS["login"],
        "get_all_records": ga["median"] <= TARGETS["get_all_records"],
        "concurrent_p99": cc["p99_s"] <= TARGETS["concurrent_p99"] and not cc["errors"],
    }
    yes = {True: "yes", False: "**no**"}
    print(f"{out['machine']}; the audit chain after the run: "
          f"{'intact' if out['audit_chain_ok'] else '**BROKEN**'}\n")  # fmt: skip
    print("| what | target | median | p99 | met? |\n|---|---:|---:|---:|---|")
    print(
        f"| `session.login_with_password` (HTTPS + XML-RPC + svirtd + PAM stack) | <= 300 ms "
        f"| {lg['median'] * ms:.1f} ms | {lg['p99'] * ms:.1f} ms | {yes[met['login']]} |"
    )
    print(
        f"| `VM.get_all_records`, 1,000 VMs, PyPI XenAPI client | <= 50 ms "
        f"| {ga['median'] * ms:.1f} ms | {ga['p99'] * ms:.1f} ms | {yes[met['get_all_records']]} |"
    )
    print(
        f"| {cc['sessions']} sessions x {cc['calls_each']} calls (`VM.get_record` / "
        f"`get_power_state`), {cc['calls_per_s']:.0f} calls/s, {cc['errors']} errors "
        f"| p99 <= 100 ms | {cc['median_s'] * ms:.1f} ms | {cc['p99_s'] * ms:.1f} ms "
        f"| {yes[met['concurrent_p99']]} |"
    )
    print("\n| `VM.get_all_records` taken apart (same answer) | median |\n|---|---:|")
    print(
        f"| HTTPS round trip to the answer's last byte ({parts['answer_bytes'] // 1024} KiB: "
        f"svirtd's list, records, encoding, TLS) | {parts['round_trip_median'] * ms:.1f} ms |"
    )
    print(
        f"| of which the gated listing itself: `VM.get_all`'s round trip (svirtd's `list`, "
        f"the hop, 1,000 refs) | {parts['listing_round_trip_median'] * ms:.1f} ms |"
    )
    print(
        f"| the client's own parsing of the answer (`xmlrpc.client.loads`; the CPU it took: "
        f"{parts['client_parse_cpu_median'] * ms:.1f} ms) "
        f"| {parts['client_parse_median'] * ms:.1f} ms |"
    )
    rec_cpu = ga.get("cpu_ms_per_call")
    if rec_cpu:
        print(
            f"| CPU per `VM.get_all_records` call: svirtd {rec_cpu['svirtd']:.1f} ms, "
            f"svirt-xenapi {rec_cpu['svirt-xenapi']:.1f} ms, the client "
            f"{rec_cpu['client']:.1f} ms (their sum; the streamed answer overlaps the "
            f"client's parse with svirtd's work) | {sum(rec_cpu.values()):.1f} ms |"
        )
    floor = parts["listing_round_trip_median"] + parts["client_parse_median"]
    target = TARGETS["get_all_records"] * ms
    if parts["client_parse_median"] * ms > target:
        print(f"\nIn this run the client's parse alone ({parts['client_parse_median'] * ms:.1f} "
              f"ms) exceeds the {target:.0f} ms target.")  # fmt: skip
    elif floor * ms > target:
        print(f"\nIn this run the gated listing and the client's parse add up to "
              f"{floor * ms:.1f} ms one after the other, above the {target:.0f} ms target: "
              "only the streamed answer, parsed while svirtd still builds rows, can be "
              "faster than that (docs/xenapi.md, Numbers).")  # fmt: skip
    cpu = cc["cpu_ms_per_call"]
    print("\n| CPU per call in the concurrent run | ms |\n|---|---:|")
    for k in ("svirtd", "svirt-xenapi", "client"):
        print(f"| {k} | {cpu[k]:.2f} |")
    missed = [name for name, ok in met.items() if not ok]
    if missed:  # named where run_all.py shows why the bench failed
        print(f"missed Issue 16's target: {', '.join(missed)}", file=sys.stderr)
    if not out["audit_chain_ok"]:
        print("the audit chain does not verify after the run", file=sys.stderr)
    return 0 if not missed and out["audit_chain_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
