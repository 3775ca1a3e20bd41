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

The listener, the certificate and the start-up rules (refuse root, off unless turned on)
are the network front-ends' shared ones (``secured_virt.netfront``).
"""

from __future__ import annotations

import asyncio
import sys
import xmlrpc.client

from aiohttp import web

from secured_virt.netfront.link import Link, LinkError
from secured_virt.netfront.listener import peer_of
from secured_virt.netfront.program import Frontend, serve_app
from secured_virt.netfront.program import main as program_main

from .api import Failure, XenApi
from .xmlrpc import (
    EncodedParts,
    Streamed,
    XmlRpcError,
    dumps_result,
    failure,
    loads,
    stream_envelope,
    success,
)

LINK_SIZE = 32
XML = "text/xml"
FRONTEND = Frontend(
    program="svirt-xenapi",
    prefix="xenapi",
    title="the Xen-API",
    subject="secured-virt Xen-API",
    description="secured-virt's Xen-API (XML-RPC over HTTPS): an unprivileged front-end of "
    "svirtd for Xen-API clients.  It decides nothing itself: logins are checked by PAM in "
    "svirtd, and every call runs through svirtd's gate (roles, sHype/ACM, audit) as the user "
    "the session token names.",
)


def make_app(api: XenApi, *, max_body: int, request_timeout: float) -> web.Application:
    app = web.Application(client_max_size=max_body)
    head, tail = stream_envelope()

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
        if type(result.get("Value")) is Streamed:
            return await streamed(request, result["Value"])
        return web.Response(body=dumps_result(result), content_type=XML)

    async def streamed(request: web.Request, value: Streamed) -> web.StreamResponse:
        """A value sent as it is made: the answer's head goes with the first part (a
        refusal comes before any part, and is answered whole); the body is chunked.  If the
        value breaks after parts went out, the connection is dropped without the answer's
        tail, so the client sees a broken answer, never a short one that parses."""
        response: web.StreamResponse | None = None

        async def emit(parts: list[bytes]) -> None:
            nonlocal response
            if response is None:
                response = web.StreamResponse(headers={"Content-Type": XML})
                await response.prepare(request)
                await response.write(head)
            await response.write(b"".join(parts))

        try:
            rest = await value.produce(emit)
        except Failure as exc:
            if response is not None:
                raise
            return web.Response(body=dumps_result(failure(*exc.description)), content_type=XML)
        except LinkError as exc:
            if response is not None:
                raise
            return web.Response(
                body=dumps_result(failure("INTERNAL_ERROR", str(exc))), content_type=XML
            )
        if response is None:  # nothing was streamed (a short list)
            body = dumps_result(success(EncodedParts(rest)))
            return web.Response(body=body, content_type=XML)
        await response.write(b"".join(rest) + tail)
        await response.write_eof()
        return response

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


async def serve(config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None):
    """Serve until ``stop`` is set (or SIGTERM/SIGINT)."""
    link = Link(config.socket, program=FRONTEND.program, size=LINK_SIZE)
    app = make_app(
        XenApi(link),
        max_body=config.xenapi_max_body_bytes,
        request_timeout=config.xenapi_request_timeout,
    )
    try:
        await serve_app(FRONTEND, config, app, extra_fds=LINK_SIZE, ready=ready, stop=stop)
    finally:
        link.close()


def main(argv: list[str] | None = None) -> int:
    return program_main(FRONTEND, serve, argv)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
