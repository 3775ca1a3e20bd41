"""Disks of non-root callers' domains come from the image directories only
(secured_virt.confinement.disks), through the
use-case layer: define, create and attach-disk, on the test driver."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from secured_virt.requests import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Request
from secured_virt.service import Service

from .conftest import ROOT, ident, write_root_file

PA = """<RolePolicyDefinition>
  <Role name="WebTeam">
    <ManageVM type="individual"><VM name="alice-web"/><VM name="alice-new"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="define"/><operation name="create"/><operation name="attach-disk"/>
      <operation name="dumpxml"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""
UA = """<UserConfiguration>
  <User name="alice"><UserRole role="WebTeam"/></User>
</UserConfiguration>"""


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture
def svc(svt_env, images):
    write_root_file(Path(svt_env.pa), PA)
    write_root_file(Path(svt_env.ua), UA)
    cfg = dataclasses.replace(svt_env, disk_dirs=(str(images),))
    s = Service.from_config(cfg)
    s.cfg_for_test = cfg
    return s


def domain(name: str, disk: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory>1024</memory>"
        "<os><type>hvm</type></os><devices>"
        f"<disk type='file' device='disk'><source file='{disk}'/><target dev='vda'/></disk>"
        "</devices></domain>"
    )


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


def outcomes(svc):
    with open(svc.cfg_for_test.audit_log) as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.parametrize("command", ["define", "create"])
def test_a_user_cannot_define_a_domain_on_a_host_file(svc, command):
    r = run(svc, ident("alice"), command, xml=domain("alice-new", "/etc/shadow"), file="a.xml")
    assert r.status == EXIT_USAGE
    assert "a.xml: line 1: disk vda: /etc/shadow is outside the image directories" in r.message
    assert run(svc, ROOT, "dominfo", domain="alice-new").status != EXIT_OK  # nothing defined


def test_a_user_may_define_a_domain_on_an_image_in_the_directories(svc, images):
    r = run(svc, ident("alice"), "define", xml=domain("alice-new", f"{images}/new.img"), file="a")
    assert r.status == EXIT_OK, r.message
    xml = run(svc, ROOT, "dumpxml", domain="alice-new", inactive=True).data["xml"]
    assert f"{images}/new.img" in xml


def test_root_acting_as_a_user_is_limited_like_the_user(svc):
    as_alice = dataclasses.replace(ROOT, requested_as="alice")
    r = run(svc, as_alice, "define", xml=domain("alice-new", "/etc/shadow"), file="a.xml")
    assert r.status == EXIT_USAGE and "outside the image directories" in r.message
    r = run(svc, ROOT, "define", xml=domain("alice-new", "/etc/shadow"), file="a.xml")
    assert r.status == EXIT_OK, r.message  # root as itself: its own host, its own rules


def test_attach_disk_outside_the_directories_is_refused_and_audited(svc, images):
    alice = ident("alice")
    r = run(svc, alice, "attach-disk", domain="alice-web", source="/dev/sda", target="vdz")
    assert r.status == EXIT_DENIED
    assert "attach-disk: disk vdz: /dev/sda is outside the image directories" in r.message
    last = outcomes(svc)[-1]
    assert last["op"] == "attach-disk" and "outside the image directories" in last["outcome"]
    xml = run(svc, ROOT, "dumpxml", domain="alice-web", inactive=True).data["xml"]
    assert "/dev/sda" not in xml and "vdz" not in xml
    # inside: attached
    r = run(
        svc,
        alice,
        "attach-disk",
        domain="alice-web",
        source=f"{images}/d.img",
        target="vdz",
        persistent=True,
    )
    assert r.status == EXIT_OK, r.message
    # and root attaches what it likes
    r = run(
        svc,
        ROOT,
        "attach-disk",
        domain="alice-web",
        source="/tmp/x.img",
        target="vdy",
        persistent=True,
    )
    assert r.status == EXIT_OK, r.message
