"""The realm check and RBAC in one call of rbac's C index agree with the two steps in Python.

The gate runs the realm step (Tenancy.refusal) before RBAC (RbacPolicy.decide).  For the
commonest request the service lets it ask rbac's C index for both at once
(RbacPolicy.decide_in with the realms compiled into rbac's partitions, Tenancy.partitions);
that answer must be exactly the pair's whenever it is given, and it may be given only when the
realm step passes.  Here, on random realms (members by user and by real local Unix groups,
admins, members a realm admin added, realms restricted to some operations, claims by pattern,
VMs in no realm) and random policies (own and group roles), every query is answered both ways,
as the service asks them (the VM's realm put in its attrs first); the C path must also really
answer the common case itself once the caller's realms are cached.  A membership change
reaches the C path when Tenancy's cache of the caller's realms expires, never later, and at
once when that cache is dropped.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbac
from rbac import engine
from rbac.groups import GroupResolver
from secured_virt.tenancy.check import RealmConflict, Tenancy
from secured_virt.tenancy.model import Realm, RealmSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tenancy_helpers import three_members

pytestmark = pytest.mark.skipif(
    engine._native is None, reason="rbac._native not built (no C compiler)"
)

#: a small catalogue: id 70 lies beyond the index's 64-bit operation masks
OPS = {0: "start", 1: "stop", 2: "dominfo", 70: "snapshot-create"}
VMS = ["a1", "a2", "b1", "free", "zz"]
REALMS = ["ra", "rb", "rc"]


@pytest.fixture(scope="module")
def accounts():
    """Real local users and groups (as root): b in g1, c in g1 and g2 (primary g3), d in none."""
    if os.geteuid() != 0:
        pytest.skip("creates local users: run as root")
    with three_members(f"ri{os.getpid() % 100000}") as accounts:
        yield accounts


def names_of(accounts):
    return [*accounts.users, "u0", "u1"]


@st.composite
def worlds(draw, accounts):
    names, groups = names_of(accounts), accounts.groups
    some = st.frozensets
    realms = {}
    for rn in draw(st.lists(st.sampled_from(REALMS), unique=True, max_size=3)):
        realms[rn] = Realm(
            rn,
            users=draw(some(st.sampled_from(names), max_size=2)),
            groups=draw(some(st.sampled_from(groups), max_size=2)),
            admin_users=draw(some(st.sampled_from(names), max_size=1)),
            admin_groups=draw(some(st.sampled_from(groups), max_size=1)),
            vm_patterns=tuple(
                draw(st.lists(st.sampled_from(["a*", "b?", "z*", "*1"]), max_size=1))
            ),
            operations=draw(
                st.one_of(st.just(frozenset()), some(st.sampled_from(sorted(OPS.values()))))
            ),
        )
    extra = {
        rn: (draw(some(st.sampled_from(names), max_size=1)), draw(some(st.sampled_from(groups))))
        for rn in draw(st.lists(st.sampled_from(REALMS), unique=True, max_size=2))
    }
    roles = ["r0", "r1", "r2", "r3"]
    grants = [
        ("r0", draw(some(st.sampled_from(sorted(OPS)), min_size=1)), rbac.Exact(set(VMS[:3]))),
        ("r1", draw(some(st.sampled_from(sorted(OPS)), min_size=1)), rbac.Glob("a*")),
        ("r2", draw(some(st.sampled_from(sorted(OPS)), min_size=1)), rbac.AnyObject()),
        ("r3", draw(some(st.sampled_from(sorted(OPS)), min_size=1)), rbac.Attribute("label", "L1")),
    ]
    assigns = {u: draw(some(st.sampled_from(roles), max_size=2)) for u in names[:-1]}
    group_roles = {g: draw(some(st.sampled_from(roles), max_size=2)) for g in groups[:2]}
    return types.SimpleNamespace(
        realms=realms, extra=extra, roles=roles, grants=grants, assigns=assigns, groups=group_roles
    )


def build(w, native: bool, resolver) -> rbac.RbacPolicy:
    b = rbac.PolicyBuilder(OPS)
    for r in w.roles:
        b.add_role(r)
    for r, ops, sel in w.grants:
        b.grant(r, sorted(ops), sel)
    for u, roles in w.assigns.items():
        b.add_user(u)
        for r in sorted(roles):
            b.assign(u, r)
    for g, roles in w.groups.items():
        for r in sorted(roles):
            b.assign_group(g, r)
    return rbac.RbacPolicy(b.model(), native=native, groups=resolver)


def attr_choices():
    return [
        None,
        {},
        {"label": "L1"},
        *({"realm": r} for r in [*REALMS, "nowhere"]),
        {"realm": "ra", "label": "L1"},
        {"realm": ""},
        {"realm": 5},
        types.MappingProxyType({"realm": "ra"}),
    ]


def as_the_service(t: Tenancy, vm: str, attrs):
    """secured_virt.service.realms._realm_check: the VM's realm put in its attrs, and whether
    it is known (a VM two realms claim is not: only the Python step may answer it)."""
    if (attrs or {}).get("realm"):
        return True, attrs
    try:
        vr = t.vm_realm(vm, attrs)
    except RealmConflict:
        return False, attrs
    if vr:
        attrs = {**dict(attrs or {}), "realm": vr}
    return True, attrs


def same(a, b):
    assert type(a) is type(b) is rbac.Decision
    assert tuple(a) == tuple(b)
    assert a.subject == b.subject or not a.allowed


def plain(attrs) -> bool:
    """attrs the C index reads itself (anything else it hands back)."""
    return attrs is None or (type(attrs) is dict and type(attrs.get("realm", "")) is str)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(data=st.data())
def test_one_c_call_agrees_with_the_realm_step_and_decide(accounts, data):
    w = data.draw(worlds(accounts))
    resolver = GroupResolver(ttl=600)
    t = Tenancy(RealmSet(w.realms), resolver)
    if w.extra:
        t.extra = w.extra
    pol = build(w, True, resolver)
    ref = build(w, False, GroupResolver(ttl=600))
    assert pol.native
    queries = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(names_of(accounts)),
                st.sampled_from(sorted(OPS)),
                st.sampled_from(VMS),
                st.sampled_from(attr_choices()),
            ),
            min_size=10,
            max_size=60,
        )
    )
    for user, op, vm, attrs0 in queries:
        known, attrs = as_the_service(t, vm, attrs0)
        parts = t.partitions(OPS)
        first = pol.decide_in(parts, user, op, vm, attrs) if known else None
        why = t.refusal(user, root=False, op_name=OPS[op], op_scope="vm", vm=vm, attrs=attrs)
        expected = ref.decide(user, op, vm, attrs)
        second = pol.decide_in(parts, user, op, vm, attrs) if known else None
        for d in (first, second):
            if d is not None:
                assert why is None, (user, op, vm, attrs, why)
                same(d, expected)
        if known:  # the same bound in one callable, with the caller's fallback
            bound = pol.partitioned(parts, lambda *a: ("asked", a))(user, op, vm, attrs)
            if second is None:
                assert bound == ("asked", (user, op, vm, attrs))
            else:
                same(bound, second)
            assert ref.partitioned(parts, lambda *a: "py")(user, op, vm, attrs) == "py"
        if known and why is None and plain(attrs) and t.realms:
            assert second is not None, (user, op, vm, attrs)  # C answered it itself


def test_without_realms_or_index_python_answers(accounts):
    w = types.SimpleNamespace(
        realms={},
        extra={},
        roles=["r0"],
        grants=[("r0", {0}, rbac.AnyObject())],
        assigns={"u0": {"r0"}},
        groups={},
    )
    t = Tenancy(RealmSet({"ra": Realm("ra", users=frozenset({"u0"}))}), GroupResolver(ttl=600))
    parts = t.partitions(OPS)
    assert (
        t.refusal("u0", root=False, op_name="start", op_scope="vm", vm="x", attrs={"realm": "ra"})
        is None
    )
    assert build(w, False, GroupResolver()).decide_in(parts, "u0", 0, "x", {"realm": "ra"}) is None
    native = build(w, True, GroupResolver())
    d = native.decide_in(parts, "u0", 0, "x", {"realm": "ra"})
    assert d is not None and d.allowed
    # a user not told, an operation not an int, attrs not a dict: back to Python
    assert native.decide_in(parts, "u1", 0, "x", {"realm": "ra"}) is None
    assert native.decide_in(parts, "u0", "start", "x", {"realm": "ra"}) is None
    assert native.decide_in(parts, "u0", 0, "x", types.MappingProxyType({"realm": "ra"})) is None
    # the realms file changes: a new compilation, told afresh
    t.realms = RealmSet(
        {"ra": Realm("ra", users=frozenset({"u0"}), operations=frozenset({"stop"}))}
    )
    parts2 = t.partitions(OPS)
    assert parts2 is not parts and parts2.known() == 0
    assert native.decide_in(parts2, "u0", 0, "x", {"realm": "ra"}) is None
    assert "only stop" in t.refusal(
        "u0", root=False, op_name="start", op_scope="vm", vm="x", attrs={"realm": "ra"}
    )
    assert native.decide_in(parts2, "u0", 0, "x", {"realm": "ra"}) is None  # not allowed there
    assert native.decide_in(parts2, "u0", 1, "x", {"realm": "ra"}) is not None


def test_a_membership_change_reaches_the_c_path_when_the_realms_cache_expires(accounts):
    """Tenancy caches a user's realms for min(resolver ttl, 5 s); the C index holds them until
    exactly that deadline (never after: it reads the kernel's coarse clock with a margin), and
    forgets them at once when Tenancy drops its cache (the realm admins' members change)."""
    acc, g2, b = accounts.acc, accounts.groups[1], accounts.users[0]
    ttl = 0.6
    resolver = GroupResolver(ttl=ttl)
    t = Tenancy(RealmSet({"ra": Realm("ra", groups=frozenset({g2}))}), resolver)
    w = types.SimpleNamespace(
        realms={},
        extra={},
        roles=["r0"],
        grants=[("r0", {0}, rbac.AnyObject())],
        assigns={b: {"r0"}},
        groups={},
    )
    pol = build(w, True, resolver)
    parts = t.partitions(OPS)
    attrs = {"realm": "ra"}

    def step():
        return t.refusal(b, root=False, op_name="start", op_scope="vm", vm="a1", attrs=attrs)

    assert step() is not None  # b is not in g2
    assert pol.decide_in(parts, b, 0, "a1", attrs) is None
    acc.add(b, g2)
    try:
        resolver.forget()
        t.extra = {}  # drops Tenancy's cache (and the index's copy)
        assert step() is None
        deadline = t._mine[b][0]
        answers = []
        while True:
            before = time.monotonic()
            d = pol.decide_in(parts, b, 0, "a1", attrs)
            after = time.monotonic()
            if d is None:
                break
            assert d.allowed
            answers.append(before)
            if after > deadline + 1:
                pytest.fail("the C index kept a realm answer past Tenancy's deadline")
        assert answers, "the C index never answered while the answer was valid"
        assert all(a < deadline for a in answers)
        assert time.monotonic() > deadline - engine._native.COARSE_MARGIN - 0.01
        acc.remove(b, g2)
        while time.monotonic() <= deadline:
            time.sleep(0.01)
        assert pol.decide_in(parts, b, 0, "a1", attrs) is None  # expired: Python asks
        time.sleep(ttl)  # the resolver's own answer expires too
        assert "belongs to realm 'ra'" in (step() or "")
        assert pol.decide_in(parts, b, 0, "a1", attrs) is None  # told: b is no member now
    finally:
        acc.remove(b, g2) if b in _members(g2) else None
    # dropping Tenancy's cache reaches the index at once
    acc.add(b, g2)
    try:
        resolver.forget()
        t.extra = {}
        assert step() is None
        assert pol.decide_in(parts, b, 0, "a1", attrs) is not None
        t.extra = {"ra": (frozenset(), frozenset())}
        assert parts.known() == 0
        assert pol.decide_in(parts, b, 0, "a1", attrs) is None
    finally:
        acc.remove(b, g2)


def _members(group: str) -> list[str]:
    import grp

    return grp.getgrnam(group).gr_mem
