"""The libvirt backend against a real libvirtd + QEMU (TCG) with a 32 MiB diskless guest."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from secured_virt.backends import BackendError, NoSuchDomain
from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.testing.libvirtd import qemu_processes, tiny_guest_xml

from .conftest import SVIRT_NS, wait_until

pytestmark = pytest.mark.integration

GUEST = "svt-it-guest"


@pytest.fixture
def qemu(libvirtd):
    backend = LibvirtBackend(libvirtd.uri)
    _cleanup(backend)
    yield backend
    _cleanup(backend)
    backend.close()


def _cleanup(backend):
    try:
        info = backend.lookup(GUEST)
    except NoSuchDomain:
        return
    if info.active:
        backend.destroy(GUEST)
    if info.persistent:
        backend.undefine(GUEST)


def test_guest_life_cycle_on_real_qemu(qemu, no_stderr):
    assert qemu.define(tiny_guest_xml(GUEST)) == GUEST
    assert qemu.lookup(GUEST).state == "shut off"
    assert qemu_processes(GUEST) == []

    qemu.start(GUEST)
    info = qemu.lookup(GUEST)
    assert info.state == "running" and info.id is not None
    assert info.max_mem_kib == 32 * 1024 and info.vcpus == 1 and info.os_type == "hvm"
    assert qemu_processes(GUEST), "no qemu-system-x86_64 process for the running guest"
    assert GUEST in [d.name for d in qemu.list_domains()]

    with pytest.raises(BackendError, match=f"domain '{GUEST}' is already running"):
        qemu.start(GUEST)

    qemu.suspend(GUEST)
    assert qemu.lookup(GUEST).state == "paused"
    qemu.resume(GUEST)
    assert qemu.lookup(GUEST).state == "running"
    with pytest.raises(BackendError, match=f"domain '{GUEST}' is not paused"):
        qemu.resume(GUEST)
    assert qemu.lookup(GUEST).state == "running"

    qemu.destroy(GUEST)
    assert qemu.lookup(GUEST).state == "shut off"
    assert wait_until(lambda: qemu_processes(GUEST) == [], timeout=20.0), (
        "qemu process survived destroy"
    )
    with pytest.raises(BackendError, match=f"domain '{GUEST}' is not running"):
        qemu.destroy(GUEST)

    qemu.undefine(GUEST)
    with pytest.raises(NoSuchDomain):
        qemu.lookup(GUEST)


def test_metadata_survives_save_and_restore_on_qemu(qemu, tmp_path):
    qemu.define(tiny_guest_xml(GUEST))
    qemu.start(GUEST)
    frag = (
        f'<svirt:vm xmlns:svirt="{SVIRT_NS}"><svirt:owner>alice</svirt:owner>'
        '<svirt:label policy="example" name="dom_Fun"/></svirt:vm>'
    )
    qemu.set_metadata(GUEST, frag, "svirt", SVIRT_NS)
    image = tmp_path / "guest.save"
    qemu.save(GUEST, str(image))
    assert qemu.lookup(GUEST).state == "shut off"
    assert wait_until(lambda: qemu_processes(GUEST) == [], timeout=20.0)

    root = etree.fromstring(qemu.saved_image_xml(str(image)).encode())
    assert root.findtext("name") == GUEST
    lab = root.find(f"metadata/{{{SVIRT_NS}}}vm/{{{SVIRT_NS}}}label")
    assert lab is not None and lab.get("name") == "dom_Fun"

    assert qemu.restore(str(image)) == GUEST
    assert qemu.lookup(GUEST).state == "running"
    assert qemu_processes(GUEST)
    back = etree.fromstring(qemu.get_metadata(GUEST, SVIRT_NS).encode())
    assert back.findtext(f"{{{SVIRT_NS}}}owner") == "alice"


def test_console_stream_opens_on_qemu(qemu):
    import libvirt

    qemu.create(tiny_guest_xml(GUEST))
    stream = qemu.open_console(GUEST)
    assert isinstance(stream, libvirt.virStream)
    stream.abort()
    qemu.destroy(GUEST)
    with pytest.raises(NoSuchDomain):  # transient: gone after destroy
        qemu.lookup(GUEST)


def test_config_changes_on_qemu(qemu):
    qemu.define(tiny_guest_xml(GUEST))
    qemu.setmaxmem(GUEST, 64 * 1024)
    qemu.setmem(GUEST, 48 * 1024, live=False, config=True)
    info = qemu.lookup(GUEST)
    assert info.max_mem_kib == 64 * 1024 and info.mem_kib == 48 * 1024
    # a disk whose file does not exist: QEMU refuses at start, and the message names it
    qemu.attach_disk(GUEST, "/nonexistent/disk.img", "vdb", live=False, config=True)
    assert "/nonexistent/disk.img" in qemu.disk_sources(GUEST)
    with pytest.raises(BackendError) as ei:
        qemu.start(GUEST)
    assert ei.value.code == "operation-failed"
    assert "/nonexistent/disk.img" in str(ei.value)
    qemu.detach_disk(GUEST, "vdb", live=False, config=True)
    assert qemu.disk_sources(GUEST) == []


def test_migrating_to_the_same_host_is_refused_clearly(qemu, libvirtd):
    qemu.define(tiny_guest_xml(GUEST))
    qemu.start(GUEST)
    with pytest.raises(BackendError) as ei:
        qemu.migrate(GUEST, libvirtd.uri, live=True)
    assert str(ei.value).startswith(f"cannot migrate domain '{GUEST}':")
    assert qemu.lookup(GUEST).state == "running"


def test_live_disk_attach_on_running_qemu(qemu):
    images = Path("/var/lib/libvirt/images")  # traversable by the libvirt-qemu user
    images.mkdir(parents=True, exist_ok=True)
    disk = images / f"{GUEST}-extra.img"
    disk.write_bytes(b"\0" * (1024 * 1024))
    try:
        qemu.create(tiny_guest_xml(GUEST))
        qemu.attach_disk(GUEST, str(disk), "vdb", subdriver="raw")  # live
        assert str(disk) in qemu.disk_sources(GUEST)
        with pytest.raises(BackendError) as ei:
            qemu.attach_disk(GUEST, str(images), "vdc", subdriver="raw")
        assert ei.value.code == "operation-failed"
        assert str(ei.value).startswith(f"cannot attach a disk to domain '{GUEST}': ")
        qemu.destroy(GUEST)
    finally:
        disk.unlink()
