"""The bundled example policies end to end: load, compile, ssidrefs, binary, map."""

from __future__ import annotations

import hashlib
import struct

import pytest

import policy
from policy.binfmt import unpack_policy
from policy.constants import ACM_MAGIC, UNLABELED
from policy.mapfile import parse_map

# Sizes Xen 3.3's compiler produces (header + policy reference + CHWALL + STE).
BINARY_SIZES = {
    "DEFAULT": 148,
    "example.test": 236,
    "xm-test": 260,
    "example.client_v1": 380,
}


def test_all_examples_present(ex):
    assert {
        "DEFAULT",
        "example.test",
        "example.client_v1",
        "xm-test",
        "xm-test-new",
        "xm-test-update",
    } <= set(ex)


@pytest.mark.parametrize("name,size", sorted(BINARY_SIZES.items()))
def test_binary_sizes_match_xen(cex, name, size):
    assert len(cex[name].binary) == size


def test_client_v1_ssidrefs(cex):
    c = cex["example.client_v1"]
    assert c.ssidref("dom_Fun") == 196611
    assert c.ssidref("SystemManagement") == 65537  # bootstrap = Domain-0's default
    assert [c.ssidref(n) & 0xFFFF for n in c.vm_order] == list(range(7))
    assert c.vm_order[1:] == (
        "SystemManagement",
        "dom_BoincClient",
        "dom_Fun",
        "dom_HomeBanking",
        "dom_NetworkDomain",
        "dom_StorageDomain",
    )
    assert c.ssidref(UNLABELED) == 0
    assert c.label_for(196611) == "dom_Fun"
    assert c.label_for(0) == UNLABELED


def test_xm_test_and_example_test_ssidrefs(cex):
    x = cex["xm-test"]
    assert {n: x.ssidref(n) for n in ("SystemManagement", "blue", "green", "red")} == {
        "SystemManagement": 0x00010001,
        "blue": 0x00020002,
        "green": 0x00030003,
        "red": 0x00040004,
    }
    t = cex["example.test"]
    assert [t.ssidref(n) >> 16 for n in ("SystemManagement", "CocaCola", "PepsiCo", "VIO")] == [
        1,
        2,
        3,
        4,
    ]


def test_resource_ssidrefs_follow_vm_rows(cex):
    x = cex["xm-test"]
    # resources come after the 5 VM rows, sorted, STE half only
    assert [x.resource_ssidref(n) for n in ("SystemManagement", "blue", "green", "red")] == [
        5 << 16,
        6 << 16,
        7 << 16,
        8 << 16,
    ]
    assert x.resource_label_for(7 << 16) == "green"
    assert x.resource_ssidref(UNLABELED) == 0
    with pytest.raises(policy.LabelError, match="not a resource label"):
        x.resource_ssidref("purple")
    with pytest.raises(policy.LabelError, match="not a VM label"):
        x.ssidref("purple")


def _expected_rows(p):
    """Re-derive the matrices from the parsed policy, independently of the compiler."""
    rest = sorted(n for n in p.vm_label_names if n not in (UNLABELED, p.bootstrap))
    vm_order = [UNLABELED, p.bootstrap, *rest]
    res_order = sorted(n for n in p.resource_label_names if n != UNLABELED)
    ste, cw = sorted(p.ste_types), sorted(p.chwall_types)
    vm = {lbl.name: lbl for lbl in p.vm_labels}
    chwall_rows = [
        [int(vm.get(n) is not None and t in vm[n].chwall_types) for t in cw] for n in vm_order
    ]
    ste_rows = [
        [int(vm.get(n) is not None and t in vm[n].ste_types) for t in ste] for n in vm_order
    ]
    ste_rows += [[int(p.resource_label(n).ste_type == t) for t in ste] for n in res_order]
    conflicts = sorted(p.conflict_sets, key=lambda c: c.name)
    conflict_rows = [[int(t in c.types) for t in cw] for c in conflicts]
    return chwall_rows, conflict_rows, ste_rows


@pytest.mark.parametrize(
    "name",
    ["DEFAULT", "example.test", "example.client_v1", "xm-test", "xm-test-new", "mytest"],
)
def test_binary_decodes_to_the_xml(ex, cex, name):
    p, c = ex[name], cex[name]
    b = unpack_policy(c.binary)
    assert b.magic == ACM_MAGIC == 0x0001DEBC
    assert b.policy_version == 4
    assert b.length == len(c.binary)
    assert b.name == p.name
    assert b.xml_version == p.version_tuple
    assert b.sha1 == hashlib.sha1(p.xml).digest()
    chwall_rows, conflict_rows, ste_rows = _expected_rows(p)
    assert b.chwall_rows == chwall_rows
    assert b.conflict_rows == conflict_rows
    assert b.ste_rows == ste_rows
    assert b.chwall_max_types == len(p.chwall_types)
    assert b.ste_max_types == len(p.ste_types)
    # each part after the 60-byte header starts on the layout's offsets
    assert struct.unpack_from("!i", c.binary, 12)[0] == 60
    assert b.primary_offset % 4 == 0 and b.primary_offset > 60
    assert (len(c.binary) - b.secondary_offset) % 8 == 0


def test_default_binary_matches_xens_boot_default(cex):
    b = unpack_policy(cex["DEFAULT"].binary)
    # CHWALL: 1 type, 2 ssidrefs, all zero.  STE: row 0 = {__UNLABELED__}, row 1 = both.
    assert b.chwall_rows == [[0], [0]]
    assert b.ste_rows == [[0, 1], [1, 1]]


def test_xm_test_map_text(cex):
    text = cex["xm-test"].map_text
    norm = [" ".join(line.split()) for line in text.splitlines()]
    for line in [
        "POLICYREFERENCENAME xm-test",
        "MAGIC 0001debc",
        "POLICFILE xm-test-security_policy.xml",
        "BINARYFILE xm-test.bin",
        "PRIMARY CHWALL",
        "SECONDARY STE",
        "LABEL->SSID ANY CHWALL __NULL_LABEL__ 0",
        "LABEL->SSID VM CHWALL SystemManagement 1",
        "LABEL->SSID VM CHWALL blue 2",
        "LABEL->SSID VM CHWALL green 3",
        "LABEL->SSID VM CHWALL red 4",
        "LABEL->SSID VM STE red 4",
        "LABEL->SSID RES STE SystemManagement 5",
        "LABEL->SSID RES STE blue 6",
        "LABEL->SSID RES STE green 7",
        "LABEL->SSID RES STE red 8",
        "TYPE CHWALL SystemManagement 0",
        "TYPE CHWALL blue 1",
        "TYPE CHWALL green 2",
        "TYPE CHWALL red 3",
        "MAX-STE-SSIDS 00000009",
    ]:
        assert line in norm, line


def test_map_round_trips_to_ssidrefs(cex):
    for c in cex.values():
        m = parse_map(c.map_text)
        assert m.header["POLICYREFERENCENAME"] == c.name
        for name in c.vm_order[1:]:
            assert m.label2ssidref(name, "dom") == c.ssidref(name)
        for name in c.res_order:
            assert m.label2ssidref(name, "res") == c.resource_ssidref(name)
        assert m.label_names("dom") == sorted(c.vm_order[1:])


def test_map_names_unlabeled_when_policy_defines_it(cex):
    norm = [" ".join(line.split()) for line in cex["DEFAULT"].map_text.splitlines()]
    assert "LABEL->SSID ANY CHWALL __UNLABELED__ 0" in norm
    assert "__NULL_LABEL__" not in cex["DEFAULT"].map_text


def test_map_paths_follow_the_dotted_name(cex):
    text = cex["example.client_v1"].map_text
    assert "example/client_v1-security_policy.xml" in text
    assert "example/client_v1.bin" in text
    assert cex["example.client_v1"].stem == "example/client_v1"


def test_example_facts(ex):
    c1 = ex["example.client_v1"]
    assert c1.header.url == "www.ibm.com/example/client_v1"
    assert [(c.name, c.types) for c in c1.conflict_sets] == [
        ("Protection1", ("cw_Sensitive", "cw_Distrusted"))
    ]
    assert ex["example.test"].conflict_sets == ()
    new = ex["xm-test-new"]
    assert (new.name, new.version, new.from_policy.name, new.from_policy.version) == (
        "xm-test",
        "1.1",
        "xm-test",
        "1.0",
    )
    assert "blue" not in new.ste_types
    upd = ex["xm-test-update"]
    assert upd.vm_label("GREEN").from_name == "green"
    assert upd.resource_label("RED").from_name == "red"
    assert upd.resource_label("RED").ste_type == "red"
    assert ex["DEFAULT"].is_default() and not ex["xm-test"].is_default()
    # the user guide's mytest has two conflict sets with the same name
    assert [c.name for c in ex["mytest"].conflict_sets] == ["RER", "RER"]


def test_compile_file_and_example_helpers(tmp_path):
    path = policy.examples()["xm-test"]
    assert policy.compile_file(path).ssidref("red") == 0x00040004
    with pytest.raises(KeyError, match="no example policy"):
        policy.example("nope")


def test_offline_compile_writes_xen_layout(cex, tmp_path):
    paths = cex["example.client_v1"].write_files(str(tmp_path))
    assert paths["binary"] == str(tmp_path / "example" / "client_v1.bin")
    assert (tmp_path / "example" / "client_v1.bin").read_bytes() == cex["example.client_v1"].binary
    assert (tmp_path / "example" / "client_v1.map").read_text().startswith("POLICYREFERENCENAME")
