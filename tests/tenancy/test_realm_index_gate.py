"""Through Service.handle: the gate asks rbac's C index for the realm step and RBAC at once.

Same world as test_realms.py (realms a and b, a deliberately wrong grant on every VM), with the
realm cache of a running svirtd (5 s) instead of none.  Once a member's realms are cached, a
request on a VM of their realm does not run the Python realm step (Tenancy.refusal) at all,
and its reply and audit record are word for word those of the same request decided by the two
steps; every refusal (another realm's VM, an operation root does not allow the realm, a VM
of the root realm) still comes from the realm step, worded as before.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rbac import engine
from rbac.groups import GroupResolver
from secured_virt.access.operations import CATALOGUE
from secured_virt.requests import EXIT_DENIED, EXIT_OK, Request
from secured_virt.tenancy.model import Realm, RealmSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_realms as realms_world

acc, world = realms_world.acc, realms_world.world  # its fixtures
audit_records = realms_world.audit_records

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="root-owned policy files: run as root"),
    pytest.mark.skipif(engine._native is None, reason="rbac._native not built"),
]


def _counting(svc):
    calls = []
    real = svc.tenancy.refusal

    def refusal(*a, **kw):
        calls.append(kw.get("vm"))
        return real(*a, **kw)

    svc.tenancy.refusal = refusal
    return calls


def _same_record(a: dict, b: dict) -> None:
    """Two audit records of the same request: equal but for when, which and how long."""
    skip = {"time", "ts", "id", "seq", "ref", "pid", "elapsed", "duration", "prev", "hash"}
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


def test_a_cached_member_is_decided_in_one_c_call_with_the_same_reply_and_audit(world):
    svc, ids, users, cfg, *_ = world
    svc.tenancy.groups = GroupResolver(ttl=600)  # a running svirtd's cache (5 s for realms)
    calls = _counting(svc)
    abe = ids["abe"]  # a member of realm a through group ga
    first = svc.handle(abe, Request("dominfo", {"domain": "a-web"}))
    assert first.status == EXIT_OK, first.message
    assert calls == ["a-web"]  # not cached yet: the realm step ran, and told the index
    second = svc.handle(abe, Request("dominfo", {"domain": "a-web"}))
    assert second.status == EXIT_OK
    assert {k: v for k, v in second.data.items() if k != "cpu_time_ns"} == {
        k: v for k, v in first.data.items() if k != "cpu_time_ns"
    }
    assert calls == ["a-web"]  # the C index answered both checks
    recs = [
        r
        for r in audit_records(cfg)
        if r.get("user") == users["abe"] and r.get("type") == "decision"
    ]
    assert len(recs) >= 2
    _same_record(recs[-2], recs[-1])
    assert recs[-1]["verdict"] == "allowed" and recs[-1]["realm"] == "a", recs[-1]
    assert recs[-1]["rule"] == "pa.xml:5: role Everyone accepts operation 3 on all VMs"
    # another realm's VM: refused by the realm step, worded as before
    r = svc.handle(abe, Request("dominfo", {"domain": "b-web"}))
    assert r.status == EXIT_DENIED and r.check == "realm"
    assert "VM 'b-web' belongs to realm 'b'; you are a member of realm 'a'" in r.message
    assert calls[-1] == "b-web"
    # a VM of the root realm, for a member of a realm
    r = svc.handle(abe, Request("dominfo", {"domain": "plain"}))
    assert r.status == EXIT_DENIED and r.check == "realm" and calls[-1] == "plain"
    # a user in no realm on a VM of none: the C index answers it too (after the first)
    zed = ids["zed"]
    assert svc.handle(zed, Request("dominfo", {"domain": "plain"})).status == EXIT_OK
    n = len(calls)
    assert svc.handle(zed, Request("dominfo", {"domain": "plain"})).status == EXIT_OK
    assert len(calls) == n
    r = svc.handle(zed, Request("dominfo", {"domain": "a-web"}))
    assert r.status == EXIT_DENIED and "root realm" in r.message


def test_membership_dropped_reaches_the_gate_when_the_realm_cache_is_dropped(world):
    svc, ids, users, _cfg, accounts, ga, _ = world
    svc.tenancy.groups = GroupResolver(ttl=600)
    calls = _counting(svc)
    abe = ids["abe"]
    assert svc.handle(abe, Request("dominfo", {"domain": "a-web"})).status == EXIT_OK
    assert svc.handle(abe, Request("dominfo", {"domain": "a-web"})).status == EXIT_OK
    assert calls == ["a-web"]
    accounts.remove(users["abe"], ga)
    svc.tenancy.groups.forget()
    svc.tenancy.extra = dict(svc.tenancy.extra)  # what a realm file reload does: caches dropped
    r = svc.handle(abe, Request("dominfo", {"domain": "a-web"}))
    assert r.status == EXIT_DENIED and r.check == "realm" and "root realm" in r.message
    assert calls == ["a-web", "a-web"]


def test_a_vm_two_realms_claim_is_never_answered_in_c(world):
    """The VM's attrs name no realm and two realms' patterns cover its name: only the realm
    step may answer (it refuses, naming both), even for a caller in no realm whose realms
    the index holds -- to the index, such a VM looks like one in no realm."""
    svc, ids, users, *_ = world
    svc.tenancy.groups = GroupResolver(ttl=600)
    zed = ids["zed"]
    assert svc.handle(zed, Request("dominfo", {"domain": "plain"})).status == EXIT_OK
    old = svc.tenancy.realms.realms
    svc.tenancy.realms = RealmSet(
        {**old, "c": Realm("c", vm_patterns=("pl*",)), "d": Realm("d", vm_patterns=("*ain",))}
    )
    svc.tenancy.partitions(CATALOGUE.names)
    assert svc.tenancy.realms_of(users["zed"]) == ()  # told to the index: in no realm
    r = svc.handle(zed, Request("dominfo", {"domain": "plain"}))
    assert r.status == EXIT_DENIED and r.check == "realm", r.message
    assert "claimed by realms 'c', 'd'" in r.message
    # one realm claims it: the service puts that realm in the attrs, and C may answer
    svc.tenancy.realms = RealmSet({**old, "c": Realm("c", vm_patterns=("pl*",))})
    svc.tenancy.partitions(CATALOGUE.names)
    svc.tenancy.realms_of(users["zed"])
    r = svc.handle(zed, Request("dominfo", {"domain": "plain"}))
    assert r.status == EXIT_DENIED and "belongs to realm 'c'" in r.message
