"""Fixtures for svirtd tests (helpers live in svtd_helpers.py, importable from the tests)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# the tree under test, not whichever tree the venv's editable install points at today
sys.path[:0] = [str(HERE), str(HERE.parent.parent)]

from svtd_helpers import (  # noqa: E402
    DEFAULT_ALLOW,
    PY,
    RUN_FAKE,
    Daemon,
    private_dir,
    write_policy,
)


@pytest.fixture
def start_fake_daemon():
    """Factory: start_fake_daemon(**limits) -> a ready Daemon around the FakeService."""
    started: list[Daemon] = []
    dirs: list[Path] = []

    def start(allow=None, **limits) -> Daemon:
        workdir = private_dir("svtd-")
        dirs.append(workdir)
        write_policy(workdir, DEFAULT_ALLOW if allow is None else allow)
        sock = workdir / "svirtd.sock"
        argv = [PY, "-I", str(RUN_FAKE), str(workdir), str(sock)]
        argv += [f"{k}={v}" for k, v in limits.items()]
        d = Daemon(argv, workdir, sock).start().wait_ready()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake_daemon(start_fake_daemon) -> Daemon:
    return start_fake_daemon()
