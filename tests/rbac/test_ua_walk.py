"""read_ua walks UA once, in document order (issue 18: a walk per <User> cost twice as much).

Each <UserRole> belongs to the <User> or <Group> seen last; these tests mix users, groups,
separation sets and comments to prove the single walk attaches every role to its owner,
and that duplicates are still reported (and their roles dropped) as before.
"""

from __future__ import annotations

import pytest
from rbac_helpers import OPS, errors_of, pa_doc, role, ua_doc

import rbac
from rbac.builder import PolicyBuilder

PA = pa_doc(role("web", ["web1"], [6]) + role("db", ["db1"], [6]) + role("ops", ["x"], [6]))


def test_roles_attach_to_the_user_or_group_seen_last():
    ua = ua_doc(
        '<User name="alice"><UserRole role="web"/><!-- a note --><UserRole role="db"/></User>\n'
        '<Group name="staff"><UserRole role="ops"/></Group>\n'
        '<StaticSeparation name="s"><Role name="web"/><Role name="ops"/></StaticSeparation>\n'
        "<!-- between -->\n"
        '<User name="bob"><UserRole role="db" expires="2999-01-01"/></User>\n'
        '<User name="carol"/>\n'
        '<Group name="empty"/>\n'
        '<User name="dave"><UserRole role="web"/></User>'
    )
    pol = rbac.loads(ua, PA, OPS)
    assert pol.assigned_roles("alice") == ("db", "web")
    assert pol.assigned_roles("bob") == ("db",)
    assert pol.assigned_roles("carol") == ()
    assert pol.assigned_roles("dave") == ("web",)
    assert [a.role for a in pol.group_assignments["staff"]] == ["ops"]
    assert "empty" not in pol.group_assignments
    assert [s.name for s in pol.ssd_sets] == ["s"]
    [a] = pol._users["bob"].assignments
    assert a.source == ("ua.xml", 7) and a.expires_text == "2999-01-01"


def test_a_duplicate_users_roles_go_nowhere_and_the_next_element_is_read_again():
    ua = ua_doc(
        '<User name="a"><UserRole role="web"/></User>\n'
        '<User name="a"><UserRole role="nosuch"/></User>\n'
        '<Group name="g"><UserRole role="nosuch2"/></Group>'
    )
    with pytest.raises(rbac.PolicyError) as ei:
        rbac.loads(ua, PA, OPS)
    # the duplicate's own role is not checked (noise); the group's role after it is
    assert errors_of(ei.value) == [
        "ua.xml:4: user 'a' is defined twice (first at ua.xml:3); "
        "list all of a user's roles in one <User> element",
        "ua.xml:5: group 'g' is assigned role 'nosuch2', which pa.xml does not define",
    ]


def test_add_users_reports_a_user_the_builder_already_has():
    b = PolicyBuilder(OPS).add_role("web").add_user("a", source=("x.xml", 1))
    b.add_users({"a": ("y.xml", 2), "b": ("y.xml", 3)}, [("a", "web", None, ("y.xml", 2))])
    b.add_users({}, [("c", "web", None, ("y.xml", 9))])  # as assign(): c comes with its role
    with pytest.raises(rbac.PolicyError) as ei:
        b.build()
    assert errors_of(ei.value) == [
        "y.xml:2: user 'a' is defined twice (first at x.xml:1); "
        "list all of a user's roles in one <User> element"
    ]
    b._errors.clear()
    pol = b.build()
    assert pol.assigned_roles("a") == () and pol.users == ("a", "b", "c")
    assert pol.assigned_roles("c") == ("web",)


def test_a_role_assigned_twice_is_found_for_users_with_few_and_with_many_roles():
    """Repeats are looked for among the user's own assignments (a dict only past 16): the
    same messages as one (user, role) table over every assignment gave."""
    names = [f"r{i}" for i in range(40)]
    pa = pa_doc("".join(role(r) for r in names))
    ua = ua_doc(
        '<User name="many">'
        + "".join(f'<UserRole role="{r}"/>' for r in names)
        + '\n<UserRole role="r3"/>\n<UserRole role="r39"/>\n<UserRole role="r3"/></User>\n'
        + '<User name="few"><UserRole role="r1"/><UserRole role="r2"/>\n'
        + '<UserRole role="r1"/></User>\n'
        # refused for its expiry, the first is still the first: the repeat is reported too
        + '<User name="late"><UserRole role="r5" expires="someday"/>\n'
        + '<UserRole role="r5"/></User>'
    )
    with pytest.raises(rbac.PolicyError) as ei:
        rbac.loads(ua, pa, OPS)
    assert errors_of(ei.value) == [
        "ua.xml:4: role 'r3' is assigned to user 'many' twice (first at ua.xml:3)",
        "ua.xml:5: role 'r39' is assigned to user 'many' twice (first at ua.xml:3)",
        "ua.xml:6: role 'r3' is assigned to user 'many' twice (first at ua.xml:3)",
        "ua.xml:8: role 'r1' is assigned to user 'few' twice (first at ua.xml:7)",
        ei.value.errors[4].__str__(),
        "ua.xml:10: role 'r5' is assigned to user 'late' twice (first at ua.xml:9)",
    ]
    assert str(ei.value.errors[4]).startswith("ua.xml:9: assignment of role 'r5' to user 'late'")


def test_a_user_given_roles_in_code_out_of_order_keeps_them_in_order():
    b = PolicyBuilder(OPS).add_role("a").add_role("b")
    b.assign("u", "b").assign("v", "a").assign("u", "a")
    pol = b.build()
    assert [a.role for a in pol._users["u"].assignments] == ["b", "a"]
    with pytest.raises(rbac.PolicyError, match="role 'a' is assigned to user 'u' twice"):
        b.assign("u", "a").build()


def test_add_users_with_a_role_for_a_user_added_before_is_no_duplicate():
    b = PolicyBuilder(OPS).add_role("web").add_role("db").add_user("a", source=("x.xml", 1))
    b.add_users({"b": ("y.xml", 2)}, [("a", "web", None, ("y.xml", 3))])
    b.add_users({}, [("b", "db", None, ("y.xml", 4)), ("c", "db", None, ("y.xml", 5))])
    pol = b.build()
    assert pol.assigned_roles("a") == ("web",) and pol.assigned_roles("b") == ("db",)
    assert pol.users == ("a", "b", "c") and pol._users["c"].source == ("y.xml", 5)
