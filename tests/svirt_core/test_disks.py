"""secured_virt.confinement.disks: the image directories a non-root caller's disks must come from.

Real files, real symlinks and real qcow2 images made by qemu-img (backing chains included),
plus hand-written qcow2 headers for what qemu-img refuses to write.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest
from lxml import etree

from secured_virt.confinement import disks
from secured_virt.confinement.disks import DiskPolicyError

QEMU_IMG = shutil.which("qemu-img")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (qemu-utils) missing")


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


def disk_xml(source: str | None, *, dtype="file", fmt=None, extra="") -> etree._Element:
    attr = "file" if dtype == "file" else "dev"
    src = f"<source {attr}='{source}'/>" if source is not None else ""
    drv = f"<driver name='qemu' type='{fmt}'/>" if fmt else ""
    return etree.fromstring(
        f"<disk type='{dtype}' device='disk'>{drv}{src}<target dev='vda'/>{extra}</disk>"
    )


def qcow2(path, backing=None, backing_fmt="raw"):
    argv = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
    if backing:
        argv += ["-u", "-b", str(backing), "-F", backing_fmt]
    subprocess.run([*argv, str(path), "1M"], check=True)
    return path


def test_a_raw_image_inside_the_directory_is_fine(images):
    img = images / "vm.img"
    img.write_bytes(b"\0" * 512)
    disks.check_disk(disk_xml(str(img)), [str(images)])
    disks.check_disk(disk_xml(str(img), fmt="raw"), [str(images)])
    # it need not exist yet (defined before the image is copied in)
    disks.check_disk(disk_xml(str(images / "later.img")), [str(images)])


@pytest.mark.parametrize(
    "path", ["/etc/shadow", "/dev/sda", "/var/lib/libvirt/images2/x.img", "relative.img"]
)
def test_paths_outside_the_directories_are_refused(images, path):
    with pytest.raises(DiskPolicyError) as err:
        disks.check_disk(disk_xml(path), [str(images)])
    assert "disk vda" in str(err.value)


def test_dot_dot_and_the_directory_itself_are_refused(images):
    for path in (f"{images}/../../etc/passwd", str(images)):
        with pytest.raises(DiskPolicyError, match="outside the image directories"):
            disks.check_disk(disk_xml(path), [str(images)])


def test_a_symlink_out_of_the_directory_is_refused_and_named(images):
    link = images / "innocent.img"
    link.symlink_to("/etc/shadow")
    with pytest.raises(DiskPolicyError) as err:
        disks.check_disk(disk_xml(str(link)), [str(images)])
    assert f"{link} (which is /etc/shadow)" in str(err.value)


def test_block_devices_follow_the_same_rule(images):
    with pytest.raises(DiskPolicyError, match="outside"):
        disks.check_disk(disk_xml("/dev/sda", dtype="block"), [str(images)])
    disks.check_disk(disk_xml(str(images / "lv0"), dtype="block"), [str(images)])


@pytest.mark.parametrize("dtype", ["network", "volume", "dir", "nvme"])
def test_other_disk_types_are_for_root(images, dtype):
    el = etree.fromstring(
        f"<disk type='{dtype}'><source protocol='nbd' name='x' pool='p' volume='v' "
        f"dir='{images}'/><target dev='vdb'/></disk>"
    )
    with pytest.raises(DiskPolicyError, match=f"type '{dtype}' are only allowed"):
        disks.check_disk(el, [str(images)])


def test_an_empty_cdrom_is_fine(images):
    el = etree.fromstring("<disk type='file' device='cdrom'><target dev='hdc'/></disk>")
    disks.check_disk(el, [str(images)])


@pytest.mark.parametrize("fmt", ["vmdk", "qed", "vdi", "luks"])
def test_formats_that_can_name_other_files_are_for_root(images, fmt):
    with pytest.raises(DiskPolicyError, match=f"format '{fmt}'"):
        disks.check_disk(disk_xml(str(images / "x"), fmt=fmt), [str(images)])


@pytest.mark.parametrize("tag", ["backingStore", "mirror"])
def test_chains_are_not_taken_from_the_xml(images, tag):
    extra = f"<{tag} type='file'><source file='/etc/shadow'/></{tag}>"
    with pytest.raises(DiskPolicyError, match=f"<{tag}>"):
        disks.check_disk(disk_xml(str(images / "x.img"), extra=extra), [str(images)])
    # an empty <backingStore/> says "no backing chain": harmless
    disks.check_disk(disk_xml(str(images / "x.img"), extra=f"<{tag}/>"), [str(images)])


def test_no_directories_means_no_disks(images):
    with pytest.raises(DiskPolicyError, match=r"\(none configured\)"):
        disks.check_disk(disk_xml(str(images / "x.img")), [])


@needs_qemu_img
def test_a_qcow2_chain_inside_the_directories_is_fine(images, tmp_path):
    other = tmp_path / "golden"
    other.mkdir()
    base = qcow2(other / "base.qcow2")
    mid = qcow2(images / "mid.qcow2", backing=base, backing_fmt="qcow2")
    top = qcow2(images / "top.qcow2", backing="mid.qcow2", backing_fmt="qcow2")  # relative
    disks.check_disk(disk_xml(str(top), fmt="qcow2"), [str(images), str(other)])
    assert disks.qcow2_backing_file(str(mid)) == str(base)


@needs_qemu_img
def test_a_qcow2_backing_file_outside_is_refused(images):
    top = qcow2(images / "evil.qcow2", backing="/etc/shadow")
    with pytest.raises(DiskPolicyError) as err:
        disks.check_disk(disk_xml(str(top), fmt="qcow2"), [str(images)])
    assert f"backing file of {top}" in str(err.value) and "/etc/shadow" in str(err.value)
    # the same file declared raw is only ever read as raw: its header names nothing
    disks.check_disk(disk_xml(str(top), fmt="raw"), [str(images)])


@needs_qemu_img
def test_a_deep_link_in_the_chain_is_checked(images, tmp_path):
    outside = tmp_path / "outside.qcow2"
    qcow2(outside)
    mid = qcow2(images / "mid.qcow2", backing=outside, backing_fmt="qcow2")
    top = qcow2(images / "top.qcow2", backing=mid, backing_fmt="qcow2")
    with pytest.raises(DiskPolicyError, match="outside the image directories"):
        disks.check_disk(disk_xml(str(top), fmt="qcow2"), [str(images)])


def write_header(path, backing: bytes, fmt: bytes | None = b"qcow2", *, size=None):
    """A minimal qcow2 v2 header naming ``backing`` (what an attacker would write by hand):
    64 KiB clusters, a backing-format extension unless ``fmt`` is None, then the name."""
    exts = b""
    if fmt is not None:
        exts += struct.pack(">II", 0xE2792ACA, len(fmt)) + fmt.ljust((len(fmt) + 7) & ~7, b"\0")
    exts += struct.pack(">II", 0, 0)
    offset = 72 + len(exts)
    head = disks.QCOW2_MAGIC + struct.pack(
        ">IQII", 2, offset, len(backing) if size is None else size, 16
    )
    path.write_bytes(head.ljust(72, b"\0") + exts + backing)
    return path


def test_protocol_backing_files_are_refused(images):
    img = write_header(images / "p.qcow2", b"nbd:127.0.0.1:10809")
    with pytest.raises(DiskPolicyError, match="a protocol rather than a file"):
        disks.check_disk(disk_xml(str(img), fmt="qcow2"), [str(images)])


def test_a_backing_loop_ends_with_an_error(images):
    img = write_header(images / "loop.qcow2", b"loop.qcow2")
    with pytest.raises(DiskPolicyError, match="deeper than 16"):
        disks.check_disk(disk_xml(str(img), fmt="qcow2"), [str(images)])


def test_malformed_headers_are_refused(images):
    img = write_header(images / "bad.qcow2", b"x", size=5000)
    with pytest.raises(DiskPolicyError, match="5000 bytes"):
        disks.check_disk(disk_xml(str(img), fmt="qcow2"), [str(images)])
    short = write_header(images / "short.qcow2", b"x", size=40)
    with pytest.raises(DiskPolicyError, match="malformed"):
        disks.check_disk(disk_xml(str(short), fmt="qcow2"), [str(images)])


def test_a_fifo_in_the_directory_does_not_hang_the_check(images):
    fifo = images / "f.qcow2"
    os.mkfifo(fifo)
    with pytest.raises(DiskPolicyError, match="is not a qcow2 image"):
        disks.check_disk(disk_xml(str(fifo), fmt="qcow2"), [str(images)])
