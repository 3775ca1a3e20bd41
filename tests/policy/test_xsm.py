"""The XSM management API: policy state records, persistence, atomic writes, labels."""

from __future__ import annotations

import os
import stat

import pytest

import policy
from policy import Xserr, XsmError
from policy.binfmt import unpack_policy
from policy.constants import ACM_SSIDREF_IN_USE
from policy.safefile import atomic_write
from policy.xsm import XS_INST_BOOT, XS_INST_LOAD, XS_POLICY_NONE, XsmHost


def _xml(name: str) -> bytes:
    return policy.examples()[name].read_bytes()


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "acm"
    return d


@pytest.fixture
def host(state):
    return XsmHost(state, boot_id="boot-1")


def _tmp_leftovers(root) -> list[str]:
    return [f for _r, _d, fs in os.walk(root) for f in fs if f.startswith(".tmp-")]


def test_fresh_host_runs_default(host, state):
    st = host.get_policy()
    assert st.ok and st.xs_ref == "DEFAULT" and st.flags == XS_INST_BOOT | XS_INST_LOAD
    assert host.get_xstype() == 1 and host.get_xstype_name() == "ACM"
    assert (state / "policies" / "DEFAULT-security_policy.xml").is_file()
    assert len((state / "policies" / "DEFAULT.bin").read_bytes()) == 148
    assert stat.S_IMODE(os.stat(state).st_mode) & 0o022 == 0
    assert host.warnings == []
    assert host.vm_get_label("Domain-0") == "ACM:DEFAULT:SystemManagement"
    assert host.vm_get_label("guest") == "ACM:DEFAULT:__UNLABELED__"


def test_acm_disabled_host(state):
    h = XsmHost(state, boot_id="b", xstype=XS_POLICY_NONE)
    assert h.get_xstype() == 0 and h.get_xstype_name() == "none"
    st = h.set_policy(_xml("xm-test"), XS_INST_LOAD)
    assert not st.ok and st.xserr == Xserr.POLICY_TYPE_UNSUPPORTED


def test_set_policy_installs_at_xens_paths(host, state):
    st = host.set_policy(_xml("example.client_v1"), XS_INST_LOAD | XS_INST_BOOT)
    assert st.ok, st.problems
    assert (st.xs_ref, st.version, st.flags) == ("example.client_v1", "1.0", 3)
    assert st.repr.startswith("<?xml")
    base = state / "policies" / "example"
    xml = base / "client_v1-security_policy.xml"
    assert xml.read_bytes() == _xml("example.client_v1")
    binary = (base / "client_v1.bin").read_bytes()
    assert len(binary) == 380 and unpack_policy(binary).name == "example.client_v1"
    assert "POLICYREFERENCENAME    example.client_v1" in (base / "client_v1.map").read_text()
    for f in (xml, base / "client_v1.bin", state / "boot_policy", state / "loaded_policy"):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o644
    assert _tmp_leftovers(state) == []
    assert host.policy().get_binary() == binary


def test_state_survives_restart_in_the_same_boot(state):
    h = XsmHost(state, boot_id="b1")
    assert h.set_policy(_xml("xm-test"), XS_INST_LOAD).ok  # loaded, not for boot
    h2 = XsmHost(state, boot_id="b1")  # daemon restart: same boot
    assert h2.get_policy().xs_ref == "xm-test" and h2.warnings == []
    h3 = XsmHost(state, boot_id="b2")  # reboot without a boot policy: DEFAULT
    assert h3.get_policy().xs_ref == "DEFAULT"
    assert {p["name"] for p in h3.list_policies()} == {"DEFAULT", "xm-test"}


def test_boot_policy_loads_at_start_and_rm_boot(state):
    h = XsmHost(state, boot_id="b1")
    assert h.set_policy(_xml("xm-test"), XS_INST_LOAD | XS_INST_BOOT).ok
    assert XsmHost(state, boot_id="b2").get_policy().xs_ref == "xm-test"
    h2 = XsmHost(state, boot_id="b3")
    h2.rm_boot_policy()
    assert h2.get_policy().flags == XS_INST_LOAD  # still loaded, no longer for boot
    assert XsmHost(state, boot_id="b4").get_policy().xs_ref == "DEFAULT"


def test_boot_only_install_loads_at_next_boot(state):
    h = XsmHost(state, boot_id="b1")
    st = h.set_policy(_xml("example.test"), XS_INST_BOOT)
    assert st.ok and st.flags == XS_INST_BOOT
    assert h.get_policy().xs_ref == "DEFAULT"
    assert XsmHost(state, boot_id="b2").get_policy().xs_ref == "example.test"


def test_tampered_policy_falls_back_to_default(state):
    h = XsmHost(state, boot_id="b1")
    assert h.set_policy(_xml("xm-test"), XS_INST_LOAD | XS_INST_BOOT).ok
    f = state / "policies" / "xm-test-security_policy.xml"
    f.write_bytes(_xml("xm-test").replace(b"Fri Sep 29 2006", b"Sat Sep 30 2006"))
    h2 = XsmHost(state, boot_id="b2")
    assert h2.get_policy().xs_ref == "DEFAULT"
    assert any("SHA-1" in w for w in h2.warnings)


@pytest.mark.parametrize("attack", ["world-writable", "symlink"])
def test_untrusted_policy_file_is_not_loaded(state, tmp_path, attack):
    h = XsmHost(state, boot_id="b1")
    assert h.set_policy(_xml("xm-test"), XS_INST_LOAD | XS_INST_BOOT).ok
    f = state / "policies" / "xm-test-security_policy.xml"
    if attack == "world-writable":
        os.chmod(f, 0o666)
    else:
        target = tmp_path / "elsewhere.xml"
        target.write_bytes(f.read_bytes())
        f.unlink()
        f.symlink_to(target)
    h2 = XsmHost(state, boot_id="b2")
    assert h2.get_policy().xs_ref == "DEFAULT"
    assert any("xm-test" in w for w in h2.warnings)


def test_writable_state_dir_is_refused(state):
    XsmHost(state, boot_id="b")
    os.chmod(state, 0o777)
    with pytest.raises(XsmError) as ei:
        XsmHost(state, boot_id="b")
    assert ei.value.xserr == Xserr.FILE_ERROR and "chmod go-w" in ei.value.message


def test_atomic_write_leaves_old_or_new(tmp_path, monkeypatch):
    f = tmp_path / "x"
    atomic_write(f, b"old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(f, b"new")
    assert f.read_bytes() == b"old" and _tmp_leftovers(tmp_path) == []
    monkeypatch.undo()
    atomic_write(f, b"new")
    assert f.read_bytes() == b"new"


def test_invalid_policy_fails_whole(host, state):
    before = sorted(os.listdir(state / "policies"))
    st = host.set_policy(b"<SecurityPolicyDefinition/>", XS_INST_LOAD)
    assert not st.ok and st.xserr == Xserr.BAD_XML and st.problems
    bad = _xml("xm-test").replace(b'bootstrap="SystemManagement"', b'bootstrap="ghost"')
    st = host.set_policy(bad, XS_INST_LOAD, source="xm-test.xml")
    assert st.xserr == Xserr.POLICY_INCONSISTENT
    assert st.problems[0].startswith("xm-test.xml:")
    assert sorted(os.listdir(state / "policies")) == before
    assert host.get_policy().xs_ref == "DEFAULT"


def test_refused_update_keeps_the_loaded_policy_and_its_files(host, state):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    host.vm_set_label("vm-blue", "blue")
    host.domain_create("vm-blue")
    f = state / "policies" / "xm-test-security_policy.xml"
    st = host.set_policy(_xml("xm-test-new"), XS_INST_LOAD)  # same name, drops blue
    assert not st.ok and st.xserr == Xserr.HV_OP_FAILED
    assert st.errors == [(ACM_SSIDREF_IN_USE, 0x00020002)]
    assert "vm-blue" in st.problems[0]
    assert f.read_bytes() == _xml("xm-test")
    assert host.get_policy().version == "1.0"


def test_update_refused_after_files_written_restores_them(host, state, monkeypatch):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    host.vm_set_label("vm-blue", "blue")
    host.domain_create("vm-blue")
    monkeypatch.setattr(host.mediator, "check_update", lambda new: [])  # lose the race
    st = host.set_policy(_xml("xm-test-new"), XS_INST_LOAD)
    assert not st.ok and st.errors == [(ACM_SSIDREF_IN_USE, 0x00020002)]
    f = state / "policies" / "xm-test-security_policy.xml"
    assert f.read_bytes() == _xml("xm-test")


def test_update_without_load_flag_is_refused(host):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    st = host.set_policy(_xml("xm-test-new"), XS_INST_BOOT)
    assert st.xserr == Xserr.POLICY_LOADED and "LOAD" in st.message
    st = host.set_policy(_xml("xm-test"), XS_INST_LOAD)  # same content again: no-op
    assert st.ok and "nothing to do" in st.message


def test_overwrite_rules(host):
    assert host.set_policy(_xml("example.test"), 0).ok  # install only
    changed = _xml("example.test").replace(b"Mon Apr 16 2007", b"Tue Apr 17 2007")
    st = host.set_policy(changed, 0)
    assert st.xserr == Xserr.BOOTPOLICY_INSTALLED and "overwrite" in st.message
    assert host.set_policy(changed, 0, overwrite=True).ok
    assert b"Tue Apr 17" in host.installed("example.test").xml


def test_version_rules_through_the_api(host):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    st = host.set_policy(_xml("example.test"), XS_INST_LOAD)
    assert st.xserr == Xserr.VERSION_PREVENTS_UPDATE
    assert "FromPolicy" in st.problems[0]


def test_label_bookkeeping_on_update(host, tmp_path):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    img = tmp_path / "g.img"
    img.write_bytes(b"")
    host.vm_set_label("g", "green")
    host.vm_set_label("b", "ACM:xm-test:blue")
    host.resource_set_label(f"file:{img}", "green")
    host.resource_set_label("phy:sdb", "red")
    host.vif_set_label("g", 0, "green")
    host.domain_create("g", [f"file:{img}"], vifs=[0])
    st = host.set_policy(_xml("xm-test-update"), XS_INST_LOAD)
    assert st.ok, st.problems
    assert host.vm_get_label("g") == "ACM:xm-test-update:GREEN"
    assert host.vm_get_label("b") == "INV_ACM:xm-test:blue"  # blue is gone
    assert host.resource_get_label(f"file:{img}") == "ACM:xm-test-update:GREEN"
    assert host.resource_get_label("phy:/dev/sdb") == "ACM:xm-test-update:RED"
    assert host.vif_get_label("g", 0) == "ACM:xm-test-update:GREEN"
    assert host.mediator.running()["g"].label == "GREEN"
    with pytest.raises(policy.MediationDenied) as ei:
        host.domain_create("b")
    assert "invalidated" in str(ei.value)


def test_vm_labels(host):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    with pytest.raises(XsmError) as ei:
        host.vm_set_label("v", "purple")
    assert ei.value.xserr == Xserr.BAD_LABEL and "not a VM label" in ei.value.message
    with pytest.raises(XsmError, match="belongs to policy DEFAULT"):
        host.vm_set_label("v", "ACM:DEFAULT:SystemManagement")
    with pytest.raises(XsmError) as ei:
        host.vm_set_label("v", "ACM:a:b:c")
    assert ei.value.xserr == Xserr.BAD_LABEL_FORMAT
    assert host.vm_set_label("v", "red", old_label="ACM:xm-test:__UNLABELED__") == 0
    with pytest.raises(XsmError, match="already labeled ACM:xm-test:red"):
        host.vm_set_label("v", "green")
    with pytest.raises(XsmError, match="not ACM:xm-test:green"):
        host.vm_relabel("v", "blue", old_label="ACM:xm-test:green")
    host.vm_relabel("v", "blue", old_label="red")
    assert host.vm_get_label("v") == "ACM:xm-test:blue"
    host.domain_create("v")
    host.vm_set_label("r", "red")
    assert not host.dry_run("r")
    # relabeling the running blue domain to red takes down the wall against red
    assert host.vm_relabel("v", "red", "blue") == 0x00040004
    assert host.dry_run("r") and host.mediator.running()["v"].label == "red"


def test_running_vm_relabel_is_checked(host):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    host.vm_set_label("b", "blue")
    host.vm_set_label("g", "green")
    host.domain_create("b")
    host.domain_create("g")
    with pytest.raises(XsmError) as ei:
        host.vm_relabel("g", "red", "green")
    assert ei.value.xserr == Xserr.VM_IN_CONFLICT and "'b'" in ei.value.message
    assert host.vm_get_label("g") == "ACM:xm-test:green"
    assert host.vm_relabel("g", "blue", "green") == 0x00020002
    with pytest.raises(XsmError) as ei:
        host.vm_rm_label("g", "blue")
    assert ei.value.xserr == Xserr.VM_WRONG_STATE
    host.domain_destroy("g")
    host.vm_rm_label("g", "ACM:xm-test:blue")
    assert host.vm_get_label("g") == "ACM:xm-test:__UNLABELED__"


def test_resource_labels(host, tmp_path):
    assert host.set_policy(_xml("example.client_v1"), XS_INST_LOAD).ok
    real = tmp_path / "disk.img"
    real.write_bytes(b"")
    link = tmp_path / "link.img"
    link.symlink_to(real)
    name = host.resource_set_label(f"file:{link}", "res_LogicalDiskPartition2(hda2)")
    assert name == f"file:{real}"  # one resource, one label, however it is spelled
    assert host.vbd_get_label(str(real)) == "ACM:example.client_v1:res_LogicalDiskPartition2(hda2)"
    assert host.resource_set_label("phy:hda", "res_HardDrive(hda)") == "phy:/dev/hda"
    with pytest.raises(XsmError) as ei:
        host.resource_set_label(f"file:{real}", "res_SecurityToken")
    assert ei.value.xserr == Xserr.RESOURCE_ALREADY_LABELED
    with pytest.raises(XsmError) as ei:
        host.resource_set_label("bogus:thing", "res_SecurityToken")
    assert ei.value.xserr == Xserr.BAD_RESOURCE_FORMAT
    with pytest.raises(XsmError, match="not a resource label"):
        host.resource_set_label("vlan:7", "dom_Fun")
    host.vm_set_label("fun", "dom_Fun")
    host.domain_create("fun", [f"file:{real}"])
    with pytest.raises(XsmError) as ei:
        host.resource_set_label(
            f"file:{real}", "res_SecurityToken", "res_LogicalDiskPartition2(hda2)"
        )
    assert ei.value.xserr == Xserr.RESOURCE_IN_USE and "'fun'" in ei.value.message
    host.resource_set_label("phy:/dev/hda", "__INACCESSIBLE__", "res_HardDrive(hda)")
    assert host.resource_get_label("phy:hda") == "ACM:*:__INACCESSIBLE__"
    host.vm_set_label("store", "dom_StorageDomain")
    report = host.dry_run("store", ["phy:hda"])
    assert not report and dict(report.items)["resource phy:/dev/hda"].rule == "inaccessible"
    assert host.get_labeled_resources()[f"file:{real}"].endswith("(hda2)")


def test_vif_labels(host):
    assert host.set_policy(_xml("example.client_v1"), XS_INST_LOAD).ok
    host.vm_set_label("net", "dom_NetworkDomain")
    host.vif_set_label("net", 0, "res_EthernetCard")
    assert host.vif_get_label("net", 0) == "ACM:example.client_v1:res_EthernetCard"
    with pytest.raises(XsmError) as ei:
        host.vif_set_label("net", 0, "res_SecurityToken", old_label="res_GraphicsAdapter")
    assert ei.value.xserr == Xserr.BAD_LABEL
    host.domain_create("net", vifs=[0])
    with pytest.raises(XsmError) as ei:
        host.vif_set_label("net", 0, "res_SecurityToken", old_label="res_EthernetCard")
    assert ei.value.xserr == Xserr.RESOURCE_IN_USE
    host.vm_set_label("fun", "dom_Fun")
    host.vif_set_label("fun", 0, "res_EthernetCard")
    with pytest.raises(policy.MediationDenied) as ei:
        host.domain_create("fun", vifs=[0])
    assert ei.value.rule == "ste" and ei.value.details["resource"] == "vif-0"


def test_reset_policy(host):
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    host.vm_set_label("b", "blue")
    host.domain_create("b")
    st = host.reset_policy()
    assert not st.ok and "halt all guests" in st.message
    assert st.errors == [(ACM_SSIDREF_IN_USE, 0x00020002)]
    host.domain_destroy("b")
    host.vm_set_label("Domain-0", "red")  # a relabeled Domain-0 is renamed by the reset
    st = host.reset_policy()
    assert st.ok and st.xs_ref == "DEFAULT"
    assert host.vm_get_label("Domain-0") == "ACM:DEFAULT:SystemManagement"
    assert host.vm_get_label("b") == "INV_ACM:xm-test:blue"


def test_dom0_label_persists_across_restarts(state):
    h = XsmHost(state, boot_id="b1")
    assert h.set_policy(_xml("example.client_v1"), XS_INST_LOAD | XS_INST_BOOT).ok
    h.vm_set_label("Domain-0", "dom_NetworkDomain")
    h2 = XsmHost(state, boot_id="b2")
    assert h2.vm_get_label("Domain-0") == "ACM:example.client_v1:dom_NetworkDomain"
    assert not h2.can_run("dom_StorageDomain")


def test_rm_policy(host):
    assert host.set_policy(_xml("example.test"), 0).ok
    assert host.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    with pytest.raises(XsmError, match="loaded or the boot policy"):
        host.rm_policy("xm-test")
    with pytest.raises(XsmError, match="cannot be removed"):
        host.rm_policy("DEFAULT")
    host.rm_policy("example.test")
    assert "example.test" not in {p["name"] for p in host.list_policies()}
    with pytest.raises(XsmError, match="not installed"):
        host.rm_policy("example.test")


def test_relabel_calls_need_the_old_label(host):
    assert host.set_policy(_xml("example.client_v1"), XS_INST_LOAD).ok
    host.vbd_set_label("phy:sdc", "res_HardDrive(hda)")
    with pytest.raises(XsmError):
        host.vbd_relabel("phy:sdc", "res_SecurityToken", None)
    host.vbd_relabel("phy:sdc", "res_SecurityToken", "ACM:example.client_v1:res_HardDrive(hda)")
    assert host.vbd_get_label("phy:/dev/sdc").endswith(":res_SecurityToken")
    host.vif_set_label("v", 1, "res_EthernetCard")
    with pytest.raises(XsmError) as ei:
        host.vif_set_label("v", 1, "res_SecurityToken")
    assert ei.value.xserr == Xserr.RESOURCE_ALREADY_LABELED
    host.vif_relabel("v", 1, "res_SecurityToken", "res_EthernetCard")
    assert host.vif_get_label("v", 1).endswith(":res_SecurityToken")
    host.resource_relabel("phy:sdc", None, "res_SecurityToken")  # None removes the label
    assert host.resource_get_label("phy:sdc") is None


def test_default_name_is_reserved(host):
    fake = _xml("xm-test").replace(
        b"<PolicyName>xm-test</PolicyName>", b"<PolicyName>DEFAULT</PolicyName>"
    )
    st = host.set_policy(fake, XS_INST_LOAD)
    assert st.xserr == Xserr.BAD_POLICY_NAME and "reserved" in st.message
    assert host.get_policy().xs_ref == "DEFAULT" and host.active.policy.is_default()


def test_corrupt_label_file_fails_closed_but_host_starts(state):
    h = XsmHost(state, boot_id="b1")
    assert h.set_policy(_xml("xm-test"), XS_INST_LOAD).ok
    h.vm_set_label("v", "red")
    (state / "labels.json").write_text("{not json")
    h2 = XsmHost(state, boot_id="b1")
    assert h2.get_policy().xs_ref == "xm-test"
    assert any("labels unreadable" in w for w in h2.warnings)
    with pytest.raises(XsmError) as ei:
        h2.domain_create("v")
    assert ei.value.xserr == Xserr.FILE_ERROR and "not valid JSON" in ei.value.message
