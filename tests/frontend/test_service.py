"""The use-case layer end to end: real rbac, real libvirt test driver, real audit log."""

from __future__ import annotations

import dataclasses
import json

import pytest

from secured_virt.access import audit
from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED, EXIT_OK, Request
from secured_virt.service import Service

from .conftest import ROOT, ident


def records(cfg):
    with open(cfg.audit_log) as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture
def svc(svt_env):
    return Service.from_config(svt_env)


def test_alice_starts_her_vm_and_it_is_audited(svc, svt_env):
    alice = ident("alice")
    r = svc.handle(alice, Request("start", {"domain": "alice-db"}))
    assert r.status == EXIT_OK, r.message
    assert r.data["message"] == "Domain 'alice-db' started"
    assert svc.backend.lookup("alice-db").state == "running"
    dec, out = records(svt_env)[-2:]
    assert dec["verdict"] == "allowed" and dec["op"] == "start" and dec["vm"] == "alice-db"
    assert dec["user"] == "alice" and "WebTeam" in dec["rule"]
    assert out["type"] == "outcome" and out["ref"] == dec["seq"] and out["outcome"] == "ok"
    assert audit.verify(svt_env.audit_log).ok


def test_alice_refused_bobs_vm_names_user_op_vm_and_check(svc, svt_env):
    r = svc.handle(ident("alice"), Request("destroy", {"domain": "bob-build"}))
    assert r.status == EXIT_DENIED and r.check == "rbac"
    assert "'alice'" in r.message and "'destroy'" in r.message and "'bob-build'" in r.message
    assert svc.backend.lookup("bob-build").state == "running"  # nothing happened
    rec = records(svt_env)[-1]
    assert rec["verdict"] == "denied" and rec["outcome"] == "not-run" and rec["check"] == "rbac"


def test_list_shows_only_what_the_caller_may_see(svc):
    def names(who):
        return [
            d["name"]
            for d in svc.handle(ident(who), Request("list", {"all": True})).data["domains"]
        ]

    assert sorted(names("alice")) == ["alice-db", "alice-web"]
    assert names("bob") == ["bob-build"]
    assert len(names("carol")) == 5
    assert names("mallory") == []
    root = svc.handle(ROOT, Request("list", {"all": True})).data["domains"]
    assert len(root) == 5


def test_nonexistent_vm_is_denied_not_revealed(svc):
    r = svc.handle(ident("alice"), Request("start", {"domain": "no-such-vm"}))
    assert r.status == EXIT_DENIED
    r = svc.handle(ROOT, Request("start", {"domain": "no-such-vm"}))
    assert r.status == EXIT_FAILED and "no-such-vm" in r.message


def test_as_from_non_root_is_refused_and_audited(svc, svt_env):
    mallory = ident("mallory", requested_as="alice", as_refused=True)
    r = svc.handle(mallory, Request("start", {"domain": "alice-db"}, as_user="alice"))
    assert r.status == EXIT_DENIED and r.check == "identity"
    rec = records(svt_env)[-1]
    assert rec["verdict"] == "denied" and rec["check"] == "identity" and rec["user"] == "mallory"


def test_root_acting_as_alice_gets_alices_rights(svc):
    as_alice = dataclasses.replace(ROOT, requested_as="alice")
    assert svc.handle(as_alice, Request("suspend", {"domain": "alice-web"})).ok
    assert svc.handle(as_alice, Request("suspend", {"domain": "bob-build"})).status == EXIT_DENIED


def test_broken_policy_fails_closed(svt_env):
    with open(svt_env.pa, "w") as fh:
        fh.write("<RolePolicyDefinition><Role name='x'>")
    svc = Service.from_config(svt_env)
    r = svc.handle(ident("alice"), Request("start", {"domain": "alice-db"}))
    assert r.status == EXIT_BAD_POLICY and "pa.xml" in r.message


def test_audit_write_failure_refuses_the_operation(svc, svt_env, tmp_path):
    import os

    os.chmod(os.path.dirname(svt_env.audit_log), 0o777)  # unsafe directory: audit refuses
    r = svc.handle(ident("alice"), Request("start", {"domain": "alice-db"}))
    assert r.status != EXIT_OK and r.check == "audit"
    assert svc.backend.lookup("alice-db").state == "shut off"


def test_read_commands(svc):
    alice = ident("alice")
    info = svc.handle(alice, Request("dominfo", {"domain": "alice-web"})).data
    assert info["name"] == "alice-web" and info["owner"] == "alice" and info["vcpus"] == 2
    assert svc.handle(alice, Request("domstate", {"domain": "alice-web"})).data["state"] == (
        "running"
    )
    assert svc.handle(alice, Request("dumpxml", {"domain": "alice-web"})).status == EXIT_DENIED


def test_define_sets_owner_and_refuses_forbidden_xml(svc):
    xml = (
        "<domain type='test'><name>new-vm</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    r = svc.handle(ROOT, Request("define", {"xml": xml, "file": "new.xml"}))
    assert r.ok, r.message
    bad = xml.replace("</os>", "</os><devices><emulator>/bin/sh</emulator></devices>")
    r = svc.handle(
        dataclasses.replace(ROOT, requested_as="alice"),
        Request("define", {"xml": bad.replace("new-vm", "x2"), "file": "x.xml"}),
    )
    assert r.status == 2 and "emulator" in r.message


OWNED_PA = """<RolePolicyDefinition>
  <Role name="Tenant">
    <ManageVM type="owned"/>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="start"/><operation name="define"/>
    </Accept></ControlOperation>
  </Role>
  <Role name="Auditor"><ManageVM type="all"/>
    <ControlOperation><Accept><operation name="list"/></Accept></ControlOperation></Role>
</RolePolicyDefinition>"""
OWNED_UA = """<UserConfiguration>
  <User name="alice"><UserRole role="Tenant"/></User>
  <User name="bob"><UserRole role="Tenant"/></User>
  <User name="carol"><UserRole role="Auditor"/></User>
</UserConfiguration>"""


def test_owned_scope_uses_the_domains_own_metadata(svt_env):
    from pathlib import Path

    Path(svt_env.pa).write_text(OWNED_PA)
    Path(svt_env.ua).write_text(OWNED_UA)
    svc = Service.from_config(svt_env)

    def names(who):
        reply = svc.handle(ident(who), Request("list", {"all": True}))
        return sorted(d["name"] for d in reply.data["domains"])

    assert names("alice") == ["alice-db", "alice-web"]
    assert names("bob") == ["bob-build"]
    assert len(names("carol")) == 5
    assert svc.handle(ident("bob"), Request("start", {"domain": "alice-db"})).status == 3
    # a VM bob defines becomes his: the owned scope grants both the definition and its use
    xml = (
        "<domain type='test'><name>bob-new</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    assert svc.handle(ident("bob"), Request("define", {"xml": xml, "file": "b.xml"})).ok
    assert "bob-new" in names("bob") and "bob-new" not in names("alice")
    assert svc.handle(ident("bob"), Request("start", {"domain": "bob-new"})).ok


def test_a_vm_handed_to_another_owner_leaves_the_old_owners_list_in_svirtd(svt_env):
    """svirtd keeps the domains' metadata between listings (backends.libvirt_events): a VM
    given to bob outside svirtd (root's virsh metadata, here the same libvirt connection
    used directly) must leave alice's list, and enter bob's, once libvirt announces it."""
    import time
    from pathlib import Path

    import libvirt

    from secured_virt.backends import metadata
    from secured_virt.confinement import vmmeta

    Path(svt_env.pa).write_text(OWNED_PA)
    Path(svt_env.ua).write_text(OWNED_UA)
    svc = Service.from_config(svt_env, watch_events=True)  # as svirtd builds it

    def names(who):
        reply = svc.handle(ident(who), Request("list", {"all": True}))
        return sorted(d["name"] for d in reply.data["domains"])

    assert names("alice") == ["alice-db", "alice-web"]
    kept = svc.status()["metadata_kept"]
    assert kept["live"] and kept["kept"] >= 5
    names("alice")
    assert svc.status()["metadata_kept"]["reads"] == kept["reads"]  # the kept values served

    cache = svc.backend.metadata_cache
    events = cache.events
    dom = svc.backend.connection.lookupByName("alice-db")
    frag = f"<svirt:vm xmlns:svirt='{vmmeta.NS}'><svirt:owner>bob</svirt:owner></svirt:vm>"
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (
        libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    )
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        metadata.to_libvirt(frag, vmmeta.NS),
        vmmeta.KEY,
        vmmeta.NS,
        flags,
    )
    deadline = time.monotonic() + 10
    while cache.events == events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert names("alice") == ["alice-web"]
    assert names("bob") == ["alice-db", "bob-build"]
    svc.backend.close()


def test_device_and_memory_commands_follow_virsh_current_semantics(svc):
    # alice-db is shut off: without --live/--config the change goes to its configuration
    r = svc.handle(ROOT, Request("setmem", {"domain": "alice-db", "size": "512M"}))
    assert r.ok, r.message
    r = svc.handle(ROOT, Request("setvcpus", {"domain": "alice-db", "count": "1"}))
    assert r.ok, r.message
    info = svc.handle(ROOT, Request("dominfo", {"domain": "alice-db"})).data
    assert info["vcpus"] == 1
    r = svc.handle(
        ROOT,
        Request(
            "attach-disk",
            {"domain": "alice-db", "source": "/tmp/x.img", "target": "vdz", "persistent": True},
        ),
    )
    assert r.ok, r.message
    assert (
        "vdz"
        in svc.handle(ROOT, Request("dumpxml", {"domain": "alice-db", "inactive": True})).data[
            "xml"
        ]
    )
    bad = svc.handle(ROOT, Request("setmem", {"domain": "alice-db", "size": "lots"}))
    assert bad.status == 2 and "invalid size" in bad.message


def test_forget_credentials_request_forgets_the_callers_cache(svc, svt_env):
    """svirsh -k through svirtd: the peer's own cached authentication is forgotten."""
    import os

    from secured_virt.access.credcache import CredCache

    me = ident("alice", pid=os.getpid(), ppid=os.getppid())
    cache = CredCache.from_config(svt_env)
    if not cache.update(me):
        pytest.skip("no session to key a credential record on in this environment")
    assert cache.check(me)
    assert svc.handle(me, Request("forget-credentials", {})).ok
    assert not cache.check(me)


def test_list_without_a_valid_policy_is_refused_and_audited(svt_env):
    with open(svt_env.ua, "w") as fh:
        fh.write("<UserConfiguration><User name='x'>")
    svc = Service.from_config(svt_env)
    r = svc.handle(ident("alice"), Request("list", {"all": True}))
    assert r.status == EXIT_BAD_POLICY and "ua.xml" in r.message
    rec = records(svt_env)[-1]
    assert (rec["op"], rec["verdict"], rec["check"]) == ("list", "denied", "policy")


def test_dominfo_asks_the_flags_a_resolved_row_leaves_out(svc):
    """Resolving a VM for a request does not ask libvirt whether it is persistent or marked
    autostart (two round trips to libvirtd on every request on a VM): the row carries None.
    dominfo, which shows them, and autostart, which needs one, ask them; a transient domain
    and libvirt's own autostart flag come out as virsh shows them."""
    info, _raw = svc.backend.resolve("alice-db", "urn:x")
    assert info.persistent is None and info.autostart is None
    full = svc.backend.lookup("alice-db")
    assert full.persistent is True and full.autostart is False

    svc.backend.set_autostart("alice-db", True)  # root's virsh autostart
    shown = svc.handle(ROOT, Request("dominfo", {"domain": "alice-db"})).data
    assert (shown["persistent"], shown["autostart"]) == (True, True)

    xml = (
        "<domain type='test'><name>tmp-vm</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    assert svc.handle(ROOT, Request("create", {"xml": xml, "file": "t.xml"})).ok
    shown = svc.handle(ROOT, Request("dominfo", {"domain": "tmp-vm"})).data
    assert (shown["persistent"], shown["autostart"]) == (False, False)
    refused = svc.handle(ROOT, Request("autostart", {"domain": "tmp-vm"}))
    assert refused.status == 1 and "transient" in refused.message


def test_dominfo_shows_the_metadata_it_was_decided_on(svc, monkeypatch):
    """dominfo reads the VM's metadata once, with its row before the decision, and shows
    that: its owner, label and whether the caller may see the label come from what the
    decision saw, not from a second read (a round trip to libvirtd, and maybe another
    state)."""
    from secured_virt.confinement import vmmeta

    reads = []
    real = svc.backend.get_metadata
    monkeypatch.setattr(
        svc.backend, "get_metadata", lambda *a, **k: reads.append(a) or real(*a, **k)
    )
    resolved = []
    real_resolve = svc.backend.resolve
    monkeypatch.setattr(svc.backend, "resolve", lambda *a: resolved.append(a) or real_resolve(*a))
    shown = svc.handle(ident("alice"), Request("dominfo", {"domain": "alice-web"}))
    assert shown.ok, shown.message
    assert shown.data["owner"] == "alice"
    assert resolved == [("alice-web", vmmeta.NS)]
    assert not [a for a in reads if a[1] == vmmeta.NS]
