"""Review findings on the use-case layer: what a non-root caller could make the root front-end
do beyond what was checked (metadata forged through define/create XML, labels dropped by a
redefinition, migration destinations the root daemon would open for them)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import policy
from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Request
from secured_virt.service import Service

from .conftest import REPO, ROOT, ident, write_root_file

NS = "https://secured-virt.org/xmlns/svirt/1"
DEMO_POLICY = REPO / "etc" / "demo" / "acm-policy.xml"

PA = """<RolePolicyDefinition>
  <Role name="WebTeam">
    <ManageVM type="individual"><VM name="alice-web"/><VM name="alice-new"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="dominfo"/><operation name="getlabel"/>
      <operation name="start"/><operation name="destroy"/><operation name="define"/>
      <operation name="create"/><operation name="migrate"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""
UA = """<UserConfiguration>
  <User name="alice"><UserRole role="WebTeam"/></User>
</UserConfiguration>"""


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


def records(cfg):
    with open(cfg.audit_log) as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture
def env(svt_env):
    write_root_file(Path(svt_env.pa), PA)
    write_root_file(Path(svt_env.ua), UA)
    return svt_env


@pytest.fixture
def svc(env):
    return Service.from_config(env)


def forged(name: str, tag: str = "note") -> str:
    """A domain whose <metadata> carries an element of ours that is not named <vm>."""
    return (
        f"<domain type='test'><name>{name}</name><memory>1024</memory>"
        "<os><type>hvm</type></os>"
        f"<metadata><x:{tag} xmlns:x='{NS}'><x:owner>bob</x:owner>"
        "<x:label policy='demo.hosting' name='dom_BobCorp'/></x:" + tag + "></metadata>"
        "</domain>"
    )


@pytest.mark.parametrize("command", ["define", "create"])
def test_user_cannot_claim_owner_or_label_through_any_element_of_our_namespace(svc, command):
    alice = ident("alice")
    r = run(svc, alice, command, xml=forged("alice-new"), file="f.xml")
    assert r.status == EXIT_OK, r.message
    info = run(svc, ROOT, "dominfo", domain="alice-new").data
    assert info["owner"] == "alice"
    assert info["security"] is None  # no label: labels come from setlabel only
    assert run(svc, ROOT, "getlabel", domain="alice-new").data["label"] is None


def acm_env(env, tmp_path):
    """demo.hosting loaded; alice-web is AliceCorp (shut off), bob-build BobCorp (running)."""
    cfg = dataclasses.replace(env, acm=True, acm_state_dir=str(tmp_path / "acm"))
    svc = Service.from_config(cfg)
    for name in ("alice-web", "carol-lab", "shared-dns"):
        svc.backend.destroy(name)
    st = svc.acm.host.set_policy(
        DEMO_POLICY.read_bytes(), policy.XS_INST_LOAD | policy.XS_INST_BOOT, True
    )
    assert st.xserr == 0, st.message
    svc.backend.destroy("bob-build")
    for vm, label, res in (
        ("alice-web", "dom_AliceCorp", "res_AliceData"),
        ("bob-build", "dom_BobCorp", "res_BobData"),
    ):
        r = run(svc, ROOT, "setlabel", domain=vm, label=label)
        assert r.ok, r.message
        disks, _n = vmmeta.domain_devices(svc.backend.dumpxml(vm, inactive=True))
        for disk in disks:
            r = run(svc, ROOT, "setlabel", domain=disk, label=res, resource=True)
            assert r.ok, r.message
    assert run(svc, ROOT, "start", domain="bob-build").ok
    return svc


def test_redefining_a_vm_keeps_its_label_and_owner(env, tmp_path):
    svc = acm_env(env, tmp_path)
    xml = svc.backend.dumpxml("alice-web", inactive=True)
    for who in (ident("alice"), ROOT):
        r = run(svc, who, "define", xml=xml, file="alice-web.xml")
        assert r.status == EXIT_OK, r.message
        sec = run(svc, ROOT, "dominfo", domain="alice-web").data
        assert sec["security"]["label"] == "dom_AliceCorp"
        assert sec["owner"] == "alice"
    # and so the Chinese Wall still applies to it
    r = run(svc, ident("alice"), "start", domain="alice-web")
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert svc.backend.lookup("alice-web").state == "shut off"


def test_create_from_xml_cannot_shed_the_label_of_an_existing_vm(env, tmp_path):
    svc = acm_env(env, tmp_path)
    xml = svc.backend.dumpxml("alice-web", inactive=True)
    r = run(svc, ident("alice"), "create", xml=xml, file="alice-web.xml")
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert "Competitors" in r.message
    assert svc.backend.lookup("alice-web").state == "shut off"


SECRET = "root:$6$not-for-alice:19000:0:99999:7:::"


@pytest.mark.parametrize(
    "dest",
    [
        "test://{secret}",  # the test driver would read the file as root (and quote line 1)
        "test+ext:///default?command={script}",  # libvirt would run the command as root
        "qemu+ssh://elsewhere/system?keyfile=/root/.ssh/id_rsa",
        "qemu+unix:///system?socket=/run/other.sock",
    ],
)
def test_users_migration_destination_cannot_make_root_open_files_or_run_programs(
    svc, env, tmp_path, dest
):
    secret = write_root_file(tmp_path / "secret", SECRET + "\n", 0o600)
    marker = tmp_path / "ran"
    script = write_root_file(tmp_path / "x.sh", f"#!/bin/sh\ntouch {marker}\n", 0o755)
    dest = dest.format(secret=secret, script=script)
    r = run(svc, ident("alice"), "migrate", domain="alice-web", desturi=dest)
    assert r.status == EXIT_USAGE, r.message
    assert "not-for-alice" not in r.message and not marker.exists()
    assert "acm_peers" in r.message
    assert svc.backend.lookup("alice-web").state == "running"
    dec, out = records(env)[-2:]
    assert dec["op"] == "migrate" and dec["user"] == "alice"
    assert out["ref"] == dec["seq"] and "is not one the administrator listed" in out["outcome"]


def test_root_and_listed_destinations_still_migrate(env, tmp_path):
    node = tmp_path / "dest.xml"
    write_root_file(
        node,
        "<node><domain type='test'><name>other</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain></node>",
    )
    dest = f"test://{node}"
    cfg = dataclasses.replace(env, acm_peers=((dest, str(tmp_path / "peer-acm")),))
    svc = Service.from_config(cfg)
    r = run(svc, ident("alice"), "migrate", domain="alice-web", desturi=dest)
    assert r.status == EXIT_OK, r.message
    r = run(svc, ROOT, "migrate", domain="bob-build", desturi=dest)
    assert r.status == EXIT_OK, r.message


def test_a_vm_replaced_between_check_and_action_is_not_touched(svc, env):
    """alice's start is checked against alice-web; if the VM is undefined and another defined
    under that name before the action, the action must not start the replacement."""
    be = svc.backend
    run(svc, ROOT, "destroy", domain="alice-web")
    checked = be.lookup("alice-web").uuid
    replacement = (
        "<domain type='test'><name>alice-web</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    real_authorize = svc.gate.authorize

    def authorize_then_race(*a, **kw):
        v = real_authorize(*a, **kw)
        be.undefine("alice-web")  # another root session, right after the decision
        be.define(replacement)
        return v

    svc.gate.authorize = authorize_then_race
    r = run(svc, ident("alice"), "start", domain="alice-web")
    assert r.status != EXIT_OK
    assert f"no longer the VM with UUID {checked}" in r.message
    now = be.lookup("alice-web")
    assert now.uuid != checked and now.state == "shut off"
    last = records(env)[-1]
    assert last["op"] == "start" and last["outcome"].startswith("error")
    assert f"no longer the VM with UUID {checked}" in last["outcome"]
