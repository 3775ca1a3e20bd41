"""Issue 14, item 12: svirtd (root) writes and reads save images on a user's behalf; libvirt
opens them *by path*, so a symlink or a foreign-owned directory on that path let a user make
root overwrite (or restore from) any file.

Reproduced on the real svirtd with the libvirt test driver (its save really writes the file,
as root) and real uids: a save directory the user owns with a symlink to a root-owned file in
it; a save root the user owns; a symlink planted for restore.  Each must be refused and the
root-owned file left untouched; the normal save/restore still works, in a root-owned 0700
per-user directory."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from reach_helpers import RealEnv, call_as, write_root_file

pytestmark = pytest.mark.integration

RESUME = '<operation id="15"/>  <!-- resume -->\n'
SAVE_RIGHTS = '        <operation id="17"/>  <!-- save -->\n        <operation id="18"/>\n'


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host(test_users):
    """start(prepare) -> a real svirtd whose WebTeam (svt-alice) may also save and restore
    her VMs, with save_dir = <base>/save; ``prepare(env)`` runs before the daemon starts."""
    if os.geteuid() != 0:
        pytest.skip("svirtd's policy files must be root-owned: run as root")
    made = []

    def start(prepare=None) -> RealEnv:
        env = RealEnv()
        made.append(env)
        env.save_root = env.base / "save"
        write_root_file(env.config, env.config.read_text() + f"save_dir = {env.save_root}\n")
        pa = env.pa.read_text().replace(RESUME, RESUME + SAVE_RIGHTS, 1)
        assert SAVE_RIGHTS in pa
        write_root_file(env.pa, pa)
        # a root-only file the attacker wants root to overwrite (or read)
        env.victim = write_root_file(env.etc / "victim.conf", "root's secret settings\n", 0o600)
        if prepare:
            prepare(env)
        env.d = env.daemon().start().wait_ready()
        return env

    yield start
    for env in made:
        if getattr(env, "d", None):
            env.d.stop()
        env.cleanup()


def _as(user, test_users, readable_src, as_user, env, command, **args):
    return call_as(as_user, test_users[user], readable_src, env.socket, command, args)


def _user_owned_dir(env, pw) -> Path:
    """<save>/<user> owned by the user: what the attack relied on."""
    env.save_root.mkdir(mode=0o755)
    user_dir = env.save_root / pw.pw_name
    user_dir.mkdir(mode=0o700)
    os.chown(user_dir, pw.pw_uid, pw.pw_gid)
    return user_dir


def test_save_does_not_follow_a_symlink_in_a_user_owned_directory(
    host, test_users, readable_src, as_user
):
    alice = test_users["svt-alice"]

    def hostile(env):
        user_dir = _user_owned_dir(env, alice)
        os.symlink(env.victim, user_dir / "web.img")
        os.chown(user_dir / "web.img", alice.pw_uid, alice.pw_gid, follow_symlinks=False)

    env = host(hostile)
    before = _digest(env.victim)
    r = _as("svt-alice", test_users, readable_src, as_user, env, "save",
            domain="alice-web", file="web.img")  # fmt: skip
    assert r["status"] == 4, r
    assert "save directory refused" in r["message"], r
    assert f"owned by uid {alice.pw_uid}" in r["message"], r
    assert _digest(env.victim) == before, "root followed the user's symlink and wrote the file"
    assert stat.S_IMODE(env.victim.stat().st_mode) == 0o600
    # refused after the (audited) decision; the outcome says why
    outcome = [rec for rec in env.audit_records() if rec["type"] == "outcome"][-1]
    assert outcome["op"] == "save" and "save directory refused" in outcome["outcome"]


def test_save_refuses_a_save_root_the_user_can_change(host, test_users, readable_src, as_user):
    """A user-owned (or group/world-writable) directory *above* the per-user one lets the
    user swap the per-user directory for a link to /etc: every ancestor is checked."""
    alice = test_users["svt-alice"]

    def hostile(env):
        env.save_root.mkdir(mode=0o755)
        os.chown(env.save_root, alice.pw_uid, alice.pw_gid)
        os.symlink(env.etc, env.save_root / "svt-alice")  # "my save dir" is root's etc
        os.chown(env.save_root / "svt-alice", alice.pw_uid, alice.pw_gid, follow_symlinks=False)

    env = host(hostile)
    before = _digest(env.victim)
    r = _as("svt-alice", test_users, readable_src, as_user, env, "save",
            domain="alice-web", file="victim.conf")  # fmt: skip
    assert r["status"] == 4, r
    assert "save directory refused" in r["message"], r
    assert _digest(env.victim) == before


def test_restore_does_not_follow_a_planted_symlink(host, test_users, readable_src, as_user):
    """Restore reads by path too: bob's save image must not be restored through alice's
    directory (nor a root file read and quoted in the error)."""
    alice = test_users["svt-alice"]

    def hostile(env):
        user_dir = _user_owned_dir(env, alice)
        os.symlink(env.victim, user_dir / "old.img")

    env = host(hostile)
    r = _as("svt-alice", test_users, readable_src, as_user, env, "restore", file="old.img")
    assert r["status"] == 4, r
    assert "save directory refused" in r["message"], r
    assert "secret" not in r["message"]


def test_symlink_planted_in_a_root_owned_directory_is_refused(
    host, test_users, readable_src, as_user
):
    """Even in a directory of the right shape, an entry that is a link (left from an older
    layout, or by another root tool) is never opened by path as root."""
    alice = test_users["svt-alice"]

    def planted(env):
        user_dir = env.save_root / "svt-alice"
        user_dir.mkdir(mode=0o700, parents=True)
        env.save_root.chmod(0o755)
        os.symlink(env.victim, user_dir / "web.img")

    env = host(planted)
    before = _digest(env.victim)
    r = _as("svt-alice", test_users, readable_src, as_user, env, "save",
            domain="alice-web", file="web.img")  # fmt: skip
    assert r["status"] == 1 and "is a symbolic link" in r["message"], r
    assert _digest(env.victim) == before
    r = _as("svt-alice", test_users, readable_src, as_user, env, "restore", file="web.img")
    assert r["status"] == 1 and "is a symbolic link" in r["message"], r
    assert alice.pw_uid  # (the refusal is the same for every user)


def test_save_and_restore_use_a_root_owned_private_directory(
    host, test_users, readable_src, as_user
):
    env = host()
    r = _as("svt-alice", test_users, readable_src, as_user, env, "save",
            domain="alice-web", file="web.img")  # fmt: skip
    assert r["status"] == 0, r
    user_dir = env.save_root / "svt-alice"
    st = user_dir.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
    image = user_dir / "web.img"
    assert image.is_file() and not image.is_symlink() and image.stat().st_uid == 0
    r = _as("svt-alice", test_users, readable_src, as_user, env, "restore", file="web.img")
    assert r["status"] == 0, r
    # a path is still refused: through svirtd only a plain name inside the save directory
    r = _as("svt-alice", test_users, readable_src, as_user, env, "save",
            domain="alice-web", file=str(env.victim))  # fmt: skip
    assert r["status"] != 0 and "plain file name" in r["message"], r
