"""Issue 14, item 3: a qcow2 image inside disk_dirs whose header names an external data file
made QEMU open any file libvirt-qemu can open (another tenant's running image included).

The header is hostile input (a guest can write one into its own raw disk, a user can then
attach the file as qcow2): it is parsed fully.  Refused: the data-file feature bit and the
data-file extension, incompatible feature bits nobody here understands, backing formats other
than raw/qcow2 (or none), chains leaving the directories.  Real images from qemu-img
(``-o data_file=``), hand-written headers for what qemu-img will not write, real QEMU to show
that it opens the data file, and the use-case layer for define, create and attach-disk.  An
image a user can write is untrusted every time: ``disks.check_domain_images`` re-reads it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from fence_helpers import (
    ROOT,
    audit_records,
    domain_xml,
    file_disk,
    forget_guests,
    ident,
    needs_qemu_img,
    qcow2,
    qcow2_header,
    qemu_guest,
    qemu_opened,
    run,
    service,
    svt_env,  # noqa: F401 - fixture
)

from secured_virt.confinement import disks
from secured_virt.confinement import qcow2 as q
from secured_virt.confinement.disks import DiskPolicyError
from secured_virt.requests import EXIT_DENIED, EXIT_OK, EXIT_USAGE

UA = "<UserConfiguration><User name='alice'><UserRole role='Owner'/></User></UserConfiguration>"
PA = (
    "<RolePolicyDefinition><Role name='Owner'>"
    "<ManageVM type='individual'><VM name='alice-web'/><VM name='alice-q'/></ManageVM>"
    "<ControlOperation><Accept><operation name='define'/><operation name='create'/>"
    "<operation name='start'/><operation name='attach-disk'/><operation name='dumpxml'/>"
    "</Accept></ControlOperation></Role></RolePolicyDefinition>"
)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture
def svc(svt_env, images):  # noqa: F811
    return service(svt_env, UA, PA, disk_dirs=(str(images),))


def check(path, dirs, fmt="qcow2"):
    return disks.check_image(str(path), fmt, [str(d) for d in dirs], "disk vda")


# -- the header, parsed fully ---------------------------------------------------------------
@needs_qemu_img
def test_an_external_data_file_made_by_qemu_img_is_refused(images, tmp_path):
    secret = tmp_path / "other-tenant.img"
    secret.write_bytes(b"OTHER TENANT DATA")
    img = qcow2(images / "evil.qcow2", f"data_file={secret}", "data_file_raw=on")
    with pytest.raises(DiskPolicyError, match=r"another file \(qcow2 external data file\)"):
        check(img, [images])
    # even a data file inside the directories: it is another file the fence never saw
    inner = images / "data.raw"
    inner.write_bytes(b"")
    img2 = qcow2(images / "evil2.qcow2", f"data_file={inner}")
    with pytest.raises(DiskPolicyError, match="external data file"):
        check(img2, [images])


def test_the_data_file_extension_is_refused_even_without_the_feature_bit(images):
    img = qcow2_header(images / "x.qcow2", extensions=[(q.EXT_DATA_FILE, b"/etc/shadow")])
    with pytest.raises(DiskPolicyError, match="names an external data file '/etc/shadow'"):
        check(img, [images])
    bit_only = qcow2_header(images / "y.qcow2", incompatible=q.INCOMPAT_DATA_FILE)
    with pytest.raises(DiskPolicyError, match="external data file"):
        check(bit_only, [images])


@pytest.mark.parametrize("bit", [5, 6, 17, 63])
def test_unknown_incompatible_feature_bits_are_refused(images, bit):
    img = qcow2_header(images / "u.qcow2", incompatible=1 << bit)
    with pytest.raises(DiskPolicyError, match=f"incompatible feature bits {1 << bit:#x}"):
        check(img, [images])


@needs_qemu_img
def test_the_features_that_name_no_file_stay_allowed(images):
    check(qcow2(images / "l2.qcow2", "extended_l2=on"), [images])  # bit 4
    check(qcow2(images / "zstd.qcow2", "compression_type=zstd"), [images])  # bit 3
    check(qcow2(images / "v2.qcow2", "compat=0.10"), [images])
    check(qcow2_header(images / "dirty.qcow2", incompatible=q.INCOMPAT_DIRTY), [images])


@pytest.mark.parametrize("fmt", [b"vmdk", b"qed", b"luks", b"vvfat", None])
def test_backing_formats_other_than_raw_and_qcow2_are_refused(images, fmt):
    (images / "base").write_bytes(b'# Disk DescriptorFile\nRW 8 FLAT "/etc/shadow" 0\n')
    img = qcow2_header(images / "top.qcow2", backing=b"base", backing_fmt=fmt)
    said = f"format '{fmt.decode()}'" if fmt else "no recorded format"
    with pytest.raises(DiskPolicyError, match=said):
        check(img, [images])


def test_a_raw_backing_file_is_not_read_as_a_header(images):
    (images / "base.raw").write_bytes(
        qcow2_header(images / "tmp", extensions=[(q.EXT_DATA_FILE, b"/etc/shadow")]).read_bytes()
    )
    img = qcow2_header(images / "top.qcow2", backing=b"base.raw", backing_fmt=b"raw")
    assert check(img, [images]) == [str(images / "top.qcow2"), str(images / "base.raw")]
    # declared qcow2, the same backing file is parsed, and refused
    img = qcow2_header(images / "top2.qcow2", backing=b"base.raw", backing_fmt=b"qcow2")
    with pytest.raises(DiskPolicyError, match="external data file"):
        check(img, [images])


@needs_qemu_img
def test_a_chain_leaving_the_directories_is_refused_at_any_depth(images, tmp_path):
    outside = qcow2(tmp_path / "outside.qcow2")
    qcow2(images / "mid.qcow2", backing=outside, backing_fmt="qcow2")
    top = qcow2(images / "top.qcow2", backing="mid.qcow2", backing_fmt="qcow2")
    with pytest.raises(DiskPolicyError, match="outside the image directories"):
        check(top, [images])


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"QFI\xfb\0\0\0\x01" + b"\0" * 64, "version 1"),
        (b"QFI\xfb\0\0\0\x04" + b"\0" * 64, "version 4"),
        (b"QFI\xfb\0\0\0\x03", "truncated"),
    ],
)
def test_malformed_headers_are_refused(images, head, why):
    (images / "m.qcow2").write_bytes(head)
    with pytest.raises(DiskPolicyError, match=why):
        check(images / "m.qcow2", [images])


def test_an_extension_running_past_the_header_area_is_refused(images):
    img = qcow2_header(images / "e.qcow2", extensions=[(0x12345678, b"x" * 8)])
    raw = bytearray(img.read_bytes())
    raw[116:120] = (1 << 20).to_bytes(4, "big")  # the extension's length
    img.write_bytes(bytes(raw))
    with pytest.raises(DiskPolicyError, match="too large"):
        check(img, [images])


# -- through the use-case layer -------------------------------------------------------------
@needs_qemu_img
@pytest.mark.parametrize("command", ["define", "create"])
def test_a_user_cannot_define_a_domain_on_a_data_file_image(svc, images, tmp_path, command):
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"x")
    img = qcow2(images / "evil.qcow2", f"data_file={secret}")
    xml = domain_xml("alice-q", file_disk(img, fmt="qcow2"))
    r = run(svc, ident("alice"), command, xml=xml, file="q.xml")
    assert r.status == EXIT_USAGE and "external data file" in r.message, r.message
    assert run(svc, ROOT, "dominfo", domain="alice-q").status != EXIT_OK


@needs_qemu_img
def test_attach_disk_as_qcow2_of_a_raw_file_holding_a_data_file_header(svc, images, tmp_path):
    """The guest wrote a qcow2 header into its own raw disk; its user attaches the same file
    again with --subdriver qcow2."""
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"x")
    guest_disk = images / "alice-raw.img"
    guest_disk.write_bytes(qcow2(tmp_path / "hdr.qcow2", f"data_file={secret}").read_bytes())
    before = len(audit_records(svc))
    r = run(
        svc,
        ident("alice"),
        "attach-disk",
        domain="alice-web",
        source=str(guest_disk),
        target="vdq",
        subdriver="qcow2",
        persistent=True,
    )
    assert r.status == EXIT_DENIED and "external data file" in r.message, r.message
    recs = audit_records(svc)[before:]
    assert recs and "external data file" in (recs[-1].get("outcome") or "")
    xml = run(svc, ROOT, "dumpxml", domain="alice-web", inactive=True).data["xml"]
    assert "vdq" not in xml
    # raw, it is only ever read as raw: fine
    r = run(
        svc,
        ident("alice"),
        "attach-disk",
        domain="alice-web",
        source=str(guest_disk),
        target="vdq",
        subdriver="raw",
        persistent=True,
    )
    assert r.status == EXIT_OK, r.message


@needs_qemu_img
def test_an_image_rewritten_after_define_is_refused_when_checked_again(svc, images, tmp_path):
    img = qcow2(images / "later.qcow2")
    xml = domain_xml("alice-q", file_disk(img, fmt="qcow2"))
    assert run(svc, ident("alice"), "define", xml=xml, file="q.xml").status == EXIT_OK
    dumped = run(svc, ROOT, "dumpxml", domain="alice-q", inactive=True).data["xml"]
    assert disks.check_domain_images(dumped, [str(images)]) == [str(img)]
    # the guest (which writes its image) turns the header into a data-file header
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"x")
    img.write_bytes(qcow2(tmp_path / "evil.qcow2", f"data_file={secret}").read_bytes())
    with pytest.raises(DiskPolicyError, match="external data file"):
        disks.check_domain_images(dumped, [str(images)])
    # root's own images outside the directories are root's business, not re-checked
    root_img = qcow2(tmp_path / "root.qcow2", f"data_file={secret}")
    assert disks.check_domain_images(domain_xml("r", file_disk(root_img, fmt="qcow2")), []) == []


# -- real QEMU: the data file is opened ------------------------------------------------------
@needs_qemu_img
@pytest.mark.integration
def test_real_qemu_opens_the_data_file_and_the_fence_refuses_it(libvirtd, svt_env):  # noqa: F811
    import libvirt

    base = Path(tempfile.mkdtemp(prefix="svt-qcow2."))
    os.chmod(base, 0o755)
    images = base / "images"
    images.mkdir(mode=0o755)
    victim = base / "victim.img"  # another tenant's image, say
    victim.write_bytes(b"VICTIM".ljust(4 << 20, b"\0"))
    os.chmod(victim, 0o666)
    img = qcow2(images / "evil.qcow2", f"data_file={victim}", "data_file_raw=on", size="4M")
    name = f"svt-q-{uuid.uuid4().hex[:6]}"
    disk = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{img}'/><target dev='vda' bus='virtio'/></disk>"
    )
    xml = qemu_guest(name, disk)
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.defineXML(xml)
        dom.create()
        assert str(victim) in qemu_opened(name), "QEMU should have opened the header's data file"
        dom.destroy()
        dom.undefine()
        svc = service(svt_env, UA, PA, uri="qemu:///system", disk_dirs=(str(images),))
        r = run(svc, ident("alice"), "define", xml=xml.replace(name, "alice-q"), file="q.xml")
        assert r.status == EXIT_USAGE and "external data file" in r.message, r.message
        assert "alice-q" not in conn.listDefinedDomains()
    finally:
        forget_guests(conn, [name, "alice-q"])
        conn.close()
        shutil.rmtree(base, ignore_errors=True)
