"""Every svirsh command through the use-case layer on the real test driver: the request reaches
the right backend call with the right arguments, and its effect is visible in libvirt."""

from __future__ import annotations

import pytest

from secured_virt.cli.commands import COMMANDS
from secured_virt.requests import EXIT_DENIED, Request
from secured_virt.service import Service

from .conftest import ROOT, ident


@pytest.fixture
def svc(svt_env):
    return Service.from_config(svt_env)


def run(svc, command, who=ROOT, **args):
    r = svc.handle(who, Request(command, args))
    assert r.ok, f"{command}: {r.message}"
    return r.data


def state(svc, name):
    return svc.backend.lookup(name).state


def test_lifecycle_commands(svc):
    assert run(svc, "shutdown", domain="alice-web")["message"] == (
        "Domain 'alice-web' is being shutdown"
    )
    assert state(svc, "alice-web") == "shut off"
    run(svc, "start", domain="alice-web", paused=True)
    assert state(svc, "alice-web") == "paused"
    run(svc, "resume", domain="alice-web")
    assert state(svc, "alice-web") == "running"
    assert run(svc, "reboot", domain="alice-web")["message"].endswith("is being rebooted")
    assert run(svc, "reset", domain="alice-web")["message"].endswith("was reset")
    run(svc, "suspend", domain="alice-web")
    assert state(svc, "alice-web") == "paused"
    run(svc, "destroy", domain="alice-web")
    assert state(svc, "alice-web") == "shut off"


def test_identity_commands(svc):
    info = svc.backend.lookup("alice-web")
    assert run(svc, "domid", domain="alice-web")["id"] == info.id
    assert run(svc, "domuuid", domain="alice-web")["uuid"] == info.uuid
    assert "<name>alice-web</name>" in run(svc, "dumpxml", domain="alice-web")["xml"]


def test_save_restore_define_undefine_create(svc, tmp_path):
    image = tmp_path / "w.save"
    run(svc, "save", domain="alice-web", file=str(image))
    assert state(svc, "alice-web") == "shut off" and image.exists()
    run(svc, "restore", file=str(image))
    assert state(svc, "alice-web") == "running"
    run(svc, "undefine", domain="carol-lab")
    assert not svc.backend.lookup("carol-lab").persistent  # paused, now transient
    xml = (
        "<domain type='test'><name>tmp1</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    run(svc, "create", xml=xml, file="t.xml")
    assert state(svc, "tmp1") == "running" and not svc.backend.lookup("tmp1").persistent
    run(svc, "define", xml=xml.replace("tmp1", "tmp2"), file="t2.xml")
    assert state(svc, "tmp2") == "shut off" and svc.backend.lookup("tmp2").persistent


def test_device_commands(svc):
    run(svc, "attach-disk", domain="alice-db", source="/tmp/d.img", target="vdq", persistent=True)
    run(
        svc,
        "attach-interface",
        domain="alice-db",
        type="network",
        source="default",
        mac="52:54:00:12:34:56",
        persistent=True,
    )
    xml = run(svc, "dumpxml", domain="alice-db", inactive=True)["xml"]
    assert "vdq" in xml and "52:54:00:12:34:56" in xml
    run(svc, "detach-disk", domain="alice-db", target="vdq", persistent=True)
    run(
        svc,
        "detach-interface",
        domain="alice-db",
        type="network",
        mac="52:54:00:12:34:56",
        persistent=True,
    )
    xml = run(svc, "dumpxml", domain="alice-db", inactive=True)["xml"]
    assert "vdq" not in xml and "52:54:00:12:34:56" not in xml
    run(svc, "setmaxmem", domain="alice-db", size="2G")
    assert svc.backend.lookup("alice-db").max_mem_kib == 2 * 1024 * 1024


def test_autostart_and_snapshots(svc):
    assert run(svc, "autostart", domain="alice-web")["message"].endswith("marked as autostarted")
    # a wish svirtd carries out at boot through the gate, never libvirt's unchecked flag
    assert not svc.backend.get_autostart("alice-web")
    assert svc.backend.lookup("alice-web").uuid in svc.autostart.wished()
    assert run(svc, "dominfo", domain="alice-web")["autostart"] is True
    run(svc, "autostart", domain="alice-web", disable=True)
    assert svc.autostart.wished() == frozenset()
    assert run(svc, "dominfo", domain="alice-web")["autostart"] is False
    run(svc, "snapshot-create-as", domain="alice-web", snapshot="s1", description="before")
    snaps = run(svc, "snapshot-list", domain="alice-web")["snapshots"]
    assert [s["name"] for s in snaps] == ["s1"] and snaps[0]["description"] == "before"
    run(svc, "snapshot-revert", domain="alice-web", snapshot="s1")
    run(svc, "snapshot-delete", domain="alice-web", snapshot="s1")
    assert run(svc, "snapshot-list", domain="alice-web")["snapshots"] == []


GATED = sorted(
    n
    for n, c in COMMANDS.items()
    # console goes through open_console (tested in tests/daemon); the label commands need
    # sHype/ACM on and are gated in test_acm.py
    if c.target == "domain" and n not in ("console", "setlabel", "relabel", "rmlabel", "dry-run")
)
VALID = {
    "size": "512M",
    "count": "1",
    "file": "x.save",
    "desturi": "test:///default",
    "target": "vdz",
    "source": "/var/lib/libvirt/images/x.img",
    "keys": "28",
    "vcpu": "0",
    "cpulist": "0",
}


@pytest.mark.parametrize("name", GATED)
def test_every_vm_command_is_gated(svc, name):
    """A user with no roles is refused every VM command, before the backend is touched."""
    cmd = COMMANDS[name]
    args = {a.dest: VALID.get(a.dest, "x") for a in cmd.args}
    if name == "attach-interface":  # well-formed, so the refusal is the gate's
        args.update(type="network", source="default")
    args["domain"] = "alice-web"
    r = svc.handle(ident("nobody"), Request(name, args))
    assert r.status == EXIT_DENIED and f"'{cmd.op}'" in r.message


def test_save_through_the_daemon_goes_to_the_callers_own_directory(svc, svt_env):
    from pathlib import Path

    from secured_virt.requests import EXIT_USAGE

    alice = ident("alice")
    r = svc.handle(alice, Request("save", {"domain": "alice-web", "file": "/etc/evil"}))
    assert r.status == EXIT_USAGE and "plain file name" in r.message
    r = svc.handle(ident("mallory"), Request("save", {"domain": "alice-web", "file": "m.save"}))
    assert r.status == EXIT_DENIED
    assert not (Path(svt_env.save_dir) / "mallory").exists()  # nothing made for a refusal
