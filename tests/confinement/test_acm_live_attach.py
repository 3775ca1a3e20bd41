"""Issue 14 item 5: the sHype/ACM Simple Type Enforcement was bypassed by a live attach.

The attack: a guest labelled dom_AliceCorp cannot start with a res_BobData disk, but it started
without it and ``attach-disk ... --live`` then gave the running QEMU Bob's disk: attach was not
mediated, and the ACM sync read the *inactive* XML, so a disk attached live was invisible to
every later check.  Now attach is mediated (the new disk against the VM's current label, under
the host-wide lock), and the sync reads a running domain's live XML.

Real libvirtd + QEMU (TCG), a real running guest, real image files.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import ROOT, acm_service, host_config, ident, last_decision, pa_xml, run

from secured_virt.backends.factory import open_backend
from secured_virt.requests import EXIT_DENIED, EXIT_OK
from secured_virt.testing.libvirtd import remove_guests, tiny_guest_xml

pytestmark = pytest.mark.integration


@pytest.fixture
def guest(libvirtd, tmp_path):
    vm = f"svt-live-{uuid.uuid4().hex[:6]}"
    images = Path(tempfile.mkdtemp(prefix="svt-live-img.", dir="/tmp"))
    images.chmod(0o755)  # QEMU (libvirt-qemu) must reach the images
    for name in ("alice.img", "bob.img"):
        with open(images / name, "wb") as fh:
            fh.truncate(1024 * 1024)
    be = open_backend("libvirt", "qemu:///system")
    be.define(tiny_guest_xml(vm))
    cfg = host_config(tmp_path, uri="qemu:///system", pa=pa_xml((vm,)), disk_dirs=(str(images),))
    svc = acm_service(cfg, stop_running=False)  # other guests on this host keep running
    assert run(svc, ROOT, "setlabel", domain=vm, label="dom_AliceCorp").ok
    for img, label in (("alice.img", "res_AliceData"), ("bob.img", "res_BobData")):
        r = run(svc, ROOT, "setlabel", domain=f"file:{images / img}", label=label, resource=True)
        assert r.ok, r.message
    yield svc, vm, images
    remove_guests(be, [vm])
    be.close()
    shutil.rmtree(images, ignore_errors=True)


def live_xml(svc, vm) -> str:
    return svc.backend.dumpxml(vm, inactive=False)


def test_live_attach_of_another_tenants_disk_is_refused(guest):
    svc, vm, images = guest
    alice = ident("alice")
    assert run(svc, alice, "start", domain=vm).status == EXIT_OK
    bob_img = str(images / "bob.img")
    r = run(svc, alice, "attach-disk", domain=vm, source=bob_img, target="vdb", live=True)
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert "res_BobData" in r.message and "AliceCorp" in r.message
    assert bob_img not in live_xml(svc, vm)  # QEMU never got it
    rec = last_decision(svc.config, "attach-disk")
    assert rec["verdict"] == "denied" and rec["check"] == "acm"
    # root is subject to the mandatory policy as well
    r = run(svc, ROOT, "attach-disk", domain=vm, source=bob_img, target="vdb", live=True)
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    # and --config (for the next start) is refused just the same
    r = run(svc, alice, "attach-disk", domain=vm, source=bob_img, target="vdb", config=True)
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert bob_img not in svc.backend.dumpxml(vm, inactive=True)


def test_a_disk_attached_live_counts_in_every_later_check(guest):
    """The ACM state is rebuilt from the live XML: a disk in the running QEMU only still
    binds the VM's label (relabelling it to a type the disk lacks is refused)."""
    svc, vm, images = guest
    alice = ident("alice")
    assert run(svc, alice, "start", domain=vm).ok
    alice_img = str(images / "alice.img")
    r = run(svc, alice, "attach-disk", domain=vm, source=alice_img, target="vdb", live=True)
    assert r.status == EXIT_OK, r.message
    assert alice_img in live_xml(svc, vm)
    assert alice_img not in svc.backend.dumpxml(vm, inactive=True)  # live only
    with svc.acm.exclusive():
        running = svc.acm.host.mediator.running()
    assert any(alice_img in str(res) for res in running[vm].resources), running[vm]
    r = run(svc, ROOT, "relabel", domain=vm, label="dom_BobCorp")
    assert r.status == EXIT_DENIED, r.message
    assert svc.acm.vm_label(vm).endswith(":dom_AliceCorp")
