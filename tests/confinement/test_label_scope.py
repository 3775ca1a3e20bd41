"""Issue 14 items 7 and 20: which labels a caller may give, and who sees a VM's label.

Item 7, the attack: a guest admin whose role grants ``setlabel`` gave her VM Domain-0's
``SystemManagement`` label (so Bob's labelled disk could be attached and the VM started).  Now
the labels a role may give are part of its grant in PA (``<operation name="setlabel"><Label
name="dom_AliceCorp"/></operation>``), the label taken away must be listed too, and the bootstrap
label is root's alone.  Item 20: ``getlabel`` was refused while ``list --label``, ``dominfo`` and
``dumpxml`` showed the same label; now all of them show it only to callers allowed ``getlabel``.

The attacks run through a real svirtd (sHype/ACM on, the demo policy demo.hosting whose
bootstrap label is SystemManagement) as the real uids svt-alice, svt-bob and svt-carol.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for _p in (str(HERE.parent / "daemon"), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from svtd_helpers import RealEnv, call_as, write_root_file  # noqa: E402

import policy  # noqa: E402
from secured_virt.access.identity import Identity  # noqa: E402
from secured_virt.config import load_config  # noqa: E402
from secured_virt.requests import EXIT_DENIED, EXIT_OK, Request  # noqa: E402
from secured_virt.service import Service  # noqa: E402

pytestmark = pytest.mark.integration

DEMO_POLICY = REPO / "etc" / "demo" / "acm-policy.xml"
IMG = "/var/lib/libvirt/images/{}.qcow2"
ROOT = Identity(uid=0, gid=0, user="root", groups=(0,), via="direct", pid=os.getpid())

UA = """<UserConfiguration>
  <User name="svt-alice"><UserRole role="AliceAdmin"/></User>
  <User name="svt-bob"><UserRole role="TrustedAdmin"/></User>
  <User name="svt-carol"><UserRole role="Viewer"/></User>
</UserConfiguration>
"""

# AliceAdmin: a guest admin of alice-web who may give it AliceCorp's label only, and label
# resources res_AliceData only.  TrustedAdmin: root listed every label for bob-build, the
# bootstrap label included (which stays root's alone all the same).  Viewer: sees every VM
# (list, dominfo, dumpxml) but was not granted getlabel.
PA = """<RolePolicyDefinition>
  <Role name="AliceAdmin">
    <ManageVM type="individual"><VM name="alice-web"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="dominfo"/><operation name="getlabel"/>
      <operation name="dumpxml"/><operation name="start"/><operation name="destroy"/>
      <operation name="attach-disk"/>
      <operation name="setlabel"><Label name="dom_AliceCorp"/></operation>
      <operation name="relabel"><Label name="dom_AliceCorp"/></operation>
    </Accept></ControlOperation>
    <ManageVM type="individual"><VM name="Domain-0"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="setlabel-resource"><Label name="res_AliceData"/></operation>
    </Accept></ControlOperation>
  </Role>
  <Role name="TrustedAdmin">
    <ManageVM type="individual"><VM name="bob-build"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="destroy"/>
      <operation name="setlabel"><Label pattern="*"/></operation>
    </Accept></ControlOperation>
  </Role>
  <Role name="Viewer">
    <ManageVM type="all"/>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="dominfo"/><operation name="dumpxml"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>
"""


def host(env: RealEnv) -> Service:
    """An in-process Service on the same host files: loads demo.hosting and labels Bob's disk
    (policy and resource labels live in the ACM state directory, shared with svirtd)."""
    cfg = load_config(str(env.config), caller_uid=0)
    svc = Service.from_config(dataclasses.replace(cfg, audit_log=str(env.log_dir / "setup.log")))
    st = svc.acm.host.set_policy(
        DEMO_POLICY.read_bytes(), policy.XS_INST_LOAD | policy.XS_INST_BOOT, True
    )
    assert st.xserr == 0, st.message
    svc.backend.destroy("bob-build")  # this connection's copy of the node: a disk in use
    args = {"domain": IMG.format("bob-build"), "label": "res_BobData", "resource": True}
    r = svc.handle(ROOT, Request("setlabel", args))
    assert r.ok, r.message
    return svc


@pytest.fixture
def env(test_users):
    e = RealEnv(acm="yes")
    write_root_file(e.ua, UA)
    write_root_file(e.pa, PA)
    host(e)
    e.d = e.daemon().start().wait_ready()
    yield e
    e.d.stop()
    e.cleanup()


def call(env, test_users, readable_src, as_user, user, command, **args):
    return call_as(as_user, test_users[user], readable_src, env.socket, command, args)


def denials(env, op):
    return [
        r
        for r in env.audit_records()
        if r["type"] == "decision" and r["op"] == op and r["verdict"] == "denied"
    ]


def test_guest_admin_cannot_give_her_vm_the_bootstrap_or_a_rival_label(
    env, test_users, readable_src, as_user
):
    def alice(command, **args):
        return call(env, test_users, readable_src, as_user, "svt-alice", command, **args)

    assert alice("destroy", domain="alice-web")["status"] == EXIT_OK
    # the attack of item 7: Domain-0's label on her own VM
    r = alice("setlabel", domain="alice-web", label="SystemManagement")
    assert r["status"] == EXIT_DENIED, r
    msg = r["message"]
    assert "refused by the rbac check" in msg and "'SystemManagement'" in msg
    assert "dom_AliceCorp" in msg and "setlabel grant in pa.xml" in msg
    # ... in any spelling of it
    r = alice("setlabel", domain="alice-web", label="ACM:demo.hosting:SystemManagement")
    assert r["status"] == EXIT_DENIED, r
    # a competitor's label is no better
    r = alice("setlabel", domain="alice-web", label="dom_BobCorp")
    assert r["status"] == EXIT_DENIED and "'dom_BobCorp'" in r["message"], r
    got = alice("getlabel", domain="alice-web")
    assert got["status"] == EXIT_OK and got["data"]["label"] == "__UNLABELED__", got
    # every refusal is an audited denial naming the label
    recs = denials(env, "setlabel")
    assert len(recs) == 3 and all(rec["check"] == "rbac" for rec in recs)
    assert "SystemManagement" in recs[0]["rule"] and "dom_BobCorp" in recs[2]["rule"]

    # the label her grant lists works, and then she cannot move it to an unlisted one
    r = alice("setlabel", domain="alice-web", label="dom_AliceCorp")
    assert r["status"] == EXIT_OK, r
    got = alice("getlabel", domain="alice-web")
    assert got["data"]["label"] == "dom_AliceCorp", got
    r = alice("relabel", domain="alice-web", label="SystemManagement")
    assert r["status"] == EXIT_DENIED and "'SystemManagement'" in r["message"], r
    assert alice("getlabel", domain="alice-web")["data"]["label"] == "dom_AliceCorp"


def test_resource_labels_are_scoped_too_old_and_new(env, test_users, readable_src, as_user):
    def alice(command, **args):
        return call(env, test_users, readable_src, as_user, "svt-alice", command, **args)

    # Bob's disk, not in use: relabelling it as Alice's data would hand it to her VMs
    bob = call(env, test_users, readable_src, as_user, "svt-bob", "destroy", domain="bob-build")
    assert bob["status"] == EXIT_OK, bob
    r = alice("setlabel", domain=IMG.format("bob-build"), label="res_AliceData", resource=True)
    assert r["status"] == EXIT_DENIED, r
    assert "current label 'res_BobData'" in r["message"], r
    r = alice("setlabel", domain=IMG.format("bob-build"), label="", resource=True)
    assert r["status"] == EXIT_DENIED, r
    # her own unlabelled disk, with the label her grant lists (not while her VM uses it)
    assert alice("destroy", domain="alice-web")["status"] == EXIT_OK
    r = alice("setlabel", domain=IMG.format("alice-web"), label="res_AliceData", resource=True)
    assert r["status"] == EXIT_OK, r
    labels = env_resource_labels(env)
    assert labels[IMG.format("bob-build")].endswith(":res_BobData")
    assert labels[IMG.format("alice-web")].endswith(":res_AliceData")


def env_resource_labels(env) -> dict:
    svc = Service.from_config(
        dataclasses.replace(
            load_config(str(env.config), caller_uid=0), audit_log=str(env.log_dir / "check.log")
        )
    )
    return {
        img: svc.acm.host.resource_get_label(img)
        for img in map(IMG.format, ("alice-web", "bob-build"))
    }


def test_bootstrap_label_stays_roots_even_when_pa_lists_it(env, test_users, readable_src, as_user):
    def bob(command, **args):
        return call(env, test_users, readable_src, as_user, "svt-bob", command, **args)

    assert bob("destroy", domain="bob-build")["status"] == EXIT_OK
    r = bob("setlabel", domain="bob-build", label="SystemManagement")
    assert r["status"] == EXIT_DENIED, r
    assert "refused by the acm check" in r["message"] and "bootstrap label" in r["message"]
    assert denials(env, "setlabel")[-1]["check"] == "acm"
    # any other label the grant's pattern covers is fine
    assert bob("setlabel", domain="bob-build", label="dom_BobCorp")["status"] == EXIT_OK


def test_label_is_shown_only_to_callers_allowed_getlabel(env, test_users, readable_src, as_user):
    def who(user, command, **args):
        return call(env, test_users, readable_src, as_user, user, command, **args)

    assert who("svt-alice", "destroy", domain="alice-web")["status"] == EXIT_OK
    assert (
        who("svt-alice", "setlabel", domain="alice-web", label="dom_AliceCorp")["status"] == EXIT_OK
    )
    # carol may see the VM but was not granted getlabel: no label anywhere
    assert who("svt-carol", "getlabel", domain="alice-web")["status"] == EXIT_DENIED
    rows = {
        d["name"]: d
        for d in who("svt-carol", "list", all=True, label=True, long=True)["data"]["domains"]
    }
    assert rows["alice-web"]["acm_label"] is None and rows["alice-web"]["security"] is None
    info = who("svt-carol", "dominfo", domain="alice-web")["data"]
    assert info["security"] is None
    xml = who("svt-carol", "dumpxml", domain="alice-web")["data"]["xml"]
    assert "dom_AliceCorp" not in xml and "<name>alice-web</name>" in xml
    # alice holds getlabel on it: the same views show the label
    rows = {d["name"]: d for d in who("svt-alice", "list", all=True, label=True)["data"]["domains"]}
    assert rows["alice-web"]["acm_label"] == "ACM:demo.hosting:dom_AliceCorp"
    assert who("svt-alice", "dominfo", domain="alice-web")["data"]["security"]["label"] == (
        "dom_AliceCorp"
    )
    assert "dom_AliceCorp" in who("svt-alice", "dumpxml", domain="alice-web")["data"]["xml"]


def test_root_as_user_is_limited_like_the_user(test_users):
    """root --as svt-alice gets svt-alice's labels; root as itself any label."""
    e = RealEnv(acm="yes")
    try:
        write_root_file(e.ua, UA)
        write_root_file(e.pa, PA)
        svc = host(e)
        svc.backend.destroy("alice-web")
        as_alice = dataclasses.replace(ROOT, requested_as="svt-alice")
        r = svc.handle(
            as_alice, Request("setlabel", {"domain": "alice-web", "label": "SystemManagement"})
        )
        assert r.status == EXIT_DENIED and "'SystemManagement'" in r.message, r.message
        r = svc.handle(
            as_alice, Request("setlabel", {"domain": "alice-web", "label": "dom_AliceCorp"})
        )
        assert r.status == EXIT_OK, r.message
        r = svc.handle(
            ROOT, Request("setlabel", {"domain": "alice-web", "label": "SystemManagement"})
        )
        assert r.status == EXIT_OK, r.message
    finally:
        e.cleanup()
