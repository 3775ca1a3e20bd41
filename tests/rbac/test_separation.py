"""Static and dynamic separation of duty, and sessions."""

from __future__ import annotations

import pytest
from rbac_helpers import compile_policy, errors_of, role, user

import rbac

ROLES = (
    role("buyer", ["shop"], [6])
    + role("approver", ["shop"], [10])
    + role("auditor", ["shop"], [2])
    + role("boss", ["hq"], [6], extra='<Inherits role="approver"/>')
)


def sep(kind: str, name: str, roles, card=None) -> str:
    c = f' cardinality="{card}"' if card is not None else ""
    inner = "".join(f'<Role name="{r}"/>' for r in roles)
    return f'<{kind} name="{name}"{c}>{inner}</{kind}>'


def test_ssd_refuses_a_user_with_both_roles():
    ua = (
        user("eve", "buyer", "approver")
        + "\n"
        + sep("StaticSeparation", "purchase", ["buyer", "approver"])
    )
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(ua, ROLES)
    (msg,) = errors_of(ei.value)
    assert msg.startswith("ua.xml:3: user 'eve' holds 2 roles of static separation set 'purchase'")
    assert "(approver, buyer)" in msg and "allows fewer than 2" in msg
    assert "(defined at ua.xml:4)" in msg


def test_ssd_counts_roles_reached_through_inheritance():
    ua = user("eve", "buyer", "boss") + sep("StaticSeparation", "purchase", ["buyer", "approver"])
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(ua, ROLES)
    assert "approver through boss -> approver" in str(ei.value)


def test_ssd_cardinality_three_allows_two():
    ua = user("eve", "buyer", "approver") + sep(
        "StaticSeparation", "trio", ["buyer", "approver", "auditor"], 3
    )
    pol = compile_policy(ua, ROLES)
    assert pol.ssd_sets[0].cardinality == 3
    assert pol.ssd_sets[0].roles == frozenset({"buyer", "approver", "auditor"})
    ua_bad = user("eve", "buyer", "approver", "auditor") + sep(
        "StaticSeparation", "trio", ["buyer", "approver", "auditor"], 3
    )
    with pytest.raises(rbac.PolicyError, match="holds 3 roles of static separation set 'trio'"):
        compile_policy(ua_bad, ROLES)


def test_ssd_expired_assignments_still_count():
    ua = user("eve", "buyer", "approver", expires={"approver": "2001-01-01"}) + sep(
        "StaticSeparation", "purchase", ["buyer", "approver"]
    )
    with pytest.raises(rbac.PolicyError, match="user 'eve' holds 2 roles"):
        compile_policy(ua, ROLES)


@pytest.mark.parametrize(
    ("roles", "card", "expected"),
    [
        (
            ["buyer", "approver"],
            1,
            "has cardinality 1, but it must be between 2 and its number of roles (2)",
        ),
        (["buyer", "approver"], 3, "has cardinality 3, but it must be between 2"),
        (["buyer", "nosuch"], 2, "names role 'nosuch', which pa.xml does not define"),
        (["buyer", "buyer", "approver"], 2, "lists role 'buyer' twice"),
    ],
)
def test_bad_separation_sets(roles, card, expected):
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(sep("StaticSeparation", "s", roles, card), ROLES)
    (msg,) = errors_of(ei.value)  # one problem, one message: no knock-on range complaint
    assert expected in msg


def test_a_huge_cardinality_is_a_range_error_not_a_crash():
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(sep("DynamicSeparation", "s", ["buyer", "approver"], "9" * 5000), ROLES)
    (msg,) = errors_of(ei.value)
    assert msg.startswith("ua.xml:3: dynamic separation set 's' has cardinality over 999999999")
    assert "must be between 2 and its number of roles (2)" in msg


def test_cardinality_in_unicode_digits_is_refused():
    for card in ("\u00b2", "\u0663"):  # superscript two, Arabic-Indic three
        with pytest.raises(rbac.PolicyError):
            compile_policy(sep("StaticSeparation", "s", ["buyer", "approver"], card), ROLES)


def test_separation_set_needs_two_roles_by_schema():
    with pytest.raises(rbac.PolicyError, match=r"ua.xml:3: Element 'StaticSeparation'"):
        compile_policy(sep("StaticSeparation", "s", ["buyer"]), ROLES)


def test_duplicate_set_names():
    ua = (
        sep("DynamicSeparation", "s", ["buyer", "approver"])
        + "\n"
        + sep("DynamicSeparation", "s", ["buyer", "auditor"])
    )
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(ua, ROLES)
    assert errors_of(ei.value) == [
        "ua.xml:4: dynamic separation set 's' is defined twice (first at ua.xml:3)"
    ]


@pytest.fixture
def dsd_pol():
    ua = "\n".join(
        [
            user("eve", "buyer", "approver", "auditor"),
            user("ann", "boss", "buyer"),
            sep("DynamicSeparation", "purchase", ["buyer", "approver"]),
        ]
    )
    return compile_policy(ua, ROLES)


def test_dsd_allows_holding_both_but_not_activating_both(dsd_pol):
    with pytest.raises(rbac.DsdViolation) as ei:
        dsd_pol.create_session("eve")  # default: every authorized role
    e = ei.value
    assert isinstance(e, rbac.PolicyError)
    assert e.set_name == "purchase" and e.roles == ("approver", "buyer")
    assert str(e).startswith("ua.xml:5: roles approver, buyer cannot be active in one session")
    s = dsd_pol.create_session("eve", ["buyer", "auditor"])
    assert s.active_roles == ("auditor", "buyer")
    with pytest.raises(rbac.DsdViolation):
        s.add_active_role("approver")
    assert s.active_roles == ("auditor", "buyer")  # unchanged after the refusal
    s.drop_active_role("buyer")
    s.add_active_role("approver")
    assert s.active_roles == ("approver", "auditor")


def test_dsd_counts_inherited_roles(dsd_pol):
    with pytest.raises(rbac.DsdViolation, match=r"approver \(through boss\), buyer"):
        dsd_pol.create_session("ann", ["boss", "buyer"])
    assert dsd_pol.create_session("ann", ["boss"]).effective_roles == ("approver", "boss")


def test_decide_is_not_limited_by_dsd(dsd_pol):
    # a single check activates just the granting role
    assert dsd_pol.decide("eve", 6, "shop").role == "buyer"
    assert dsd_pol.decide("eve", 10, "shop").role == "approver"


def test_session_checks_only_active_roles(dsd_pol):
    s = dsd_pol.create_session("eve", ["buyer"])
    assert s.check_access(6, "shop").role == "buyer"
    d = s.check_access(10, "shop")
    assert not d
    assert d.reason == (
        "no active role of user 'eve' grants operation 10 (shutdown) on 'shop' "
        "(role approver would; activate it)"
    )
    assert not s.check_access(13, "shop")
    assert s.check_access("start", "shop").allowed
    assert {p.role for p in s.permissions()} == {"buyer"}
    assert "eve" in repr(s)


def test_session_refuses_unauthorized_and_unknown(dsd_pol):
    with pytest.raises(rbac.SessionError, match="role 'boss' is not authorized for user 'eve'"):
        dsd_pol.create_session("eve", ["boss"])
    with pytest.raises(rbac.SessionError, match="user 'zed' unknown"):
        dsd_pol.create_session("zed")
    s = dsd_pol.create_session("ann", ["buyer"])
    with pytest.raises(rbac.SessionError, match="already active"):
        s.add_active_role("buyer")
    with pytest.raises(rbac.SessionError, match="not active"):
        s.drop_active_role("boss")
    with pytest.raises(rbac.SessionError, match="not defined"):
        s.add_active_role("ghost")
    # an inherited role may be activated on its own
    s.drop_active_role("buyer")
    s.add_active_role("approver")
    assert s.check_access(10, "shop").via == ("approver",)


def test_role_inheriting_a_whole_dsd_set_is_an_error():
    pa = ROLES + role("czar", extra='<Inherits role="buyer"/><Inherits role="approver"/>')
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(sep("DynamicSeparation", "purchase", ["buyer", "approver"]), pa)
    assert errors_of(ei.value) == [
        "ua.xml:3: role 'czar' inherits 2 roles of dynamic separation set 'purchase' "
        "(approver, buyer), which allows fewer than 2 in one session, so it could never be "
        "activated"
    ]
