"""Review functions and explanations."""

from __future__ import annotations

import json

import pytest
from rbac_helpers import compile_policy, role, user

import rbac


@pytest.fixture
def pol():
    ua = "\n".join(
        [
            user("alice", "lead"),
            user("bob", "web", "tenant"),
            user("carol", "viewer", expires={"viewer": "2001-01-01"}),
            user("dan"),
            '<StaticSeparation name="s1"><Role name="web"/><Role name="auditor"/>'
            "</StaticSeparation>",
            '<DynamicSeparation name="d1"><Role name="tenant"/><Role name="web"/>'
            "</DynamicSeparation>",
        ]
    )
    pa = "\n".join(
        [
            role("lead", ["hq"], [6], extra='<Inherits role="web"/>'),
            role("web", ["web*"], [6, 10], kind="pattern", extra='<Inherits role="viewer"/>'),
            role("viewer", ops=[2], kind="all"),
            role("tenant", ops=[6, 13], kind="owned"),
            role("auditor", ["hq"], [2]),
        ]
    )
    return compile_policy(ua, pa)


def test_assigned_and_authorized(pol):
    assert pol.assigned_roles("bob") == ("tenant", "web")
    assert pol.authorized_roles("bob") == ("tenant", "viewer", "web")
    assert pol.assigned_users("web") == ("bob",)
    assert pol.authorized_users("web") == ("alice", "bob")
    assert pol.authorized_users("viewer") == ("alice", "bob")  # carol's assignment expired
    assert pol.assigned_roles("dan") == () and pol.authorized_roles("dan") == ()
    assert pol.authorized_users("auditor") == ()


def test_unknown_names_in_review_raise(pol):
    with pytest.raises(rbac.UnknownName, match="user 'zed' is not in the UA policy"):
        pol.assigned_roles("zed")
    with pytest.raises(KeyError):
        pol.authorized_users("ghost")
    with pytest.raises(rbac.RbacError, match="role 'ghost' is not defined in the PA policy"):
        pol.role_permissions("ghost")


def test_permissions(pol):
    perms = pol.user_permissions("bob")
    rows = {(p.operation, p.selector.kind, p.role) for p in perms}
    assert rows == {
        (6, "pattern", "web"),
        (10, "pattern", "web"),
        (2, "all", "viewer"),
        (6, "owned", "tenant"),
        (13, "owned", "tenant"),
    }
    assert perms == tuple(sorted(perms, key=rbac.Permission.sort_key))
    d = perms[0].as_dict()
    assert set(d) == {"operation", "scope", "role", "source"}
    assert json.dumps([p.as_dict() for p in perms])  # JSON-able
    assert {p.role for p in pol.role_permissions("lead")} == {"lead", "web", "viewer"}


def test_who_may_do_what_on_an_object(pol):
    assert pol.authorized_users_for(6, "web1") == ("alice", "bob")
    assert pol.authorized_users_for(2, "anything") == ("alice", "bob")
    assert pol.authorized_users_for(6, "hq") == ("alice",)
    assert pol.authorized_users_for(13, "x", {"owner": "bob"}) == ("bob",)
    assert pol.authorized_users_for(13, "x", {"owner": "alice"}) == ()
    assert pol.authorized_users_for("start", "web1") == ("alice", "bob")
    assert pol.authorized_users_for(99, "web1") == ()
    assert pol.user_operations_on_object("alice", "web2") == (2, 6, 10)
    assert pol.operations_of("bob", "mine", {"owner": "bob"}) == (2, 6, 13)
    assert pol.role_operations_on_object("lead", "hq") == (2, 6)
    assert pol.role_operations_on_object("tenant", "x", {"owner": "bob"}, user="bob") == (6, 13)


def test_separation_sets_are_visible(pol):
    (s,) = pol.ssd_sets
    assert (s.name, s.kind, s.cardinality, s.roles) == ("s1", "static", 2, {"web", "auditor"})
    assert s.as_dict()["source"] == "ua.xml:7"
    assert pol.dsd_sets[0].describe() == (
        "dynamic separation set 'd1' (fewer than 2 of: tenant, web)"
    )


def test_explanation_of_an_allowed_decision(pol):
    ex = pol.explain("alice", 10, "web3", now=1.9e9)
    assert ex.decision == pol.decide("alice", 10, "web3")
    text = str(ex)
    lines = ex.lines()
    assert text == "\n".join(lines)
    assert (
        lines[0]
        == "user 'alice' asks for operation 10 (shutdown) on 'web3' at 2030-03-17T17:46:40Z"
    )
    assert lines[1] == "decision: ALLOWED — granted by role 'web' (inherited: lead -> web)"
    assert "  - lead (ua.xml:3)" in lines
    assert "  - viewer  via lead -> web -> viewer" in lines
    assert "  [match] pa.xml:4: role web accepts operation 10 on VMs matching 'web*'" in lines
    assert any(line.startswith("  - static 's1'") and "user holds web" in line for line in lines)
    d = ex.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["decision"]["allowed"] is True
    assert [r["role"] for r in d["effective_roles"]] == ["lead", "web", "viewer"]
    assert d["candidates"] == [
        {
            "role": "web",
            "via": ["lead", "web"],
            "rule": "pa.xml:4: role web accepts operation 10 on VMs matching 'web*'",
            "scope": {"type": "pattern", "pattern": "web*"},
            "matched": True,
            "in_force": True,
            "requires_auth": False,
            "source": "pa.xml:4",
        }
    ]


def test_explanation_of_a_denial_lists_non_matching_rules(pol):
    ex = pol.explain("bob", 6, "hq", {"owner": "alice"})
    assert not ex.decision
    text = str(ex)
    assert "decision: DENIED — no role of user 'bob' grants operation 6 (start) on 'hq'" in text
    assert "[no match] pa.xml:4: role web accepts operation 6 on VMs matching 'web*'" in text
    assert (
        "[no match] pa.xml:6: role tenant accepts operation 6 on VMs owned by the user asking"
        in text
    )
    assert "[owner=alice]" in text
    assert "dynamic 'd1'" in text


def test_explanation_for_unknown_user_and_expired(pol):
    ex = pol.explain("zed", 6, "web1")
    assert not ex.known_user and not ex.decision
    assert ex.lines() == [
        ex.lines()[0],
        "decision: DENIED — user 'zed' unknown",
        "note: 'zed' has no <User> entry in the UA policy",
    ]
    ex = pol.explain("carol", 2, "x")
    assert ex.assignments[0]["expired"] is True
    assert ex.candidates[0]["matched"] and not ex.candidates[0]["in_force"]
    assert "assignment of role viewer to carol expired on 2001-01-01" in str(ex)
    ex = pol.explain("dan", 2, "x")
    assert "assigned roles:\n  (none)" in str(ex)
    ex = pol.explain("alice", 77, "x")
    assert "operation 77 is not in the catalogue" in str(ex)
