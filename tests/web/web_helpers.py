"""Helpers for the web console tests: a real svirtd (real Service, libvirt's test driver or a real
QEMU guest, PAM through pam_wrapper) and a real svirt-web process running as its own
unprivileged uid (svt-web), driven by a real headless Chromium (selenium + Debian's
chromium-driver) and by a plain HTTPS client that trusts exactly the endpoint's certificate.

Screenshots go to ``$SVIRT_WEB_ARTIFACTS`` when set (CI can keep them), else to the test's
tmp dir; each test prints where."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO / "tests" / "daemon"), str(REPO)]

from frontend_host import FrontendHost  # noqa: E402
from svtd_helpers import PY, write_root_file  # noqa: E402, F401 - PY: for the test modules

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


class WebEnv(FrontendHost):
    """svirtd + svirt-web on a private host; ``url`` and ``ssl_context()`` for clients."""

    kind = "web"
    program = "svirt-web"

    def __init__(self, src: Path, *, pa_extra=None, before_start=None, **conf):
        settings = {
            "frontends": f"web:{FRONTEND_USER}",
            "web": "yes",
            "web_refresh_seconds": 1,
            "auth_timeout_minutes": 0,
            "auth_operations": "destroy",  # destroy asks for the password again (PAM)
        }
        settings.update(conf)
        self._prepare(
            FRONTEND_USER,
            PASSWORDS,
            settings,
            "the web tests run svirtd as root and svirt-web as another uid",
            port_key="web_port",
        )
        write_root_file(self.env.ua, UA)
        pa = self.env.pa.read_text().replace("</RolePolicyDefinition>", WEB_AUDITOR)
        if pa_extra:
            pa = pa_extra(pa)
        write_root_file(self.env.pa, pa)
        self._start(src, PASSWORDS, before_start)
