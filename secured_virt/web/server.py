"""svirt-web: the web console's HTTPS server, its limits, and ``main()``.

The same stack and the same rules as the Xen-API (secured_virt.xenapi.server): aiohttp over
TLS with the certificate handling of ``xenapi.tls`` (a configured pair, or a self-signed one
made at ``--setup`` or first start, key 0600), off unless ``web = yes``, loopback by default,
and it refuses to run as root.  Limits (docs/web.md):

* body ``web_max_body_bytes`` (413 beyond it); request head within ``web_request_timeout``
  (aiohttp's keep-alive timeout), TLS handshake too: slow clients are dropped;
* connections beyond ``web_max_connections`` are closed at once (no fd exhaustion); live
  sockets beyond ``web_max_websockets`` (per session ``web_max_websockets_per_session``) are
  refused before any svirtd request;
* svirtd sees at most ``link_size`` requests from us at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys

from aiohttp import web

from secured_virt.xenapi import tls

from .app import WebSettings, build_app

log = logging.getLogger("svirt-web")


class _Refuse(asyncio.Protocol):
    """A connection beyond the limit: closed at once (as the Xen-API does)."""

    def connection_made(self, transport):
        transport.abort()


def settings_of(config) -> WebSettings:
    return WebSettings(
        socket=config.socket,
        refresh_seconds=config.web_refresh_seconds,
        max_websockets=config.web_max_websockets,
        max_websockets_per_session=config.web_max_websockets_per_session,
    )


def _raise_fd_limit(want: int) -> None:
    """Room for every allowed connection plus its svirtd console connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def serve(config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None):
    """Serve until ``stop`` is set (or SIGTERM/SIGINT)."""
    ctx = tls.server_context(config.web_cert, config.web_key)
    _raise_fd_limit(config.web_max_connections + config.web_max_websockets + 256)
    app = build_app(settings_of(config), client_max_size=config.web_max_body_bytes)
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=config.web_request_timeout,
        handle_signals=False,
    )
    await runner.setup()
    factory = runner.server
    limit = config.web_max_connections

    def protocol():
        if len(factory.connections) >= limit:
            return _Refuse()
        return factory()

    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        protocol,
        config.web_listen,
        config.web_port,
        ssl=ctx,
        backlog=1024,
        reuse_address=True,
        ssl_handshake_timeout=config.web_request_timeout,
        ssl_shutdown_timeout=5,
    )
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "svirt-web serving https://%s:%d/ for svirtd at %s (pid %d, uid %d)",
        config.web_listen if ":" not in config.web_listen else f"[{config.web_listen}]",
        config.web_port,
        config.socket,
        os.getpid(),
        os.getuid(),
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        srv.close()
        await runner.cleanup()
    log.info("svirt-web stopped")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="svirt-web",
        description="secured-virt's web console (HTML over HTTPS): an unprivileged front-end of "
        "svirtd; logins are checked by PAM in svirtd, every click runs through svirtd's gate.",
    )
    ap.add_argument("-c", "--config", help="configuration file (root-owned)")
    ap.add_argument(
        "--setup", action="store_true", help="make the self-signed certificate if none, and exit"
    )
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s svirt-web: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if os.geteuid() == 0 or os.getuid() == 0:
        log.error(
            "svirt-web must not run as root: run it as the user named in 'frontends' "
            "(web:svirt-web), e.g. with the svirt-web.service unit"
        )
        return 2
    from secured_virt.config import ConfigError, load_config

    try:
        # like svirt-xenapi: this process has no privilege to misuse; the file is root-owned
        config = load_config(args.config, caller_uid=0)
    except ConfigError as exc:
        log.error("%s", exc)
        return 4
    if not config.web:
        log.error(
            "the web console is off: set 'web = yes' (and frontends = web:USER) in %s",
            config.source or "/etc/secured-virt/secured-virt.conf",
        )
        return 4
    os.umask(0o077)
    try:
        made = tls.ensure_certificate(config.web_cert, config.web_key, config.web_listen)
        if made:
            log.info("made a self-signed certificate %s (key %s)", config.web_cert, config.web_key)
        if args.setup:
            return 0
        asyncio.run(serve(config))
    except tls.TlsError as exc:
        log.error("%s", exc)
        return 4
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", config.web_listen, config.web_port, exc)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
