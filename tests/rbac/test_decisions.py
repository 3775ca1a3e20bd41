"""Core RBAC decisions: users, roles, operations, objects, and the Decision value."""

from __future__ import annotations

import pickle

import pytest
from rbac_helpers import OPS, compile_policy, role, user

import rbac


@pytest.fixture
def pol():
    return compile_policy(
        user("alice", "web") + user("bob", "db", "web") + user("nobody"),
        role("web", ["web1", "web2"], [2, 6, "shutdown"])
        + role("db", ["db1"], [2, 3])
        + role("spare", ["web1"], [13]),
    )


def test_grant_by_id_and_by_name(pol):
    assert pol.decide("alice", 6, "web1").allowed
    assert pol.decide("alice", 10, "web2").allowed  # granted as name="shutdown"
    assert pol.decide("alice", "shutdown", "web2").allowed  # asked by name
    assert pol.decide("alice", "10", "web2").allowed  # id as text


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("op", [True, 6.0, None, b"6", "\u0666", "\u00b2"])
def test_only_ints_digit_strings_and_names_are_operations(native, op):
    # True == 1 and 6.0 == 6 in Python; in an access decision they are type slips, not ids
    b = rbac.PolicyBuilder(OPS)
    b.add_role("web").grant("web", [1, 6], rbac.Exact(["web1"]))
    b.add_user("alice").assign("alice", "web")
    p = b.build(native=native)
    assert p.native is native
    d = p.decide("alice", op, "web1")
    assert d.allowed is False and "is not in the catalogue" in d.reason
    assert p.decide("alice", 6, "web1") and p.decide("alice", "6", "web1")
    s = p.create_session("alice")
    assert not s.check_access(op, "web1")


def test_denials_say_why(pol):
    d = pol.decide("alice", 13, "web1")
    assert d.allowed is False and d.role is None and d.rule == "" and d.via == ()
    assert d.reason == "no role of user 'alice' grants operation 13 (destroy) on 'web1'"
    assert pol.decide("alice", 6, "db1").reason.endswith("on 'db1'")
    assert pol.decide("mallory", 6, "web1").reason == "user 'mallory' unknown"
    assert pol.decide("nobody", 6, "web1").reason == "user 'nobody' has no roles"
    assert pol.decide("alice", 99, "web1").reason == "operation 99 is not in the catalogue (1-63)"
    assert "'frobnicate' is not in the catalogue" in pol.decide("alice", "frobnicate", "x").reason


def test_object_names_are_exact_and_case_sensitive(pol):
    assert not pol.decide("alice", 6, "WEB1")
    assert not pol.decide("alice", 6, "web1 ")
    assert not pol.decide("alice", 6, "web")


def test_several_roles(pol):
    assert pol.decide("bob", 3, "db1").role == "db"
    assert pol.decide("bob", 6, "web1").role == "web"
    assert pol.users == ("alice", "bob", "nobody")
    assert pol.roles == ("db", "spare", "web")


def test_decision_value(pol):
    d = pol.decide("alice", 6, "web1")
    assert bool(d) is True and not pol.decide("alice", 13, "web1")
    assert d.rule == "pa.xml:3: role web accepts operation 6 on individual VM web1"
    assert d.reason == "granted by role 'web'"
    allowed, role_, rule, _reason, auth, via = d  # unpacks like its fields
    assert (allowed, role_, rule, auth, via) == (True, "web", d.rule, False, ("web",))
    assert d == pol.decide("alice", 6, "web1") and hash(d) == hash(pol.decide("alice", 6, "web1"))
    assert d != pol.decide("alice", 6, "web2")
    with pytest.raises(AttributeError):
        d.allowed = False
    assert d.as_dict() == {
        "allowed": True,
        "role": "web",
        "rule": d.rule,
        "reason": "granted by role 'web'",
        "requires_auth": False,
        "via": ["web"],
    }
    assert pickle.loads(pickle.dumps(d)) == d
    assert "Decision(allowed=True, role='web'" in repr(d)
    handmade = rbac.Decision(False, reason="nope")
    assert handmade.reason == "nope" and not handmade and handmade.via == ()


def test_filter_visible(pol):
    objs = [(f"web{i}", None) for i in range(5)] + [("db1", {})]
    assert pol.filter_visible("alice", 2, objs) == ["web1", "web2"]
    assert pol.filter_visible("bob", 2, objs) == ["web1", "web2", "db1"]
    assert pol.filter_visible("bob", 3, objs) == ["db1"]
    assert pol.filter_visible("mallory", 2, objs) == []
    assert pol.filter_visible("alice", 99, objs) == []
    assert pol.filter_visible("alice", "list", iter(objs)) == ["web1", "web2"]


def test_digest_is_sha256_of_the_documents():
    ua = b'<UserConfiguration><User name="a"><UserRole role="r"/></User></UserConfiguration>'
    pa = b'<RolePolicyDefinition><Role name="r"/></RolePolicyDefinition>'
    pol = rbac.loads(ua, pa, {1: "x"})
    import hashlib

    assert pol.digest == hashlib.sha256(ua + b"\0" + pa).hexdigest() == rbac.policy_digest(ua, pa)
    pa2 = pa.replace(b'"r"/>', b'"r"></Role>')
    assert rbac.loads(ua, pa2, {1: "x"}).digest != pol.digest


def test_role_without_grants_and_user_without_roles_are_valid():
    pol = compile_policy(user("u", "empty") + user("v"), role("empty", ops=()))
    assert not pol.decide("u", 6, "vm1")
    assert (
        pol.decide("u", 6, "vm1").reason
        == "no role of user 'u' grants operation 6 (start) on 'vm1'"
    )
    assert pol.authorized_roles("v") == ()


def test_several_grants_in_one_role():
    pa = """<Role name="r">
      <ManageVM type="individual"><VM name="a"/></ManageVM>
      <ControlOperation><Accept><operation id="6"/></Accept></ControlOperation>
      <ManageVM type="individual"><VM name="b"/></ManageVM>
      <ManageVM type="pattern"><VM pattern="c*"/></ManageVM>
      <ControlOperation><Accept><operation id="13"/></Accept></ControlOperation>
      <ControlOperation><Accept><operation id="2"/></Accept>
                        <Accept><operation id="3"/></Accept></ControlOperation>
    </Role>"""
    pol = compile_policy(user("u", "r"), pa)
    assert pol.user_operations_on_object("u", "a") == (6,)
    assert pol.user_operations_on_object("u", "b") == (2, 3, 13)
    assert pol.user_operations_on_object("u", "c9") == (2, 3, 13)
    assert not pol.decide("u", 6, "b")


def test_same_object_in_two_blocks_of_one_role_merges():
    pa = """<Role name="r">
      <ManageVM type="individual"><VM name="a"/></ManageVM>
      <ControlOperation><Accept><operation id="6"/></Accept></ControlOperation>
      <ManageVM type="individual"><VM name="a"/><VM name="b"/></ManageVM>
      <ControlOperation><Accept><operation id="13"/><operation id="6"/></Accept></ControlOperation>
    </Role>"""
    pol = compile_policy(user("u", "r"), pa)
    assert pol.user_operations_on_object("u", "a") == (6, 13)
    # the first grant of op 6 on 'a' (line 5) is the one cited
    assert pol.decide("u", 6, "a").rule.startswith("pa.xml:5:")
    assert pol.decide("u", 6, "b").rule.startswith("pa.xml:7:")


def test_operation_star_means_every_operation():
    pa = role("r", ops=["*"], kind="all").replace('name="*"', 'id="*"')
    pol = compile_policy(user("u", "r"), pa)
    assert pol.user_operations_on_object("u", "anything") == tuple(range(1, 64))


def test_policy_from_code_equals_policy_from_files():
    b = (
        rbac.PolicyBuilder({2: "list", 6: "start"})
        .add_role("web")
        .grant("web", ["start", 2], rbac.Exact(["web1", "web2"]))
        .assign("alice", "web")
    )
    pol = b.build()
    assert pol.decide("alice", 6, "web1").allowed
    assert (
        pol.decide("alice", 6, "web1").rule == "role web accepts operation 6 on individual VM web1"
    )
    assert not pol.decide("alice", 6, "web3")
    assert len(pol.digest) == 64


def test_catalogue_objects_with_names_are_accepted():
    class Catalogue:  # the front-end's shape: an object carrying an id -> name mapping
        names = {6: "start"}

    pol = rbac.PolicyBuilder(Catalogue()).add_role("r").grant("r", "start", rbac.AnyObject())
    assert pol.assign("u", "r").build().decide("u", 6, "x").allowed
    with pytest.raises(TypeError, match="mapping of operation id -> name"):
        rbac.loads(b"<UserConfiguration/>", b"<RolePolicyDefinition/>", [6])
