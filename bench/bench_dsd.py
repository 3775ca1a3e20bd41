"""What dynamic separation of duty costs a request: Gate.authorize with and without DSD tracking.

A user who holds roles of a ``<DynamicSeparation>`` set is tracked: each allowed request reads
the role-session file of their login session and rewrites it (flock + atomic rename, as the
credential cache does).  Everyone else is not tracked and must pay nothing.  Three users in one
policy, timed interleaved in one process so machine noise hits them alike:

  * ``untracked``: holds one role, the policy has a DSD set (the peer);
  * ``tracked``:   holds both roles of the set, so every request goes through the store;
  * ``no-dsd``:    the same policy without any DSD set (the gate's pre-DSD cost).

Each request is a full ``Gate.authorize`` with a real audit log on disk (the audit write is in
all three).  Needs root (policy files must be root-owned).  Prints a markdown table and writes
bench/out/dsd.json.  Run:  /opt/secured-virt/venv/bin/python bench/bench_dsd.py [--rounds N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from secured_virt.access.audit import AuditLog  # noqa: E402
from secured_virt.access.gate import Gate, Target  # noqa: E402
from secured_virt.access.identity import Identity  # noqa: E402
from secured_virt.access.operations import CATALOGUE  # noqa: E402
from secured_virt.access.rolesession import ActiveRoles  # noqa: E402
from secured_virt.config import default_config  # noqa: E402
from secured_virt.rolefiles.store import PolicyStore  # noqa: E402

PA = """<?xml version="1.0"?>
<RolePolicyDefinition>
  <Role name="Web"><ManageVM type="individual"><VM name="web1"/></ManageVM>
    <ControlOperation><Accept><operation name="start"/></Accept></ControlOperation></Role>
  <Role name="Build"><ManageVM type="individual"><VM name="build1"/></ManageVM>
    <ControlOperation><Accept><operation name="start"/></Accept></ControlOperation></Role>
</RolePolicyDefinition>
"""
UA = """<?xml version="1.0"?>
<UserConfiguration>
  <User name="untracked"><UserRole role="Web"/></User>
  <User name="tracked"><UserRole role="Web"/><UserRole role="Build"/></User>
  {dsd}
</UserConfiguration>
"""
DSD = '<DynamicSeparation name="s"><Role name="Web"/><Role name="Build"/></DynamicSeparation>'


def write_root(path: Path, text: str) -> str:
    path.write_text(text)
    os.chmod(path, 0o644)
    os.chown(path, 0, 0)
    return str(path)


def gate_for(base: Path, with_dsd: bool) -> Gate:
    d = base / ("dsd" if with_dsd else "plain")
    d.mkdir(mode=0o700)
    (d / "log").mkdir(mode=0o700)
    cfg = dataclasses.replace(
        default_config(),
        ua=write_root(d / "ua.xml", UA.format(dsd=DSD if with_dsd else "")),
        pa=write_root(d / "pa.xml", PA),
        audit_log=str(d / "log" / "audit.log"),
        audit_syslog=False,
        auth_dir=str(d / "ts"),
    )
    return Gate(
        PolicyStore(cfg.ua, cfg.pa),
        AuditLog.from_config(cfg),
        role_sessions=ActiveRoles.from_config(cfg),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_dsd: run as root (policy files must be root-owned)")
    op, target = CATALOGUE.get("start"), Target("web1")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        dsd, plain = gate_for(base, True), gate_for(base, False)

        def who(name):
            return Identity(uid=5000, gid=5000, user=name, groups=(5000,), via="svirtd",
                            pid=os.getpid(), ppid=os.getppid())  # fmt: skip

        cases = {
            "no-dsd": (plain, who("untracked")),
            "untracked": (dsd, who("untracked")),
            "tracked": (dsd, who("tracked")),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, (gate, ident) in cases.items():
                t0 = time.perf_counter()
                v = gate.authorize(ident, op, target)
                times[name].append(time.perf_counter() - t0)
                assert v.allowed, (name, v.rule)
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    p99 = {k: sorted(v)[int(len(v) * 0.99)] * 1e6 for k, v in times.items()}
    print(f"Gate.authorize, {args.rounds} interleaved rounds, load {os.getloadavg()[0]:.2f}\n")
    print("| user | median | p99 | vs no-dsd |")
    print("|---|---:|---:|---:|")
    for k in cases:
        print(f"| {k} | {med[k]:.1f} µs | {p99[k]:.1f} µs | {med[k] / med['no-dsd']:.2f}x |")
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "dsd.json").write_text(
        json.dumps({"rounds": args.rounds, "median_us": med, "p99_us": p99}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
