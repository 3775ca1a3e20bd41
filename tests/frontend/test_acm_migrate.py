"""Migration under sHype/ACM: the destination's policy, resource labels and running domains
decide before the domain runs there (between two libvirt test-driver connections)."""

from __future__ import annotations

import dataclasses

import policy
from policy.xsm import XsmHost
from secured_virt.requests import EXIT_DENIED, Request
from secured_virt.service import Service

from .conftest import REPO, ROOT, write_root_file

DEMO = REPO / "etc" / "demo"
DISK = "/var/lib/libvirt/images/alice-web.qcow2"
NS = "https://secured-virt.org/xmlns/svirt/1"


def dest_node(tmp_path, tenant_label: str | None):
    meta = ""
    if tenant_label:
        meta = (
            f"<metadata><svirt:vm xmlns:svirt='{NS}'><svirt:label policy='demo.hosting' "
            f"name='{tenant_label}'/></svirt:vm></metadata>"
        )
    return write_root_file(
        tmp_path / "dest-node.xml",
        (
            "<node><domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            f"<name>tenant-b</name>{meta}<memory>65536</memory><os><type>hvm</type></os>"
            "<test:runstate>1</test:runstate></domain></node>"
        ),
    )


def setup(svt_env, tmp_path, tenant_label):
    node = dest_node(tmp_path, tenant_label)
    dest_uri = f"test://{node}"
    dest_dir = tmp_path / "dest-acm"
    peer = XsmHost(dest_dir)
    xml = (DEMO / "acm-policy-host2.xml").read_bytes()
    assert peer.set_policy(xml, policy.XS_INST_LOAD | policy.XS_INST_BOOT, True).xserr == 0
    peer.resource_set_label(DISK, "res_AliceData")
    cfg = dataclasses.replace(
        svt_env,
        acm=True,
        acm_state_dir=str(tmp_path / "acm"),
        acm_peers=((dest_uri, str(dest_dir)),),
    )
    svc = Service.from_config(cfg)
    st = svc.acm.host.set_policy((DEMO / "acm-policy.xml").read_bytes(), policy.XS_INST_LOAD, True)
    assert st.xserr == 0, st.message
    svc.backend.destroy("alice-web")
    for args in (
        {"domain": "alice-web", "label": "dom_AliceCorp"},
        {"domain": DISK, "label": "res_AliceData", "resource": True},
    ):
        assert svc.handle(ROOT, Request("setlabel", args)).ok
    assert svc.handle(ROOT, Request("start", {"domain": "alice-web"})).ok
    return svc, dest_uri


def test_migration_refused_by_the_destinations_chinese_wall(svt_env, tmp_path):
    svc, dest = setup(svt_env, tmp_path, "dom_BobCorp")
    r = svc.handle(ROOT, Request("migrate", {"domain": "alice-web", "desturi": dest}))
    assert r.status == EXIT_DENIED and r.check == "acm"
    assert "at the destination" in r.message and "Competitors" in r.message
    assert svc.backend.lookup("alice-web").state == "running"  # still here


def test_migration_admitted_and_the_domain_runs_there(svt_env, tmp_path):
    svc, dest = setup(svt_env, tmp_path, None)
    r = svc.handle(ROOT, Request("migrate", {"domain": "alice-web", "desturi": dest}))
    assert r.ok, r.message
    assert svc.backend.lookup("alice-web").state != "running"


def test_unknown_destination_is_refused(svt_env, tmp_path):
    svc, _dest = setup(svt_env, tmp_path, None)
    other = f"test://{tmp_path / 'nowhere.xml'}"
    r = svc.handle(ROOT, Request("migrate", {"domain": "alice-web", "desturi": other}))
    assert r.status == EXIT_DENIED and "acm_peers" in r.message
