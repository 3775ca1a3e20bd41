"""Issue 14, item 13: a shared disk_dirs let any tenant define, attach or boot another
tenant's image.  An image (or any file in its backing chain) that a VM of another owner uses
is now refused unless the caller may define or attach-disk on that VM.

Two real users (svt-alice, svt-bob from the shared fixtures; a third, svt-carol, holds define
on every VM) through the use-case layer on the libvirt test driver: define, create and
attach-disk with bob's image, an overlay whose backing file is bob's image, and an image of a
VM root defined without an owner are refused for alice (exit 3, audited, the other VM not
named); her own images, reused, and carol's share are allowed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from fence_helpers import (
    ROOT,
    audit_records,
    domain_xml,
    file_disk,
    ident,
    needs_qemu_img,
    qcow2,
    run,
    service,
    svt_env,  # noqa: F401 - fixture
)

from secured_virt.requests import EXIT_DENIED, EXIT_OK

OPS = "".join(
    f"<operation name='{o}'/>" for o in ("define", "create", "attach-disk", "start", "dumpxml")
)
UA = (
    "<UserConfiguration>"
    "<User name='svt-alice'><UserRole role='Tenant'/></User>"
    "<User name='svt-bob'><UserRole role='Tenant'/></User>"
    "<User name='svt-carol'><UserRole role='ImageAdmin'/></User>"
    "</UserConfiguration>"
)
PA = (
    "<RolePolicyDefinition>"
    f"<Role name='Tenant'><ManageVM type='owned'/><ControlOperation><Accept>{OPS}"
    "</Accept></ControlOperation></Role>"
    "<Role name='ImageAdmin'><ManageVM type='all'/><ControlOperation><Accept>"
    "<operation name='define'/></Accept></ControlOperation></Role>"
    "</RolePolicyDefinition>"
)
REFUSED = "is in use by a VM you have no rights on"


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for n in ("bob.img", "alice.img", "root.img"):
        (d / n).write_bytes(b"\0" * 4096)
    return d


@pytest.fixture
def who(test_users):
    return {n: ident(n, uid=pw.pw_uid) for n, pw in test_users.items()}


@pytest.fixture
def svc(svt_env, images, who):  # noqa: F811
    s = service(svt_env, UA, PA, disk_dirs=(str(images),))
    r = run(s, who["svt-bob"], "define", xml=domain_xml("bob-vm", file_disk(images / "bob.img")))
    assert r.status == EXIT_OK, r.message
    return s


def _refused(svc, r, vm):
    assert r.status == EXIT_DENIED, r.message
    assert REFUSED in r.message and "bob-vm" not in r.message
    last = audit_records(svc)[-1]
    assert REFUSED in (last.get("outcome") or "")
    if vm:
        assert run(svc, ROOT, "dominfo", domain=vm).status != EXIT_OK


@pytest.mark.parametrize("command", ["define", "create"])
def test_alice_cannot_define_or_create_a_vm_on_bobs_image(svc, images, who, command):
    xml = domain_xml("alice-vm", file_disk(images / "bob.img"))
    _refused(svc, run(svc, who["svt-alice"], command, xml=xml, file="a.xml"), "alice-vm")


def test_a_symlink_to_bobs_image_is_the_same_image(svc, images, who):
    (images / "innocent.img").symlink_to(images / "bob.img")
    xml = domain_xml("alice-vm", file_disk(images / "innocent.img"))
    _refused(svc, run(svc, who["svt-alice"], "define", xml=xml), "alice-vm")


def test_alice_cannot_attach_bobs_image_to_her_vm(svc, images, who):
    alice = who["svt-alice"]
    xml = domain_xml("alice-vm", file_disk(images / "alice.img"))
    assert run(svc, alice, "define", xml=xml).status == EXIT_OK
    r = run(
        svc,
        alice,
        "attach-disk",
        domain="alice-vm",
        source=str(images / "bob.img"),
        target="vdb",
        persistent=True,
    )
    _refused(svc, r, None)
    dumped = run(svc, ROOT, "dumpxml", domain="alice-vm", inactive=True).data["xml"]
    assert "bob.img" not in dumped


@needs_qemu_img
def test_an_overlay_on_bobs_image_is_refused(svc, images, who):
    top = qcow2(images / "alice-over.qcow2", backing=images / "bob.img", backing_fmt="raw")
    xml = domain_xml("alice-vm", file_disk(top, fmt="qcow2"))
    _refused(svc, run(svc, who["svt-alice"], "define", xml=xml), "alice-vm")


def test_the_image_of_a_vm_root_defined_without_owner_is_refused(svc, images, who):
    xml = domain_xml("root-vm", file_disk(images / "root.img"))
    assert run(svc, ROOT, "define", xml=xml).status == EXIT_OK
    xml = domain_xml("alice-vm", file_disk(images / "root.img"))
    _refused(svc, run(svc, who["svt-alice"], "define", xml=xml), "alice-vm")


def test_root_acting_as_alice_is_refused_like_alice(svc, images):
    as_alice = dataclasses.replace(ROOT, requested_as="svt-alice")
    xml = domain_xml("alice-vm", file_disk(images / "bob.img"))
    _refused(svc, run(svc, as_alice, "define", xml=xml), "alice-vm")


def test_own_images_and_granted_shares_stay_allowed(svc, images, who):
    alice = who["svt-alice"]
    for vm in ("alice-vm", "alice-vm2"):  # one owner may use her image in two VMs
        xml = domain_xml(vm, file_disk(images / "alice.img"))
        r = run(svc, alice, "define", xml=xml)
        assert r.status == EXIT_OK, r.message
    # bob redefining his own VM keeps his image
    xml = run(svc, ROOT, "dumpxml", domain="bob-vm", inactive=True).data["xml"]
    r = run(svc, who["svt-bob"], "define", xml=xml)
    assert r.status == EXIT_OK, r.message
    # carol may define every VM, bob's included: sharing his image gives her nothing new
    xml = domain_xml("carol-vm", file_disk(images / "bob.img"))
    r = run(svc, who["svt-carol"], "define", xml=xml)
    assert r.status == EXIT_OK, r.message
    # and root as itself is not limited
    xml = domain_xml("root-vm", file_disk(images / "bob.img"))
    assert run(svc, ROOT, "define", xml=xml).status == EXIT_OK


@needs_qemu_img
def test_an_image_rewritten_to_back_onto_bobs_is_refused_at_start(svc, images, who):
    """Her guest can write her image: after define it rewrites the qcow2 header so that its
    backing file is bob's image.  The chain stays inside disk_dirs (the fence alone lets it
    through), so start must ask again whose files the disks reach, and refuse."""
    alice = who["svt-alice"]
    own = qcow2(images / "alice.qcow2")
    xml = domain_xml("alice-vm", file_disk(own, fmt="qcow2"))
    assert run(svc, alice, "define", xml=xml).status == EXIT_OK
    # what the guest writes into its own disk: a header naming bob's raw image as backing
    qcow2(own, backing=images / "bob.img", backing_fmt="raw")
    r = run(svc, alice, "start", domain="alice-vm")
    _refused(svc, r, None)
    assert run(svc, ROOT, "domstate", domain="alice-vm").data["state"] != "running"
    # her own overlay on her own base image still starts
    qcow2(images / "alice-base.qcow2")
    qcow2(own, backing=images / "alice-base.qcow2", backing_fmt="qcow2")
    assert run(svc, alice, "start", domain="alice-vm").status == EXIT_OK
