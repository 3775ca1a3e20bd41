"""Shared fixtures: the repository, real other users, and running code as them.

Tests that need another uid create real system users (``svt-alice``, ``svt-bob``, ``svt-carol``)
with ``useradd`` and run commands as them with ``setpriv``, so the kernel — not an environment
variable — says who is asking.  The work tree may sit under a 0700 directory (CI clones into a
``mktemp -d``), so code run as another uid is taken from a world-readable snapshot of the
packages, not from the tree itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secured_virt.testing.asuid import setpriv_prefix

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = Path(sys.executable)
TEST_USERS = ("svt-alice", "svt-bob", "svt-carol")


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )
        return pwd.getpwnam(name)


@pytest.fixture(scope="session")
def test_users() -> dict[str, pwd.struct_passwd]:
    """Real accounts svt-alice, svt-bob, svt-carol (created once; needs root)."""
    if os.geteuid() != 0:
        pytest.skip("creating real test users needs root")
    return {name: _ensure_user(name) for name in TEST_USERS}


@pytest.fixture(scope="session")
def readable_src(tmp_path_factory) -> Path:
    """A world-readable copy of rbac/, policy/, secured_virt/ and bin/ for other uids."""
    base = Path(
        subprocess.run(
            ["/usr/bin/mktemp", "-d", "/tmp/svt-src.XXXXXX"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for pkg in ("rbac", "policy", "secured_virt", "bin", "etc"):
        src = REPO / pkg
        if src.exists():
            shutil.copytree(src, base / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for root, _dirs, files in os.walk(base):
        os.chmod(root, 0o755)
        for f in files:
            p = os.path.join(root, f)
            os.chmod(p, 0o755 if f.endswith((".sh",)) or root.endswith("/bin") else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def run_as(
    user: pwd.struct_passwd | None,
    argv: list[str],
    *,
    env: dict | None = None,
    input: str | None = None,
    timeout: float = 60,
    cwd: str = "/",
) -> subprocess.CompletedProcess:
    """Run argv as a real other uid (or as root when user is None), capturing text output."""
    prefix = setpriv_prefix(user)
    base_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    base_env.update(env or {})
    return subprocess.run(
        prefix + argv,
        env=base_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def as_user():
    """The run_as helper, as a fixture."""
    return run_as


@pytest.fixture(autouse=True)
def _restore_umask():
    """CLI entry points set umask 077 (files they write are private).  Tests call some of them
    in-process; restore the umask so later tests' files and sockets get the modes they expect."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def libvirtd():
    """A running system libvirtd + virtlogd with the QEMU driver (qemu:///system), started as
    root if needed and stopped after the module if this fixture started them; skips with the
    exact reason where it cannot run (secured_virt.testing.libvirtd)."""
    if os.geteuid() != 0:
        pytest.skip("libvirtd and QEMU are started as root")
    from secured_virt.testing.libvirtd import ensure_libvirtd

    status = ensure_libvirtd()
    if not status.ok:
        pytest.skip(status.reason)
    yield status
    status.stop()
