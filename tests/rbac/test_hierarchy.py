"""General role hierarchy: inheritance, paths, cycles."""

from __future__ import annotations

import pytest
from rbac_helpers import compile_policy, errors_of, role, user

import rbac


def inherits(*juniors: str) -> str:
    return "".join(f'<Inherits role="{j}"/>' for j in juniors)


@pytest.fixture
def pol():
    # lead -> (web, db); web -> viewer; db -> viewer   (a diamond)
    return compile_policy(
        user("lead", "lead") + user("webby", "web") + user("viewer", "viewer"),
        role("lead", ["lead-vm"], [6], extra=inherits("web", "db"))
        + role("web", ["web1"], [6, 10], extra=inherits("viewer"))
        + role("db", ["db1"], [6], extra=inherits("viewer"))
        + role("viewer", ["web1", "db1", "lead-vm"], [2]),
    )


def test_senior_gets_junior_permissions(pol):
    d = pol.decide("lead", 10, "web1")
    assert d.allowed and d.role == "web" and d.via == ("lead", "web")
    assert d.reason == "granted by role 'web' (inherited: lead -> web)"
    d = pol.decide("lead", 2, "db1")
    assert d.role == "viewer" and d.via == ("lead", "db", "viewer")  # shortest, then by name
    assert pol.decide("lead", 6, "lead-vm").via == ("lead",)


def test_junior_does_not_get_senior_permissions(pol):
    assert not pol.decide("webby", 6, "lead-vm")
    assert not pol.decide("webby", 6, "db1")
    assert not pol.decide("viewer", 6, "web1")
    assert pol.decide("viewer", 2, "web1").allowed


def test_authorized_vs_assigned(pol):
    assert pol.assigned_roles("lead") == ("lead",)
    assert pol.authorized_roles("lead") == ("db", "lead", "viewer", "web")
    assert pol.assigned_users("viewer") == ("viewer",)
    assert pol.authorized_users("viewer") == ("lead", "viewer", "webby")
    assert pol.authorized_users("web") == ("lead", "webby")
    assert pol.inherited_roles("lead") == ("db", "viewer", "web")
    assert pol.inheritance_path("lead", "viewer") == ("lead", "db", "viewer")
    assert pol.inheritance_path("viewer", "lead") is None


def test_role_permissions_follow_the_hierarchy(pol):
    perms = pol.role_permissions("web")
    assert {(p.operation, str(p.selector), p.role) for p in perms} == {
        (6, "individual VM web1", "web"),
        (10, "individual VM web1", "web"),
        (2, "individual VM web1", "viewer"),
        (2, "individual VM db1", "viewer"),
        (2, "individual VM lead-vm", "viewer"),
    }
    assert all(p.source.startswith("pa.xml:") for p in perms)
    assert {p.role for p in pol.user_permissions("lead")} == {"lead", "web", "db", "viewer"}


def test_cycle_is_a_load_error_naming_the_cycle():
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(
            user("u", "a"),
            role("a", extra=inherits("b"))
            + role("b", extra=inherits("c"))
            + role("c", extra=inherits("a")),
        )
    assert errors_of(ei.value) == ["pa.xml:3: role inheritance cycle: a -> b -> c -> a"]
    assert ei.value.file == "pa.xml" and ei.value.line == 3
    assert ei.value.message == "role inheritance cycle: a -> b -> c -> a"


def test_self_inheritance_is_a_cycle():
    with pytest.raises(rbac.PolicyError, match=r"role inheritance cycle: a -> a"):
        compile_policy("", role("a", extra=inherits("a")))


def test_two_cycles_both_reported():
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(
            "",
            role("a", extra=inherits("b"))
            + role("b", extra=inherits("a"))
            + role("x", extra=inherits("y"))
            + role("y", extra=inherits("x")),
        )
    msgs = [e.message for e in ei.value.errors]
    assert msgs == ["role inheritance cycle: a -> b -> a", "role inheritance cycle: x -> y -> x"]


def test_inheriting_an_undefined_role():
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy("", role("a", extra=inherits("viewr")) + role("viewer"))
    assert errors_of(ei.value) == [
        "pa.xml:3: role 'a' inherits undefined role 'viewr', which pa.xml does not define; "
        "did you mean 'viewer'?"
    ]


def test_deep_hierarchy():
    n = 400
    pa = "".join(
        role(f"r{i}", [f"vm{i}"], [6], extra=inherits(f"r{i + 1}") if i < n else "")
        for i in range(n + 1)
    )
    pol = compile_policy(user("u", "r0"), pa)
    d = pol.decide("u", 6, f"vm{n}")
    assert d.allowed and len(d.via) == n + 1 and d.via[0] == "r0" and d.via[-1] == f"r{n}"
    # very many effective roles: checks go from the object side, same answers
    assert pol.decide("u", 6, "vm7").via == ("r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7")
    assert not pol.decide("u", 10, "vm7")
    assert pol.filter_visible("u", 6, [("vm3", None), ("nope", None)]) == ["vm3"]
