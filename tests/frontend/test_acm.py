"""sHype/ACM enforcement on real (test-driver) domains: Chinese Wall, STE on disks, labels that
travel through save images and get the local ssidref on the restoring host."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest

import policy
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Request
from secured_virt.service import Service

from .conftest import ROOT, ident

CLIENT = policy.examples()["example.client_v1"]
IMG = "/var/lib/libvirt/images/{}.qcow2"


RUNNING = ("alice-web", "bob-build", "carol-lab", "shared-dns")


def acm_service(cfg, state_dir, policy_xml: bytes | None = None) -> Service:
    """A host with sHype/ACM on: its running (unlabeled) guests are stopped first, since
    example.client_v1 has no __UNLABELED__ label for them, then the policy is loaded through
    the same request root would use."""
    svc = Service.from_config(dataclasses.replace(cfg, acm=True, acm_state_dir=str(state_dir)))
    for name in RUNNING:
        svc.backend.destroy(name)
    if policy_xml is not None:
        r = run(svc, ROOT, "policy-load", xml=policy_xml.decode(), boot=True, overwrite=True)
        assert r.ok, r.message
    return svc


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


@pytest.fixture
def svc(svt_env, tmp_path):
    s = acm_service(svt_env, tmp_path / "acm", CLIENT.read_bytes())
    label_domains(s)
    return s


def label_domains(s):
    """alice-db: HomeBanking (Sensitive), carol-lab: Fun (Distrusted) — one conflict set."""
    assert run(s, ROOT, "setlabel", domain="alice-db", label="dom_HomeBanking").ok
    assert run(s, ROOT, "setlabel", domain="carol-lab", label="dom_Fun").ok
    for vm, res in (
        ("alice-db", "res_LogicalDiskPartition1(hda1)"),
        ("carol-lab", "res_LogicalDiskPartition2(hda2)"),
    ):
        r = run(s, ROOT, "setlabel", domain=IMG.format(vm), label=res, resource=True)
        assert r.ok, r.message
    r = run(
        s,
        ROOT,
        "setlabel",
        domain="phy:/dev/vg0/alice-db-data",
        label="res_LogicalDiskPartition1(hda1)",
        resource=True,
    )
    assert r.ok, r.message


def test_chinese_wall_conflict_refused_naming_set_and_domain(svc):
    assert run(svc, ident("alice"), "start", domain="alice-db").status == EXIT_OK
    r = run(svc, ROOT, "start", domain="carol-lab")
    assert r.status == EXIT_DENIED and r.check == "acm"
    assert "Protection1" in r.message and "alice-db" in r.message
    assert svc.backend.lookup("carol-lab").state == "shut off"
    # destroy releases the types exactly: now the other side of the wall may run
    assert run(svc, ROOT, "destroy", domain="alice-db").ok
    assert run(svc, ROOT, "start", domain="carol-lab").ok


def test_starting_a_running_domain_is_a_failure_not_an_acm_denial(svc, svt_env):
    import json

    assert run(svc, ident("alice"), "start", domain="alice-db").ok
    r = run(svc, ident("alice"), "start", domain="alice-db")
    assert r.status == EXIT_FAILED and r.check == "state"  # as without ACM: exit 1
    assert r.message.startswith("domain 'alice-db' is already running")
    with open(svt_env.audit_log) as fh:
        rec = json.loads(fh.read().splitlines()[-1])
    assert rec["verdict"] == "denied" and rec["check"] == "state" and rec["outcome"] == "not-run"


def test_rbac_denial_comes_before_acm(svc):
    assert run(svc, ident("alice"), "start", domain="alice-db").ok
    r = run(svc, ident("bob"), "start", domain="carol-lab")
    assert r.status == EXIT_DENIED and r.check == "rbac"


def test_disk_with_wrong_label_is_refused(svc):
    disk = IMG.format("alice-web")
    assert run(svc, ROOT, "setlabel", domain="alice-web", label="dom_HomeBanking").ok
    r = run(svc, ROOT, "setlabel", domain=disk, label="res_ManagementResource", resource=True)
    assert r.ok, r.message
    r = run(svc, ROOT, "start", domain="alice-web")
    assert r.status == EXIT_DENIED and r.check == "acm"
    assert "alice-web.qcow2" in r.message and "res_ManagementResource" in r.message
    dry = run(svc, ROOT, "dry-run", domain="alice-web")
    assert dry.ok and dry.data["allowed"] is False
    assert any(not it["allowed"] and "qcow2" in it["item"] for it in dry.data["items"])


def test_list_label_and_dominfo_security_section(svc):
    run(svc, ROOT, "start", domain="alice-db")
    rows = {d["name"]: d for d in run(svc, ROOT, "list", all=True, label=True).data["domains"]}
    assert rows["alice-db"]["acm_label"] == "ACM:example.client_v1:dom_HomeBanking"
    assert rows["alice-web"]["acm_label"] == "ACM:example.client_v1:__UNLABELED__"
    sec = run(svc, ROOT, "dominfo", domain="carol-lab").data["security"]
    assert sec["label"] == "dom_Fun" and sec["policy"] == "example.client_v1"
    assert sec["ssidref"] == 196611  # the number in seed 001's example


def test_setlabel_rejects_unknown_label_and_running_domain(svc):
    r = run(svc, ROOT, "setlabel", domain="alice-web", label="dom_Nope")
    assert r.status == EXIT_USAGE and "dom_Nope" in r.message  # a label the policy lacks
    run(svc, ROOT, "start", domain="alice-db")
    r = run(svc, ROOT, "setlabel", domain="alice-db", label="dom_Fun")
    assert r.status == EXIT_FAILED and "relabel" in r.message


def test_relabel_running_domain_checked_against_the_wall(svc):
    assert run(svc, ROOT, "start", domain="alice-db").ok  # HomeBanking (Sensitive)
    assert run(svc, ROOT, "setlabel", domain="alice-web", label="dom_HomeBanking").ok
    run(
        svc,
        ROOT,
        "setlabel",
        domain=IMG.format("alice-web"),
        label="res_LogicalDiskPartition1(hda1)",
        resource=True,
    )
    assert run(svc, ROOT, "start", domain="alice-web").ok  # also Sensitive: no conflict
    r = run(svc, ROOT, "relabel", domain="alice-web", label="dom_Fun")  # Distrusted: refused
    assert r.status == EXIT_DENIED, r.message
    assert svc.acm.vm_label("alice-web").endswith(":dom_HomeBanking")


def test_save_restore_on_a_second_host_gets_its_local_ssidref(svc, svt_env, tmp_path):
    run(svc, ROOT, "start", domain="carol-lab")
    image = tmp_path / "carol.save"
    assert run(svc, ROOT, "save", domain="carol-lab", file=str(image)).ok
    first_ssidref = svc.acm.active.ssidref("dom_Fun")
    # host 2: same policy name, one more label sorting first, so every number moves
    xml = CLIENT.read_bytes().replace(
        b"<VirtualMachineLabel>",
        b"<VirtualMachineLabel><Name>dom_Aardvark</Name><SimpleTypeEnforcementTypes>"
        b"<Type>ste_DonatedCycles</Type></SimpleTypeEnforcementTypes>"
        b"<ChineseWallTypes><Type>cw_Isolated</Type></ChineseWallTypes></VirtualMachineLabel>"
        b"<VirtualMachineLabel>",
        1,
    )
    host2 = acm_service(svt_env, tmp_path / "acm2", xml)
    # resource labels are host-local: host 2's admin labels the disk there
    r = run(
        host2,
        ROOT,
        "setlabel",
        domain=IMG.format("carol-lab"),
        label="res_LogicalDiskPartition2(hda2)",
        resource=True,
    )
    assert r.ok, r.message
    r = run(host2, ROOT, "restore", file=str(image))
    assert r.ok, r.message
    sec = run(host2, ROOT, "dominfo", domain="carol-lab").data["security"]
    assert sec["label"] == "dom_Fun" and sec["ssidref"] != first_ssidref
    assert sec["ssidref"] == host2.acm.active.ssidref("dom_Fun")


def test_restore_under_a_policy_of_another_name_is_refused(svc, svt_env, tmp_path):
    run(svc, ROOT, "start", domain="carol-lab")
    image = tmp_path / "carol.save"
    assert run(svc, ROOT, "save", domain="carol-lab", file=str(image)).ok
    other = CLIENT.read_bytes().replace(b"example.client_v1", b"example.other")
    host3 = acm_service(svt_env, tmp_path / "acm3", other)
    r = run(host3, ROOT, "restore", file=str(image))
    assert r.status == EXIT_DENIED and r.check == "acm"
    assert "example.client_v1" in r.message


def test_concurrent_conflicting_starts_never_both_succeed(svt_env, tmp_path):
    """Many racing tries, two service instances (like svirtd and a direct svirsh) sharing one
    hypervisor connection and one ACM state directory."""
    a = acm_service(svt_env, tmp_path / "acm", CLIENT.read_bytes())
    label_domains(a)
    b = Service.from_config(dataclasses.replace(a.config), backend=a.backend)
    for _ in range(20):
        results = {}
        barrier = threading.Barrier(2)

        def go(svc, name, barrier=barrier, results=results):
            barrier.wait()
            results[name] = run(svc, ROOT, "start", domain=name).status

        ts = [
            threading.Thread(target=go, args=(a, "alice-db")),
            threading.Thread(target=go, args=(b, "carol-lab")),
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        running = {d.name for d in a.backend.list_domains()}
        assert not {"alice-db", "carol-lab"} <= running, results
        assert sorted(results.values()) == [EXIT_OK, EXIT_DENIED]
        for name in ("alice-db", "carol-lab"):
            if name in running:
                a.backend.destroy(name)


def test_acm_off_label_commands_explain(svt_env):
    svc = Service.from_config(svt_env)
    r = run(svc, ROOT, "labels")
    assert r.status == EXIT_FAILED and "acm = yes" in r.message
    assert os.path.exists(svt_env.ua)
