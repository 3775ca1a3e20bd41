"""A private host for a network front-end's tests: svirtd as root (PAM through pam_wrapper)
and the front-end (``svirt-web``, ``svirt-xenapi``) as its own unprivileged uid, started the
way the units start them, with a self-signed certificate clients pin.

Shared by tests/web and tests/xenapi so both front-ends are tested on the same set-up; each
subclass writes its own UA/PA and settings, then calls ``_start``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from svtd_helpers import PY, Daemon, RealEnv, setpriv_prefix, write_root_file

from secured_virt.testing import pamwrap

REPO = Path(__file__).resolve().parents[2]


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
             "/usr/sbin/nologin", name],
            check=True,
        )  # fmt: skip
        return pwd.getpwnam(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FrontendHost:
    """svirtd + one front-end (``kind``: its config prefix and module, ``program``: its name)."""

    kind = ""
    program = ""

    def _prepare(
        self, frontend_user: str, users, settings: dict, why_root: str, *, port_key: str
    ) -> None:
        """Skip where it cannot run; the accounts, a free port (config key ``port_key``) and
        the private host."""
        if os.geteuid() != 0:
            pytest.skip(why_root)
        why = pamwrap.unavailable_reason()
        if why:
            pytest.skip(why)
        for name in (*users, frontend_user):
            ensure_user(name)
        self.fe = pwd.getpwnam(frontend_user)
        self.port = free_port()
        self.env = RealEnv(**{port_key: self.port, **settings})

    def _start(self, src: Path, passwords: dict, before_start=None, path: str = "") -> None:
        """The front-end's state directory and certificate, svirtd with PAM, the front-end as
        its own uid; returns once it answers with its certificate made."""
        base = self.env.base
        self.state = base / self.kind
        self.state.mkdir(mode=0o700)
        os.chown(self.state, self.fe.pw_uid, self.fe.pw_gid)
        self.cert = self.state / "cert.pem"
        self._append_config(
            f"{self.kind}_cert = {self.cert}\n{self.kind}_key = {self.state / 'key.pem'}\n"
        )
        self.pam = pamwrap.make_pam_wrapper(base / "pam", passwords)
        if before_start is not None:  # e.g. the host's sHype policy, loaded for boot
            try:
                before_start(self)
            except BaseException:
                self.env.cleanup()  # nothing runs yet: the private host goes with the error
                raise
        code = (
            "import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            + self.pam.child_prelude()
            + "from secured_virt.daemon.server import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        argv = [PY, "-I", "-c", code, "--config", str(self.env.config), "--log-level", "debug"]
        self.svirtd = Daemon(argv, base, Path(self.env.socket)).start().wait_ready()
        fe_code = (
            "import sys\n"
            f"sys.path.insert(0, {str(src)!r})\n"
            f"from secured_virt.{self.kind}.server import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        self.frontend_log = base / f"{self.kind}.log"
        self._fe_log = open(self.frontend_log, "ab")  # noqa: SIM115 - closed in stop()
        self.frontend = subprocess.Popen(
            [
                *setpriv_prefix(self.fe),
                PY, "-I", "-c", fe_code, "--config", str(self.env.config),
                "--log-level", "debug",
            ],
            stdout=self._fe_log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{self.port}{path}"
        self._wait_ready()

    def _append_config(self, text: str) -> None:
        write_root_file(self.env.config, self.env.config.read_text() + text)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.frontend.poll() is not None:
                raise AssertionError(f"{self.program} exited:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                if self.cert.exists():
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.program} did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.frontend_log.read_text(errors="replace")

    def ssl_context(self) -> ssl.SSLContext:
        """Trust exactly the endpoint's self-signed certificate (pinned)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def audit(self) -> list[dict]:
        return self.env.audit_records()

    def alive(self) -> bool:
        return self.frontend.poll() is None and self.svirtd.proc.poll() is None

    def stop(self) -> None:
        if self.frontend.poll() is None:
            self.frontend.terminate()
            try:
                self.frontend.wait(10)
            except subprocess.TimeoutExpired:
                self.frontend.kill()
                self.frontend.wait()
        self._fe_log.close()
        self.svirtd.stop()
        self.env.cleanup()
