"""A Unix socket served by another real user: what a client of svirtd must never talk to.

svirsh, svirt-admin and the network front-ends' link check with SO_PEERCRED that root serves
the socket before they send anything (a login's password, a hello).  The attack their tests
play: another user listens where svirtd's socket should be.  ``foreign_listener`` runs that
listener as the given uid (``setpriv``, no supplementary groups), so the kernel names that
uid as the server, and counts every byte a client sends it::

    with foreign_listener(bob) as fake:
        ...connect a client to fake.path (or move it where svirtd's socket belongs)...
        assert fake.received() == 0

Needs root (to run the listener as another uid).
"""

from __future__ import annotations

import contextlib
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .asuid import setpriv_prefix

_SERVER = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.listen(8)
s.settimeout(30)
print("ready", flush=True)
got = 0
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    c.settimeout(2)
    try:
        while (b := c.recv(65536)):
            got += len(b)
    except OSError:
        pass
    c.close()
with open(sys.argv[2], "w") as fh:
    fh.write(str(got))
"""


class ForeignListener:
    """The listener's socket ``path`` (in a fresh directory, mode 0666) and what it got."""

    def __init__(self, proc: subprocess.Popen, path: Path, count: Path):
        self.proc, self.path, self._count = proc, path, count

    def received(self, timeout: float = 30) -> int:
        """Bytes received over all its connections; waits until it has served them all."""
        if self.proc.wait(timeout) != 0:
            raise AssertionError(f"the foreign listener failed (exit {self.proc.returncode})")
        return int(self._count.read_text())


@contextlib.contextmanager
def foreign_listener(user: pwd.struct_passwd, connections: int = 1) -> Iterator[ForeignListener]:
    """A socket listening as ``user`` for ``connections`` connections (see the module)."""
    d = Path(tempfile.mkdtemp(prefix="svt-foreign-", dir="/tmp"))
    d.chmod(0o777)
    path, count = d / "svirtd.sock", d / "received"
    proc = subprocess.Popen(
        [
            *setpriv_prefix(user),
            sys.executable,
            "-I",
            "-c",
            _SERVER,
            str(path),
            str(count),
            str(connections),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError("the foreign listener did not start")
        yield ForeignListener(proc, path, count)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
