"""Autostart through a real svirtd (secured_virt/service/autostart.py): a user marks a VM, and
only svirtd's first start after the host booted starts it, as that user, through the gate.

svirtd runs as root in its own process on the demo node (libvirt's test driver inside svirtd:
every start of svirtd reads the node file afresh, as a host comes back from a reboot with its
guests shut off); svt-alice is a real uid talking to it over the socket.  A reboot is what it is
to svirtd: the marker beside its socket gone (/run is emptied at boot).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from svtd_helpers import RealEnv, call_as, wait_for, write_root_file

from secured_virt import client

pytestmark = pytest.mark.integration


@pytest.fixture
def env():
    if os.geteuid() != 0:
        pytest.skip("svirtd's policy files must be root-owned: run as root")
    e = RealEnv()
    # the demo's WebTeam (svt-alice) may also mark its VMs autostart
    pa = e.pa.read_text().replace(
        '<operation name="getlabel"/>', '<operation name="getlabel"/><operation id="28"/>', 1
    )
    write_root_file(e.pa, pa)
    yield e
    e.cleanup()


def test_a_marked_vm_starts_at_boot_only_and_as_its_user(env, test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    marker = Path(env.socket).parent / "autostarted"

    def call(user, command, args):
        return call_as(as_user, user, readable_src, env.socket, command, args)

    d = env.daemon().start().wait_ready()
    try:
        assert marker.exists()  # this start was the boot's: nothing was marked yet
        r = call(alice, "autostart", {"domain": "alice-db"})
        assert r["status"] == 0, r
        assert call(alice, "dominfo", {"domain": "alice-db"})["data"]["autostart"] is True
        wishes = json.loads((env.base / "acm" / "autostart.json").read_text())
        assert [w["user"] for w in wishes.values()] == ["svt-alice"]
    finally:
        d.stop()

    # svirtd restarted while the host runs: the VM its owner keeps stopped stays stopped
    d = env.daemon().start().wait_ready()
    try:
        assert call(None, "domstate", {"domain": "alice-db"})["data"]["state"] == "shut off"
        assert client.admin_status(env.socket).data["autostart"] == {
            "marked": 1,
            "this_boot": None,
            "libvirt_flag": [],
        }
    finally:
        d.stop()

    # the host rebooted: svirtd starts alice-db as svt-alice, through the gate, audited
    marker.unlink()
    d = env.daemon().start().wait_ready()
    try:
        wait_for(
            lambda: call(None, "domstate", {"domain": "alice-db"})["data"]["state"] == "running",
            what="alice-db started at boot",
        )
        starts = [
            r
            for r in env.audit_records()
            if r.get("op") == "start" and r["type"] == "decision" and r.get("vm") == "alice-db"
        ]
        assert [(r["user"], r["via"], r["verdict"]) for r in starts] == [
            ("svt-alice", "autostart", "allowed")
        ]
        assert "autostart: started alice-db as svt-alice" in d.log()
        boot = client.admin_status(env.socket).data["autostart"]["this_boot"]
        assert (boot["state"], boot["started"], boot["not_started"]) == ("done", ["alice-db"], {})
    finally:
        d.stop()


def test_libvirts_own_autostart_flag_is_named_as_outside_the_gate(libvirtd):
    """root's `virsh autostart` sets libvirt's own flag, and libvirtd then starts that VM at
    boot with none of svirtd's checks.  svirtd cannot undo that start, but its boot pass names
    each such VM (its log says how to bring it inside the gate) and `status` lists them.
    Real libvirtd (its test driver), another client setting the flag as virsh would."""
    import libvirt

    name = "svt-libvirt-flagged"
    xml = (
        f"<domain type='test'><name>{name}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    conn = libvirt.open("test+unix:///default")

    def undefine():
        for dom in conn.listAllDomains(0):
            if dom.name() == name:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()

    undefine()
    conn.defineXML(xml).setAutostart(1)
    e = RealEnv(uri="test+unix:///default")
    d = e.daemon().start().wait_ready()
    try:
        status = wait_for(
            lambda: (
                (s := client.admin_status(e.socket).data)["autostart"]["this_boot"]["state"]
                == "done"
                and s
            ),
            what="the boot pass done",
        )
        auto = status["autostart"]
        assert name in auto["libvirt_flag"], auto
        assert name in auto["this_boot"]["outside_the_gate"], auto
        assert f"{name} carries libvirt's own autostart flag" in d.log()
        assert f"virsh autostart --disable {name}" in d.log()
        conn.lookupByName(name).setAutostart(0)  # brought inside: nothing is named any more
        assert name not in client.admin_status(e.socket).data["autostart"]["libvirt_flag"]
    finally:
        d.stop()
        e.cleanup()
        undefine()
        conn.close()
