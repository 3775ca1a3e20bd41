"""The catalogue operations that had no command (46, 49-61, 63) now each have a virsh-named
svirsh command, gated like every other: on the real libvirt test driver here, on xl (argv
lists against a mocked xl) in test_catalogue_xl.py."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from secured_virt.access.operations import CATALOGUE
from secured_virt.cli.commands import COMMANDS
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Request
from secured_virt.service import Service

from .conftest import REPO, ROOT, ident, run

WAS_MISSING = (46, *range(49, 62), 63)


@pytest.fixture
def svc(svt_env):
    return Service.from_config(svt_env)


def test_every_catalogue_operation_has_a_command():
    ops = {c.op for c in COMMANDS.values()}
    missing = [CATALOGUE.get(i).name for i in WAS_MISSING if CATALOGUE.get(i).name not in ops]
    assert missing == []


def test_nodeinfo_is_hostinfo_on_the_host_object(svc):
    data = run(svc, ROOT, "nodeinfo").data
    assert data["cpus"] > 0 and data["memory_kib"] > 0
    # the demo's HostOSManager holds 46 on Domain-0; a tenant does not
    assert run(svc, ident("hostManager"), "hostinfo").status == EXIT_OK
    r = run(svc, ident("alice"), "nodeinfo")
    assert r.status == EXIT_DENIED and "'hostinfo'" in r.message


def test_device_lists_and_statistics(svc):
    disks = run(svc, ROOT, "domblklist", domain="alice-web").data["disks"]
    assert [(d["target"], d["source"]) for d in disks] == [
        ("vda", "/var/lib/libvirt/images/alice-web.qcow2")
    ]
    ifaces = run(svc, ROOT, "domiflist", domain="alice-web").data["interfaces"]
    assert ifaces[0]["mac"] == "52:54:00:a1:1c:01" and ifaces[0]["source"] == "default"
    stats = run(svc, ROOT, "domblkstat", domain="alice-web", device="vda").data["stats"]
    assert set(stats) == {"rd_req", "rd_bytes", "wr_req", "wr_bytes", "errs"}
    stats = run(svc, ROOT, "domifstat", domain="alice-web", device="testnet0").data["stats"]
    assert "rx_bytes" in stats and "tx_drop" in stats
    assert run(svc, ROOT, "dommemstat", domain="alice-web").status == EXIT_OK
    r = run(svc, ROOT, "domblkstat", domain="alice-web", device="--evil")
    assert r.status == EXIT_USAGE


def test_vncdisplay_says_when_there_is_none(svc):
    r = run(svc, ROOT, "vncdisplay", domain="alice-web")
    assert r.status == EXIT_FAILED and "no VNC display" in r.message


def test_screenshot_returns_the_image(svc):
    data = run(svc, ROOT, "screenshot", domain="alice-web").data
    assert data["mime"] == "image/png"
    assert base64.b64decode(data["image_b64"]).startswith(b"\x89PNG")


def test_input_to_the_guest(svc):
    assert run(svc, ROOT, "send-key", domain="alice-web", keys="29,56,111").status == EXIT_OK
    assert run(svc, ROOT, "send-key", domain="alice-web", keys="ctrl").status == EXIT_USAGE
    assert run(svc, ROOT, "inject-nmi", domain="alice-web").status == EXIT_OK


def test_desc_and_title(svc):
    assert run(svc, ROOT, "desc", domain="alice-web", new_desc="AliceCorp web").ok
    assert run(svc, ROOT, "desc", domain="alice-web").data["text"] == "AliceCorp web\n"
    assert run(svc, ROOT, "desc", domain="alice-web", title=True, new_desc="web").ok
    assert svc.backend.title("alice-web") == "web"


def test_vcpupin_shows_and_sets(svc):
    before = run(svc, ROOT, "vcpupin", domain="alice-web").data["vcpus"]
    assert before[0]["vcpu"] == 0
    assert run(svc, ROOT, "vcpupin", domain="alice-web", vcpu="0", cpulist="1").ok
    after = run(svc, ROOT, "vcpupin", domain="alice-web", vcpu="0").data["vcpus"]
    assert after == [{"vcpu": 0, "cpus": "1"}]
    r = run(svc, ROOT, "vcpupin", domain="alice-web", vcpu="0", cpulist="1-x")
    assert r.status == EXIT_USAGE


def test_managedsave_and_remove(svc):
    assert run(svc, ROOT, "managedsave", domain="alice-web").ok
    assert svc.backend.lookup("alice-web").state == "shut off"
    assert svc.backend.has_managed_save("alice-web")
    msg = run(svc, ROOT, "managedsave-remove", domain="alice-web").data["message"]
    assert msg.startswith("Removed managedsave image")
    assert not svc.backend.has_managed_save("alice-web")


def test_dump_goes_where_save_goes(svc, svt_env, tmp_path):
    core = tmp_path / "bob.core"
    assert run(svc, ROOT, "dump", domain="bob-build", file=str(core)).ok
    assert core.exists()
    # a non-root caller names a plain file in their own save directory, like save
    r = svc.handle(ident("bob"), Request("dump", {"domain": "bob-build", "file": "/etc/x"}))
    assert r.status in (EXIT_USAGE, EXIT_DENIED)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "command",
    sorted(n for n, c in COMMANDS.items() if CATALOGUE.get(c.op).id in WAS_MISSING and c.target),
)
def test_a_caller_without_the_grant_is_refused(svc, command):
    args = {"domain": "alice-web", "device": "vda", "keys": "1", "file": "x.core"}
    r = svc.handle(ident("nobody"), Request(command, args))
    assert r.status == EXIT_DENIED and f"'{COMMANDS[command].op}'" in r.message


def test_the_real_svirsh_runs_them(svt_env, tmp_path):
    from .test_cli_real import conf_file

    conf = conf_file(svt_env, tmp_path)

    def svirsh(*args):
        argv = [sys.executable, "-I", str(REPO / "bin" / "svirsh"), "--config", str(conf), *args]
        return subprocess.run(argv, capture_output=True, env={"PATH": "/usr/bin"}, timeout=120)

    r = svirsh("nodeinfo")
    assert r.returncode == 0 and b"CPU(s):" in r.stdout, r.stderr
    r = svirsh("domblklist", "alice-web")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["Target", "Source"]
    assert lines[2].split() == ["vda", "/var/lib/libvirt/images/alice-web.qcow2"]
    r = svirsh("screenshot", "alice-web")
    assert r.returncode == 0 and r.stdout.startswith(b"\x89PNG"), r.stderr
    r = svirsh("vcpupin", "alice-web")
    assert r.returncode == 0 and b"CPU Affinity" in r.stdout
    r = svirsh("hostinfo", "--help")
    assert r.returncode == 0 and b"hostinfo" in r.stdout
