"""The original proposal's examples behave exactly as the proposal says."""

from __future__ import annotations

import pytest
from rbac_helpers import EXAMPLES, REPO

import rbac
from secured_virt.access.operations import CATALOGUE


@pytest.fixture(scope="module")
def seed():
    return rbac.load(EXAMPLES / "seed-ua.xml", EXAMPLES / "seed-pa.xml", CATALOGUE.names)


@pytest.fixture(scope="module")
def figure1():
    return rbac.load(EXAMPLES / "figure1-ua.xml", EXAMPLES / "figure1-pa.xml", CATALOGUE.names)


def test_seed_pa_lists_ids_2_to_63_as_the_proposal_elides():
    text = (EXAMPLES / "seed-pa.xml").read_text()
    for i in range(2, 64):
        assert f'<operation id="{i}"/>' in text
    assert '<operation id="1"/>' not in text


def test_seed_users_and_roles(seed):
    assert seed.users == ("hostManager", "user-admin")
    assert seed.roles == ("Administrator", "HostOSManager", "PolicyManager")
    assert seed.assigned_roles("user-admin") == ("Administrator", "PolicyManager")
    assert seed.assigned_users("HostOSManager") == ("hostManager",)


@pytest.mark.parametrize("op", range(2, 64))
def test_host_manager_runs_2_to_63_on_domain0(seed, op):
    d = seed.decide("hostManager", op, "Domain-0")
    assert d.allowed, d.reason
    assert d.role == "HostOSManager"
    assert d.via == ("HostOSManager",)
    assert d.rule.startswith("seed-pa.xml:")
    assert f"role HostOSManager accepts operation {op} on individual VM Domain-0" in d.rule


def test_host_manager_nothing_else(seed):
    assert not seed.decide("hostManager", 1, "Domain-0")
    for vm in ("vm1", "Domain-1", "domain-0"):
        for op in (2, 6, 16, 63):
            assert not seed.decide("hostManager", op, vm), (op, vm)
    assert seed.user_operations_on_object("hostManager", "Domain-0") == tuple(range(2, 64))
    assert seed.user_operations_on_object("hostManager", "vm1") == ()


def test_user_admin_runs_16_on_domain0_only(seed):
    d = seed.decide("user-admin", 16, "Domain-0")
    assert d.allowed
    # both roles grant it; the nearer-by-name tie goes to Administrator
    assert d.role == "Administrator"
    for op in CATALOGUE.names:
        if op != 16:
            assert not seed.decide("user-admin", op, "Domain-0"), op
    assert not seed.decide("user-admin", 16, "vm1")
    assert seed.user_operations_on_object("user-admin", "Domain-0") == (16,)


def test_seed_rule_cites_the_operation_line(seed):
    d = seed.decide("user-admin", 16, "Domain-0")
    line = int(d.rule.split(":")[1])
    text = (EXAMPLES / "seed-pa.xml").read_text().splitlines()
    assert text[line - 1].strip() == '<operation id="16"/>'
    # the line lies inside the Administrator role
    assert any('Role name="Administrator"' in t for t in text[:line])


def test_seed_who_may_show_the_policy(seed):
    assert seed.authorized_users_for(16, "Domain-0") == ("hostManager", "user-admin")
    assert seed.authorized_users_for(6, "Domain-0") == ("hostManager",)
    assert seed.authorized_users_for(1, "Domain-0") == ()


def test_figure1_user_a_operates_vm1_not_vm2(figure1):
    for op in (2, 3, 4, 6, 10, 11, 13, 14, 15, 19):
        d = figure1.decide("userA", op, "VM1")
        assert d.allowed and d.role == "VM1Administrator"
        denied = figure1.decide("userA", op, "VM2")
        assert not denied
        assert denied.reason == (
            f"no role of user 'userA' grants operation {op} ({CATALOGUE.names[op]}) on 'VM2'"
        )


def test_figure1_user_b_has_no_roles(figure1):
    d = figure1.decide("userB", 6, "VM1")
    assert not d and d.reason == "user 'userB' has no roles"
    assert figure1.decide("root", 6, "VM1").reason == "user 'root' unknown"


def test_figure1_filter_visible(figure1):
    objs = [("VM1", None), ("VM2", None)]
    assert figure1.filter_visible("userA", 2, objs) == ["VM1"]
    assert figure1.filter_visible("userB", 2, objs) == []


def test_sample_policy_in_etc_loads_with_the_real_catalogue():
    pol = rbac.load(REPO / "etc" / "ua.xml", REPO / "etc" / "pa.xml", CATALOGUE.names)
    assert "PolicyAdmin" in pol.roles
    # the sample's users are "example:NAME": no account can have a ':' (issue 19)
    assert pol.decide("example:alice", CATALOGUE.get("start").id, "web-7").allowed
    d = pol.decide("example:dave", 6, "fun1", {"label": "dom_Fun"})
    assert d.via == ("OpsLead", "FunOperator")
    assert pol.decide("example:erin", 1, "Domain-0").requires_auth
    assert [s.name for s in pol.ssd_sets] == ["audit-independence"]
    assert [s.name for s in pol.dsd_sets] == ["change-vs-operate"]
