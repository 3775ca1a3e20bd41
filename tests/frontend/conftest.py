"""Fixtures for the front-end: a private, root-owned configuration around the demo node."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from secured_virt.access.identity import Identity
from secured_virt.config import default_config

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / "etc" / "demo" / "node.xml"


def write_root_file(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, 0, 0)
    return path


@pytest.fixture
def svt_env(tmp_path):
    """A config pointing at copies of the demo UA/PA, a private audit log and auth dir."""
    if os.geteuid() != 0:
        pytest.skip("policy files must be root-owned: run as root")
    etc = tmp_path / "etc"
    etc.mkdir()
    ua = write_root_file(etc / "ua.xml", (REPO / "etc/demo/ua.xml").read_text())
    pa = write_root_file(etc / "pa.xml", (REPO / "etc/demo/pa.xml").read_text())
    node = etc / "node.xml"
    shutil.copy(NODE, node)
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o700)
    cfg = dataclasses.replace(
        default_config(),
        uri=f"test://{node}",
        ua=str(ua),
        pa=str(pa),
        audit_log=str(logdir / "audit.log"),
        audit_syslog=False,
        auth_dir=str(tmp_path / "ts"),
        label_store=str(tmp_path / "labels.xml"),
        acm_state_dir=str(tmp_path / "acm"),
        save_dir=str(tmp_path / "save"),
    )
    return cfg


def ident(user: str, uid: int = 5001, **kw) -> Identity:
    """An identity as identify_peer would build it for a non-root peer."""
    base = dict(uid=uid, gid=uid, user=user, groups=(uid,), via="svirtd", pid=os.getpid())
    base.update(kw)
    return Identity(**base)


ROOT = Identity(uid=0, gid=0, user="root", groups=(0,), via="direct", pid=1)
