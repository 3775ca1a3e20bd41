"""Fixtures for the secured Xen-API: a real svirtd (real Service, libvirt test driver, PAM
through pam_wrapper) and a real svirt-xenapi process running as its own unprivileged uid
(svt-xenapi), reached with the PyPI ``XenAPI`` client over HTTPS with a pinned certificate."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import ssl
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO / "tests" / "daemon"), str(REPO)]

from svtd_helpers import PY, Daemon, RealEnv, write_root_file  # noqa: E402

from secured_virt.testing import pamwrap  # noqa: E402

FRONTEND_USER = "svt-xenapi"
PASSWORDS = {
    "svt-alice": "alice-pw-7Q",
    "svt-bob": "bob-pw-3Z",
    "svt-carol": "carol-pw-9K",
    "svt-dave": "dave-pw-5M",
}
UA = """<?xml version="1.0"?>
<UserConfiguration>
  <User name="svt-alice"><UserRole role="WebTeam"/></User>
  <User name="svt-bob"><UserRole role="BuildTeam"/></User>
  <User name="svt-carol"><UserRole role="Auditor"/></User>
  <User name="svt-dave"><UserRole role="PolicyManager"/></User>
</UserConfiguration>
"""
POLICY_MANAGER = """  <Role name="PolicyManager">
    <ManageVM type="individual"><VM name="Domain-0"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="policy-show"/><operation name="policy-load"/>
      <operation name="policy-update"/><operation name="resources"/>
      <operation name="dry-run"/><operation name="hostinfo"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


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


class XenEnv:
    """svirtd + svirt-xenapi on a private host; ``url`` and ``transport()`` for clients."""

    def __init__(self, src: Path, *, acm: bool = False, **conf):
        if os.geteuid() != 0:
            pytest.skip("the Xen-API tests run svirtd as root and the front-end as another uid")
        why = pamwrap.unavailable_reason()
        if why:
            pytest.skip(why)
        for name in (*PASSWORDS, FRONTEND_USER):
            ensure_user(name)
        self.fe = pwd.getpwnam(FRONTEND_USER)
        self.port = free_port()
        settings = {
            "frontends": f"xenapi:{FRONTEND_USER}",
            "xenapi": "yes",
            "xenapi_port": self.port,
            "auth_timeout_minutes": 0,
        }
        settings.update(conf)
        self.env = RealEnv(**settings)
        base = self.env.base
        if acm:
            self._append_config("acm = yes\n")
        write_root_file(self.env.ua, UA)
        pa = self.env.pa.read_text().replace("</RolePolicyDefinition>", POLICY_MANAGER)
        write_root_file(self.env.pa, pa)
        self.state = base / "xenapi"
        self.state.mkdir(mode=0o700)
        os.chown(self.state, self.fe.pw_uid, self.fe.pw_gid)
        self.cert = self.state / "cert.pem"
        self._append_config(f"xenapi_cert = {self.cert}\nxenapi_key = {self.state / 'key.pem'}\n")
        self.pam = pamwrap.make_pam_wrapper(base / "pam", PASSWORDS)
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
            "from secured_virt.xenapi.server import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        self.xenapi_log = base / "xenapi.log"
        self._fe_log = open(self.xenapi_log, "ab")  # noqa: SIM115 - closed in stop()
        self.frontend = subprocess.Popen(
            [
                "/usr/bin/setpriv",
                f"--reuid={self.fe.pw_uid}",
                f"--regid={self.fe.pw_gid}",
                "--clear-groups",
                "--",
                PY, "-I", "-c", fe_code, "--config", str(self.env.config),
                "--log-level", "debug",
            ],
            stdout=self._fe_log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{self.port}/"
        self._wait_ready()

    def _append_config(self, text: str) -> None:
        write_root_file(self.env.config, self.env.config.read_text() + text)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.frontend.poll() is not None:
                raise AssertionError(f"svirt-xenapi exited:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                if self.cert.exists():
                    return
            time.sleep(0.05)
        raise AssertionError(f"svirt-xenapi did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.xenapi_log.read_text(errors="replace")

    def context(self) -> ssl.SSLContext:
        """Trust exactly the endpoint's self-signed certificate (pinned)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def transport(self) -> xmlrpc.client.SafeTransport:
        return xmlrpc.client.SafeTransport(context=self.context())

    def session(self):
        import XenAPI

        return XenAPI.Session(self.url, transport=self.transport())

    def login(self, user: str, password: str | None = None):
        s = self.session()
        s.xenapi.login_with_password(user, password or PASSWORDS[user], "1.0", "pytest")
        return s

    def raw(self):
        """A plain XML-RPC proxy: result structs unwrapped by nobody, no re-login."""
        return xmlrpc.client.ServerProxy(self.url, transport=self.transport(), allow_none=True)

    def audit(self) -> list[dict]:
        return self.env.audit_records()

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


@pytest.fixture
def xen(readable_src):
    env = XenEnv(readable_src)
    yield env
    env.stop()


@pytest.fixture
def xen_acm(readable_src):
    env = XenEnv(readable_src, acm=True)
    yield env
    env.stop()
