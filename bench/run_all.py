"""Run every benchmark in bench/ and write bench/RESULTS.md from what they print.

RESULTS.md is generated, never edited by hand: each section is one benchmark's output (its
tables, raw numbers in bench/out/<name>.json) under a line saying when it ran, at which
commit, and how busy the machine was before and after.  The words around the tables are
here, in SECTIONS, and hold no figures, so a figure can only be as old as the run that
printed it.  ``run_all.py NAME...`` re-runs some benchmarks and replaces only their sections
(each section keeps its own date and commit).  Benchmarks are never run by the test suite
(timing on a shared machine is noise; tests assert behaviour).

    make bench            # all of them
    python bench/run_all.py daemon client
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from benchhost import git_state  # run_all.py runs from bench/, beside it

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"

#: name -> (title, target, what is measured and how to read it: no figures here)
SECTIONS = {
    "client": (
        "svirsh start-up as users run it (`bench_client.py`)",
        "DESIGN.md: `svirsh` through svirtd, as installed and as a non-root user, at most 0.8x "
        "the wall time of `virsh` doing the same; root's direct mode at most 1.5x.",
        "Whole processes, fork to exit, on a 50-domain test-driver node; virsh and svirsh run "
        "as the same user (the non-root `svt-bench` through setpriv, or root), rounds "
        "interleaved; ratio of medians against virsh of the same user.  `bin/svirsh` is the "
        "source tree's launcher (`python3 -IS`); `installed svirsh` is a host install's layout "
        "(a venv with the packages in site-packages, byte-code compiled at install, pip's "
        "console script with `-I`); the dev venv's editable install is shown apart (its "
        "import finder is a development cost no host pays).  Before timing, root ran every "
        "variant once, then the user did: the byte-code caches are what a host has.  The "
        "`root: floor` row is not svirsh: `python3 -I` importing the libvirt binding, opening "
        "the same URI and asking the same question, printing nothing; no Python direct mode "
        "can start faster than that, so root's svirsh goes through svirtd by default whenever "
        "it answers (the `default: via svirtd` row; `--socket` only names the bench's svirtd) "
        "and runs in-process when svirtd is down or with `--direct` (the `--direct` row).  "
        "Two more yardsticks say where that floor comes from: `import libvirt` alone, and "
        "the same question asked of libvirt's C extension module (`libvirtmod`) without the "
        "binding's Python layer (libvirt.py, which imports typing and defines its ~2,000 "
        "methods at every start).  "
        "svirtd runs with its defaults, the audit's records going to syslog too (see the "
        "daemon section).  The second table runs the same commands on the same domains "
        "inside libvirtd (its test driver): every libvirt call of svirtd's is then a round "
        "trip, as on a host with real guests, and only root's virsh can reach libvirtd, so it "
        "is the peer there; not judged.",
    ),
    "daemon": (
        "svirtd under load (`bench_daemon.py`)",
        "DESIGN.md: 50 concurrent clients, p99 at most 50 ms and at least 1,500 requests/s "
        "on this 2-core machine, no errors, the audit chain intact.",
        "50 client processes as the non-root `svt-bench`, 100 requests each, one connection "
        "per request like svirsh, released together: list, dominfo, domstate, start/destroy "
        "of the client's own VM, and a refused suspend.  Every reply's status is checked; "
        "after each run the audit log is verified (chain, one decision and one outcome per "
        "allowed request, every refusal written or counted in a `suppressed` record of the "
        "per-uid flood limit).  Latencies are over every request of every run.  CPU per "
        "request is svirtd's (all threads) and the clients' over the load only: two cores "
        "divided by their sum bounds what an idle machine could serve; svirtd runs all its "
        "threads on one CPU (`svirtd_one_cpu = yes`, the default), so one core divided by "
        "its own CPU per request bounds it too.  An allowed start or "
        "destroy waits for two audit fsyncs (its decision before the action, its outcome "
        "before the reply), an allowed read for one (its decision and outcome together, "
        "before the reply: docs/audit-format.md); each shared by the requests of the "
        "moment, so a busy disk shows in every row but the refused suspend.  svirtd runs with "
        "its admission queue (at most 16 requests in the service at once, the rest in "
        "arrival order); the `no admission queue` rows are the same svirtd with it off, runs "
        "interleaved.  The node is a "
        "test-driver file inside svirtd's process, as the target is stated (a libvirt call "
        "is a function call); the `domains inside libvirtd` row runs the same load with the "
        "same domains in libvirtd's own test driver, every libvirt call a round trip as in "
        "production, libvirtd's CPU shown beside svirtd's (not judged).  The `at 1500 "
        "requests/s offered` row sends the same requests on a fixed schedule at the "
        "target's rate instead of each as soon as the last reply came, each timed from when "
        "it was due: the latency of a host serving that rate (not judged).  `The service "
        "alone` is the same mix straight into `Service.handle` in one process, one request "
        "after the other: with the connection alone, the most one Python process could "
        "serve.  svirtd runs with its defaults, so every audit record also goes to syslog "
        "(`audit_syslog = yes`): to the machine's /dev/log, or where it has none, to a "
        "receiver the bench starts for its run (a process that reads and drops each message; "
        "what journald would do with them is not in these figures).",
    ),
    "qemu": (
        "start and destroy of a real QEMU guest (`bench_qemu.py`)",
        "Issue 18: on real QEMU, `svirsh start` and `svirsh destroy` add at most 10 ms to virsh's.",
        "A tiny TCG guest (32 MiB, no disk) on qemu:///system.  Each round, in alternating "
        "order: `virsh start` + `virsh destroy` as root (the peer), and `bin/svirsh start` + "
        "`destroy` as the non-root `svt-bench` through svirtd (root) on the same libvirtd; "
        "median and p90 of every round; the target is judged on the median of each round's "
        "difference (svirsh minus virsh of the same round), which QEMU's own spread between "
        "rounds does not move.  svirtd runs with its defaults, the audit to syslog too (see "
        "the daemon section).",
    ),
    "policy": (
        "sHype/ACM mediation hooks (`bench_policy.py`)",
        "DESIGN.md: Chinese Wall create check and STE share check O(types), at most 2 us uncached.",
        "A generated policy of 1,000 VM labels, 1,000 resource labels, 201 types and 50 "
        "conflict sets with as many running domains as its conflict sets allow.  Each call "
        "timed alone; median and p99 over all rounds.  'fresh' rows use a domain key or "
        "resource name never seen before on every call (no memo, no cached hash).  A "
        "refusal's sentence names every conflicting running domain; it is written when read, "
        "and its cost is the row marked 'not a target'.",
    ),
    "rbac": (
        "RBAC decisions against PyCasbin (`bench_rbac.py`)",
        "Issue 18: at 10k users / 1k roles / 100k VMs, over every query of the mix (scoped "
        "grants, expiring assignments and a role needing authentication included), median at "
        "most 0.6 us and p99 at most 2 us (DESIGN.md: 1 us median), beside PyCasbin.",
        "Uniformly random (user, operation, VM) queries, about half allowed, each round on "
        "freshly copied strings; median and p99 over every call of every round (timer "
        "overhead subtracted).  Peers in the same process: rbac in pure Python, PyCasbin's "
        "Enforcer with one row per (role, VM, operation), the same with `g2` VM groups, and "
        "PyCasbin's FastEnforcer (literal model, policy keyed on object and action).  "
        "Load is from real UA/PA files, median of three.",
    ),
    "groups_realms": (
        "Decision cost with group roles and the realm check (`bench_groups_realms.py`)",
        "Issue 15: a decision with realm and group checks at 10k users / 1k roles / 100k VMs "
        "within 1.2x of today's (medians; the C index kept).",
        "The same query mix as the rbac section, each call timed alone on fresh strings; "
        "peers in the same process.  Group roles come from a `<Group>` NSS resolves here; the "
        "mix's 10k users are in no group, so a real member's decisions are timed too, through "
        "the `<Group>` against the same role given by `<User>`.",
    ),
    "load": (
        "Loading UA/PA at scale (`bench_load.py`)",
        "Issue 18: load + validate + compile of 100k users / 1k roles / 100k VMs in at most "
        "1 s; peak memory of a 10k users / 1k roles / 100k VMs load at most 100 MB.",
        "Each load in a fresh interpreter from real files (`rbac.load`, C index built); peak "
        "is the process's maximum resident set, interpreter and imports included.",
    ),
    "list": (
        "List filtering (`bench_list.py`)",
        "DESIGN.md: `list` filtering 10k domains at most 20 ms.",
        "`filter_visible` over 10,000 names (fresh strings each pass) beside 10,000 single "
        "decisions; the whole `list --all` use case on the test driver beside the bare "
        "backend listing it is built on; and an owner's `list --all` of 50 domains as svirtd "
        "serves it, each domain's metadata and row kept from one listing to the next until "
        "libvirt announces a change (`secured_virt/backends/libvirt_events.py`, "
        "`libvirt_rows.py`), beside the same Service asking libvirt for both at every "
        "listing, calls interleaved in one process; the same pair with the domains inside "
        "libvirtd (`test+unix:///default`: each read a round trip, as with "
        "`qemu:///system`).",
    ),
    "dsd": (
        "Dynamic separation of duty in the gate (`bench_dsd.py`)",
        "No target of its own: what DSD adds to a gated request.",
        "Full `Gate.authorize` (decision, DSD, fsynced audit record) for one allowed start, "
        "three users interleaved in one process.",
    ),
    "categories": (
        "sVirt category pairs (`bench_categories.py`)",
        "Issue 15: allocation at most 10 us median.",
        "Steady states where N VMs hold pairs; each round one VM allocates (timed alone) and "
        "a random holder releases; the peer is libvirt-style random retry on the same states.",
    ),
    "web": (
        "The web console's VM page (`bench_web.py`)",
        "Issue 17: the VM page for a user who sees 1,000 VMs renders server-side in at most "
        "100 ms.",
        "In one process: `Service.handle(vm-actions)` as svirtd runs it for the page (test "
        "driver, 1,000 domains, a role naming all of them with the page's operations: the "
        "listing, the per-VM answers of which buttons to show, one audit record), the reply "
        "through JSON both ways (svirtd's frame and the console's link; the socket round trip "
        "itself not counted), and the HTML; medians, then their sum.",
    ),
    "xenapi": (
        "The secured Xen-API under load (`bench_xenapi.py`)",
        "Issue 16: `session.login_with_password` at most 0.3 s (PAM's own delay not counted); "
        "`VM.get_all_records` over 1,000 VMs at most 50 ms; 100 concurrent sessions x 100 calls "
        "with p99 at most 100 ms.",
        "The whole stack as deployed: svirtd as root (test-driver node of 1,000 VMs the bench "
        "user may all see, PAM through pam_wrapper, whose pam_matrix adds no delay), "
        "svirt-xenapi as its own uid, clients with the PyPI `XenAPI` over HTTPS with the "
        "certificate pinned, one kept TLS connection per session; the concurrent run's "
        "clients are threads of one process on the same two cores.  `get_all_records` is "
        "timed at the client (its answer streamed: the client parses the first records "
        "while svirtd builds the last), then taken apart on the same answer: the round trip "
        "to its last byte, and the client's own XML-RPC parsing of it, one after the other "
        "(their sum is more than the streamed call takes).  Each single-VM call is one "
        "gated, audited `dominfo` in svirtd.  CPU per call is each process's user+system "
        "time over the concurrent run divided by its calls.",
    ),
}


def _commit() -> str:
    state = git_state()
    if state is None:
        return "unknown"
    return state[0] + (" (with uncommitted changes in the tree)" if state[1] else "")


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _docstring_title(script: Path) -> str:
    """A benchmark without a SECTIONS entry is titled by its docstring's first line."""
    m = re.match(r'\s*(?:#[^\n]*\n\s*)*[rRuU]?"""(.*)', script.read_text())
    first = m.group(1).strip().rstrip(".") if m else ""
    return f"{first} (`{script.name}`)" if first else f"`{script.name}`"


def run_one(name: str) -> str:
    """Run bench_<name>.py; the section for RESULTS.md (its output under its stamp)."""
    script = HERE / f"bench_{name}.py"
    title, target, how = SECTIONS.get(name) or (_docstring_title(script), "see the script", "")
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit, before, t0 = _commit(), _load(), time.monotonic()
    print(f"\n## {name}: running {script.name} (load {before})\n", flush=True)
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=HERE.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            out, err = proc.communicate()
        except BaseException:  # stopped (Ctrl-C, SIGTERM): the bench cleans up, then we go
            proc.terminate()
            proc.communicate()
            raise  # SIGTERM/SIGHUP arrive as SystemExit too: benchhost, imported above, says so
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr[-4000:])
    took = time.monotonic() - t0
    # the tables; "wrote bench/out/..." lines are for the console
    body = "\n".join(
        line
        for line in res.stdout.strip().splitlines()
        if not line.startswith(("wrote ", "written:"))
    ).strip()
    if res.returncode:
        body += (
            f"\n\n**The benchmark exited with status {res.returncode}** (a target it checks "
            f"was missed, or it failed):\n\n```\n{res.stderr.strip()[-2000:]}\n```"
        )
    return (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"**Run {date}, commit `{commit}`, load average (1/5/15 min) {before} before and "
        f"{_load()} after, {took:.0f} s.**  Target — {target}\n\n{how}\n\n{body}\n"
        f"<!-- /bench:{name} -->\n"
    )


HEADER = """# Benchmark results

Generated by `make bench` (`bench/run_all.py`) on {machine}; do not edit by hand.  Every
figure below was printed by the benchmark run named above its table; raw numbers are in
`bench/out/<name>.json`.  The machine is a shared 2-vCPU VM: other work may run beside a
benchmark, so each section gives the load average before and after, peers are measured in
the same run (interleaved where they are processes), and figures are medians and p99 over
all rounds, never the best round.
"""


def write_results(sections: dict[str, str]) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else ""
    kept = {
        m.group(1): m.group(0) + "\n"
        for m in re.finditer(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", old, re.S)
    }
    kept.update(sections)
    order = [n for n in SECTIONS if n in kept] + sorted(n for n in kept if n not in SECTIONS)
    mach = (
        f"{platform.node() or 'this machine'} ({os.cpu_count()} CPUs, "
        f"{platform.platform()}, Python {platform.python_version()})"
    )
    text = HEADER.format(machine=mach) + "".join("\n" + kept[n] for n in order)
    RESULTS.write_text(text)


def main() -> int:
    (HERE / "out").mkdir(exist_ok=True)
    names = sys.argv[1:] or [p.stem.removeprefix("bench_") for p in sorted(HERE.glob("bench_*.py"))]
    unknown = [n for n in names if not (HERE / f"bench_{n}.py").exists()]
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)}", file=sys.stderr)
        return 2
    order = [n for n in SECTIONS if n in names] + [n for n in names if n not in SECTIONS]
    sections, failed = {}, []
    for name in order:
        sections[name] = run_one(name)
        if "**The benchmark exited with status" in sections[name]:
            failed.append(name)
        write_results(sections)  # after each one: an interrupted run keeps what it measured
    print(f"\nwrote {RESULTS}")
    if failed:
        print(f"failed or missed a target: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
