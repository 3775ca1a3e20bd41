"""confinement.dac without a hypervisor: the seclabel it writes, the seclabels it removes,
the images it refuses to give away, libvirt's errors in words, and the SELinux status."""

from __future__ import annotations

import os

import pytest
from lxml import etree

from secured_virt.confinement import dac
from secured_virt.testing.libvirtd import tiny_guest_xml

DISK = (
    "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
    "<source file='/srv/a.raw'><seclabel model='dac' relabel='yes'><label>+0:+0</label>"
    "</seclabel></source><target dev='vda' bus='virtio'/></disk>"
    "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"
)


def guest_with_disks() -> str:
    xml = tiny_guest_xml("g").replace("<devices>", "<devices>" + DISK)
    return xml.replace(
        "</devices>", "</devices><seclabel type='none' model='dac'/><seclabel type='none'/>"
    )


def test_the_static_label_is_libvirts_numeric_form():
    assert dac.seclabel_xml(20001, 20002) == (
        "<seclabel type='static' model='dac' relabel='yes'><label>+20001:+20002</label></seclabel>"
    )
    assert dac.DacLabel.parse("+20001:+20002") == dac.DacLabel(20001, 20002)
    for bad in (0, -1, 2**32 - 1):
        with pytest.raises(dac.DacError, match="uid of its own"):
            dac.seclabel_xml(bad, 5)


def test_apply_dac_replaces_every_seclabel_and_turns_disk_relabeling_off():
    root = etree.fromstring(dac.apply_dac(guest_with_disks(), 20001, 20001).encode())
    top = root.findall("seclabel")
    assert len(top) == 1
    assert dict(top[0].attrib) == {"type": "static", "model": "dac", "relabel": "yes"}
    assert top[0].findtext("label") == "+20001:+20001"
    (src,) = root.findall("devices/disk/source")
    (sl,) = src.findall("seclabel")
    assert dict(sl.attrib) == {"model": "dac", "relabel": "no"} and sl.find("label") is None
    assert root.find("devices/disk[@device='cdrom']/source") is None
    assert dac.domain_dac_label(etree.tostring(root).decode()) == dac.DacLabel(20001, 20001)


def test_own_image_gives_a_file_to_a_realm_uid_with_mode_0600(tmp_path):
    os.chmod(tmp_path, 0o755)
    img = tmp_path / "a.raw"
    img.write_bytes(b"\0" * 512)
    img.chmod(0o644)
    dac.own_image(str(img), 20001, 20002)
    st = img.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (20001, 20002, 0o600)


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "directory", "fifo", "root"])
def test_own_image_refuses_what_is_not_one_image(tmp_path, kind):
    os.chmod(tmp_path, 0o755)
    target = tmp_path / "target.raw"
    target.write_bytes(b"x")
    path = tmp_path / "img"
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(dac.DacError) as exc:
        dac.own_image(str(path), 0 if kind == "root" else 20001, 20001)
    assert target.stat().st_uid == 0  # nothing was given away
    if kind == "hardlink":
        assert "2 hard links" in str(exc.value)


def test_own_image_refuses_a_path_others_could_swap(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    d.chmod(0o777)
    (d / "a.raw").write_bytes(b"x")
    with pytest.raises(dac.DacError, match="open"):
        dac.own_image(str(d / "a.raw"), 20001, 20001)


def test_unrelated_errors_are_left_alone():
    assert dac.explain_start_error("cannot start domain 'x': no memory", "x") is None


def test_in_use_error_is_explained():
    msg = (
        "cannot create the domain: Setting different DAC user or group on /srv/a.raw which is "
        "already in use"
    )
    text = dac.explain_start_error(msg, "b1")
    assert text.startswith("b1 was not started: /srv/a.raw is in use by another running guest")


def test_selinux_status_reads_the_kernel(tmp_path):
    off = dac.selinux_status(str(tmp_path / "absent"))
    assert (off.enabled, off.enforcing) == (False, None)
    assert "not enabled" in off.text and "DAC" in off.text
    (tmp_path / "enforce").write_text("1\n")
    on = dac.selinux_status(str(tmp_path))
    assert (on.enabled, on.enforcing) == (True, True) and "enforcing" in on.text
    (tmp_path / "enforce").write_text("0\n")
    assert "permissive" in dac.selinux_status(str(tmp_path)).text
    here = dac.selinux_status()
    assert here.enabled == os.path.exists("/sys/fs/selinux/enforce")


def test_selinux_label_carries_the_pair_and_nothing_else():
    assert dac.selinux_seclabel_xml("c12,c845") == (
        "<seclabel type='static' model='selinux' relabel='yes'>"
        "<label>system_u:system_r:svirt_t:s0:c12,c845</label></seclabel>"
    )
    for bad in ("c1,c2</label>", "c1"):
        with pytest.raises(dac.DacError):
            dac.selinux_seclabel_xml(bad)
