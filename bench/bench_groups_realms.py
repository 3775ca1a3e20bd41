"""Decision cost with group roles and the realm check (issue 15), beside today's decide().

The large policy of bench_rbac.py (10k users, 1k roles, 100k VMs) is built three ways and the
same query mix (half allowed, half denied) timed per call:

  * today: no ``<Group>`` in UA (the C index answers allowed and denied calls);
  * with one group role in UA: the C index still answers allowed calls; a by-name miss goes to
    Python, which asks the group resolver (cached, as in svirtd) before denying;
  * the same plus the realm step (secured_virt.tenancy.check.Tenancy.refusal, two realms whose
    members come through a Unix group, the VM's realm in its attributes), as the gate runs it.

The DESIGN target: a decision with realm and group checks within 1.2x of today's.  Run:
    /opt/secured-virt/venv/bin/python bench/bench_groups_realms.py [--quick]
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_rbac  # noqa: E402
from bench_rbac import Data, time_calls  # noqa: E402

import rbac  # noqa: E402


def _a_group() -> str:
    """A group NSS resolves on this machine (the resolver must find it, as in production)."""
    return grp.getgrgid(pwd.getpwuid(os.getuid()).pw_gid).gr_name


class GroupData(Data):
    def build(self, native: bool = True) -> rbac.RbacPolicy:
        real = rbac.PolicyBuilder.build

        def build_with_group(b, *, native=True, groups=None):
            b.assign_group(_a_group(), self.roles[0])
            return real(b, native=native, groups=groups)

        rbac.PolicyBuilder.build = build_with_group
        try:
            return super().build(native)
        finally:
            rbac.PolicyBuilder.build = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 20000 if args.quick else 50000
    base = Data(10000, 1000, 100000)
    queries = base.queries(n)
    today = base.build()
    grouped = GroupData(10000, 1000, 100000).build()
    assert grouped.group_assignments and grouped.native
    from secured_virt.tenancy.check import Tenancy
    from secured_virt.tenancy.model import Realm, RealmSet

    g = _a_group()
    realms = RealmSet(
        {
            "a": Realm("a", groups=frozenset({g}), vm_patterns=("vm0*",)),
            "b": Realm("b", users=frozenset({"nobody-here"}), vm_patterns=("zz*",)),
        }
    )
    tenancy = Tenancy(realms)
    attrs_realm = {"realm": "a"}

    def with_realm(user, op, vm, attrs):
        why = tenancy.refusal(
            user, root=False, op_name="start", op_scope="vm", vm=vm, attrs=attrs_realm
        )
        if why is None:
            return grouped.decide(user, op, vm, attrs)
        return why

    rows = [
        ("today: decide(), no group roles", time_calls(today.decide, queries)),
        ("decide(), one <Group> role in UA", time_calls(grouped.decide, queries)),
        ("realm step + decide(), group roles", time_calls(with_realm, queries)),
    ]
    base_ns = rows[0][1]["median_ns"]
    print("| what | median | p99 | x today |")
    print("|---|---:|---:|---:|")
    for what, r in rows:
        print(
            f"| {what} | {bench_rbac.fmt_ns(r['median_ns'])} | {bench_rbac.fmt_ns(r['p99_ns'])} "
            f"| {r['median_ns'] / base_ns:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
