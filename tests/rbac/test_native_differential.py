"""The C index and the pure-Python engine decide identically on rich random policies.

Pure Python is the reference (tests/rbac/test_property.py holds it to a naive model of NIST
RBAC); here the C index must return the very same Decision -- every field, the worded rule and
reason -- on random policies with every scope kind (all, name patterns with and without bracket
sets, labels and other attributes, owned by the caller and by another key), role hierarchies,
roles needing authentication, expiring assignments, users with more roles than either of the
index's strategies favours, and roles given to real Unix groups (resolved through NSS; a group
that cannot be resolved among them).  Queries include what C must hand back to Python (unknown
users, operations outside the catalogue or beyond 127, names, str subclasses, attrs that are not
a dict), and each is asked twice of the C policy: the second answer comes from what the first
told the index about the caller's groups.

The other tests check that C really answers the realistic cases itself (a count of the calls it
hands to Python), and that a group membership change is seen by the C path exactly when the
resolver's cache expires, and at once after GroupResolver.forget().
"""

from __future__ import annotations

import os
import sys
import time
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbac
from rbac import engine
from rbac.groups import GroupResolver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tenancy"))
from tenancy_helpers import three_members

pytestmark = pytest.mark.skipif(
    engine._native is None, reason="rbac._native not built (no C compiler)"
)

CATALOGUE = {0: "zero", 1: "one", 127: "top", 128: "beyond"}
#: names of up to 11 one-byte characters are kept in the C index's slots, others by reference
OBJECTS = ["o0", "o1", "o12", "x2", "web", "w[b", "o\n1", "o1-a-long-vm-name", "vé1", "x€2", "o1€"]
NAMES = ["u0", "u1", "u2", "a-user-with-a-long-name", "ünï", "用户"]
PATTERNS = [
    "o*",
    "o1*",
    "?2",
    "x*",
    "*",
    "**",
    "o?",
    "*1*",
    "w*b",
    "o\n*",
    "[ow]*",
    "[!o]*",
    "o[0-9]*",
    "[a-x]?",
    "w[[]b",
    "[]]*",
    "[z-a]*",
    "[!]",
]
T0 = 1893456000.0  # 2030-01-01
T1 = 1924992000.0  # 2031-01-01
NOWS = [None, T0 - 10, T0, (T0 + T1) / 2, T1 + 10, int(T0) + 1]


class Sub(str):
    """A str subclass: not what the C index answers, so Python must."""


@pytest.fixture(scope="module")
def accounts():
    """Real local users and groups (as root): b in g1, c in g1 and g2 (primary g3), d in none."""
    if os.geteuid() != 0:
        pytest.skip("creates local users: run as root")
    with three_members(f"nd{os.getpid() % 100000}") as accounts:
        yield accounts


# -- random policies -----------------------------------------------------------------------------
def selectors():
    exact = st.builds(rbac.Exact, st.sets(st.sampled_from(OBJECTS), min_size=1, max_size=3))
    return st.one_of(
        exact,
        exact,
        st.just(rbac.AnyObject()),
        st.builds(rbac.Glob, st.sampled_from(PATTERNS)),
        st.builds(lambda v: rbac.Attribute("label", v), st.sampled_from(["L1", "L2"])),
        st.just(rbac.Attribute("zone", "z1")),
        st.just(rbac.Owned()),
        st.just(rbac.Owned("creator")),
    )


@st.composite
def policies(draw, names, groups):
    n_roles = draw(st.integers(1, 24))
    roles = [f"r{i}" for i in range(n_roles)]
    edges = draw(
        st.sets(
            st.tuples(st.integers(0, n_roles - 1), st.integers(0, n_roles - 1)).filter(
                lambda e: e[0] < e[1]
            ),
            max_size=20,
        )
    )
    auth = {r: draw(st.sampled_from([False, False, True])) for r in roles}
    grants = draw(
        st.lists(
            st.tuples(
                st.sampled_from(roles),
                st.sets(st.sampled_from(sorted(CATALOGUE)), min_size=1),
                selectors(),
            ),
            max_size=24,
        )
    )
    expiry = st.sampled_from([None, None, None, T0, T1])
    # plain names and (some of) the real accounts have <User> entries
    users = [*names, *draw(st.lists(st.sampled_from(groups.users), unique=True))]
    assigns = {u: draw(st.dictionaries(st.sampled_from(roles), expiry, max_size=20)) for u in users}
    group_roles = {
        g: draw(st.dictionaries(st.sampled_from(roles), expiry, max_size=4))
        for g in draw(st.lists(st.sampled_from(groups.groups), unique=True))
    }
    ssd = []
    if n_roles >= 2:
        ssd = draw(st.lists(st.sets(st.sampled_from(roles), min_size=2, max_size=3), max_size=1))
    return {
        "roles": roles,
        "edges": sorted(edges),
        "auth": auth,
        "grants": grants,
        "assigns": assigns,
        "groups": group_roles,
        "ssd": [sorted(s) for s in ssd if len(s) >= 2],
    }


def build(p, native, resolver, cls=rbac.RbacPolicy, with_sets=True):
    b = rbac.PolicyBuilder(CATALOGUE)
    for r in p["roles"]:
        b.add_role(r, authenticate=p["auth"][r])
    for i, j in p["edges"]:
        b.inherit(f"r{i}", f"r{j}")
    for r, ops, sel in p["grants"]:
        b.grant(r, sorted(ops), sel)
    for u, roles in p["assigns"].items():
        b.add_user(u)
        for r, exp in roles.items():
            b.assign(u, r, expires=exp)
    for g, roles in p["groups"].items():
        for r, exp in roles.items():
            b.assign_group(g, r, expires=exp)
    if with_sets:
        for k, roles in enumerate(p["ssd"]):
            b.add_ssd(f"s{k}", roles, 2)
    return cls(b.model(), native=native, groups=resolver)


def build_pair(p):
    """The same policy with the C index and in pure Python, each with its own resolver."""
    try:
        return [build(p, native, GroupResolver(ttl=600)) for native in (True, False)]
    except rbac.PolicyError:  # the random SSD set is broken by some user's own roles
        return [build(p, native, GroupResolver(ttl=600), with_sets=False) for native in (1, 0)]


def same(a, b):
    assert type(a) is type(b) is rbac.Decision
    assert tuple(a) == tuple(b)  # allowed, role, rule, reason, requires_auth, via
    assert a.subject == b.subject or not a.allowed


def attr_choices(user):
    return [
        None,
        {},
        {"label": "L1"},
        {"label": "L2", "owner": user},
        {"owner": user, "creator": "someone"},
        {"creator": user, "zone": "z1"},
        {"label": 5, "owner": None},
        types.MappingProxyType({"label": "L1", "owner": user}),
    ]


QUERY_OPS = [0, 1, 127, 128, 200, "one", True]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(data=st.data())
def test_c_index_and_python_agree_on_rich_policies(accounts, data):
    p = data.draw(policies(NAMES, accounts))
    fast, slow = build_pair(p)
    assert fast.native and not slow.native
    users = [*NAMES, *accounts.users, "nobody", "nobody-with-a-long-name", "nö", Sub("u0")]
    rnd = data.draw(st.randoms(use_true_random=False))
    for user in users:
        for op in QUERY_OPS:
            for obj in [*OBJECTS, "unknown", Sub("o1")]:
                attrs = rnd.choice(attr_choices(str(user)))
                now = rnd.choice(NOWS)
                want = slow.decide(user, op, obj, attrs, now)
                same(fast.decide(user, op, obj, attrs, now), want)
                same(fast.decide(user, op, obj, attrs, now), want)  # from what C was told
                same(fast.decide(user, op, obj, attrs=attrs, now=now), want)


# -- what C answers itself -----------------------------------------------------------------------
class Counting(rbac.RbacPolicy):
    """Counts the calls the C index hands to the Python engine."""

    handed = 0

    def _decide(self, *args, **kwargs):
        self.handed += 1
        return super()._decide(*args, **kwargs)


def realistic(accounts, resolver, native=True):
    """Every scope kind, a role needing authentication, an expiring assignment, a user with
    40 roles, and a group role held by real accounts."""
    g1 = accounts.groups[0]
    b = rbac.PolicyBuilder({i: f"op{i}" for i in range(1, 128)})
    for i in range(40):
        b.add_role(f"r{i}", authenticate=i == 7, inherits=[f"r{i + 1}"] if i % 10 == 0 else ())
        b.grant(f"r{i}", [2, 3, 100], rbac.Exact([f"vm{i}", f"vm{i + 1}"]))
    b.grant("r1", [6], rbac.Glob("vm1*"))
    b.grant("r2", [6], rbac.Glob("vm[2-3]*"))
    b.grant("r3", [33], rbac.Attribute("label", "dom_Fun"))
    b.grant("r4", [10], rbac.Owned())
    b.grant("r39", [4], rbac.AnyObject())
    b.assign("alice", "r0")
    b.assign("alice", "r5", expires=T1)
    for i in range(40):
        b.assign("many", f"r{i}")
    b.assign("tom", "r7")
    b.assign_group(g1, "r3")
    b.assign(accounts.users[0], "r2")
    return Counting(b.model(), native=native, groups=resolver)


def realistic_queries(accounts):
    users = ["alice", "many", "tom", *accounts.users]
    return [
        (u, op, f"vm{k}", {"label": "dom_Fun" if k % 3 else "x", "owner": u if k % 2 else "z"})
        for u in users
        for op in (2, 3, 4, 6, 10, 33, 100, 5)
        for k in range(45)
    ]


def test_c_answers_every_realistic_query_itself(accounts):
    pol = realistic(accounts, GroupResolver(ttl=600))
    ref = realistic(accounts, GroupResolver(ttl=600), native=False)
    queries = realistic_queries(accounts)
    for q in queries:  # the first call of each group member asks NSS (in Python)
        same(pol.decide(*q), ref.decide(*q))
    warm = pol.handed
    assert warm <= len(accounts.users) * 8 * 45  # at most every query of the group members
    pol.handed = 0
    for q in queries:
        same(pol.decide(*q), ref.decide(*q))
    assert pol.handed == 0
    allowed = [pol.decide(*q) for q in queries]
    assert sum(d.allowed for d in allowed) > len(queries) // 10
    assert any(d.requires_auth for d in allowed)
    assert any("assigned to group" in d.reason for d in allowed)
    assert pol.handed == 0
    # a caller without a <User> entry is refused in C, in the same words
    same(pol.decide("nobody", 2, "vm1"), ref.decide("nobody", 2, "vm1"))
    assert pol.handed == 0
    # what goes back to Python: an operation outside the catalogue's masks, names, attrs that
    # are not a dict, a time C does not read for a user whose assignments expire
    pol.decide("alice", 200, "vm1")
    pol.decide("alice", "op2", "vm1")
    pol.decide("alice", 33, "vm3", types.MappingProxyType({"label": "dom_Fun"}))
    pol.decide("alice", 2, "vm1", None, datetime(2027, 1, 1, tzinfo=UTC))
    assert pol.handed == 4


def test_group_membership_change_reaches_the_c_path_when_the_cache_expires(accounts):
    acc = accounts.acc
    g1, d = accounts.groups[0], accounts.users[2]
    clock = [1000.0]
    res = GroupResolver(ttl=5, clock=lambda: clock[0])
    pol = realistic(accounts, res)
    assert not pol.decide(d, 33, "vm1", {"label": "dom_Fun"}).allowed  # asks NSS
    pol.handed = 0
    assert not pol.decide(d, 33, "vm1", {"label": "dom_Fun"}).allowed
    assert pol.handed == 0  # C, from the remembered answer
    acc.add(d, g1)
    try:
        clock[0] += 4.9  # within the cache's lifetime: still the old answer, still in C
        assert not pol.decide(d, 33, "vm1", {"label": "dom_Fun"}).allowed
        assert pol.handed == 0
        clock[0] += 0.2  # expired: Python asks NSS again, and tells C
        d1 = pol.decide(d, 33, "vm1", {"label": "dom_Fun"})
        assert d1.allowed and pol.handed == 1
        d2 = pol.decide(d, 33, "vm1", {"label": "dom_Fun"})
        assert d2 == d1 and pol.handed == 1
        assert d2.reason == (
            f"granted by role 'r3' (assigned to group '{g1}', of which '{d}' is a member)"
        )
    finally:
        acc.remove(d, g1)
    res.forget()  # forgetting reaches the C index at once, whatever the clock says
    assert not pol.decide(d, 33, "vm1", {"label": "dom_Fun"}).allowed
    assert pol.handed == 2


def test_unresolvable_group_grants_nothing_on_the_c_path(accounts):
    missing = accounts.groups[3]
    b = rbac.PolicyBuilder({1: "one"})
    b.add_role("r").grant("r", [1], rbac.AnyObject())
    b.assign_group(missing, "r")
    for native in (True, False):
        pol = b.build(native=native, groups=GroupResolver(ttl=600))
        for _ in range(2):
            d = pol.decide(accounts.users[0], 1, "vm1")
            assert not d.allowed
            assert "no <User> entry" in d.reason


def test_default_clock_answers_are_never_used_after_the_resolvers_expire(accounts):
    """With the resolver's default clock (time.monotonic), C reads the kernel's coarse clock
    plus a margin: a remembered answer is used while it is valid, never once the resolver's
    own cached answer has expired, and one that expires within the margin is not kept."""
    b = accounts.users[0]
    long_lived = realistic(accounts, GroupResolver(ttl=60))
    assert long_lived.decide(b, 33, "vm1", {"label": "dom_Fun"}).allowed  # asks NSS
    long_lived.handed = 0
    assert long_lived.decide(b, 33, "vm1", {"label": "dom_Fun"}).allowed
    assert long_lived.handed == 0
    short = realistic(accounts, GroupResolver(ttl=0.3))
    assert short.decide(b, 33, "vm1", {"label": "dom_Fun"}).allowed
    time.sleep(0.35)  # the resolver's answer has expired: Python asks again
    short.handed = 0
    assert short.decide(b, 33, "vm1", {"label": "dom_Fun"}).allowed
    assert short.handed == 1
    tiny = realistic(accounts, GroupResolver(ttl=engine._native.COARSE_MARGIN / 2))
    for _ in range(3):
        assert tiny.decide(b, 33, "vm1", {"label": "dom_Fun"}).allowed
    assert tiny.handed == 3  # never kept: it would expire within the coarse clock's margin
