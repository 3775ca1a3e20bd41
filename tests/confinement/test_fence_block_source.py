"""Issue 14, item 2: host block devices in a user's VM through a decoy ``<source>`` attribute.

``<disk type='block'><source file='(inside disk_dirs)' dev='/dev/loop0'/>``: the fence used to
check ``file or dev`` while libvirt reads ``dev`` for a block disk, so the guest got the host
block device; the ACM resource check saw the decoy too.  Proven on real QEMU (qemu:///system):
libvirt keeps ``dev`` and QEMU opens the loop device; then the same XML from a non-root caller
is refused, and every other device kind with several source attributes is refused the same
way.  Reading a source (fence, ACM, backend reports) takes the attribute libvirt uses.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from fence_helpers import (
    ROOT,
    LoopDevice,
    domain_xml,
    forget_guests,
    ident,
    qemu_guest,
    qemu_opened,
    run,
    service,
    svt_env,  # noqa: F401 - fixture
)

from secured_virt.backends import domxml
from secured_virt.confinement import sources, vmmeta
from secured_virt.requests import EXIT_OK, EXIT_USAGE

UA = "<UserConfiguration><User name='alice'><UserRole role='Owner'/></User></UserConfiguration>"
PA = (
    "<RolePolicyDefinition><Role name='Owner'><ManageVM type='owned'/>"
    "<ControlOperation><Accept><operation name='define'/><operation name='create'/>"
    "<operation name='start'/><operation name='dumpxml'/></Accept></ControlOperation>"
    "</Role></RolePolicyDefinition>"
)


def block_decoy(image: Path, dev: str) -> str:
    return (
        f"<disk type='block' device='disk'><source file='{image}' dev='{dev}'/>"
        "<target dev='vda' bus='virtio'/></disk>"
    )


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    (d / "ok.img").write_bytes(b"\0" * 4096)
    return d


@pytest.fixture
def svc(svt_env, images):  # noqa: F811
    return service(svt_env, UA, PA, disk_dirs=(str(images),))


# -- the test driver: what a user may not write ----------------------------------------------
@pytest.mark.parametrize("command", ["define", "create"])
def test_a_block_disk_with_a_decoy_file_attribute_is_refused(svc, images, command):
    xml = domain_xml("alice-blk", block_decoy(images / "ok.img", "/dev/sda"))
    r = run(svc, ident("alice"), command, xml=xml, file="blk.xml")
    assert r.status == EXIT_USAGE, r.message
    assert "disk vda: its <source> also has file=" in r.message
    assert "it reads dev=" in r.message
    assert run(svc, ROOT, "dominfo", domain="alice-blk").status != EXIT_OK


def test_a_file_disk_with_a_decoy_dev_attribute_is_refused(svc, images):
    xml = domain_xml(
        "alice-f",
        f"<disk type='file'><source file='{images}/ok.img' dev='/dev/sda'/>"
        "<target dev='vda'/></disk>",
    )
    r = run(svc, ident("alice"), "define", xml=xml, file="f.xml")
    assert r.status == EXIT_USAGE and "also has dev=" in r.message


def test_a_block_disk_inside_the_directories_without_decoy_still_works(svc, images):
    xml = domain_xml(
        "alice-ok",
        f"<disk type='block'><source dev='{images}/ok.img'/><target dev='vda'/></disk>",
    )
    r = run(svc, ident("alice"), "define", xml=xml, file="ok.xml")
    assert r.status == EXIT_OK, r.message


@pytest.mark.parametrize(
    "device",
    [
        # interfaces: libvirt reads network= for type network, bridge= for type bridge
        "<interface type='network'><source network='default' bridge='br-host'/></interface>",
        "<interface type='bridge'><source bridge='br0' network='default'/></interface>",
        "<interface type='network'><source network='default' dev='eth0'/></interface>",
        # character devices: a pty takes no channel/host; spiceport takes no path
        "<serial type='pty'><source path='/dev/pts/9' host='127.0.0.1'/></serial>",
        "<channel type='spiceport'><source channel='org.x' path='/etc/shadow'/>"
        "<target type='virtio'/></channel>",
        # entropy source over a character device
        "<rng model='virtio'><backend model='egd' type='spicevmc'>"
        "<source path='/run/other.sock'/></backend></rng>",
        # input devices: a tablet has no source at all
        "<input type='tablet'><source evdev='/dev/input/event0'/></input>",
        # two <source> elements: libvirt uses one, a check might read the other
        "<disk type='file'><source file='IMG'/><source file='/etc/shadow'/>"
        "<target dev='vdb'/></disk>",
        # a <source> where no user device has one
        "<watchdog model='i6300esb'><source path='/dev/watchdog'/></watchdog>",
    ],
)
def test_every_device_kind_refuses_a_source_with_an_attribute_of_another_type(svc, images, device):
    xml = domain_xml("alice-dev", extra=device.replace("IMG", f"{images}/ok.img"))
    r = run(svc, ident("alice"), "define", xml=xml, file="d.xml")
    assert r.status == EXIT_USAGE, r.message
    assert "<source>" in r.message or "source" in r.message
    assert run(svc, ROOT, "dominfo", domain="alice-dev").status != EXIT_OK


def test_root_may_still_write_what_it_likes_but_every_reader_sees_what_libvirt_uses(svc, images):
    xml = domain_xml("root-blk", block_decoy(images / "ok.img", "/dev/loop7"))
    assert run(svc, ROOT, "define", xml=xml, file="r.xml").status == EXIT_OK
    # the sHype/ACM resource check and the backend's report name the device, not the decoy
    disks, _n = vmmeta.domain_devices(xml)
    assert disks == ["phy:/dev/loop7"]
    root = domxml.parse(xml)
    assert domxml.disk_sources(root) == ["/dev/loop7"]
    assert sources.disk_source(root.find("devices/disk")) == ("block", "/dev/loop7")


def test_the_backend_and_the_fence_read_disk_sources_from_the_same_table():
    for dtype, attr in domxml.DISK_SOURCE_ATTR.items():
        assert sources.SOURCE_ATTRS["disk"][dtype] == (attr,)
    for itype, attr in domxml.INTERFACE_SOURCE_ATTR.items():
        assert sources.SOURCE_ATTRS["interface"][itype][0] == attr


# -- real QEMU: libvirt really uses dev=, and the guest gets the host's block device ------------
@pytest.fixture
def scratch():
    """A directory QEMU (libvirt-qemu) can traverse: pytest's tmp root is 0700."""
    d = Path(tempfile.mkdtemp(prefix="svt-fence."))
    os.chmod(d, 0o755)
    (d / "images").mkdir(mode=0o755)
    (d / "images" / "ok.img").write_bytes(b"\0" * 4096)
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def loop(scratch):
    dev = LoopDevice(scratch / "host-disk.bin", b"HOST-BLOCK-DEVICE-SECRET")
    yield dev.dev
    dev.close()


@pytest.mark.integration
def test_real_qemu_uses_dev_and_the_fence_refuses_the_decoy(libvirtd, svt_env, scratch, loop):  # noqa: F811
    import libvirt

    name = f"svt-blk-{uuid.uuid4().hex[:6]}"
    images = scratch / "images"
    xml = qemu_guest(name, block_decoy(images / "ok.img", loop))
    conn = libvirt.open("qemu:///system")
    try:
        # what happened before the fix: libvirt keeps dev= and QEMU opens the host device
        dom = conn.defineXML(xml)
        try:
            dumped = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            assert f"<source dev='{loop}'/>" in dumped and "ok.img" not in dumped
            dom.create()
            assert loop in qemu_opened(name), "QEMU should hold the host block device open"
            dom.destroy()
        finally:
            dom.undefine()
        # the same XML from a non-root caller, through the use-case layer on qemu:///system
        svc = service(svt_env, UA, PA, uri="qemu:///system", disk_dirs=(str(images),))
        r = run(svc, ident("alice"), "define", xml=xml, file="blk.xml")
        assert r.status == EXIT_USAGE, r.message
        assert "also has file=" in r.message and "it reads dev=" in r.message
        assert name not in conn.listDefinedDomains()
    finally:
        forget_guests(conn, [name])
        conn.close()
