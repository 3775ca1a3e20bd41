"""Fixtures for rbac tests: a small operation catalogue and real policy files on disk.

Policy files are written as real files with real modes (tests run as root, so they are
root-owned like the real /etc/secured-virt files); the trusted-file tests change owner and
mode with chown/chmod to show what a careless install looks like.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rbac_helpers import OPS


@pytest.fixture
def ops():
    return dict(OPS)


@pytest.fixture
def write_policy(tmp_path):
    """write_policy(ua_bytes, pa_bytes) -> (ua_path, pa_path): real files, root-owned, 0644."""

    def write(ua: bytes, pa: bytes, mode: int = 0o644):
        paths = []
        for name, data in (("ua.xml", ua), ("pa.xml", pa)):
            p = tmp_path / name
            p.write_bytes(data)
            os.chmod(p, mode)
            paths.append(p)
        return tuple(paths)

    return write
