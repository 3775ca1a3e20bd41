"""Issue 14, item 9: policy changes that svirtd answered "ok" to but did not enforce.

1. ``acm = yes`` in the configuration + ``svirt-admin reload`` answered ok while ``status``
   still showed ACM off (conflicting VMs kept starting until a restart).  Now a reload
   re-reads the configuration, applies the keys it can (here a new ``pa``), and refuses -
   exit 4, naming the key - the ones that need a restart.
2. After ``svirt-admin policy load`` (root, in its own process) svirtd kept enforcing the old
   sHype policy until its file watcher noticed (up to about 3 s).  Now a change goes through
   the running svirtd, which has applied it when the command returns.

Both on the real svirtd and the real svirt-admin command, with a real other uid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from reach_helpers import PY, REPO, RealEnv, call_as, write_root_file

from secured_virt import client

pytestmark = pytest.mark.integration

DEMO_POLICY = REPO / "etc" / "demo" / "acm-policy.xml"


def _admin(env, *args) -> subprocess.CompletedProcess:
    """The real svirt-admin, as root, with this host's configuration."""
    return subprocess.run(
        [PY, "-m", "secured_virt.cli.admin", "--config", str(env.config), *args],
        capture_output=True, text=True, timeout=120, cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _status(env) -> dict:
    return client.admin_status(env.socket).data


@pytest.fixture
def envs():
    if os.geteuid() != 0:
        pytest.skip("svirtd's policy files must be root-owned: run as root")
    made = []

    def make(**conf) -> RealEnv:
        e = RealEnv(**conf)
        e.d = e.daemon().start().wait_ready()
        made.append(e)
        return e

    yield make
    for e in made:
        e.d.stop()
        e.cleanup()


def test_reload_refuses_acm_on_by_name_and_applies_what_it_can(
    envs, test_users, readable_src, as_user
):
    env = envs()
    alice = test_users["svt-alice"]

    def destroy_bob():
        return call_as(as_user, alice, readable_src, env.socket, "destroy",
                       {"domain": "bob-build"})  # fmt: skip

    assert destroy_bob()["status"] == 3
    assert _status(env)["service"]["acm"] is None
    # root switches ACM on and, in the same edit, points pa at a file that gives WebTeam
    # bob-build too (a key svirtd can take on live)
    pa2 = env.pa.read_text().replace('<VM name="alice-db"/>', '<VM name="alice-db"/>\n'
                                     '      <VM name="bob-build"/>', 1)  # fmt: skip
    assert "bob-build" in pa2.split("BuildTeam")[0]
    write_root_file(env.etc / "pa2.xml", pa2)
    conf = env.config.read_text().replace(f"pa = {env.pa}\n", f"pa = {env.etc / 'pa2.xml'}\n")
    write_root_file(env.config, conf + "acm = yes\n")

    r = _admin(env, "reload")
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)  # not "ok"
    assert "acm changed in" in r.stderr and "restart svirtd" in r.stderr, r.stderr
    assert "acm = no" in r.stderr  # what it still runs with
    st = _status(env)
    assert st["service"]["acm"] is None  # the truth, and now also what reload said
    assert st["reload"]["needs_restart"] == ["acm"]
    assert st["reload"]["last"]["config"] == {"applied": ["pa"], "needs_restart": ["acm"]}
    assert st["service"]["policy"]["pa"] == str(env.etc / "pa2.xml")
    assert destroy_bob()["status"] == 0, "the live key (pa) was not applied"
    # the watcher re-reads the changed configuration too and says the same
    assert str(env.config) in st["reload"]["watching"]

    env.d.stop()  # after a restart the key is in force and nothing is pending
    env.d = env.daemon().start().wait_ready()
    st = _status(env)
    assert st["service"]["acm"] is not None and st["reload"]["needs_restart"] == []
    r = _admin(env, "reload")
    assert r.returncode == 0, r.stderr


def test_policy_load_and_update_are_enforced_when_the_command_returns(envs, tmp_path):
    env = envs(acm="yes")
    before = _status(env)["service"]["acm"]
    assert before["policy"] != "demo.hosting"

    r = _admin(env, "policy", "load", str(DEMO_POLICY))
    assert r.returncode == 0, r.stderr
    # no wait, no retry: svirtd enforces it now
    assert _status(env)["service"]["acm"] == {"policy": "demo.hosting", "version": "1.0"}

    newer = tmp_path / "acm-policy-1.1.xml"
    newer.write_text(
        DEMO_POLICY.read_text().replace(
            "<Version>1.0</Version>",
            "<Version>1.1</Version><FromPolicy><PolicyName>demo.hosting</PolicyName>"
            "<Version>1.0</Version></FromPolicy>",
            1,
        )
    )
    r = _admin(env, "policy", "update", str(newer))
    assert r.returncode == 0, r.stderr
    assert _status(env)["service"]["acm"] == {"policy": "demo.hosting", "version": "1.1"}

    # the change was made by svirtd (and audited there), not behind its back
    changes = [
        rec
        for rec in env.audit_records()
        if rec["type"] == "decision" and rec["op"] in ("policy-load", "policy-update")
    ]
    assert [c["via"] for c in changes] == ["svirtd", "svirtd"], changes
    assert all(c["user"] == "root" and c["verdict"] == "allowed" for c in changes)
