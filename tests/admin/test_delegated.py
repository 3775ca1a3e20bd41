"""Delegated admins: ``sudo svirt-admin ...`` by a user holding rbac-admin (and nobody else).

sudo is simulated the way identity.py trusts it: real uid 0 with SUDO_UID/SUDO_USER naming a
real account (svt-alice).  The editor of a delegated ``edit`` must run as that user, like
sudoedit — the test's editor writes its own uid into the file it edits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from admin_helpers import child_env, write_root_file

ADMIN_ROLE = """  <Role name="PolicyAdmins">
    <ManageVM type="individual">
      <VM name="Domain-0"/>
    </ManageVM>
    <ControlOperation>
      <Accept>
        <operation name="rbac-admin"/>
      </Accept>
    </ControlOperation>
  </Role>
</RolePolicyDefinition>"""


def sudo_env(pw) -> dict:
    return {"SUDO_UID": str(pw.pw_uid), "SUDO_GID": str(pw.pw_gid), "SUDO_USER": pw.pw_name}


@pytest.fixture
def alice(test_users):
    return test_users["svt-alice"]


@pytest.fixture
def delegated_env(admin_env, alice):
    """svt-alice holds PolicyAdmins (rbac-admin on Domain-0)."""
    pa = admin_env.pa.read_text().replace("</RolePolicyDefinition>", ADMIN_ROLE)
    write_root_file(admin_env.pa, pa)
    ua = admin_env.ua.read_text().replace(
        "</UserConfiguration>",
        f'  <User name="{alice.pw_name}">\n    <UserRole role="PolicyAdmins"/>\n  </User>\n'
        "</UserConfiguration>",
    )
    write_root_file(admin_env.ua, ua)
    return admin_env


@pytest.fixture
def shared_dir():
    """A root-owned 0755 directory other uids can read (tmp_path's parents are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="svt-admin-ed-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_user_without_rbac_admin_is_denied_and_audited(admin_env, alice):
    before = admin_env.ua.read_bytes()
    r = admin_env.run("assign", alice.pw_name, "Auditor", "--yes", env=sudo_env(alice))
    assert r.returncode == 3, r.stderr
    assert f"denied: {alice.pw_name} may not perform rbac-admin on Domain-0" in r.stderr
    assert admin_env.ua.read_bytes() == before
    (rec,) = admin_env.audit_records()
    assert rec["verdict"] == "denied" and rec["user"] == alice.pw_name and rec["via"] == "sudo"


def test_user_with_rbac_admin_may_change_the_policy(delegated_env, alice):
    r = delegated_env.run("assign", "carol", "BuildTeam", "--yes", env=sudo_env(alice))
    assert r.returncode == 0, r.stderr
    assert "carol is assigned role BuildTeam" in r.stdout
    dec = next(x for x in delegated_env.audit_records() if x["type"] == "decision")
    assert dec["user"] == alice.pw_name and dec["via"] == "sudo"
    assert "delegated" in dec["rule"]


def test_delegated_edit_runs_the_editor_as_the_user(delegated_env, alice, shared_dir):
    ed = write_root_file(
        shared_dir / "ed",
        '#!/bin/sh\n[ "$1" = "--" ] || exit 9\n'
        'sed -i "s|</UserConfiguration>|<!-- edited by uid $(id -u) -->\\n</UserConfiguration>|"'
        ' "$2"\n',
        0o755,
    )
    delegated_env.write_config(editor=ed)
    r = delegated_env.run("edit", "ua", input="y\n", env=sudo_env(alice))
    assert r.returncode == 0, r.stderr
    assert f"<!-- edited by uid {alice.pw_uid} -->" in delegated_env.ua.read_text()
    st = os.stat(delegated_env.ua)
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_root_edit_runs_the_editor_as_root(admin_env, shared_dir):
    ed = write_root_file(
        shared_dir / "ed",
        '#!/bin/sh\nsed -i "s|</UserConfiguration>|<!-- uid $(id -u) -->\\n</UserConfiguration>|"'
        ' "$2"\n',
        0o755,
    )
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "ua", input="y\n")
    assert r.returncode == 0, r.stderr
    assert "<!-- uid 0 -->" in admin_env.ua.read_text()


def test_delegated_admin_cannot_repair_a_broken_policy(delegated_env, alice):
    write_root_file(delegated_env.pa, delegated_env.pa.read_text().replace('"Auditor"', '"Aud"'))
    r = delegated_env.run("deassign", "carol", "Auditor", "--yes", env=sudo_env(alice))
    assert r.returncode == 3
    assert "only root" in r.stderr


def test_forged_sudo_variables_are_not_believed(admin_env, alice):
    """SUDO_USER that does not match SUDO_UID is ignored: the caller is plain root."""
    env = sudo_env(alice)
    env["SUDO_USER"] = "root"
    r = admin_env.run("assign", "alice", "Auditor", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    dec = admin_env.audit_records()[0]
    assert dec["user"] == "root" and dec["via"] == "direct"


def test_lock_holder_through_sudo_is_named(delegated_env, alice, shared_dir):
    import subprocess
    import time

    flags = shared_dir / "flags"  # where the editor, running as alice, may write
    flags.mkdir()
    os.chown(flags, alice.pw_uid, alice.pw_gid)
    ready, go = flags / "ready", flags / "go"
    ed = write_root_file(
        shared_dir / "ed",
        f'#!/bin/sh\ntouch "{ready}"\nwhile [ ! -e "{go}" ]; do sleep 0.05; done\n',
        0o755,
    )
    delegated_env.write_config(editor=ed)
    env = child_env(sudo_env(alice))
    first = subprocess.Popen(
        delegated_env.argv("edit", "pa", sudo=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        r = delegated_env.run("edit", "ua")
        assert r.returncode == 1
        assert f"by pid {first.pid}, user {alice.pw_name} (through sudo)" in r.stderr
    finally:
        go.touch()
        first.communicate(timeout=60)
