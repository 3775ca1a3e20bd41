"""VM scopes (all, pattern, label, owned) and roles that require authentication."""

from __future__ import annotations

import pytest
from rbac_helpers import compile_policy, role, user

import rbac


@pytest.fixture
def pol():
    return compile_policy(
        "\n".join(
            [
                user("any", "everything"),
                user("web", "webops"),
                user("fun", "funops"),
                user("ten", "tenant"),
                user("adm", "admin", "viewer"),
            ]
        ),
        "\n".join(
            [
                role("everything", ops=[2], kind="all"),
                role("webops", ["web-*", "lb?"], [6], kind="pattern"),
                role("funops", ["dom_Fun", "dom_Games"], [6], kind="label"),
                role("tenant", ops=[6, 13], kind="owned"),
                role("admin", ["vm1"], [6, 13], attrs=' authenticate="true"'),
                role("viewer", ["vm2"], [6], kind="pattern"),
            ]
        ),
    )


def test_all(pol):
    d = pol.decide("any", 2, "whatever")
    assert d.allowed and d.rule == "pa.xml:3: role everything accepts operation 2 on all VMs"
    assert not pol.decide("any", 6, "whatever")


def test_pattern_is_a_case_sensitive_glob(pol):
    assert pol.decide("web", 6, "web-1").allowed
    assert pol.decide("web", 6, "web-").allowed
    assert pol.decide("web", 6, "lb1").allowed
    assert not pol.decide("web", 6, "lb12")
    assert not pol.decide("web", 6, "Web-1")
    assert not pol.decide("web", 6, "xweb-1")
    assert (
        pol.decide("web", 6, "web-1").rule
        == "pa.xml:4: role webops accepts operation 6 on VMs matching 'web-*'"
    )
    assert pol.decide("web", 6, "lb1").rule.endswith("on VMs matching 'lb?'")


def test_label(pol):
    assert pol.decide("fun", 6, "x", {"label": "dom_Fun"}).allowed
    assert pol.decide("fun", 6, "x", {"label": "dom_Games"}).rule.endswith(
        "on VMs labelled 'dom_Games'"
    )
    assert not pol.decide("fun", 6, "x", {"label": "dom_fun"})
    assert not pol.decide("fun", 6, "x", {})
    assert not pol.decide("fun", 6, "x")


def test_owned(pol):
    assert pol.decide("ten", 6, "x", {"owner": "ten"}).rule.endswith(
        "on VMs owned by the user asking"
    )
    assert not pol.decide("ten", 6, "x", {"owner": "web"})
    assert not pol.decide("ten", 6, "x")
    assert pol.authorized_users_for(13, "x", {"owner": "ten"}) == ("ten",)
    assert pol.authorized_users_for(13, "x", {"owner": "web"}) == ()


def test_requires_auth(pol):
    d = pol.decide("adm", 13, "vm1")
    assert d.allowed and d.requires_auth and d.role == "admin"
    assert d.reason == "granted by role 'admin'; the role requires fresh authentication"
    assert pol.role_requires_auth("admin") and not pol.role_requires_auth("viewer")


def test_a_role_without_authentication_is_preferred():
    pol = compile_policy(
        user("u", "strict", "lax", "strict2"),
        role("strict", ["vm1"], [6, 13], attrs=' authenticate="true"')
        + role("strict2", ["vm*"], [6, 13], kind="pattern", attrs=' authenticate="true"')
        + role("lax", ["vm*"], [6], kind="pattern"),
    )
    d = pol.decide("u", 6, "vm1")
    assert d.allowed and not d.requires_auth and d.role == "lax"
    d = pol.decide("u", 13, "vm1")
    assert d.requires_auth and d.role == "strict"  # by name before pattern
    d = pol.decide("u", 13, "vm2")
    assert d.requires_auth and d.role == "strict2"


def test_no_authentication_preferred_among_grants_by_name():
    # both grants list the VM by name; the role needing authentication sorts first by name
    pol = compile_policy(
        user("u", "a_strict", "b_lax"),
        role("a_strict", ["vm1"], [6, 13], attrs=' authenticate="true"')
        + role("b_lax", ["vm1"], [6]),
    )
    d = pol.decide("u", 6, "vm1")
    assert (d.role, d.requires_auth) == ("b_lax", False)
    d = pol.decide("u", 13, "vm1")
    assert (d.role, d.requires_auth) == ("a_strict", True)


def test_authenticate_accepts_xsd_booleans():
    cases = (("true", True), ("1", True), (" true ", True), ("false", False), ("0", False))
    for value, expected in cases:
        pol = compile_policy(user("u", "r"), role("r", attrs=f' authenticate="{value}"'))
        assert pol.decide("u", 6, "vm1").requires_auth is expected
    with pytest.raises(rbac.PolicyError, match="authenticate"):
        compile_policy(user("u", "r"), role("r", attrs=' authenticate="yes"'))


def test_filter_visible_with_scopes(pol):
    objs = [("web-1", {}), ("lb1", None), ("a", {"label": "dom_Fun"}), ("b", {"owner": "ten"})]
    assert pol.filter_visible("web", 6, objs) == ["web-1", "lb1"]
    assert pol.filter_visible("fun", 6, objs) == ["a"]
    assert pol.filter_visible("ten", 6, objs) == ["b"]
    assert pol.filter_visible("any", 2, objs) == ["web-1", "lb1", "a", "b"]


def test_selectors_in_code():
    s = rbac.Exact(["a", "b"])
    assert s.matches("a", None, "u") and not s.matches("c", None, "u")
    assert rbac.Exact("a") == rbac.Exact(["a"])
    assert rbac.Glob("a*") == rbac.Glob("a*") and hash(rbac.Glob("a*")) == hash(rbac.Glob("a*"))
    assert rbac.Attribute("label", "x").matches("o", {"label": "x"}, "u")
    assert rbac.Owned().matches("o", {"owner": "u"}, "u")
    assert rbac.AnyObject().matches("o", None, "u")
    assert (
        str(rbac.Exact([f"v{i}" for i in range(8)]))
        == "individual VMs v0, v1, v2, v3, v4 and 3 more"
    )
    assert rbac.Glob("w*").as_dict() == {"type": "pattern", "pattern": "w*"}


@pytest.mark.parametrize("obj", [None, 7, b"web-1", ""])
def test_decide_never_raises_on_an_odd_object(pol, obj):
    # decide() denies what it cannot match; a caller's type slip must not become a traceback
    for user_name in ("web", "fun", "ten", "any", "nobody"):
        for op in (6, 2, 99, "6", "\u0663"):
            d = pol.decide(user_name, op, obj)
            assert isinstance(d.allowed, bool)
    assert not pol.decide("web", 6, None)
