"""svirt-web: the web console's HTTPS server, its limits, and ``main()``.

The same stack and the same rules as the Xen-API, from ``secured_virt.netfront``: aiohttp over
TLS with the shared certificate handling (a configured pair, or a self-signed one made at
``--setup`` or first start, key 0600), off unless ``web = yes``, loopback by default, and it
refuses to run as root.  Limits (docs/web.md):

* body ``web_max_body_bytes`` (413 beyond it); request head within ``web_request_timeout``
  (aiohttp's keep-alive timeout), TLS handshake too: slow clients are dropped;
* connections beyond ``web_max_connections`` are closed at once (no fd exhaustion); live
  sockets beyond ``web_max_websockets`` (per session ``web_max_websockets_per_session``) are
  refused before any svirtd request;
* svirtd sees at most ``link_size`` requests from us at a time.
"""

from __future__ import annotations

import asyncio
import sys

from secured_virt.netfront.program import Frontend, serve_app
from secured_virt.netfront.program import main as program_main

from .app import WebSettings, build_app

FRONTEND = Frontend(
    program="svirt-web",
    prefix="web",
    title="the web console",
    subject="secured-virt web console",
    description="secured-virt's web console (HTML over HTTPS): an unprivileged front-end of "
    "svirtd for browsers.  It decides nothing itself: logins are checked by PAM in svirtd, "
    "and every page and click runs through svirtd's gate (roles, sHype/ACM, audit) as the "
    "user the session cookie names.",
)


def settings_of(config) -> WebSettings:
    return WebSettings(
        socket=config.socket,
        refresh_seconds=config.web_refresh_seconds,
        max_websockets=config.web_max_websockets,
        max_websockets_per_session=config.web_max_websockets_per_session,
    )


async def serve(config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None):
    """Serve until ``stop`` is set (or SIGTERM/SIGINT)."""
    app = build_app(settings_of(config), client_max_size=config.web_max_body_bytes)
    # every live socket may hold a console connection to svirtd of its own
    await serve_app(
        FRONTEND, config, app, extra_fds=config.web_max_websockets, ready=ready, stop=stop
    )


def main(argv: list[str] | None = None) -> int:
    return program_main(FRONTEND, serve, argv)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
