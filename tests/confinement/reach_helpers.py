"""Shared by the regression tests of issue 14 items 9, 10, 12 and 15: a real svirtd on a
private host (tests/daemon/svtd_helpers.RealEnv), clients as real other uids through setpriv.

Imported by those test files; it puts tests/daemon and the tree under test on sys.path so the
daemon helpers are reused rather than copied."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for p in (str(HERE.parent / "daemon"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

from svtd_helpers import (  # noqa: E402
    PY,
    RealEnv,
    call_as,
    client_snippet,
    running_svirtd,
    setpriv_prefix,
    write_root_file,
)

__all__ = [
    "PY",
    "REPO",
    "RealEnv",
    "call_as",
    "client_snippet",
    "file_size",
    "running_svirtd",
    "setpriv_prefix",
    "write_root_file",
]


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
