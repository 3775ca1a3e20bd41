"""The libvirt backend on libvirt's real test driver (no daemon), using the demo node file."""

from __future__ import annotations

import time
import uuid

import pytest
from lxml import etree

from secured_virt import waiting as turns
from secured_virt.backends import (
    BackendError,
    DomainInfo,
    NoSuchDomain,
    libvirt_backend,
    open_backend,
)
from secured_virt.backends.libvirt_backend import LibvirtBackend

from .conftest import DEMO_URI, SVIRT_NS

NEW_DOMAIN = """<domain type='test'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices/>
</domain>"""


def new_xml(name: str) -> str:
    return NEW_DOMAIN.format(name=name, uuid=uuid.uuid4())


def meta(owner: str, label: str | None = None) -> str:
    """A fragment written the way secured_virt.confinement.vmmeta writes it (prefixed namespace)."""
    lab = f'<svirt:label policy="example" name="{label}"/>' if label else ""
    return f'<svirt:vm xmlns:svirt="{SVIRT_NS}"><svirt:owner>{owner}</svirt:owner>{lab}</svirt:vm>'


def read_meta(fragment: str) -> tuple[str | None, str | None]:
    root = etree.fromstring(fragment.encode())
    assert root.tag == f"{{{SVIRT_NS}}}vm"
    lab = root.find(f"{{{SVIRT_NS}}}label")
    return root.findtext(f"{{{SVIRT_NS}}}owner"), lab.get("name") if lab is not None else None


# -- listing and lookup -----------------------------------------------------------------------
def test_list_active_domains_sorted_by_id(lv):
    doms = lv.list_domains()
    assert [d.name for d in doms] == ["alice-web", "bob-build", "carol-lab", "shared-dns"]
    assert [d.id for d in doms] == sorted(d.id for d in doms)
    assert {d.state for d in doms} == {"running", "paused"}


def test_list_with_inactive_adds_shut_off_domains_last(lv):
    doms = lv.list_domains(include_inactive=True)
    assert doms[-1].name == "alice-db"
    assert doms[-1].id is None and doms[-1].state == "shut off"
    assert len(doms) == 5


def test_list_reports_persistence_and_autostart_per_domain(lv):
    lv.set_autostart("bob-build", True)
    lv.create(new_xml("transient-1"))
    by_name = {d.name: d for d in lv.list_domains(include_inactive=True)}
    assert by_name["bob-build"].autostart is True
    assert by_name["alice-web"].autostart is False
    assert by_name["transient-1"].persistent is False
    assert by_name["alice-web"].persistent is True


def test_lookup_gives_virsh_like_info(lv):
    info = lv.lookup("bob-build")
    assert isinstance(info, DomainInfo)
    assert info.state == "running" and info.id is not None
    assert info.max_mem_kib == 8 * 1024 * 1024
    assert info.mem_kib == 6 * 1024 * 1024
    assert info.vcpus == 8
    assert info.uuid == "4dea22b3-1d52-d8f3-2516-782e98a23fb0"
    d = info.as_dict()
    assert d["name"] == "bob-build" and d["persistent"] is True
    assert set(d) == {
        "name",
        "uuid",
        "id",
        "state",
        "max_mem_kib",
        "mem_kib",
        "vcpus",
        "cpu_time_ns",
        "persistent",
        "autostart",
        "os_type",
    }


def test_lookup_missing_domain_is_no_such_domain(lv, no_stderr):
    with pytest.raises(NoSuchDomain) as ei:
        lv.lookup("vm9")
    assert ei.value.code == "no-domain"
    assert str(ei.value) == "domain 'vm9' not found"


@pytest.mark.parametrize("bad", ["", None, "a\x00b", 7])
def test_lookup_rejects_non_names(lv, bad):
    with pytest.raises(BackendError) as ei:
        lv.lookup(bad)
    assert ei.value.code == "invalid-arg"


def test_numeric_and_uuid_names_are_names_not_ids(lv):
    # virsh would resolve "1" as an id and a UUID string as a UUID; we never do.
    with pytest.raises(NoSuchDomain):
        lv.lookup("1")
    with pytest.raises(NoSuchDomain):
        lv.lookup("4dea22b3-1d52-d8f3-2516-782e98a23fb0")


# -- life cycle -------------------------------------------------------------------------------
def test_start_suspend_resume_shutdown_cycle(lv, no_stderr):
    lv.start("alice-db")
    assert lv.lookup("alice-db").state == "running"
    assert lv.lookup("alice-db").id is not None
    lv.suspend("alice-db")
    assert lv.lookup("alice-db").state == "paused"
    lv.resume("alice-db")
    assert lv.lookup("alice-db").state == "running"
    lv.reboot("alice-db")
    lv.reset("alice-db")
    assert lv.lookup("alice-db").state == "running"
    lv.shutdown("alice-db")
    info = lv.lookup("alice-db")
    assert info.state == "shut off" and info.id is None


def test_destroy_stops_a_running_domain(lv):
    lv.destroy("bob-build")
    assert lv.lookup("bob-build").state == "shut off"


@pytest.mark.parametrize(
    ("domain", "op", "message"),
    [
        ("alice-web", "start", "domain 'alice-web' is already running"),
        ("alice-db", "destroy", "domain 'alice-db' is not running"),
        ("alice-db", "shutdown", "domain 'alice-db' is not running"),
        ("alice-db", "suspend", "domain 'alice-db' is not running"),
        ("alice-web", "resume", "domain 'alice-web' is not paused"),
    ],
)
def test_refusals_explain_the_state(lv, no_stderr, domain, op, message):
    with pytest.raises(BackendError) as ei:
        getattr(lv, op)(domain)
    assert ei.value.code == "operation-failed"
    assert str(ei.value) == message


def test_operations_on_missing_domain_raise_no_such_domain(lv, no_stderr):
    for op in ("start", "shutdown", "reboot", "reset", "destroy", "suspend", "resume"):
        with pytest.raises(NoSuchDomain, match="domain 'ghost' not found"):
            getattr(lv, op)("ghost")


# -- save / restore ---------------------------------------------------------------------------
def test_save_restore_keeps_metadata(lv, tmp_path):
    lv.set_metadata("alice-web", meta("alice", "dom_Fun"), "svirt", SVIRT_NS)
    image = tmp_path / "alice-web.save"
    lv.save("alice-web", str(image))
    assert lv.lookup("alice-web").state == "shut off"
    xml = lv.saved_image_xml(str(image))
    root = etree.fromstring(xml.encode())
    assert root.findtext("name") == "alice-web"
    assert root.findtext("uuid") == "4dea22b3-1d52-d8f3-2516-782e98a23fa0"
    el = root.find(f"metadata/{{{SVIRT_NS}}}vm")
    assert el is not None
    assert read_meta(etree.tostring(el).decode()) == ("alice", "dom_Fun")
    assert lv.restore(str(image)) == "alice-web"
    assert lv.lookup("alice-web").state == "running"
    assert read_meta(lv.get_metadata("alice-web", SVIRT_NS)) == ("alice", "dom_Fun")


def test_save_of_inactive_domain_is_refused(lv, tmp_path, no_stderr):
    with pytest.raises(BackendError, match="domain 'alice-db' is not running"):
        lv.save("alice-db", str(tmp_path / "x.save"))


def test_saved_image_xml_of_non_image_says_which_file(lv, tmp_path, no_stderr):
    junk = tmp_path / "junk.save"
    junk.write_text("not a save image")
    with pytest.raises(BackendError) as ei:
        lv.saved_image_xml(str(junk))
    assert str(junk) in str(ei.value)
    with pytest.raises(BackendError) as ei:
        lv.restore(str(tmp_path / "missing.save"))
    assert "missing.save" in str(ei.value)


def test_relative_save_path_is_refused(lv):
    with pytest.raises(BackendError) as ei:
        lv.save("alice-web", "alice.save")
    assert ei.value.code == "invalid-arg" and "absolute" in str(ei.value)


# -- define / undefine / create / dumpxml -----------------------------------------------------
def test_define_then_undefine(lv):
    assert lv.define(new_xml("dave-test")) == "dave-test"
    info = lv.lookup("dave-test")
    assert info.state == "shut off" and info.persistent and info.max_mem_kib == 256 * 1024
    lv.undefine("dave-test")
    with pytest.raises(NoSuchDomain):
        lv.lookup("dave-test")


def test_define_bad_xml_is_invalid_arg(lv, no_stderr):
    with pytest.raises(BackendError) as ei:
        lv.define("<domain type='test'><name>x</name>")
    assert ei.value.code == "invalid-arg"
    assert str(ei.value).startswith("cannot define the domain:")
    assert "\n" not in str(ei.value)


def test_define_duplicate_name_is_operation_failed(lv, no_stderr):
    with pytest.raises(BackendError) as ei:
        lv.define(new_xml("alice-web"))
    assert ei.value.code == "operation-failed"
    assert "alice-web" in str(ei.value)


def test_create_makes_a_transient_running_domain(lv):
    assert lv.create(new_xml("scratch")) == "scratch"
    info = lv.lookup("scratch")
    assert info.state == "running" and info.persistent is False
    lv.destroy("scratch")
    with pytest.raises(NoSuchDomain):
        lv.lookup("scratch")


def test_dumpxml_live_and_inactive(lv):
    live = etree.fromstring(lv.dumpxml("alice-web").encode())
    assert live.findtext("name") == "alice-web" and live.get("id") is not None
    inactive = etree.fromstring(lv.dumpxml("alice-web", inactive=True).encode())
    assert inactive.get("id") is None
    assert lv.dumpxml("alice-web", security_info=True).startswith("<domain")


# -- resources --------------------------------------------------------------------------------
def test_setmem_live_config_and_both(lv):
    lv.setmem("bob-build", 4 * 1024 * 1024)
    assert lv.lookup("bob-build").mem_kib == 4 * 1024 * 1024
    lv.setmem("bob-build", 2 * 1024 * 1024, live=True, config=True)
    assert lv.lookup("bob-build").mem_kib == 2 * 1024 * 1024
    inactive = etree.fromstring(lv.dumpxml("bob-build", inactive=True).encode())
    assert inactive.findtext("currentMemory") == str(2 * 1024 * 1024)


def test_setmaxmem_config(lv):
    lv.setmaxmem("alice-db", 8 * 1024 * 1024)
    assert lv.lookup("alice-db").max_mem_kib == 8 * 1024 * 1024


def test_setvcpus(lv):
    lv.setvcpus("bob-build", 4)
    assert lv.lookup("bob-build").vcpus == 4


@pytest.mark.parametrize("bad", [0, -5, "512", 1.5, True])
def test_bad_sizes_are_invalid_arg(lv, bad):
    for call in (
        lambda: lv.setmem("bob-build", bad),
        lambda: lv.setmaxmem("bob-build", bad),
        lambda: lv.setvcpus("bob-build", bad),
    ):
        with pytest.raises(BackendError) as ei:
            call()
        assert ei.value.code == "invalid-arg"


# -- devices ----------------------------------------------------------------------------------
def test_attach_and_detach_disk_in_config(lv):
    # live=False, config=False is virsh's --current: the persistent config of a shut-off domain
    lv.attach_disk(
        "alice-db",
        "/var/lib/libvirt/images/extra.img",
        "vdc",
        subdriver="raw",
        mode="readonly",
        live=False,
    )
    assert "/var/lib/libvirt/images/extra.img" in lv.disk_sources("alice-db")
    root = etree.fromstring(lv.dumpxml("alice-db", inactive=True).encode())
    (disk,) = root.xpath("devices/disk[target/@dev='vdc']")
    assert disk.find("readonly") is not None
    assert disk.find("driver").get("type") == "raw"
    lv.detach_disk("alice-db", "vdc", live=False, config=True)
    assert "/var/lib/libvirt/images/extra.img" not in lv.disk_sources("alice-db")


def test_attach_disk_config_on_running_domain_changes_next_boot(lv):
    lv.attach_disk("alice-web", "/dev/vg0/web-logs", "vdb", type="block", live=False, config=True)
    assert "/dev/vg0/web-logs" not in lv.disk_sources("alice-web")  # live XML unchanged
    inactive = etree.fromstring(lv.dumpxml("alice-web", inactive=True).encode())
    assert inactive.find("devices/disk/source[@dev='/dev/vg0/web-logs']") is not None


def test_live_attach_is_unsupported_on_test_driver(lv, no_stderr):
    with pytest.raises(BackendError) as ei:
        lv.attach_disk("alice-web", "/tmp/x.img", "vdb", live=True)
    assert ei.value.code == "unsupported"
    assert "test driver does not support it" in str(ei.value)


def test_attach_disk_with_existing_target_is_refused(lv):
    with pytest.raises(BackendError, match="target vda already exists"):
        lv.attach_disk("alice-db", "/tmp/other.img", "vda", live=False, config=True)


def test_detach_unknown_disk_says_so(lv):
    with pytest.raises(BackendError, match="domain 'alice-db' has no disk with target 'vdz'"):
        lv.detach_disk("alice-db", "vdz", live=False, config=True)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"type": "floppy"}, "invalid disk type"),
        ({"mode": "rw"}, "invalid disk mode"),
    ],
)
def test_attach_disk_validates_options(lv, kwargs, fragment):
    with pytest.raises(BackendError, match=fragment):
        lv.attach_disk("alice-db", "/tmp/a.img", "vdc", **kwargs)


def test_attach_disk_rejects_markup_in_target(lv):
    with pytest.raises(BackendError, match="invalid disk target"):
        lv.attach_disk("alice-db", "/tmp/a.img", "vdc'/><hostdev", live=False, config=True)


def test_disk_source_is_data_not_markup(lv):
    odd = "/tmp/a'<b>&c.img"
    lv.attach_disk("alice-db", odd, "vdc", live=False, config=True)
    assert odd in lv.disk_sources("alice-db")


def test_attach_and_detach_interface_in_config(lv):
    lv.attach_interface(
        "alice-db",
        "bridge",
        "br-db",
        mac="52:54:00:AA:BB:CC",
        model="virtio",
        config=True,
        live=False,
    )
    assert ("bridge", "br-db") in lv.interface_sources("alice-db")
    lv.detach_interface("alice-db", "bridge", mac="52:54:00:aa:bb:cc", live=False, config=True)
    assert ("bridge", "br-db") not in lv.interface_sources("alice-db")


def test_detach_interface_ambiguity_needs_mac(lv):
    lv.attach_interface(
        "alice-db", "network", "default", mac="52:54:00:00:00:09", live=False, config=True
    )
    with pytest.raises(BackendError) as ei:
        lv.detach_interface("alice-db", "network", live=False, config=True)
    assert ei.value.code == "invalid-arg" and "--mac" in str(ei.value)
    lv.detach_interface("alice-db", "network", mac="52:54:00:00:00:09", live=False, config=True)
    assert lv.interface_sources("alice-db") == [("network", "default")]


def test_detach_missing_interface_says_so(lv):
    with pytest.raises(BackendError, match="has no bridge interface with MAC 52:54:00:00:00:01"):
        lv.detach_interface("alice-db", "bridge", mac="52:54:00:00:00:01", live=False)


def test_bad_mac_is_invalid_arg(lv):
    with pytest.raises(BackendError, match="invalid MAC address"):
        lv.attach_interface("alice-db", "network", "default", mac="52:54:00:zz", live=False)


def test_sources_of_demo_domains(lv):
    assert lv.disk_sources("alice-db") == [
        "/var/lib/libvirt/images/alice-db.qcow2",
        "/dev/vg0/alice-db-data",
    ]
    assert lv.interface_sources("bob-build") == [("bridge", "br-build")]
    assert lv.interface_sources("alice-web") == [("network", "default")]


# -- autostart, snapshots ---------------------------------------------------------------------
def test_autostart_round_trip(lv):
    assert lv.get_autostart("alice-db") is False
    lv.set_autostart("alice-db", True)
    assert lv.get_autostart("alice-db") is True
    assert lv.lookup("alice-db").autostart is True
    lv.set_autostart("alice-db", False)
    assert lv.get_autostart("alice-db") is False


def test_snapshot_create_list_revert_delete(lv):
    assert lv.snapshot_create_as("bob-build", "before-upgrade", "clean <state> & tools") == (
        "before-upgrade"
    )
    lv.setmem("bob-build", 1024 * 1024)
    snaps = lv.snapshot_list("bob-build")
    assert [s.name for s in snaps] == ["before-upgrade"]
    assert snaps[0].description == "clean <state> & tools"
    assert snaps[0].current is True and snaps[0].state == "running"
    assert snaps[0].creation_time > 0
    lv.snapshot_revert("bob-build", "before-upgrade")
    assert lv.lookup("bob-build").mem_kib == 6 * 1024 * 1024
    lv.snapshot_delete("bob-build", "before-upgrade")
    assert lv.snapshot_list("bob-build") == []


def test_snapshot_without_name_gets_one(lv):
    name = lv.snapshot_create_as("bob-build")
    assert name and [s.name for s in lv.snapshot_list("bob-build")] == [name]


def test_missing_snapshot_is_no_snapshot(lv, no_stderr):
    for call in (
        lambda: lv.snapshot_revert("bob-build", "nope"),
        lambda: lv.snapshot_delete("bob-build", "nope"),
    ):
        with pytest.raises(BackendError) as ei:
            call()
        assert ei.value.code == "no-snapshot"
        assert str(ei.value) == "domain 'bob-build' has no snapshot named 'nope'"


# -- metadata ---------------------------------------------------------------------------------
def test_metadata_from_node_file_is_preserved(lv):
    assert read_meta(lv.get_metadata("alice-web", SVIRT_NS)) == ("alice", None)
    assert read_meta(lv.get_metadata("bob-build", SVIRT_NS)) == ("bob", None)


def test_metadata_absent_is_none(lv, no_stderr):
    assert lv.get_metadata("alice-web", "urn:example:other") is None


def test_metadata_set_replace_remove(lv):
    lv.set_metadata("alice-db", meta("alice", "dom_Payroll"), "svirt", SVIRT_NS)
    assert read_meta(lv.get_metadata("alice-db", SVIRT_NS)) == ("alice", "dom_Payroll")
    # an unqualified fragment works too (libvirt's own form)
    lv.set_metadata("alice-db", "<vm><owner>dave</owner></vm>", "svirt", SVIRT_NS)
    assert read_meta(lv.get_metadata("alice-db", SVIRT_NS)) == ("dave", None)
    lv.set_metadata("alice-db", None, "svirt", SVIRT_NS)
    assert lv.get_metadata("alice-db", SVIRT_NS) is None


def test_metadata_config_and_live_on_running_domain(lv):
    lv.set_metadata("alice-web", meta("erin"), "svirt", SVIRT_NS, live=True, config=True)
    assert read_meta(lv.get_metadata("alice-web", SVIRT_NS)) == ("erin", None)
    assert read_meta(lv.get_metadata("alice-web", SVIRT_NS, config=True)) == ("erin", None)
    dumped = lv.dumpxml("alice-web", inactive=True)
    assert "erin" in dumped


def test_metadata_in_dumpxml_uses_namespace(lv):
    lv.set_metadata("alice-db", meta("alice", "dom_Fun"), "svirt", SVIRT_NS)
    root = etree.fromstring(lv.dumpxml("alice-db").encode())
    lab = root.find(f"metadata/{{{SVIRT_NS}}}vm/{{{SVIRT_NS}}}label")
    assert lab is not None and lab.get("name") == "dom_Fun"


def test_bad_metadata_is_invalid_arg(lv, no_stderr):
    with pytest.raises(BackendError) as ei:
        lv.set_metadata("alice-db", "<vm><owner>x</vm>", "svirt", SVIRT_NS)
    assert ei.value.code == "invalid-arg"


# -- console, host, connection ----------------------------------------------------------------
def test_console_is_unsupported_on_test_driver(lv, no_stderr):
    with pytest.raises(BackendError) as ei:
        lv.open_console("alice-web")
    assert ei.value.code == "unsupported"
    assert "console of domain 'alice-web'" in str(ei.value)


def test_hostinfo(lv):
    info = lv.hostinfo()
    assert info["backend"] == "libvirt" and info["hypervisor"] == "TEST"
    assert info["cpus"] == 8 and info["memory_kib"] == 16 * 1024 * 1024
    assert info["uri"] == DEMO_URI


def test_missing_node_file_is_a_clear_connection_error(tmp_path, no_stderr):
    uri = f"test://{tmp_path}/nope.xml"
    with pytest.raises(BackendError) as ei:
        LibvirtBackend(uri)
    assert ei.value.code == "connection"
    assert f"cannot connect to {uri}" in str(ei.value)
    assert "does not exist" in str(ei.value)


def test_malformed_node_file_is_a_connection_error(tmp_path, no_stderr):
    node = tmp_path / "bad.xml"
    node.write_text("<node><domain>")
    with pytest.raises(BackendError) as ei:
        LibvirtBackend(f"test://{node}")
    assert ei.value.code == "connection"


def test_unreachable_daemon_suggests_libvirtd(no_stderr):
    uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    with pytest.raises(BackendError) as ei:
        LibvirtBackend(uri)
    assert ei.value.code == "connection"
    assert str(ei.value).startswith(f"cannot connect to {uri}: ")
    assert "is libvirtd running?" in str(ei.value)


def test_closed_backend_says_so(lv):
    lv.close()
    with pytest.raises(BackendError) as ei:
        lv.lookup("alice-web")
    assert ei.value.code == "connection"
    lv.close()  # idempotent


def test_open_backend_defaults_and_ignores_other_kinds_options():
    b = open_backend("libvirt", None, xl_path=None, xl_config_dir="/etc/xen")
    try:
        assert b.uri == "test:///default" and b.name == "libvirt"
        assert [d.name for d in b.list_domains()] == ["test"]
    finally:
        b.close()


def test_open_backend_unknown_kind():
    with pytest.raises(BackendError) as ei:
        open_backend("vmware", None)
    assert ei.value.code == "invalid-arg" and "libvirt, xl" in str(ei.value)


# -- migration (simulated between test-driver states) -----------------------------------------
def test_simulated_migration_moves_domain_and_metadata(lv):
    dest = LibvirtBackend("test:///default")
    try:
        lv.set_metadata("alice-web", meta("alice", "dom_Fun"), "svirt", SVIRT_NS)
        calls = []
        lv.migrate(
            "alice-web",
            "test:///default",
            live=True,
            persistent=True,
            progress=lambda done, total: calls.append((done, total)),
        )
        assert lv.lookup("alice-web").state == "shut off"
        moved = dest.lookup("alice-web")
        assert moved.state == "running" and moved.persistent
        assert read_meta(dest.get_metadata("alice-web", SVIRT_NS)) == ("alice", "dom_Fun")
        assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] > 0
    finally:
        dest.close()


def test_simulated_migration_undefine_source(lv):
    dest = LibvirtBackend("test:///default")
    try:
        lv.migrate("bob-build", "test:///default", undefine_source=True)
        with pytest.raises(NoSuchDomain):
            lv.lookup("bob-build")
        assert dest.lookup("bob-build").persistent is False
    finally:
        dest.close()


def test_migration_of_inactive_domain_is_refused(lv):
    with pytest.raises(BackendError, match="domain 'alice-db' is not running"):
        lv.migrate("alice-db", "test:///default")


def test_migration_from_test_driver_to_real_uri_is_unsupported(lv):
    with pytest.raises(BackendError) as ei:
        lv.migrate("alice-web", "qemu+ssh://elsewhere/system")
    assert ei.value.code == "unsupported" and "simulated" in str(ei.value)


def test_migration_to_the_same_default_state_is_refused():
    b = LibvirtBackend("test:///default")
    try:
        with pytest.raises(BackendError, match="same test driver state"):
            b.migrate("test", "test:///default")
    finally:
        b.close()


# -- many domains -----------------------------------------------------------------------------
def test_list_many_domains(tmp_path):
    n = 2000
    parts = ["<node>"]
    for i in range(n):
        state = 1 if i % 3 else 5
        parts.append(
            "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            f"<name>vm{i:05d}</name><uuid>{uuid.uuid4()}</uuid>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            f"<devices/><test:runstate>{state}</test:runstate></domain>"
        )
    parts.append("</node>")
    node = tmp_path / "many.xml"
    node.write_text("".join(parts))
    b = LibvirtBackend(f"test://{node}")
    try:
        active = b.list_domains()
        everything = b.list_domains(include_inactive=True)
    finally:
        b.close()
    inactive = [i for i in range(n) if i % 3 == 0]
    assert len(everything) == n
    assert len(active) == n - len(inactive)
    assert all(d.state == "running" and d.id is not None for d in active)
    assert {d.name for d in everything if d.state == "shut off"} == {f"vm{i:05d}" for i in inactive}


def test_dead_connection_is_code_connection(lv, no_stderr):
    """When libvirt's connection dies under us, every error says so (svirtd reconnects on it)."""
    lv.connection.close()  # the connection object stays, but is dead, as after a daemon restart
    for call in (lambda: lv.lookup("alice-web"), lv.list_domains, lv.hostinfo):
        with pytest.raises(BackendError) as ei:
            call()
        assert ei.value.code == "connection"
        assert "was lost (libvirtd restarted?)" in str(ei.value)


def test_failing_progress_callback_does_not_stop_a_migration(lv):
    dest = LibvirtBackend("test:///default")
    calls = []

    def broken(done, total):
        calls.append(done)
        raise OSError("client went away")

    try:
        lv.migrate("shared-dns", "test:///default", progress=broken)
        assert calls == [0]  # dropped after it failed
        assert dest.lookup("shared-dns").state == "running"
        assert lv.lookup("shared-dns").state == "shut off"
    finally:
        dest.close()


class _MigratingDomain:
    """Stands in for a virDomain during a real migration, which needs a second host: only
    our polling of jobInfo() on another thread is under test here, not libvirt."""

    def __init__(self, fail=None):
        import threading

        self.done = threading.Event()
        self.fail = fail
        self.polls = 0

    def migrate3(self, dconn, params, flags):
        self.flags = flags
        self.done.wait(5)
        if self.fail:
            raise self.fail

    def jobInfo(self):
        import libvirt

        self.polls += 1
        if self.polls >= 3:
            self.done.set()
        return [libvirt.VIR_DOMAIN_JOB_UNBOUNDED, 0, 0, 1000, 250 * self.polls, 0] + [0] * 6


def test_real_migration_progress_is_polled_from_job_info(lv):
    import libvirt

    dom = _MigratingDomain()
    seen = []
    lv._migrate_with_progress(
        dom, "vm", None, libvirt.VIR_MIGRATE_LIVE, lambda d, t: seen.append((d, t))
    )
    assert dom.flags == libvirt.VIR_MIGRATE_LIVE
    assert seen[:2] == [(250, 1000), (500, 1000)]
    assert seen[-1] == (1000, 1000)


def test_real_migration_failure_is_raised_in_the_callers_thread(lv):
    dom = _MigratingDomain(fail=RuntimeError("boom"))
    dom.done.set()
    with pytest.raises(RuntimeError, match="boom"):
        lv._migrate_with_progress(dom, "vm", None, 0, None)


# -- pinning: act on the VM that was checked --------------------------------------------------
def test_a_pinned_name_acts_on_the_checked_uuid_only(lv):
    from secured_virt.backends.base import DomainChanged

    lv.define(new_xml("pinme"))
    checked = lv.lookup("pinme").uuid
    with lv.pinned("pinme", checked):
        assert lv.lookup("pinme").uuid == checked
        # someone replaces the VM under the same name between the check and the action
        lv.undefine("pinme")
    lv.define(new_xml("pinme"))
    with lv.pinned("pinme", checked), pytest.raises(DomainChanged) as err:
        lv.start("pinme")
    assert f"no longer the VM with UUID {checked}" in str(err.value)
    assert lv.lookup("pinme").state == "shut off"  # the replacement was not touched
    # unpinned, the name means the new VM again
    lv.start("pinme")
    assert lv.lookup("pinme").state == "running"


def test_a_nested_pin_of_the_same_vm_uses_the_outer_blocks_handle(lv, monkeypatch):
    """A step that pins the VM again inside the request's pinned block (the effect's lazy
    read, service.steps) looks nothing up again; a pin of another UUID does."""
    lv.define(new_xml("pin-n"))
    checked = lv.lookup("pin-n").uuid
    lookups = []
    real = lv.connection.lookupByUUIDString
    monkeypatch.setattr(lv.connection, "lookupByUUIDString", lambda u: lookups.append(u) or real(u))
    with lv.pinned("pin-n", checked):
        lv.dumpxml("pin-n")
        with lv.pinned("pin-n", checked):
            lv.dumpxml("pin-n")
        lv.dumpxml("pin-n")
    assert lookups == [checked]
    # the handle first taken inside the nested block serves the enclosing one after it (a
    # start's confinement step reads the XML in a pin of its own, then the start acts)
    lookups.clear()
    with lv.pinned("pin-n", checked):
        with lv.pinned("pin-n", checked):
            lv.dumpxml("pin-n")
        lv.dumpxml("pin-n")
    assert lookups == [checked]
    # not beyond the block: a later block of the same VM looks it up again
    lookups.clear()
    with lv.pinned("pin-n", checked):
        lv.dumpxml("pin-n")
    with lv.pinned("pin-n", checked):
        lv.dumpxml("pin-n")
    assert lookups == [checked, checked]


def test_a_change_makes_the_pinned_block_look_its_vm_up_again(lv):
    """A handle keeps the id its domain had when it was looked up: after a revert to a running
    snapshot inside the block (which starts the VM through the snapshot, not through the
    block's handle), what the block reads of the VM is its running instance's."""
    lv.define(new_xml("pin-s"))
    lv.start("pin-s")
    lv.snapshot_create_as("pin-s", "up")
    lv.destroy("pin-s")
    checked = lv.lookup("pin-s").uuid
    with lv.pinned("pin-s", checked):
        assert lv.lookup("pin-s").id is None
        lv.snapshot_revert("pin-s", "up")
        assert lv.lookup("pin-s").id is not None
    lv.destroy("pin-s")
    with lv.pinned("pin-s", checked):  # the change inside a nested pin of the same VM
        assert lv.lookup("pin-s").id is None
        with lv.pinned("pin-s", checked):
            lv.snapshot_revert("pin-s", "up")
        assert lv.lookup("pin-s").id is not None  # the enclosing block does not get it back


def test_pins_are_per_thread_and_nest(lv):
    import threading

    lv.define(new_xml("pin-a"))
    real = lv.lookup("pin-a").uuid
    seen = []
    with lv.pinned("pin-a", str(uuid.uuid4())):
        t = threading.Thread(target=lambda: seen.append(lv.lookup("pin-a").uuid))
        t.start()
        t.join()
        with lv.pinned("pin-a", real):
            assert lv.lookup("pin-a").uuid == real
        with pytest.raises(BackendError, match="no longer the VM"):
            lv.lookup("pin-a")
    assert seen == [real]  # another thread (another svirtd request) is not affected
    assert lv.lookup("pin-a").uuid == real
    with lv.pinned("pin-a", None):  # no UUID known: by name, as before
        assert lv.lookup("pin-a").uuid == real


def test_concurrent_listings_are_shared_but_never_older_than_the_request(lv, monkeypatch):
    """svirtd's list requests share one pass over libvirt (issue 18), but a request never
    gets rows of a listing that started before it arrived: B and C arrive while A's listing
    runs, after 'late' was defined, so both see 'late' and share one listing of their own."""
    import threading

    real = lv._listing_now
    started, release, calls = threading.Event(), threading.Event(), []

    def slow(include_inactive):
        calls.append(include_inactive)
        out = real(include_inactive)
        if len(calls) == 1:  # A's listing has read libvirt; hold it until B and C arrived
            started.set()
            assert release.wait(10)
        return out

    monkeypatch.setattr(lv, "_listing_now", slow)
    waiting = []  # threads waiting for a listing to end (B for A's, C for B's)

    class Counted(threading.Event):
        def wait(self, timeout=None):
            waiting.append(1)
            return super().wait(timeout)

    def flight_init(self):
        self.done, self.result = Counted(), None

    monkeypatch.setattr(libvirt_backend._Flight, "__init__", flight_init)
    got: dict[str, list[str]] = {}
    steps: dict[str, list[str]] = {}  # what each told svirtd's admission queue (waiting.py)

    class Keeper:
        def __init__(self, who):
            self.who = who

        def step_out(self):
            steps.setdefault(self.who, []).append("out")

        def step_in(self):
            steps.setdefault(self.who, []).append("in")

    def ask(who):
        turns.keeper(Keeper(who))
        try:
            got[who] = [d.name for d in lv.listing(include_inactive=True).domains]
        finally:
            turns.keeper(None)

    a = threading.Thread(target=ask, args=("A",))
    a.start()
    assert started.wait(10)
    lv.define(new_xml("late"))
    others = [threading.Thread(target=ask, args=(w,)) for w in ("B", "C")]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10  # both wait, for the next listing, none started yet
    while len(waiting) < 2:
        assert time.monotonic() < deadline, "B and C did not both wait"
        time.sleep(0.01)
    release.set()
    for t in (a, *others):
        t.join(10)
    assert "late" not in got["A"]
    assert "late" in got["B"] and "late" in got["C"]
    assert len(calls) == 2  # A's, and one shared by B and C
    # B waited for A's listing and led its own; C waited for B's: neither needed the CPU while
    # it waited, and both said so; A never waited
    assert steps == {"B": ["out", "in"], "C": ["out", "in"]}
    assert lv._flights == {}
    assert "late" in [d.name for d in lv.list_domains(include_inactive=True)]


def test_the_os_type_memo_forgets_a_domain_with_its_metadata(lv):
    """A domain's OS type is asked once, then forgotten with its metadata (its event or
    svirtd's own change, MetadataCache.forget) and with every domain's (an event that names
    no domain, a closed connection: _forget_all)."""
    lv.define(new_xml("os-t"))
    row = lv.lookup("os-t")
    uuid = row.uuid
    assert lv._os_types[uuid] == row.os_type
    lv.metadata_cache.forget(uuid)
    assert uuid not in lv._os_types
    assert lv.lookup("os-t").os_type == row.os_type and uuid in lv._os_types
    lv.setmaxmem("os-t", 2048)  # a change of svirtd's own (_changing)
    assert uuid not in lv._os_types
    lv.lookup("os-t")
    with lv.metadata_cache._lock:
        lv.metadata_cache._forget_all()
    assert not lv._os_types
