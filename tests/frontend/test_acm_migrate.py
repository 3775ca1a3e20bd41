"""Migration under sHype/ACM: the destination's policy, resource labels and running domains
decide before the domain runs there (between two libvirt test-driver connections)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import policy
from policy.xsm import XsmHost
from secured_virt.requests import EXIT_DENIED, Request
from secured_virt.service import Service

from .conftest import REPO, ROOT, ident, write_root_file

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


def test_a_tenant_refused_at_the_destination_does_not_learn_what_runs_there(svt_env, tmp_path):
    """alice may migrate alice-web; the destination's Chinese Wall refuses it because tenant-b
    (BobCorp) runs there.  alice is told the conflict, not the other host's VM or its label;
    the audit keeps them."""
    pa = Path(svt_env.pa)
    write_root_file(
        pa,
        pa.read_text().replace(
            '<operation id="6"/>', '<operation id="6"/><operation name="migrate"/>', 1
        ),
    )
    svc, dest = setup(svt_env, tmp_path, "dom_BobCorp")
    r = svc.handle(ident("alice"), Request("migrate", {"domain": "alice-web", "desturi": dest}))
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert "Competitors" in r.message and f"held by a running domain on {dest}" in r.message
    assert "tenant-b" not in r.message and "dom_BobCorp" not in r.message
    with open(svc.config.audit_log) as fh:
        last = [json.loads(x) for x in fh if '"op":"migrate"' in x][-1]
    assert last["user"] == "alice" and "'tenant-b'" in last["rule"]
    root = svc.handle(ROOT, Request("migrate", {"domain": "alice-web", "desturi": dest}))
    assert "'tenant-b'" in root.message


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
