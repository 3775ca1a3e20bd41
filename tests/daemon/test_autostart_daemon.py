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
        assert client.admin_status(env.socket).data["autostart"] == {"marked": 1, "this_boot": None}
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
