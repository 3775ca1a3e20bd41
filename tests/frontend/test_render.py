"""Output formats follow virsh's, byte for byte where virsh has them."""

import json
import shutil
import subprocess

import pytest

from secured_virt.cli.render import render, table


def test_table_matches_vshtable_layout():
    out = table(["Id", "Name", "State"], [["1", "test", "running"]])
    assert out == " Id   Name   State\n----------------------\n 1    test   running\n"


@pytest.mark.skipif(not shutil.which("virsh"), reason="virsh not installed")
def test_list_identical_to_virsh_on_test_driver():
    virsh = subprocess.run(
        ["virsh", "-c", "test:///default", "list"], capture_output=True, text=True, check=True
    ).stdout
    ours = render("list", {}, {"domains": [{"id": 1, "name": "test", "state": "running"}]})
    assert ours == virsh


def test_list_label_column_and_inactive_dash():
    data = {
        "domains": [
            {
                "id": 3,
                "name": "a",
                "state": "running",
                "acm_label": "ACM:example:dom_Fun",
                "mem_kib": 1048576,
                "vcpus": 2,
                "cpu_time_ns": 88_400_000_000,
            },
            {
                "id": None,
                "name": "b",
                "state": "shut off",
                "acm_label": None,
                "mem_kib": 524288,
                "vcpus": 1,
                "cpu_time_ns": 0,
            },
        ]
    }
    out = render("list", {"label": True}, data)
    assert out == (  # xm list --label's Mem/VCPUs/Time columns before the label (issue 20)
        " Id   Name   State      Mem(MiB)   VCPUs   Time(s)   ACM-Label\n"
        "--------------------------------------------------------------------------\n"
        " 3    a      running    1024       2       88.4      ACM:example:dom_Fun\n"
        " -    b      shut off   512        1       0.0       \n"  # empty last cell: its space
        "\n"
    )


def test_table_rows_carry_no_padding_after_the_last_column():
    """virsh pads every column but the last; `list --all` rows used to end in spaces."""
    data = {
        "domains": [
            {"id": 1, "name": "alice-web", "state": "running"},
            {"id": None, "name": "alice-db", "state": "shut off"},
        ]
    }
    assert render("list", {"all": True}, data) == (
        " Id   Name        State\n"
        "----------------------------\n"
        " 1    alice-web   running\n"
        " -    alice-db    shut off\n"
        "\n"
    )


def test_list_name_uuid_id_fields_in_virsh_order():
    data = {
        "domains": [
            {"id": 1, "name": "a", "uuid": "u-a", "state": "running"},
            {"id": None, "name": "b", "uuid": "u-b", "state": "shut off"},
        ]
    }
    assert render("list", {"name": True, "uuid": True, "id": True}, data) == (
        "u-a 1 a\nu-b - b\n\n"
    )
    assert render("list", {"id": True}, data) == "1\n\n"  # --id alone: running ones only


def test_json_output_is_the_data():
    data = {"state": "running", "reason": None}
    assert json.loads(render("domstate", {"json": True}, data)) == data


DOMINFO = {
    "id": 2,
    "name": "x",
    "uuid": "u",
    "os_type": "hvm",
    "state": "running",
    "vcpus": 1,
    "cpu_time_ns": 2_000_000_000,
    "max_mem_kib": 1024,
    "mem_kib": 512,
    "persistent": True,
    "autostart": False,
    "managed_save": False,
    "security_model": "selinux",
    "security_doi": "0",
    "security_label": "system_u:system_r:svirt_t:s0:c1,c2",
    "security_enforcing": True,
    "owner": "alice",
}


def test_dominfo_prints_virshs_lines_then_svirshs_own():
    out = render(
        "dominfo",
        {},
        dict(
            DOMINFO,
            security={
                "label": "dom_Fun",
                "policy": "example.client_v1",
                "display": "ACM:example.client_v1:dom_Fun",
                "ssidref": 196611,
            },
        ),
    )
    assert out == (
        "Id:             2\n"
        "Name:           x\n"
        "UUID:           u\n"
        "OS Type:        hvm\n"
        "State:          running\n"
        "CPU(s):         1\n"
        "CPU time:       2.0s\n"
        "Max memory:     1024 KiB\n"
        "Used memory:    512 KiB\n"
        "Persistent:     yes\n"
        "Autostart:      disable\n"
        "Managed save:   no\n"
        "Security model: selinux\n"
        "Security DOI:   0\n"
        "Security label: system_u:system_r:svirt_t:s0:c1,c2 (enforcing)\n"
        "Owner:          alice\n"
        "ACM label:      ACM:example.client_v1:dom_Fun\n"
        "Label name:     dom_Fun\n"
        "Policy name:    example.client_v1\n"
        "ssidref:        0x00030003 (196611)\n"
        "\n"
    )


def test_dominfo_cpu_time_whenever_libvirt_reports_one_and_no_label_when_empty():
    """virsh prints CPU time for any non-zero time (the test driver reports one for shut-off
    domains too) and the Security label line only when the domain has a label."""
    inactive = dict(DOMINFO, id=None, state="shut off", security_label="", owner=None)
    out = render("dominfo", {}, inactive)
    assert "Id:             -\n" in out and "CPU time:       2.0s\n" in out
    assert "Security DOI:   0\nPersistent" not in out
    assert out.endswith("Managed save:   no\nSecurity model: selinux\nSecurity DOI:   0\n\n")
    assert "CPU time" not in render("dominfo", {}, dict(inactive, cpu_time_ns=0))


def test_dumpxml_ends_with_virshs_blank_line():
    assert render("dumpxml", {}, {"xml": "<domain/>\n"}) == "<domain/>\n\n"


def test_snapshot_list_sorted_by_name_ignoring_case():
    data = {
        "snapshots": [
            {"name": "b", "creation_time": 0, "state": "running"},
            {"name": "A", "creation_time": 5, "state": "shutoff"},
        ]
    }
    names = [line.split()[0] for line in render("snapshot-list", {}, data).splitlines()[2:-1]]
    assert names == ["A", "b"]


def test_sizes_read_like_virsh_in_listings_and_in_quota_refusals():
    """vol-info/vol-list and a realm quota's refusal print sizes with one formatter
    (secured_virt.sizes, virsh's vshPrettyCapacity): a volume's size reads the same in both."""
    from secured_virt import sizes
    from secured_virt.cli import render as render_mod
    from secured_virt.tenancy import quotas

    assert render_mod.pretty is sizes.pretty and quotas.pretty is sizes.pretty
    expect = {
        0: "0.00 B",
        1023: "1023.00 B",
        1024: "1.00 KiB",
        1536: "1.50 KiB",
        10 * 1024**2: "10.00 MiB",
        5 * 1024**3 + 1: "5.00 GiB",
        1024**6: "1.00 EiB",
        2**70: "1024.00 EiB",
    }
    assert {n: sizes.pretty(n) for n in expect} == expect
    vol = {"name": "d1", "type": "file", "capacity": 1536, "allocation": 0}
    assert render("vol-info", {}, vol) == (
        "Name:           d1\nType:           file\nCapacity:       1.50 KiB\n"
        "Allocation:     0.00 B\n\n"
    )
    assert "1536 bytes" in render("vol-info", {"bytes": True}, vol)
    listing = {"volumes": [{**vol, "path": "/p/d1"}]}
    assert "1.50 KiB   0.00 B" in render("vol-list", {"details": True}, listing)
