"""Helpers for the web console tests: a real svirtd (real Service, libvirt's test driver or a real
QEMU guest, PAM through pam_wrapper) and a real svirt-web process running as its own
unprivileged uid (svt-web), driven by a real headless Chromium (selenium + Debian's
chromium-driver) and by a plain HTTPS client that trusts exactly the endpoint's certificate.

Screenshots go to ``$SVIRT_WEB_ARTIFACTS`` when set (CI can keep them), else to the test's
tmp dir; each test prints where."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO / "tests" / "daemon"), str(REPO)]

from svtd_helpers import PY, Daemon, RealEnv, write_root_file  # noqa: E402

from secured_virt.testing import pamwrap  # noqa: E402

FRONTEND_USER = "svt-web"
PASSWORDS = {"svt-alice": "alice-pw-7Q", "svt-bob": "bob-pw-3Z", "svt-carol": "carol-pw-9K"}
UA = """<?xml version="1.0"?>
<UserConfiguration>
  <User name="svt-alice"><UserRole role="WebTeam"/></User>
  <User name="svt-bob"><UserRole role="BuildTeam"/></User>
  <User name="svt-carol"><UserRole role="Auditor"/><UserRole role="WebAuditor"/></User>
</UserConfiguration>
"""
#: an auditor who may read the audit trail, explain decisions and see the sHype policy
WEB_AUDITOR = """  <Role name="WebAuditor">
    <ManageVM type="individual"><VM name="Domain-0"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="audit-read"/><operation name="rbac-review"/>
      <operation name="policy-show"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


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


class WebEnv:
    """svirtd + svirt-web on a private host; ``url`` and ``ssl_context()`` for clients."""

    def __init__(self, src: Path, *, pa_extra=None, before_start=None, **conf):
        if os.geteuid() != 0:
            pytest.skip("the web tests run svirtd as root and svirt-web as another uid")
        why = pamwrap.unavailable_reason()
        if why:
            pytest.skip(why)
        for name in (*PASSWORDS, FRONTEND_USER):
            ensure_user(name)
        self.fe = pwd.getpwnam(FRONTEND_USER)
        self.port = free_port()
        settings = {
            "frontends": f"web:{FRONTEND_USER}",
            "web": "yes",
            "web_port": self.port,
            "web_refresh_seconds": 1,
            "auth_timeout_minutes": 0,
            "auth_operations": "destroy",  # destroy asks for the password again (PAM)
        }
        settings.update(conf)
        self.env = RealEnv(**settings)
        base = self.env.base
        write_root_file(self.env.ua, UA)
        pa = self.env.pa.read_text().replace("</RolePolicyDefinition>", WEB_AUDITOR)
        if pa_extra:
            pa = pa_extra(pa)
        write_root_file(self.env.pa, pa)
        self.state = base / "web"
        self.state.mkdir(mode=0o700)
        os.chown(self.state, self.fe.pw_uid, self.fe.pw_gid)
        self.cert = self.state / "cert.pem"
        self._append_config(f"web_cert = {self.cert}\nweb_key = {self.state / 'key.pem'}\n")
        self.pam = pamwrap.make_pam_wrapper(base / "pam", PASSWORDS)
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
            "from secured_virt.web.server import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        self.web_log = base / "web.log"
        self._fe_log = open(self.web_log, "ab")  # noqa: SIM115 - closed in stop()
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
        self.url = f"https://127.0.0.1:{self.port}"
        self._wait_ready()

    def _append_config(self, text: str) -> None:
        write_root_file(self.env.config, self.env.config.read_text() + text)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.frontend.poll() is not None:
                raise AssertionError(f"svirt-web exited:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                if self.cert.exists():
                    return
            time.sleep(0.05)
        raise AssertionError(f"svirt-web did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.web_log.read_text(errors="replace")

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
