"""Fixtures for svirt-admin's editing tools (helpers live in admin_helpers.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from admin_helpers import DEMO, AdminEnv, write_root_file


@pytest.fixture
def admin_env(tmp_path) -> AdminEnv:
    if os.geteuid() != 0:
        pytest.skip("policy files must be root-owned: run the tests as root")
    base = tmp_path
    os.chmod(base, 0o755)
    etc = base / "etc"
    etc.mkdir(mode=0o755)
    logdir = base / "log"
    logdir.mkdir(mode=0o700)
    env = AdminEnv(
        base=base,
        etc=etc,
        ua=write_root_file(etc / "ua.xml", (DEMO / "ua.xml").read_bytes()),
        pa=write_root_file(etc / "pa.xml", (DEMO / "pa.xml").read_bytes()),
        audit_log=logdir / "audit.log",
        socket=base / "run" / "svirtd.sock",
    )
    env.settings = {
        "ua": str(env.ua),
        "pa": str(env.pa),
        "audit_log": str(env.audit_log),
        "audit_syslog": "no",
        "socket": str(env.socket),
        "editor": "/bin/true",
        "allow_env_editor": "no",
        "rolefile_state_dir": str(base / "state"),
    }
    env.write_config()
    return env
