"""Issue 14, item 15: the directories holding UA/PA were not checked, and ``edit`` left a
root-owned backup beside the files.  In a world-writable directory a user renamed that old
(more generous) version over ua.xml, and svirtd hot-reloaded it.

Reproduced on the real svirtd with a real uid doing the rename.  Now every directory above
UA/PA must be root-owned and not group/world-writable (the one holding them not even if
sticky), checked on every load: a bad directory makes the new files untrusted (the last good
policy stays; at start nothing is allowed) with an error naming the directory; and
``svirt-admin`` keeps its locks and backups in a root-only state directory instead."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from reach_helpers import PY, REPO, RealEnv, call_as, write_root_file

from secured_virt import client

pytestmark = pytest.mark.integration

#: the earlier UA, in which svt-alice also had BuildTeam (rights on bob-build)
GENEROUS = '<UserRole role="WebTeam"/><UserRole role="BuildTeam"/>'


@pytest.fixture
def env():
    if os.geteuid() != 0:
        pytest.skip("svirtd's policy files must be root-owned: run as root")
    e = RealEnv()
    e.d = None
    yield e
    if e.d is not None:
        e.d.stop()
    e.cleanup()


def _admin(env, *args):
    import subprocess

    return subprocess.run(
        [PY, "-m", "secured_virt.cli.admin", "--config", str(env.config), *args],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _wait_reload(env, since: str | None, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = client.admin_status(env.socket).data["reload"]["last"]
        if last and last.get("at") != since:
            return last
        time.sleep(0.1)
    raise AssertionError("svirtd did not notice the change")


def test_swapped_in_old_copy_in_a_world_writable_directory_is_not_loaded(
    env, test_users, readable_src, as_user
):
    alice = test_users["svt-alice"]
    # an older, more generous UA that root kept around (root-owned, like edit's old backup)
    old = env.ua.read_text().replace('<UserRole role="WebTeam"/>', GENEROUS)
    assert GENEROUS in old
    write_root_file(env.etc / "ua.xml.orig", old)
    env.d = env.daemon().start().wait_ready()

    def destroy_bob():
        return call_as(as_user, alice, readable_src, env.socket, "destroy",
                       {"domain": "bob-build"})  # fmt: skip

    assert destroy_bob()["status"] == 3
    since = (client.admin_status(env.socket).data["reload"]["last"] or {}).get("at")
    env.etc.chmod(0o777)  # root's mistake: a directory anyone may rename in
    swap = f"import os; os.rename({str(env.etc / 'ua.xml.orig')!r}, {str(env.ua)!r})"
    r = as_user(alice, [PY, "-I", "-c", swap])
    assert r.returncode == 0, r.stderr  # the rename itself is the kernel's business
    last = _wait_reload(env, since)
    assert not last["ok"], last
    text = "; ".join(last["errors"])
    assert f"directory {env.etc} is writable by group or others" in text, text
    assert f"chmod go-w {env.etc}" in text
    r = destroy_bob()
    assert r["status"] == 3, f"svirtd adopted the swapped-in file: {r}"
    st = client.admin_status(env.socket).data["service"]["policy"]
    assert str(env.etc) in (st["error"] or ""), st


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_untrusted_directory_at_start_fails_closed(env, test_users, readable_src, as_user, mode):
    """Nothing is allowed when the files could have been swapped before svirtd read them:
    sticky is no excuse for the directory holding the policy, nor is group write."""
    env.etc.chmod(mode)
    env.d = env.daemon().start().wait_ready()
    r = call_as(as_user, test_users["svt-alice"], readable_src, env.socket, "list", {})
    assert r["status"] == 4, r
    assert str(env.etc) in r["message"] and "writable by group or others" in r["message"], r


def test_user_owned_ancestor_is_refused(env, test_users, readable_src, as_user):
    """The whole path, not only the last directory: a user-owned directory higher up could
    rename the root-owned one below it."""
    alice = test_users["svt-alice"]
    hers = env.base / "alice-owned"
    hers.mkdir(mode=0o755)
    os.chown(hers, alice.pw_uid, alice.pw_gid)
    (hers / "policy").mkdir(mode=0o755)  # root-owned, 0755: fine by itself
    conf = env.config.read_text()
    for f in (env.ua, env.pa):
        moved = write_root_file(hers / "policy" / f.name, f.read_text())
        conf = conf.replace(f"= {f}\n", f"= {moved}\n")
    write_root_file(env.config, conf)
    env.d = env.daemon().start().wait_ready()
    r = call_as(as_user, alice, readable_src, env.socket, "list", {})
    assert r["status"] == 4, r
    assert f"directory {hers} is owned by uid {alice.pw_uid}" in r["message"], r


def test_edit_leaves_no_backup_or_lock_beside_the_policy(env):
    state = env.base / "rolefile-state"
    write_root_file(env.config, env.config.read_text() + f"rolefile_state_dir = {state}\n")
    before = sorted(p.name for p in env.etc.iterdir())
    r = _admin(env, "assign", "svt-bob", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in env.etc.iterdir()) == before  # nothing new beside UA/PA
    st = state.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700)
    kept = sorted(p.name for p in state.iterdir())
    assert any(n.startswith("ua.xml-") and n.endswith(".bak") for n in kept), kept
    assert any(n.startswith("ua.xml-") and n.endswith(".lock") for n in kept), kept
    assert str(state) in r.stdout  # "previous version in <state>/ua.xml-<hash>.bak"
    # an untrusted policy directory is refused by the editing tools as well (exit 4)
    env.etc.chmod(0o777)
    r = _admin(env, "assign", "svt-bob", "WebTeam", "--yes")
    assert r.returncode == 4, r.stderr
    assert f"directory {env.etc} is writable by group or others" in r.stderr
