"""Fixtures for the secured Xen-API: a real svirtd (real Service, libvirt test driver, PAM
through pam_wrapper) and a real svirt-xenapi process running as its own unprivileged uid
(svt-xenapi), reached with the PyPI ``XenAPI`` client over HTTPS with a pinned certificate."""

from __future__ import annotations

import ssl
import sys
import xmlrpc.client
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO / "tests" / "daemon"), str(REPO)]

from frontend_host import FrontendHost, ensure_user  # noqa: E402, F401 - ensure_user: test_netfront
from svtd_helpers import write_root_file  # noqa: E402

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


class XenEnv(FrontendHost):
    """svirtd + svirt-xenapi on a private host; ``url`` and ``transport()`` for clients."""

    kind = "xenapi"
    program = "svirt-xenapi"

    def __init__(self, src: Path, *, acm: bool = False, **conf):
        settings = {
            "frontends": f"xenapi:{FRONTEND_USER}",
            "xenapi": "yes",
            "auth_timeout_minutes": 0,
        }
        settings.update(conf)
        self._prepare(
            FRONTEND_USER,
            PASSWORDS,
            settings,
            "the Xen-API tests run svirtd as root and the front-end as another uid",
            port_key="xenapi_port",
        )
        if acm:
            self._append_config("acm = yes\n")
        write_root_file(self.env.ua, UA)
        pa = self.env.pa.read_text().replace("</RolePolicyDefinition>", POLICY_MANAGER)
        write_root_file(self.env.pa, pa)
        self._start(src, PASSWORDS, path="/")

    def context(self) -> ssl.SSLContext:
        return self.ssl_context()

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
