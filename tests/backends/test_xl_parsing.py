"""Parsing what xl prints and what admins write into xl configs (recorded outputs, no Xen)."""

from __future__ import annotations

import struct

import pytest

from secured_virt.backends import BackendError
from secured_virt.backends.xl_cfg import XlConfig, XlConfigError, parse, render
from secured_virt.backends.xl_model import XlDisk, XlDomain, XlNic, parse_label
from secured_virt.backends.xl_parse import (
    parse_info,
    parse_list,
    parse_list_long,
    read_save_header,
    state_from_flags,
)

from .xlfake import XL_DATA, data


# -- xl list ----------------------------------------------------------------------------------
def test_parse_xl_list():
    entries = parse_list(data("list.txt"))
    assert [e.name for e in entries] == ["Domain-0", "web-01", "db.prod", "build-2", "crashy-4"]
    web = entries[1]
    assert (web.domid, web.mem_mib, web.vcpus, web.flags, web.cpu_seconds) == (
        3,
        1024,
        2,
        "-b----",
        88.4,
    )
    assert [e.state for e in entries] == ["running", "idle", "paused", "running", "crashed"]


@pytest.mark.parametrize(
    ("flags", "state"),
    [
        ("r-----", "running"),
        ("-b----", "idle"),
        ("--p---", "paused"),
        ("-bp---", "paused"),
        ("---s--", "in shutdown"),
        ("---sr-", "in shutdown"),
        ("---sc-", "crashed"),
        ("-----d", "in shutdown"),
        ("------", "no state"),
    ],
)
def test_state_flags_to_virsh_words(flags, state):
    assert state_from_flags(flags) == state


def test_parse_xl_list_rejects_unexpected_output():
    with pytest.raises(BackendError, match="no header line"):
        parse_list("something else\n")
    with pytest.raises(BackendError, match="line 2"):
        parse_list(data("list.txt").splitlines()[0] + "\nweb-01 three 1024 2 -b---- 1.0\n")


def test_parse_xl_list_long():
    entries = parse_list_long(data("list-l.json"))
    assert [e["domid"] for e in entries] == [0, 3, 5, 7, 9]
    doms = [XlDomain.from_json(e) for e in entries]
    dom0, web, db, build, _crashy = doms
    assert dom0.name == "Domain-0" and dom0.uuid == ""
    assert web.uuid == "6f1c2f9a-8a3d-4c5e-9b7f-2d1e0a4b5c6d" and web.os_type == "linux"
    assert db.os_type == "hvm" and [d.vdev for d in db.disks] == ["xvda", "xvdb"]
    assert db.nics[0].model == "e1000" and db.nics[0].bridge == "xenbr1"
    assert build.os_type == "xenpvh"
    assert (build.vcpus, build.max_vcpus) == (2, 4)
    assert (build.mem_kib, build.max_mem_kib) == (2 * 1024 * 1024, 3 * 1024 * 1024)
    assert build.disks[1].cdrom and build.disks[1].readonly


def test_parse_xl_list_long_bad_json():
    with pytest.raises(BackendError, match="did not print JSON"):
        parse_list_long("[ {")
    assert parse_list_long("") == []


def test_parse_xl_info():
    info = parse_info(data("info.txt"))
    assert info["xen_version"] == "4.17.3-pre"
    assert info["nr_cpus"] == "8" and info["total_memory"] == "32636"
    assert info["xen_changeset"] == ""


# -- save image headers -----------------------------------------------------------------------
def test_read_save_header():
    header = read_save_header(str(XL_DATA / "web-01.save"))
    assert header.mandatory_flags == 3
    assert header.domain_name() == "web-01"
    assert header.domain_uuid() == "6f1c2f9a-8a3d-4c5e-9b7f-2d1e0a4b5c6d"


def test_read_save_header_with_xl_cfg_text(tmp_path):
    cfg = b'name = "old-style"\nmemory = 256\n\x00'
    opt = struct.pack("<I", len(cfg)) + cfg
    head = b"Xen saved domain, xl format\n \x00 \r" + struct.pack(
        "<IIII", 0x01020304, 0, 0, len(opt)
    )
    image = tmp_path / "old.save"
    image.write_bytes(head + opt)
    assert read_save_header(str(image)).domain_name() == "old-style"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"QEMU save image", "is not an xl save image"),
        (
            b"Xen saved domain, xl format\n \x00 \r" + struct.pack("<IIII", 0x01020304, 3, 0, 999),
            "truncated",
        ),
    ],
)
def test_read_save_header_rejects_other_files(tmp_path, content, message):
    image = tmp_path / "x.save"
    image.write_bytes(content)
    with pytest.raises(BackendError, match=message) as ei:
        read_save_header(str(image))
    assert ei.value.code == "invalid-arg"


def test_read_save_header_missing_file(tmp_path):
    with pytest.raises(BackendError, match="cannot read save image"):
        read_save_header(str(tmp_path / "none.save"))


# -- xl.cfg -----------------------------------------------------------------------------------
def test_cfg_values_of_every_kind():
    cfg = XlConfig(
        "# comment\n"
        'name = "a\\"b" ; memory = 0x100\n'
        "extra = 'single \\ kept'\n"
        "disk = [\n  'one',  # first\n  \"two\",\n]\n"
        "vif = []\n"
        "nested = [ [1, 2], ['x'] ]\n"
        "disk += [ 'three' ]\n"
    )
    assert cfg.get("name") == 'a"b'
    assert cfg.get("memory") == 256
    assert cfg.get("extra") == "single \\ kept"
    assert cfg.get("disk") == ["one", "two", "three"]
    assert cfg.get("vif") == []
    assert cfg.get("nested") == [[1, 2], ["x"]]
    assert cfg.get("missing", 7) == 7


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('name = "x"\nmemory = \n', 2),
        ('name = "x"\n\nvcpus = 2 3\n', 3),
        ('disk = [ "a" "b" ]\n', 1),
        ("name = 'unterminated\n", 1),
        ("= 5\n", 1),
    ],
)
def test_cfg_syntax_errors_name_the_line(text, line):
    with pytest.raises(XlConfigError) as ei:
        XlConfig(text, "/etc/xen/x.cfg")
    assert ei.value.line == line
    assert str(ei.value).startswith(f"/etc/xen/x.cfg:{line}: ")


def test_cfg_set_and_remove_keep_everything_else():
    original = data("etc-xen/web-01.cfg")
    cfg = XlConfig(original)
    cfg.set("memory", 2048)
    cfg.set("access_control", ["policy=p,label=l"])
    cfg.remove("svirt_owner")
    cfg.set("new_key", "v")
    text = cfg.text
    assert "# Alice's web front-end (PV, booted with pygrub).\n" in text
    assert "memory = 2048\n" in text
    assert 'access_control = ["policy=p,label=l"]\n' in text
    assert "svirt_owner" not in text
    assert text.endswith('new_key = "v"\n')
    assert 'bootloader = "pygrub"' in text
    assert XlConfig(text).get("disk") == XlConfig(original).get("disk")


def test_cfg_set_collapses_duplicates_and_handles_semicolons():
    cfg = XlConfig('memory = 1\nname = "x"; memory = 2\n')
    cfg.set("memory", 3)
    assert [s.key for s in parse(cfg.text)] == ["name", "memory"]
    assert cfg.get("memory") == 3
    cfg = XlConfig('name = "build-2" ; uuid = "u"\nmemory = 5\n')
    cfg.remove("uuid")
    assert cfg.text == 'name = "build-2" ; \nmemory = 5\n'  # an empty statement is fine
    assert [s.key for s in parse(cfg.text)] == ["name", "memory"]


def test_cfg_multiline_list_replaced_whole():
    cfg = XlConfig(data("etc-xen/db.prod.cfg"))
    cfg.set("disk", ["format=raw,vdev=xvda,access=rw,target=/x"])
    assert cfg.get("disk") == ["format=raw,vdev=xvda,access=rw,target=/x"]
    assert "phy:/dev/vg0/db-data" not in cfg.text
    assert 'serial = "pty"' in cfg.text


@pytest.mark.parametrize("bad", ["two\nlines", "nul\x00", "both ' and \""])
def test_render_refuses_unrepresentable_strings(bad):
    with pytest.raises(ValueError):
        render(bad)


def test_render_quotes():
    assert render('has "double"') == "'has \"double\"'"
    assert render(["a", 1]) == '["a", 1]'


# -- disk and vif specs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        (
            "format=raw, vdev=xvda, access=rw, target=/dev/vg0/web-01",
            ("xvda", "/dev/vg0/web-01", "raw", False, False),
        ),
        (
            "format=qcow2,vdev=xvdb,access=ro,target=/images/a,b,c.qcow2",
            ("xvdb", "/images/a,b,c.qcow2", "qcow2", True, False),
        ),
        ("phy:/dev/vg0/db-data,xvdb,w", ("xvdb", "/dev/vg0/db-data", "raw", False, False)),
        ("file:/srv/x.iso,hdc:cdrom,r", ("hdc", "/srv/x.iso", "raw", True, True)),
    ],
)
def test_disk_specs(spec, expect):
    d = XlDisk.from_spec(spec)
    assert (d.vdev, d.target, d.format, d.readonly, d.cdrom) == expect
    again = XlDisk.from_spec(d.spec())
    assert (again.vdev, again.target, again.readonly) == (d.vdev, d.target, d.readonly)


def test_disk_spec_puts_target_last():
    spec = XlDisk(vdev="xvdb", target="/a,b", format="raw").spec()
    assert spec == "format=raw,vdev=xvdb,access=rw,target=/a,b"


def test_vif_spec():
    nic = XlNic.from_spec("mac=00:16:3E:5A:20:01, bridge=xenbr1, model=e1000")
    assert (nic.mac, nic.bridge, nic.model) == ("00:16:3e:5a:20:01", "xenbr1", "e1000")
    assert nic.spec() == "mac=00:16:3e:5a:20:01,bridge=xenbr1,model=e1000"


def test_access_control_label():
    assert parse_label(["policy=example.client_v1,label=dom_Fun"]) == (
        "example.client_v1",
        "dom_Fun",
    )
    assert parse_label("label=x") == (None, "x")


# -- XML <-> config ---------------------------------------------------------------------------
def test_config_to_xml_and_back():
    for name in ("web-01", "db.prod", "build-2", "lab-3"):
        dom = XlDomain.from_config(XlConfig(data(f"etc-xen/{name}.cfg")))
        back = XlDomain.from_domain_xml(dom.to_domain_xml())
        assert back.name == dom.name and back.uuid == dom.uuid and back.type == dom.type
        assert (back.mem_kib, back.max_mem_kib, back.vcpus) == (
            dom.mem_kib,
            dom.max_mem_kib,
            dom.vcpus,
        )
        assert [d.spec() for d in back.disks] == [d.spec() for d in dom.disks]
        assert [n.spec() for n in back.nics] == [n.spec() for n in dom.nics]
        assert (back.owner, back.label_policy, back.label) == (
            dom.owner,
            dom.label_policy,
            dom.label,
        )


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("<hostdev mode='subsystem' type='pci'/>", "pass-through"),
        ("<emulator>/tmp/evil</emulator>", "custom device model"),
        (
            "<interface type='network'><source network='default'/></interface>",
            "only <interface type='bridge'>",
        ),
        (
            "<disk type='network' device='disk'><source protocol='nbd' name='x'/>"
            "<target dev='xvdb'/></disk>",
            "only file and block disks",
        ),
        ("<tpm model='tpm-tis'/>", "<tpm> is not supported"),
    ],
)
def test_xml_devices_xl_cannot_honour_are_refused(device, message):
    xml = (
        "<domain type='xen'><name>x1</name><memory unit='MiB'>256</memory>"
        f"<os><type>hvm</type></os><devices>{device}</devices></domain>"
    )
    with pytest.raises(BackendError, match=message) as ei:
        XlDomain.from_domain_xml(xml)
    assert ei.value.code == "invalid-arg"


def test_xml_hardware_xl_sets_up_itself_is_ignored():
    xml = (
        "<domain type='xen'><name>x1</name><memory unit='GiB'>1</memory><vcpu>2</vcpu>"
        "<os><type>hvm</type></os><devices><console type='pty'/><serial type='pty'/>"
        "<video/><input type='mouse'/><memballoon model='xen'/></devices></domain>"
    )
    dom = XlDomain.from_domain_xml(xml)
    assert dom.mem_kib == 1024 * 1024 and dom.vcpus == 2 and dom.type == "hvm"
    assert "memory = 1024\n" in dom.to_config_text()
