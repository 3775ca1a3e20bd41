"""svirt-xenapi: the Xen-API's HTTPS server (aiohttp), its limits, and ``main()``.

Limits, all from the configuration (docs/xenapi.md):

* body: ``xenapi_max_body_bytes`` (aiohttp's ``client_max_size``: 413 beyond it); headers:
  aiohttp's own line and field limits (8 KiB: 400 beyond them);
* slow clients: aiohttp closes a connection that has not delivered a whole request head
  within its keep-alive timeout, which we set to ``xenapi_request_timeout``; the body must
  then arrive within the same time, or the request gets 408;
* connections: beyond ``xenapi_max_connections`` a new connection is closed at once, so the
  process cannot run out of file descriptors; the TLS handshake has the same deadline;
* svirtd sees at most ``LINK_SIZE`` requests from us at a time; the rest wait their turn.

The process refuses to run as root: it needs no privilege, and must not hold any.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import xmlrpc.client

from aiohttp import web

from . import tls
from .api import XenApi
from .link import Link
from .xmlrpc import XmlRpcError, dumps_result, loads

log = logging.getLogger("svirt-xenapi")
LINK_SIZE = 32
XML = "text/xml"


def peer_of(request: web.BaseRequest) -> str | None:
    info = request.transport.get_extra_info("peername") if request.transport else None
    if not info:
        return None
    host, port = info[0], info[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def make_app(api: XenApi, *, max_body: int, request_timeout: float) -> web.Application:
    app = web.Application(client_max_size=max_body)

    async def rpc(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(request_timeout):
                body = await request.read()
        except TimeoutError:
            return web.Response(status=408, text="the request body did not arrive in time\n")
        try:
            method, params = loads(body)
        except XmlRpcError as exc:
            fault = xmlrpc.client.dumps(xmlrpc.client.Fault(-32700, str(exc)), methodresponse=True)
            return web.Response(body=fault.encode(), content_type=XML)
        result = await api.dispatch(method, params, peer_of(request))
        return web.Response(body=dumps_result(result), content_type=XML)

    async def not_post(request: web.Request) -> web.Response:
        return web.Response(
            status=405,
            headers={"Allow": "POST"},
            text="secured-virt Xen-API: send XML-RPC calls with POST (docs/xenapi.md)\n",
        )

    async def headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
        response.headers["Server"] = "svirt-xenapi"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Strict-Transport-Security"] = "max-age=31536000"

    app.router.add_post("/{tail:.*}", rpc)
    app.router.add_route("*", "/{tail:.*}", not_post)
    app.on_response_prepare.append(headers)
    return app


class _Refuse(asyncio.Protocol):
    """What a connection beyond the limit gets: closed at once."""

    def connection_made(self, transport):
        transport.abort()


async def serve(config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None):
    """Serve until ``stop`` is set (or SIGTERM/SIGINT)."""
    ctx = tls.server_context(config.xenapi_cert, config.xenapi_key)
    link = Link(config.socket, size=LINK_SIZE)
    api = XenApi(link)
    app = make_app(
        api, max_body=config.xenapi_max_body_bytes, request_timeout=config.xenapi_request_timeout
    )
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=config.xenapi_request_timeout,
        handle_signals=False,
    )
    await runner.setup()
    factory = runner.server
    limit = config.xenapi_max_connections

    def protocol():
        if len(factory.connections) >= limit:
            return _Refuse()
        return factory()

    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        protocol,
        config.xenapi_listen,
        config.xenapi_port,
        ssl=ctx,
        backlog=1024,
        reuse_address=True,
        ssl_handshake_timeout=config.xenapi_request_timeout,
        ssl_shutdown_timeout=5,
    )
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "svirt-xenapi serving https://%s:%d/ for svirtd at %s (pid %d, uid %d)",
        config.xenapi_listen,
        config.xenapi_port,
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
        link.close()
    log.info("svirt-xenapi stopped")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="svirt-xenapi",
        description="secured-virt's Xen-API (XML-RPC over HTTPS): an unprivileged front-end "
        "of svirtd; logins are checked by PAM in svirtd, every call runs through svirtd's gate.",
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
        format="%(asctime)s svirt-xenapi: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if os.geteuid() == 0 or os.getuid() == 0:
        log.error(
            "svirt-xenapi must not run as root: run it as the user named in 'frontends' "
            "(xenapi:svirt-xenapi), e.g. with the svirt-xenapi.service unit"
        )
        return 2
    from secured_virt.config import ConfigError, load_config

    try:
        # the root-only rule for --config protects root-run programs from a user's file; this
        # process has no privilege to misuse, and the file must still be root-owned
        config = load_config(args.config, caller_uid=0)
    except ConfigError as exc:
        log.error("%s", exc)
        return 4
    if not config.xenapi:
        log.error(
            "the Xen-API is off: set 'xenapi = yes' (and frontends = xenapi:USER) in %s",
            config.source or "/etc/secured-virt/secured-virt.conf",
        )
        return 4
    os.umask(0o077)
    try:
        made = tls.ensure_certificate(config.xenapi_cert, config.xenapi_key, config.xenapi_listen)
        if made:
            log.info("made a self-signed certificate %s (key %s)", config.xenapi_cert,
                     config.xenapi_key)  # fmt: skip
        if args.setup:
            return 0
        asyncio.run(serve(config))
    except tls.TlsError as exc:
        log.error("%s", exc)
        return 4
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", config.xenapi_listen, config.xenapi_port, exc)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
