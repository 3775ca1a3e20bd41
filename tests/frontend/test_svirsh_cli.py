"""svirsh as a real process: direct mode as root, refusals for non-root without svirtd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, write_root_file

PY = sys.executable


def conf_file(cfg, tmp_path: Path) -> Path:
    text = (
        "[secured-virt]\n"
        + "".join(
            f"{k} = {getattr(cfg, k)}\n"
            for k in ("uri", "ua", "pa", "audit_log", "auth_dir", "acm_state_dir", "label_store")
        )
        + "audit_syslog = no\n"
    )
    return write_root_file(tmp_path / "svirt.conf", text)


def svirsh(*args, env=None, user=None):
    argv = [PY, "-I", str(REPO / "bin" / "svirsh"), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, env=env or {"PATH": "/usr/bin"}, timeout=60
    )


def launcher_as(as_user, user, src: Path, program: str, *args: str):
    """``program``'s bin/ launcher as the real uid ``user``, from ``src`` (the snapshot of the
    tree other uids can read)."""
    return as_user(user, [PY, "-I", str(src / "bin" / program), *args])


@pytest.fixture
def conf(svt_env, tmp_path):
    return conf_file(svt_env, tmp_path)


def test_direct_mode_as_root_acting_as_alice(conf, svt_env):
    r = svirsh("--config", str(conf), "--as", "svt-alice", "list", "--all")
    # svt-alice holds no roles in the demo policy: an empty, filtered list
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["Id", "Name", "State"]
    assert len(r.stdout.strip().splitlines()) == 2


def test_direct_mode_root_sees_all_as_json(conf):
    r = svirsh("--config", str(conf), "--json", "list", "--all")
    assert r.returncode == 0, r.stderr
    names = sorted(d["name"] for d in json.loads(r.stdout)["domains"])
    assert names == ["alice-db", "alice-web", "bob-build", "carol-lab", "shared-dns"]


def test_names_are_data(conf):
    r = svirsh("--config", str(conf), "start", "--", "--help")
    assert r.returncode == 1
    assert "failed to get domain '--help'" in r.stderr


def test_user_env_does_not_change_identity(conf, svt_env):
    env = {"PATH": "/usr/bin", "USER": "alice", "LOGNAME": "alice", "HOME": "/home/alice"}
    r = svirsh("--config", str(conf), "--json", "list", "--all", env=env)
    # still root: sees all five (alice would see two)
    assert len(json.loads(r.stdout)["domains"]) == 5
    rec = json.loads(Path(svt_env.audit_log).read_text().splitlines()[-1])
    assert rec["user"] == "root" and rec["uid"] == 0


def test_non_root_without_daemon_gets_clear_message(test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    r = launcher_as(
        as_user, alice, readable_src, "svirsh", "--socket", "/nonexistent/svirtd.sock", "list"
    )
    assert r.returncode == 1
    assert "svirtd is not running" in r.stderr and "sudo" in r.stderr


def test_non_root_direct_mode_refused(test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    r = launcher_as(
        as_user, alice, readable_src, "svirsh", "--direct", "-c", "qemu:///system", "list"
    )
    assert r.returncode == 3
    assert "direct mode is for root" in r.stderr and "svirtd" in r.stderr


def test_non_root_cannot_choose_config(test_users, readable_src, as_user, conf):
    alice = test_users["svt-alice"]
    os.chmod(conf.parent, 0o755)
    r = launcher_as(as_user, alice, readable_src, "svirt-admin", "--config", str(conf), "validate")
    assert r.returncode != 0 and "root" in (r.stderr + r.stdout)


def _trusted(path: Path) -> bool:
    st = path.stat()
    return st.st_uid == 0 and not st.st_mode & 0o022


@pytest.mark.skipif(
    not (_trusted(REPO) and _trusted(REPO / "secured_virt")),
    reason="the launchers use a source tree only if it is root-owned and not writable by others",
)
@pytest.mark.parametrize("launcher", ["svirsh", "svirt-admin"])
def test_launchers_run_under_debians_python_from_the_trusted_tree(conf, launcher):
    """/usr/bin/python3 (as in a sudoers rule) has no secured-virt installed: the launcher
    falls back to its own tree and needs Debian's python3-lxml and python3-libvirt."""
    args = ["--config", str(conf), "list", "--all"] if launcher == "svirsh" else ["operations"]
    r = subprocess.run(
        ["/usr/bin/python3", "-I", str(REPO / "bin" / launcher), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert ("alice-web" if launcher == "svirsh" else "rbac-admin") in r.stdout
