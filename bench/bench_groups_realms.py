"""Decision cost with group roles and the realm check (issue 15), beside today's decide().

The large policy of bench_rbac.py (10k users, 1k roles, 100k VMs) is built three ways and the
same query mix (half allowed, half denied) timed per call, the rows' rounds interleaved:

  * today: no ``<Group>`` in UA;
  * with one group role in UA (role0000 given to a Unix group NSS resolves here): the C index
    checks whether any group role could grant the request at all, and only then uses the
    caller's groups, which the engine told it when it last asked NSS (cached, as in svirtd);
  * the same plus the realm step, as the gate runs it: two realms (a: a Unix group and half of
    the users, b: the other half, restricted to the operations of the mix), each query on a VM
    of the caller's realm (recorded in the VM's attributes).  The realm check and RBAC are
    asked of rbac's C index in one call (RbacPolicy.decide_in with the realms compiled by
    Tenancy.partitions), which answers once the caller's realms are cached; a request it does
    not answer (first sight of a user, another realm's VM) runs Tenancy.refusal, then
    decide(), as before.  Refusals across realms are worded in Python and not in this mix.

The 10k users of that mix are in no group (NSS does not know them), so a second mix asks as a
real member of the group: the same role through ``<Group>``, against it given by ``<User>``
(half of the queries on role0000's VMs, half on random ones).  One member only (this machine
has no 10k accounts), so its group answer stays in the CPU caches: the per-user part is one
lookup in the index's group table.

Every row's queries are fresh objects in each round: the strings (no hash cached) and the
attrs dicts (built per request, as the gate does; see _fresh_requests).

The DESIGN target: a decision with realm and group checks within 1.2x of today's.  Run:
    /opt/secured-virt/venv/bin/python bench/bench_groups_realms.py [--quick]
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_rbac  # noqa: E402
from bench_rbac import Data, time_interleaved  # noqa: E402

import rbac  # noqa: E402


def _a_group() -> str:
    """A group NSS resolves on this machine (the resolver must find it, as in production)."""
    return grp.getgrgid(pwd.getpwuid(os.getuid()).pw_gid).gr_name


def _a_member() -> str:
    """A user NSS puts in _a_group() (it is their primary group)."""
    return pwd.getpwuid(os.getuid()).pw_name


class GroupData(Data):
    """role0000 given to _a_group() (``via="group"``) or to _a_member() by <User>."""

    via = "group"

    def build(self, native: bool = True) -> rbac.RbacPolicy:
        real = rbac.PolicyBuilder.build
        via = self.via

        def build_with_group(b, *, native=True, groups=None):
            if via == "group":
                b.assign_group(_a_group(), self.roles[0])
            else:
                b.assign(_a_member(), self.roles[0])
            return real(b, native=native, groups=groups)

        rbac.PolicyBuilder.build = build_with_group
        try:
            return super().build(native)
        finally:
            rbac.PolicyBuilder.build = real


def _fresh_requests(queries):
    """bench_rbac._fresh, with each query's attrs a new dict as well: the gate builds a
    request's attrs from the VM's metadata (Target.attrs, copied again by the realm step when
    it adds the realm), so they are in the caches when it decides.  Reused across rounds
    (bench_rbac's way, fine for rows that seldom read them), the realm row -- which reads
    every request's attrs -- paid two cache misses the gate does not (+40-70 ns here)."""
    return [
        (u[:1] + u[1:], op, vm[:1] + vm[1:], dict(a) if type(a) is dict else a)
        for u, op, vm, a in queries
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 20000 if args.quick else 50000
    base = Data(10000, 1000, 100000)
    # the caller's realm: the VM's, recorded in its attributes (a fresh dict, as the gate has)
    realm_of = {u: "ab"[k % 2] for k, u in enumerate(base.users)}
    queries = [(u, op, vm, {**at, "realm": realm_of[u]}) for u, op, vm, at in base.queries(n)]
    today = base.build()
    grouped = GroupData(10000, 1000, 100000).build()
    assert grouped.group_assignments and grouped.native
    from secured_virt.tenancy.check import Tenancy
    from secured_virt.tenancy.model import Realm, RealmSet

    g = _a_group()
    realms = RealmSet(
        {
            "a": Realm(
                "a",
                users=frozenset(u for u in base.users if realm_of[u] == "a"),
                groups=frozenset({g}),
                vm_patterns=("vm0*",),
            ),
            "b": Realm(
                "b",
                users=frozenset(u for u in base.users if realm_of[u] == "b"),
                vm_patterns=("zz*",),
                operations=frozenset(bench_rbac.CATALOGUE[o] for o in bench_rbac.TENANT_OPS),
            ),
        }
    )
    tenancy = Tenancy(realms)
    names = bench_rbac.CATALOGUE
    parts = tenancy.partitions(names)  # what the service's realm step hands the gate
    decide, refusal = grouped.decide, tenancy.refusal
    handed = [0]

    def separately(user, op, vm, attrs):
        """What C does not answer: the realm step, worded, then RBAC (as the gate does)."""
        handed[0] += 1
        why = refusal(user, root=False, op_name=names[op], op_scope="vm", vm=vm, attrs=attrs)
        if why is not None:
            return why
        return decide(user, op, vm, attrs)

    # both checks in one C call; `separately` where it does not answer
    with_realm = grouped.partitioned(parts, separately)

    # a real member of the group: role0000 through <Group>, against it given by <User>
    me = _a_member()
    block = base.blocks[base.roles[0]][0]
    rnd = random.Random(2)
    member_queries = []
    for k, (_u, op, vm, attrs) in enumerate(queries):
        if k % 2 == 0:
            vm = block[rnd.randrange(len(block))]
            attrs = {"label": base.labels[vm]}
        member_queries.append((me[:1] + me[1:], op, vm[:1] + vm[1:], attrs))
    direct_data = GroupData(10000, 1000, 100000)
    direct_data.via = "user"
    direct = direct_data.build()
    assert grouped.decide(*member_queries[0]).allowed == direct.decide(*member_queries[0]).allowed
    specs = [
        ("today: decide(), no group roles", "", today.decide, queries),
        ("decide(), one <Group> role in UA", "", grouped.decide, queries),
        ("realm step + decide(), group roles", "", with_realm, queries),
        (
            f"decide() by a member ({me}), role0000 by <User> (today's way)",
            "member",
            direct.decide,
            member_queries,
        ),
        (
            f"decide() by the member, role0000 through <Group> ({g})",
            "member",
            grouped.decide,
            member_queries,
        ),
    ]
    # every row's rounds interleaved with the others' (the load of a shared machine drifts)
    # the two ways agree on the mix (tests/tenancy/test_realm_index.py on random realms); this
    # also asks every user's realms once, as a running svirtd has, just before the rounds (a
    # user's first request, and one every 5 s after, asks NSS in Python: counted below; here
    # the 10k users' answers all expire at once, a burst a daemon's spread requests do not
    # see)
    for q in queries:
        want = refusal(q[0], root=False, op_name=names[q[1]], op_scope="vm", vm=q[2], attrs=q[3])
        assert want is None
        assert tuple(with_realm(*q)) == tuple(grouped.decide(*q))
    handed[0] = 0
    bench_rbac._fresh = _fresh_requests  # what time_interleaved copies before each round
    timed = time_interleaved({what: (fn, qs) for what, _peer, fn, qs in specs}, rounds=ROUNDS)
    rows = [(what, peer, timed[what]) for what, peer, _fn, _qs in specs]
    peers = {"": rows[0][2]["median_ns"], "member": rows[3][2]["median_ns"]}
    # after the rounds above (they must end within the realms' 5 s cache, see there)
    loops = loop_means({what: (fn, qs) for what, peer, fn, qs in specs if peer == "member"})
    loop_peer = loops[specs[3][0]]
    realm_calls = len(queries) * ROUNDS + 2000  # rounds of time_interleaved, and its warm-up
    share = handed[0] / realm_calls
    allowed = sum(grouped.decide(*q).allowed for q in member_queries) / len(member_queries)
    print("| what | median | p99 | x its peer | in a loop, mean | x its peer |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, peer, r in rows:
        loop = (
            f"{bench_rbac.fmt_ns(loops[what])} | {loops[what] / loop_peer:.2f}x"
            if what in loops
            else "— | —"
        )
        print(
            f"| {what} | {bench_rbac.fmt_ns(r['median_ns'])} | {bench_rbac.fmt_ns(r['p99_ns'])} "
            f"| {r['median_ns'] / peers[peer]:.2f}x | {loop} |"
        )
    print(
        f"\nPeers: the first three rows against today's decide() on the same mix; the member's "
        f"two rows against each other ({allowed:.0%} of the member's queries allowed).  C "
        f"index: {grouped.native}.  The realm row: both checks in one C call; "
        f"{share:.1%} of its calls handed to the realm step and decide() in Python (a "
        "caller whose realms' cache expired: NSS asked again).  The loop columns, for the "
        "member's two rows: the same calls without a timer around each (rounds interleaved, "
        "fresh strings, the median of the rounds' means), so no timer overhead is subtracted: "
        "a few tens of ns apart at ~150 ns, where one call's timer is a third of the figure, "
        "the two compare more steadily there than by their medians; the target is judged on "
        "the medians, as issue 15 states it."
    )
    missed = [
        f"{what}: {r['median_ns'] / peers[peer]:.2f}x its peer (target {TARGET_RATIO}x)"
        for what, peer, r in rows[1:]
        if r["median_ns"] / peers[peer] > TARGET_RATIO
    ]
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    return 1 if missed else 0


def loop_means(runs: dict, rounds: int | None = None) -> dict:
    """name -> ns per call of ``fn`` over its queries in a plain loop (no timer per call),
    the median over ``rounds`` rounds; the peers' rounds interleaved, in a rotated order, each
    on fresh strings (bench_rbac._fresh, as time_interleaved)."""
    names = list(runs)
    means: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds or ROUNDS_LOOP):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, queries = runs[name]
            batch = bench_rbac._fresh(queries)
            t0 = time.perf_counter_ns()
            for q in batch:
                fn(*q)
            means[name].append((time.perf_counter_ns() - t0) / len(batch))
    return {n: statistics.median(v) for n, v in means.items()}


#: issue 15: a decision with realm and group checks within 1.2x of today's (medians)
TARGET_RATIO = 1.2
#: rounds of every row, interleaved (more than bench_rbac's 5: the realm row is the one with a
#: target within a few tens of ns, and 8 helpers share 2 cores)
ROUNDS = 9
#: rounds of loop_means (cheap: no per-call timing)
ROUNDS_LOOP = 15


if __name__ == "__main__":
    sys.exit(main())
