"""Seed 000's labels on every object, from the command line: getlabel of one resource and of
a VIF, VIF labels, rmlabel for VMs, resources and VIFs, getlabel's label record, and
``policy labels`` with each label's kind and types.  Through the real Service on the real
libvirt test driver; the real svirsh/svirt-admin processes in test_cli_real.py."""

from __future__ import annotations

from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

from .conftest import IMG, ROOT, ident, run

DISK = "file:" + IMG.format("alice-db")


def test_getlabel_of_a_single_resource_and_its_record(demo):
    r = run(demo, ROOT, "getlabel", domain=IMG.format("alice-db"), resource=True)
    assert r.ok and r.data["display"] is None and r.data["object"] == DISK
    assert r.data["record"] == {"type": 1, "label": "demo.hosting:__UNLABELED__"}
    assert run(demo, ROOT, "setlabel", domain=DISK, label="res_AliceData", resource=True).ok
    r = run(demo, ROOT, "getlabel", domain=IMG.format("alice-db"), resource=True)
    assert r.data["display"] == "ACM:demo.hosting:res_AliceData"
    assert r.data["record"] == {"type": 1, "label": "demo.hosting:res_AliceData"}


def test_vm_getlabel_carries_the_seed_record(demo):
    assert run(demo, ROOT, "setlabel", domain="alice-db", label="dom_AliceCorp").ok
    data = run(demo, ROOT, "getlabel", domain="alice-db").data
    assert data["display"] == "ACM:demo.hosting:dom_AliceCorp"  # the string stays
    assert data["record"] == {"type": 1, "label": "demo.hosting:dom_AliceCorp"}
    assert demo.acm.host.vm_get_label_record("alice-db") == data["record"]


def test_rmlabel_vm_only_while_not_running_and_only_if_labelled(demo):
    r = run(demo, ROOT, "rmlabel", domain="alice-db")
    assert r.status == EXIT_FAILED and "no label" in r.message
    assert run(demo, ROOT, "setlabel", domain="alice-db", label="dom_AliceCorp").ok
    r = run(demo, ROOT, "rmlabel", domain="alice-db")
    assert r.ok, r.message
    assert demo.acm.vm_label("alice-db") == "ACM:demo.hosting:__UNLABELED__"
    # a running VM keeps its label (Xen: HALTED or SUSPENDED only)
    assert run(demo, ROOT, "destroy", domain="shared-dns").ok
    assert run(demo, ROOT, "setlabel", domain="shared-dns", label="SystemManagement").ok
    assert run(demo, ROOT, "start", domain="shared-dns").ok
    r = run(demo, ROOT, "rmlabel", domain="shared-dns")
    assert r.status == EXIT_FAILED and "running" in r.message
    assert demo.acm.vm_label("shared-dns").endswith(":SystemManagement")


def test_rmlabel_resource_refused_while_in_use(demo):
    disk = "file:" + IMG.format("shared-dns")
    r = run(demo, ROOT, "rmlabel", domain=disk, resource=True)
    assert r.status == EXIT_FAILED and "not labeled" in r.message
    assert run(demo, ROOT, "destroy", domain="shared-dns").ok
    assert run(demo, ROOT, "setlabel", domain=disk, label="__UNLABELED__", resource=True).ok
    assert run(demo, ROOT, "start", domain="shared-dns").ok
    r = run(demo, ROOT, "rmlabel", domain=disk, resource=True)
    assert r.status == EXIT_FAILED and "in use" in r.message
    assert run(demo, ROOT, "destroy", domain="shared-dns").ok
    assert run(demo, ROOT, "rmlabel", domain=disk, resource=True).ok
    assert demo.acm.host.resource_get_label(disk) is None


def test_taking_a_label_away_needs_the_grant_that_lists_it(demo):
    """alice's WebTeam may set dom_AliceCorp only: she may remove that, not root's label."""
    alice = ident("alice")
    assert run(demo, ROOT, "setlabel", domain="alice-db", label="SystemManagement").ok
    r = run(demo, alice, "rmlabel", domain="alice-db")
    assert r.status == EXIT_DENIED, r.message
    assert demo.acm.vm_label("alice-db").endswith(":SystemManagement")
    r = run(demo, ROOT, "relabel", domain="alice-db", label="dom_AliceCorp")
    assert r.ok, r.message
    r = run(demo, alice, "rmlabel", domain="alice-db")
    assert r.ok, r.message
    # no role on resources: refused, audited, nothing changed
    assert run(demo, ROOT, "setlabel", domain=DISK, label="res_AliceData", resource=True).ok
    r = run(demo, alice, "rmlabel", domain=DISK, resource=True)
    assert r.status == EXIT_DENIED
    assert demo.acm.host.resource_get_label(DISK) == "ACM:demo.hosting:res_AliceData"


def test_vif_labels_set_get_remove(demo):
    # alice-web has one interface; vif-0 takes a resource label while the VM is stopped
    assert run(demo, ROOT, "destroy", domain="alice-web").ok
    r = run(demo, ROOT, "setlabel", domain="alice-web", vif="0", label="res_AliceData")
    assert r.ok, r.message
    got = run(demo, ROOT, "getlabel", domain="alice-web", vif="0").data
    assert got["display"] == "ACM:demo.hosting:res_AliceData" and got["kind"] == "vif"
    assert got["record"] == {"type": 1, "label": "demo.hosting:res_AliceData"}
    # the VIF's label takes part in the start checks: AliceData's type for an unlabeled VM
    dry = run(demo, ROOT, "dry-run", domain="alice-web").data
    assert any(it["item"] == "resource vif-0" and not it["allowed"] for it in dry["items"])
    r = run(demo, ROOT, "setlabel", domain="alice-web", vif="7", label="res_AliceData")
    assert r.status == EXIT_FAILED and "vif-7 does not exist" in r.message
    r = run(demo, ROOT, "setlabel", domain="alice-web", vif="x", label="res_AliceData")
    assert r.status == EXIT_USAGE
    r = run(demo, ident("alice"), "setlabel", domain="alice-web", vif="0", label="res_BobData")
    assert r.status == EXIT_DENIED
    assert run(demo, ROOT, "rmlabel", domain="alice-web", vif="0").ok
    assert run(demo, ROOT, "getlabel", domain="alice-web", vif="0").data["display"] is None


def test_policy_labels_have_kind_and_types(demo):
    data = run(demo, ROOT, "policy-labels", type="any").data
    recs = {(r["type"], r["name"]): r for r in data["records"]}
    assert recs[("vm", "dom_AliceCorp")]["stetypes"] == ["AliceCorp"]
    assert recs[("vm", "dom_AliceCorp")]["chwalltypes"] == ["AliceCorp"]
    assert recs[("res", "res_BobData")]["stetypes"] == ["BobCorp"]
    assert "dom_AliceCorp" in data["labels"]  # names too, for svirsh labels
    vm_only = run(demo, ROOT, "policy-labels", type="vm").data["records"]
    assert {r["type"] for r in vm_only} == {"vm"}
    assert run(demo, ROOT, "policy-labels", type="res").status == EXIT_OK
