"""Fixtures for the core security modules: a real PAM stack, code run as real other uids,
a world-reachable scratch directory, a tiny full filesystem and a roomy one in memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from secured_virt.testing.asuid import setpriv_prefix
from secured_virt.testing.pamwrap import make_pam_wrapper, unavailable_reason

PYTHON = sys.executable

#: pam_matrix passdb used by ``pam_stack``: name -> password, or (password, allowed service).
#: svt-expired has the right password but its entry names another service, so PAM's account
#: step refuses it — our stand-in for an expired/locked account.
PAM_USERS = {
    "svt-alice": "alice-secret",
    "svt-bob": "bob-secret",
    "svt-expired": ("expired-secret", "some-other-service"),
}


@pytest.fixture
def shared_tmp():
    """A scratch directory under /tmp that other uids can enter (0755; tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="svt-core.", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pam_stack(shared_tmp):
    """This process's PAM calls go to pam_wrapper + pam_matrix with PAM_USERS, then back."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    pw = make_pam_wrapper(shared_tmp / "pam", PAM_USERS)
    pw.activate()
    try:
        yield pw
    finally:
        pw.deactivate()


@pytest.fixture
def py_as(readable_src, test_users, as_user):
    """Run Python source as a real user (name from test_users, or None for root).

    The code runs isolated (-I) from the world-readable ``readable_src`` copy; it should print
    one JSON document on its last stdout line, which is returned parsed as ``.data``.
    """

    def run(user: str | None, code: str, *, env: dict | None = None, uid: int | None = None,
            timeout: float = 60):  # fmt: skip
        prologue = f"import sys; sys.path.insert(0, {str(readable_src)!r})\n"
        argv = [PYTHON, "-I", "-c", prologue + code]
        if uid is not None:  # a uid with no passwd entry
            argv = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--", *argv]  # fmt: skip
            res = as_user(None, argv, env=env, timeout=timeout)
        else:
            res = as_user(test_users[user] if user else None, argv, env=env, timeout=timeout)
        res.data = None
        lines = res.stdout.strip().splitlines()
        if res.returncode == 0 and lines:
            res.data = json.loads(lines[-1])
        return res

    return run


def _tmpfs(size: str, prefix: str):
    """A tmpfs of ``size`` mounted on a new directory under /tmp (root only), unmounted and
    removed after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True)  # fmt: skip
    try:
        yield path
    finally:
        # lazily: a failed test may still hold a file open there (its traceback keeps it)
        subprocess.run(["/usr/bin/umount", "--lazy", str(path)], check=False)
        path.rmdir()


@pytest.fixture
def tiny_fs():
    """A 16 KiB tmpfs (root only): where writes run out of space for real."""
    yield from _tmpfs("16k", "svt-tinyfs.")


@pytest.fixture
def roomy_tmpfs():
    """A 256 MiB tmpfs (root only): where fdatasync costs nothing (test_audit_crash)."""
    yield from _tmpfs("256m", "svt-crashfs.")


@pytest.fixture
def spawn_py_as(readable_src, test_users):
    """Start Python source as a real user in the background (Popen); killed at teardown."""
    procs: list[subprocess.Popen] = []

    def spawn(user: str | None, code: str, **popen) -> subprocess.Popen:
        argv = [
            PYTHON,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(readable_src)!r})\n" + code,
        ]
        if user is not None:
            argv = [*setpriv_prefix(test_users[user]), *argv]
        popen.setdefault("env", {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd="/", **popen)  # fmt: skip
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
