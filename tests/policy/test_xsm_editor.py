"""Editing policies through XSMPolicy: each edit is a validated new version, all-or-nothing."""

from __future__ import annotations

import pytest

import policy
from policy import Xserr, XsmError
from policy.binfmt import unpack_policy
from policy.constants import ACM_CHWALL_CONFLICT, ACM_SSIDREF_IN_USE
from policy.xsm import ACM_LABEL_RES, ACM_LABEL_VM, XS_INST_LOAD, XsmHost


@pytest.fixture
def host(tmp_path):
    h = XsmHost(tmp_path / "acm", boot_id="b")
    assert h.set_policy(policy.examples()["xm-test"].read_bytes(), XS_INST_LOAD).ok
    return h


def test_reads(host):
    p = host.policy()
    assert p.get_header()["policyname"] == "xm-test"
    assert p.get_types("STE") == ["SystemManagement", "green", "red", "blue"]
    assert p.get_types("chwall") == ["SystemManagement", "green", "red", "blue"]
    assert p.get_conflict_sets() == [{"name": "RER", "chwalltypes": ["blue", "red"]}]
    assert [r["name"] for r in p.get_labels(ACM_LABEL_VM)] == [
        "SystemManagement",
        "green",
        "red",
        "blue",
    ]
    assert {r["type"] for r in p.get_labels(ACM_LABEL_RES)} == {"res"}
    assert len(p.get_labels()) == 8
    assert p.get_xml() == policy.examples()["xm-test"].read_text()
    assert "LABEL->SSID VM  CHWALL blue" in p.get_map()
    assert len(p.get_binary()) == 260
    with pytest.raises(XsmError, match="unknown policy component"):
        p.get_types("FLASK")


def test_add_type_makes_a_new_loaded_version(host):
    p = host.policy()
    st = p.add_type("STE", "yellow")
    assert st.ok and st.version == "1.1"
    assert host.get_policy().version == "1.1"
    hdr = p.get_header()
    assert hdr["frompolicy"] == "xm-test/1.0"
    assert "yellow" in p.get_types("STE")
    st = p.add_type("STE", "yellow")
    assert st.xserr == Xserr.POLICY_HAS_DUPLICATES and host.get_policy().version == "1.1"


def test_rm_type_refused_while_used(host):
    p = host.policy()
    st = p.rm_type("CHWALL", "blue")
    assert st.xserr == Xserr.BAD_LABEL
    assert "blue" in st.message and "conflict set RER" in st.message
    p.add_type("CHWALL", "spare")
    assert p.rm_type("CHWALL", "spare").ok
    assert "spare" not in p.get_types("CHWALL")
    assert p.rm_type("CHWALL", "nope").xserr == Xserr.GENERAL_FAILURE


def test_conflict_set_edit_replays_running_domains(host):
    host.vm_set_label("g", "green")
    host.vm_set_label("r", "red")
    host.domain_create("g")
    host.domain_create("r")
    p = host.policy()
    st = p.add_conflict_set("GR", ["green", "red"])
    assert not st.ok and st.xserr == Xserr.HV_OP_FAILED
    assert [e[0] for e in st.errors] == [ACM_CHWALL_CONFLICT]
    assert host.get_policy().version == "1.0" and len(p.get_conflict_sets()) == 1
    host.domain_destroy("r")
    assert p.add_conflict_set("GR", ["green", "red"]).ok
    assert not host.can_run("red")
    assert p.rm_conflict_set("GR").ok and host.can_run("red")
    assert p.rm_conflict_set("GR").xserr == Xserr.BAD_CONFLICTSET


def test_invalid_edit_explains(host):
    st = host.policy().add_conflict_set("X", ["green", "nosuch"])
    assert st.xserr == Xserr.BAD_CONFLICTSET and "nosuch" in st.message
    st = host.policy().add_label({"type": "vm", "name": "a:b", "stetypes": ["green"]})
    assert st.xserr == Xserr.BAD_LABEL and "':'" in st.message


def test_labels_add_and_remove(host):
    p = host.policy()
    assert p.add_label(
        {"type": "vm", "name": "teal", "stetypes": ["green", "blue"], "chwalltypes": ["green"]}
    ).ok
    assert host.can_run("teal")
    assert p.add_label({"type": "res", "name": "teal-disk", "stetypes": ["green"]}).ok
    st = p.add_label({"type": "res", "name": "two", "stetypes": ["green", "red"]})
    assert st.xserr == Xserr.BAD_LABEL
    assert p.add_label({"type": "vm", "name": "teal", "stetypes": ["green"]}).xserr == (
        Xserr.POLICY_HAS_DUPLICATES
    )
    host.vm_set_label("t", "teal")
    host.domain_create("t")
    st = p.rm_label("teal", "vm")
    assert st.errors == [(ACM_SSIDREF_IN_USE, host.active.ssidref("teal"))]
    host.domain_destroy("t")
    assert p.rm_label("teal", "vm").ok
    assert host.vm_get_label("t") == "INV_ACM:xm-test:teal"  # bookkeeping marks it invalid
    assert p.rm_label("teal-disk").ok and p.rm_label("teal-disk").xserr == Xserr.BAD_LABEL
    assert host.get_policy().version == "1.4"


def test_header_edits(host):
    p = host.policy()
    assert p.set_header(date="2025-01-01", policyurl="https://example.org/p").ok
    hdr = p.get_header()
    assert (hdr["date"], hdr["policyurl"], hdr["version"]) == (
        "2025-01-01",
        "https://example.org/p",
        "1.1",
    )
    assert p.set_header(version="1.1").xserr == Xserr.VERSION_PREVENTS_UPDATE
    assert p.set_header(version="3.0").ok and host.get_policy().version == "3.0"
    assert p.set_header(policyname="other").xserr == Xserr.BAD_POLICY_NAME
    assert unpack_policy(p.get_binary()).xml_version == (3, 0)


def test_edit_of_an_installed_policy_that_is_not_loaded(host, tmp_path):
    assert host.set_policy(policy.examples()["example.test"].read_bytes(), 0).ok
    p = host.policy("example.test")
    assert p.add_type("CHWALL", "Extra").ok
    assert host.get_policy().xs_ref == "xm-test"  # the loaded policy is untouched
    again = host.installed("example.test")
    assert again.version == "1.1" and "Extra" in again.chwall_types
    assert again.from_policy is None
    with pytest.raises(XsmError, match="not installed"):
        host.policy("nope")
