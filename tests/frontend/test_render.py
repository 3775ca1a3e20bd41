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
            {"id": 3, "name": "a", "state": "running", "acm_label": "ACM:example:dom_Fun"},
            {"id": None, "name": "b", "state": "shut off", "acm_label": None},
        ]
    }
    out = render("list", {"label": True}, data)
    lines = out.splitlines()
    assert lines[0].split() == ["Id", "Name", "State", "ACM-Label"]
    assert lines[2].split() == ["3", "a", "running", "ACM:example:dom_Fun"]
    assert lines[3].split() == ["-", "b", "shut", "off"]


def test_json_output_is_the_data():
    data = {"state": "running", "reason": None}
    assert json.loads(render("domstate", {"json": True}, data)) == data


def test_dominfo_security_section():
    out = render(
        "dominfo",
        {},
        {
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
            "security": {
                "label": "dom_Fun",
                "policy": "example.client_v1",
                "display": "ACM:example.client_v1:dom_Fun",
                "ssidref": 196611,
            },
        },
    )
    assert "Security label: ACM:example.client_v1:dom_Fun" in out
    assert "ssidref:        0x00030003 (196611)" in out
    assert "Used memory:    512 KiB" in out
