"""Roles given to Unix groups in UA (``<Group name><UserRole/></Group>``), resolved through
NSS at decision time with real local groups: supplementary and primary membership, a
``gpasswd`` change seen without reloading, an unresolvable group granting nothing, and the
explanation naming the group.  The seed's UA (only ``<User>``) must load exactly as before.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import rbac
from rbac.groups import GroupResolver

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tenancy_helpers import local_accounts

OPS = {1: "list", 2: "dominfo", 6: "start", 9: "destroy"}

PA = b"""<RolePolicyDefinition>
  <Role name="WebTeam">
    <ManageVM type="individual"><VM name="web1"/></ManageVM>
    <ControlOperation><Accept><operation id="6"/></Accept></ControlOperation>
  </Role>
  <Role name="Auditor">
    <ManageVM type="all"/>
    <ControlOperation><Accept><operation id="2"/></Accept></ControlOperation>
  </Role>
  <Role name="Killer">
    <ManageVM type="individual"><VM name="web1"/></ManageVM>
    <ControlOperation><Accept><operation id="9"/></Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


def ua(group: str, *, extra: str = "") -> bytes:
    return f"""<UserConfiguration>
  <User name="someone"><UserRole role="Auditor"/></User>
  <Group name="{group}"><UserRole role="WebTeam"/></Group>
  {extra}
</UserConfiguration>""".encode()


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates local users: run as root")


@pytest.fixture
def acc():
    with local_accounts() as a:
        yield a


def test_supplementary_member_gets_the_group_role_and_explain_names_the_group(acc):
    g = acc.group("webops")
    bob = acc.user("bob", groups=[g])
    pol = rbac.loads(ua(g), PA, OPS, groups=GroupResolver(ttl=0))
    d = pol.decide(bob, 6, "web1")
    assert d.allowed, d.reason
    assert f"group '{g}'" in d.reason
    assert d.group == g  # what the gate's audit record names
    assert pol.decide("someone", 2, "web1").group is None
    assert not pol.decide(bob, 9, "web1").allowed
    text = str(pol.explain(bob, 6, "web1"))
    assert f"WebTeam through group '{g}'" in text
    assert f"'{bob}' is a member of '{g}'" in text
    assert pol.assigned_groups("WebTeam") == (g,)
    assert pol.user_groups(bob) == (g,)


def test_primary_group_counts(acc):
    g = acc.group("prim")
    carol = acc.user("carol", primary=g)
    pol = rbac.loads(ua(g), PA, OPS, groups=GroupResolver(ttl=0))
    assert pol.decide(carol, 6, "web1").allowed


def test_membership_change_takes_effect_after_the_cache_without_reload(acc):
    g = acc.group("chg")
    dan = acc.user("dan")
    clock = [1000.0]
    res = GroupResolver(ttl=5, clock=lambda: clock[0])
    pol = rbac.loads(ua(g), PA, OPS, groups=res)
    assert not pol.decide(dan, 6, "web1").allowed
    acc.add(dan, g)
    clock[0] += 1  # within the cache's lifetime: still the old answer
    assert not pol.decide(dan, 6, "web1").allowed
    clock[0] += 5
    assert pol.decide(dan, 6, "web1").allowed
    acc.remove(dan, g)
    clock[0] += 6
    assert not pol.decide(dan, 6, "web1").allowed


def test_default_resolver_sees_a_change_within_its_ttl(acc):
    g = acc.group("ttl")
    eve = acc.user("eve")
    pol = rbac.loads(ua(g), PA, OPS, groups=GroupResolver(ttl=0.5))
    assert not pol.decide(eve, 6, "web1").allowed
    acc.add(eve, g)
    time.sleep(0.6)
    assert pol.decide(eve, 6, "web1").allowed


def test_unresolvable_group_grants_nothing_and_explain_says_why(acc):
    fred = acc.user("fred")
    missing = acc.name("nosuchgrp")
    pol = rbac.loads(ua(missing), PA, OPS, groups=GroupResolver(ttl=0))
    assert not pol.decide(fred, 6, "web1").allowed
    text = str(pol.explain(fred, 6, "web1"))
    assert f"group '{missing}' of the UA policy cannot be resolved through NSS" in text
    assert "grant nothing" in text
    assert pol.unresolved_groups() == {missing: "no such group in /etc/group or any NSS source"}


def test_direct_roles_still_fast_and_group_roles_add(acc):
    g = acc.group("both")
    gina = acc.user("gina", groups=[g])
    extra = f'<User name="{gina}"><UserRole role="Killer"/></User>'
    for native in (True, False):
        pol = rbac.loads(ua(g, extra=extra), PA, OPS, groups=GroupResolver(ttl=0), native=native)
        assert pol.decide(gina, 9, "web1").allowed  # her own role (fast path)
        assert pol.decide(gina, 6, "web1").allowed  # her group's: a fast-path miss asks NSS
        assert not pol.decide(gina, 2, "web2").allowed


def test_group_roles_breaking_ssd_grant_nothing(acc):
    g = acc.group("ssd")
    hal = acc.user("hal", groups=[g])
    extra = (
        f'<User name="{hal}"><UserRole role="Killer"/></User>'
        '<StaticSeparation name="no-both"><Role name="WebTeam"/><Role name="Killer"/>'
        "</StaticSeparation>"
    )
    pol = rbac.loads(ua(g, extra=extra), PA, OPS, groups=GroupResolver(ttl=0))
    assert pol.decide(hal, 9, "web1").allowed
    assert not pol.decide(hal, 6, "web1").allowed
    assert "static separation set 'no-both'" in str(pol.explain(hal, 6, "web1"))


def test_seed_ua_without_groups_loads_unchanged():
    seed = b"""<UserConfiguration><User name="alice"><UserRole role="WebTeam"/></User>
    </UserConfiguration>"""
    pol = rbac.loads(seed, PA, OPS)
    assert pol.group_assignments == {}
    assert pol.decide("alice", 6, "web1").allowed
    # with no group roles, a by-name miss is still denied by the fast path (C or Python)
    assert not pol.decide("alice", 9, "web1").allowed
    assert pol._miss_denies == pol.operations


def test_group_defined_twice_is_a_load_error():
    doc = b"""<UserConfiguration>
  <Group name="g1"><UserRole role="WebTeam"/></Group>
  <Group name="g1"><UserRole role="Auditor"/></Group>
</UserConfiguration>"""
    with pytest.raises(rbac.PolicyError, match="group 'g1' is defined twice"):
        rbac.loads(doc, PA, OPS)
