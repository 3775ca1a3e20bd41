"""Property tests: the compiled index agrees with a naive set-based model of NIST RBAC.

Random policies (users, roles, an acyclic hierarchy, grants with every kind of selector,
roles needing authentication, expiring assignments, separation sets) are built both through
PolicyBuilder and as UA/PA XML.  The reference model below is written the slow, obvious way —
sets and a depth-first walk — and every decision, review function and session check of the
engine must agree with it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbac

OPS = {1: "one", 2: "two", 3: "three"}
OBJECTS = ["o0", "o1", "o12", "x2", "web"]
LABELS = ["L1", "L2"]
T0 = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
T1 = datetime(2031, 1, 1, tzinfo=UTC).timestamp()
NOWS = [T0 - 10, T0, (T0 + T1) / 2, T1 + 10]
PATTERNS = ["o*", "o1*", "?2", "x*", "[ow]*", "*"]


# -- random policies -----------------------------------------------------------------------------
@st.composite
def policies(draw, exact_only=False):
    n_roles = draw(st.integers(1, 6))
    roles = [f"r{i}" for i in range(n_roles)]
    # acyclic by construction: a role may only inherit roles with a higher index
    edges = draw(
        st.sets(
            st.tuples(st.integers(0, n_roles - 1), st.integers(0, n_roles - 1)).filter(
                lambda e: e[0] < e[1]
            ),
            max_size=8,
        )
    )
    auth = {r: draw(st.booleans()) for r in roles}
    exact = st.builds(rbac.Exact, st.sets(st.sampled_from(OBJECTS), min_size=1, max_size=3))
    selector = st.one_of(
        exact,  # by name twice as often: it has its own fast path in decide()
        exact,
        exact,
        st.just(rbac.AnyObject()),
        st.builds(rbac.Glob, st.sampled_from(PATTERNS)),
        st.builds(lambda v: rbac.Attribute("label", v), st.sampled_from(LABELS)),
        st.just(rbac.Owned()),
    )
    if exact_only:
        selector = exact
    grants = draw(
        st.lists(
            st.tuples(
                st.sampled_from(roles),
                st.sets(st.sampled_from(sorted(OPS)), min_size=1),
                selector,
            ),
            max_size=10,
        )
    )
    n_users = draw(st.integers(1, 5))
    users = [f"u{i}" for i in range(n_users)]
    assigns = {
        u: draw(
            st.dictionaries(
                st.sampled_from(roles),
                st.sampled_from([None] if exact_only else [None, None, None, T0, T1]),
                max_size=3,
            )
        )
        for u in users
    }
    role_set = st.sets(st.sampled_from(roles), min_size=2, max_size=min(3, n_roles))
    n_sets = 2 if n_roles >= 2 else 0
    ssd = draw(st.lists(role_set, max_size=n_sets)) if n_sets else []
    dsd = draw(st.lists(role_set, max_size=n_sets)) if n_sets else []
    return {
        "roles": roles,
        "edges": sorted(edges),
        "auth": auth,
        "grants": grants,
        "users": users,
        "assigns": assigns,
        "ssd": [(f"s{i}", sorted(s), 2) for i, s in enumerate(ssd)],
        "dsd": [(f"d{i}", sorted(s), 2) for i, s in enumerate(dsd)],
    }


def build(p, with_sets=True, native=True, catalogue=OPS, op_map=None) -> rbac.RbacPolicy:
    """Policy ``p`` compiled; ``op_map`` renumbers its operations (into ``catalogue``)."""
    b = rbac.PolicyBuilder(catalogue)
    for r in p["roles"]:
        b.add_role(r, authenticate=p["auth"][r])
    for i, j in p["edges"]:
        b.inherit(f"r{i}", f"r{j}")
    for r, ops, sel in p["grants"]:
        b.grant(r, sorted(op_map[o] for o in ops) if op_map else sorted(ops), sel)
    for u in p["users"]:
        b.add_user(u)
        for r, exp in p["assigns"][u].items():
            b.assign(u, r, expires=exp)
    if with_sets:
        for name, roles, card in p["ssd"]:
            b.add_ssd(name, roles, card)
        for name, roles, card in p["dsd"]:
            b.add_dsd(name, roles, card)
    return b.build(native=native)


def to_xml(p) -> tuple[bytes, bytes]:
    """The same policy as UA/PA documents."""
    pa = ["<RolePolicyDefinition>"]
    for r in p["roles"]:
        pa.append(f'<Role name="{r}" authenticate="{str(p["auth"][r]).lower()}">')
        pa.extend(f'<Inherits role="r{j}"/>' for i, j in p["edges"] if f"r{i}" == r)
        for gr, ops, sel in p["grants"]:
            if gr != r:
                continue
            if isinstance(sel, rbac.Exact):
                inner = "".join(f'<VM name="{n}"/>' for n in sorted(sel.names))
                pa.append(f'<ManageVM type="individual">{inner}</ManageVM>')
            elif isinstance(sel, rbac.Glob):
                pa.append(f'<ManageVM type="pattern"><VM pattern="{sel.pattern}"/></ManageVM>')
            elif isinstance(sel, rbac.Attribute):
                pa.append(f'<ManageVM type="label"><Label name="{sel.value}"/></ManageVM>')
            else:
                pa.append(f'<ManageVM type="{sel.kind}"/>')
            accept = "".join(f'<operation name="{OPS[o]}"/>' for o in sorted(ops))
            pa.append(f"<ControlOperation><Accept>{accept}</Accept></ControlOperation>")
        pa.append("</Role>")
    pa.append("</RolePolicyDefinition>")
    ua = ["<UserConfiguration>"]
    for u in p["users"]:
        ua.append(f'<User name="{u}">')
        for r, exp in p["assigns"][u].items():
            e = ""
            if exp is not None:
                e = f' expires="{datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}"'
            ua.append(f'<UserRole role="{r}"{e}/>')
        ua.append("</User>")
    for tag, sets in (("StaticSeparation", p["ssd"]), ("DynamicSeparation", p["dsd"])):
        for name, roles, card in sets:
            inner = "".join(f'<Role name="{r}"/>' for r in roles)
            ua.append(f'<{tag} name="{name}" cardinality="{card}">{inner}</{tag}>')
    ua.append("</UserConfiguration>")
    return "\n".join(ua).encode(), "\n".join(pa).encode()


# -- the reference model -------------------------------------------------------------------------
class Reference:
    def __init__(self, p):
        self.p = p
        self.juniors = {r: {f"r{j}" for i, j in p["edges"] if f"r{i}" == r} for r in p["roles"]}

    def closure(self, role):
        seen, todo = set(), [role]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.add(r)
                todo.extend(self.juniors[r])
        return seen

    def distance(self, roots, role):
        """Fewest inheritance steps from any of roots to role (breadth-first)."""
        frontier, d, seen = set(roots), 0, set()
        while frontier:
            if role in frontier:
                return d
            seen |= frontier
            frontier = {j for r in frontier for j in self.juniors[r]} - seen
            d += 1
        return None

    def live_roots(self, user, now):
        return {r for r, exp in self.p["assigns"][user].items() if exp is None or now < exp}

    def effective(self, roots):
        return set().union(*(self.closure(r) for r in roots)) if roots else set()

    @staticmethod
    def matches(sel, obj, attrs, user):
        import fnmatch

        if isinstance(sel, rbac.Exact):
            return obj in sel.names
        if isinstance(sel, rbac.AnyObject):
            return True
        if isinstance(sel, rbac.Glob):
            return fnmatch.fnmatchcase(obj, sel.pattern)
        if isinstance(sel, rbac.Attribute):
            return (attrs or {}).get("label") == sel.value
        return (attrs or {}).get("owner") == user

    def granting(self, roots, user, op, obj, attrs):
        eff = self.effective(roots)
        return [
            (r, self.p["auth"][r])
            for r, ops, sel in self.p["grants"]
            if r in eff and op in ops and self.matches(sel, obj, attrs, user)
        ]

    def ssd_ok(self):
        for u in self.p["users"]:
            held = self.effective(set(self.p["assigns"][u]))  # expired ones count
            for _n, roles, card in self.p["ssd"]:
                if len(held & set(roles)) >= card:
                    return False
        return True

    def dsd_roles_ok(self):
        return all(
            len(self.closure(r) & set(roles)) < card
            for r in self.p["roles"]
            for _n, roles, card in self.p["dsd"]
        )

    def dsd_ok(self, active):
        eff = self.effective(active)
        return all(len(eff & set(roles)) < card for _n, roles, card in self.p["dsd"])


def attr_choices(users):
    return [None, {}, {"label": "L1"}, {"label": "L2", "owner": users[0]}] + [
        {"owner": u} for u in users
    ]


def check_decision(ref, d, roots, user, op, obj, attrs):
    granting = ref.granting(roots, user, op, obj, attrs)
    assert d.allowed == bool(granting), (user, op, obj, attrs, d)
    if not granting:
        assert d.role is None and d.via == () and d.reason
        return
    assert d.requires_auth == all(auth for _r, auth in granting)
    assert (d.role, d.requires_auth) in set(granting)
    via = d.via
    assert via[0] in roots and via[-1] == d.role
    for a, b in itertools.pairwise(via):
        assert b in ref.juniors[a]
    assert len(via) - 1 == ref.distance(roots, d.role)
    assert f"role {d.role} accepts operation {op} on " in d.rule


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(p=policies(), data=st.data())
def test_decisions_agree_with_the_reference(p, data):
    ref = Reference(p)
    try:
        pol = build(p)
    except rbac.PolicyError as exc:
        assert not (ref.ssd_ok() and ref.dsd_roles_ok()), str(exc)
        pol = build(p, with_sets=False)
    else:
        assert ref.ssd_ok() and ref.dsd_roles_ok()
    for user in p["users"]:
        for now in NOWS:
            roots = ref.live_roots(user, now)
            assert set(pol.authorized_roles(user, now=now)) == ref.effective(roots)
            assert set(pol.assigned_roles(user, now=now)) == roots
            for op in OPS:
                for obj in OBJECTS:
                    attrs = data.draw(st.sampled_from(attr_choices(p["users"])))
                    d = pol.decide(user, op, obj, attrs, now=now)
                    check_decision(ref, d, roots, user, op, obj, attrs)
                objs = [(o, data.draw(st.sampled_from(attr_choices(p["users"])))) for o in OBJECTS]
                assert pol.filter_visible(user, op, objs, now=now) == [
                    o for o, a in objs if ref.granting(roots, user, op, o, a)
                ]
            obj = data.draw(st.sampled_from(OBJECTS))
            attrs = data.draw(st.sampled_from(attr_choices(p["users"])))
            assert pol.user_operations_on_object(user, obj, attrs, now=now) == tuple(
                op for op in sorted(OPS) if ref.granting(roots, user, op, obj, attrs)
            )


@pytest.mark.parametrize("native", [True, False], ids=["c-index", "python"])
@SETTINGS
@given(p=policies(exact_only=True))
def test_grants_by_name_only_agree_with_the_reference(native, p):
    """The common shape (no scopes, no expiry) has its own fast path in decide(): the C index
    when it is built, inline Python otherwise; both must agree with the reference."""
    ref = Reference(p)
    pol = build(p, with_sets=False, native=native)
    for user in p["users"]:
        roots = ref.live_roots(user, T0)
        for op in OPS:
            for obj in OBJECTS:
                check_decision(ref, pol.decide(user, op, obj), roots, user, op, obj, None)


@SETTINGS
@given(p=policies(), data=st.data())
def test_review_functions_agree_with_the_reference(p, data):
    ref = Reference(p)
    pol = build(p, with_sets=False)
    now = data.draw(st.sampled_from(NOWS))
    for role in p["roles"]:
        assert set(pol.authorized_users(role, now=now)) == {
            u for u in p["users"] if role in ref.effective(ref.live_roots(u, now))
        }
        assert set(pol.assigned_users(role, now=now)) == {
            u for u in p["users"] if role in ref.live_roots(u, now)
        }
        perms = {(x.operation, x.role) for x in pol.role_permissions(role)}
        assert perms == {
            (op, r) for r, ops, _s in p["grants"] if r in ref.closure(role) for op in ops
        }
    for op in OPS:
        for obj in OBJECTS:
            attrs = data.draw(st.sampled_from(attr_choices(p["users"])))
            assert pol.authorized_users_for(op, obj, attrs, now=now) == tuple(
                sorted(
                    u for u in p["users"] if ref.granting(ref.live_roots(u, now), u, op, obj, attrs)
                )
            )


@SETTINGS
@given(p=policies(), data=st.data())
def test_sessions_agree_with_the_reference(p, data):
    ref = Reference(p)
    if not ref.dsd_roles_ok():
        return
    pol = build(p) if ref.ssd_ok() else None
    if pol is None:
        p = dict(p, ssd=[])
        pol = build(p)
    now = data.draw(st.sampled_from(NOWS))
    user = data.draw(st.sampled_from(p["users"]))
    authorized = sorted(ref.effective(ref.live_roots(user, now)))
    active = (
        set(data.draw(st.lists(st.sampled_from(authorized), unique=True))) if authorized else set()
    )
    if not ref.dsd_ok(active):
        with pytest.raises(rbac.DsdViolation):
            pol.create_session(user, sorted(active), now=now)
        return
    s = pol.create_session(user, sorted(active), now=now)
    assert set(s.active_roles) == active
    for op in OPS:
        for obj in OBJECTS:
            attrs = data.draw(st.sampled_from(attr_choices(p["users"])))
            d = s.check_access(op, obj, attrs, now=now)
            check_decision(ref, d, active, user, op, obj, attrs)
    # default session: every authorized role, refused exactly when DSD says so
    if ref.dsd_ok(set(authorized)):
        assert set(pol.create_session(user, now=now).active_roles) == set(authorized)
    else:
        with pytest.raises(rbac.DsdViolation):
            pol.create_session(user, now=now)


@SETTINGS
@given(p=policies())
def test_xml_and_builder_policies_decide_alike(p):
    ua, pa = to_xml(p)
    try:
        from_code = build(p)
    except rbac.PolicyError:
        with pytest.raises(rbac.PolicyError):
            rbac.loads(ua, pa, OPS)
        return
    from_xml = rbac.loads(ua, pa, OPS)
    assert from_xml.users == from_code.users and from_xml.roles == from_code.roles
    for user in p["users"]:
        for now in NOWS:
            for op in OPS:
                for obj in OBJECTS:
                    for attrs in ({"label": "L1", "owner": user}, None):
                        a = from_code.decide(user, op, obj, attrs, now=now)
                        b = from_xml.decide(user, op, obj, attrs, now=now)
                        assert (a.allowed, a.role, a.requires_auth, a.via) == (
                            b.allowed,
                            b.role,
                            b.requires_auth,
                            b.via,
                        )


@settings(max_examples=60, deadline=None)
@given(p=policies(), extra=st.integers(17, 30))
def test_users_with_very_many_roles_take_the_object_path_and_agree(p, extra):
    """Beyond MANY_ROLES effective roles, checks intersect from the object side."""
    ref_p = dict(p)
    roles = p["roles"] + [f"r{i}" for i in range(len(p["roles"]), len(p["roles"]) + extra)]
    ref_p = dict(
        p,
        roles=roles,
        auth={**p["auth"], **{r: False for r in roles[len(p["roles"]) :]}},
        grants=p["grants"] + [(r, {1}, rbac.Exact({"o1"})) for r in roles[len(p["roles"]) :]],
        assigns={
            u: {**a, **{r: None for r in roles[len(p["roles"]) :]}} for u, a in p["assigns"].items()
        },
        ssd=[],
        dsd=[],
    )
    ref = Reference(ref_p)
    pol = build(ref_p)
    for user in ref_p["users"]:
        for now in (NOWS[0], NOWS[-1]):
            roots = ref.live_roots(user, now)
            for op in OPS:
                for obj in OBJECTS:
                    attrs = {"label": "L2", "owner": user}
                    check_decision(
                        ref, pol.decide(user, op, obj, attrs, now=now), roots, user, op, obj, attrs
                    )
                assert pol.filter_visible(user, op, [(o, None) for o in OBJECTS], now=now) == [
                    o for o in OBJECTS if ref.granting(roots, user, op, o, None)
                ]
