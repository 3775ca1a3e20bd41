"""The serial console in the browser: a WebSocket relayed byte for byte to svirtd's console.

svirtd does the work (docs/protocol.md, "Console"): ``session_console`` is gate-checked as
operation ``console`` for the token's user and, if allowed, the connection turns into the raw
byte stream of libvirt's console relay (the same relay ``svirsh console`` uses).  This module
only joins that stream to the browser's socket: guest bytes go out as binary messages, keys
come in as text or binary messages.  Either side ending ends both, and svirtd releases the
console for the next user.  Each console holds one svirtd connection of its own (a console
cannot share one: ``netfront.link.Link.console``, which also does svirtd's framing up to the
reply), counted against the socket limits of ``live``.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from secured_virt.netfront.link import LinkError
from secured_virt.requests import EXIT_OK

from . import live
from .keys import KEY_LINK, MAX_NAME, peer_of

#: the most a browser may send in one message (keys, a paste)
MAX_INPUT = 16 * 1024


async def console_socket(request: web.Request) -> web.StreamResponse:

    token = live.check_upgrade(request)
    name = request.match_info["name"]
    if len(name) > MAX_NAME:
        raise web.HTTPBadRequest(text="VM name too long")
    refused = live.admit(request, token)
    if refused is not None:
        return refused
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_INPUT, compress=False)
    with live.counted(request, token):
        await ws.prepare(request)
        try:
            console = await request.app[KEY_LINK].console(token, name, peer_of(request))
        except LinkError as exc:
            await ws.send_json({"status": 1, "message": str(exc)})
            await ws.close()
            return ws
        try:
            reply = console.reply
            await ws.send_json(
                {
                    "status": reply.status,
                    "message": reply.message or (reply.data or {}).get("message", ""),
                    "check": reply.check,
                }
            )
            if reply.status != EXIT_OK:
                await ws.close()
                return ws
            await _relay(ws, console.reader, console.writer)
        finally:
            console.close()
    return ws


async def _relay(ws: web.WebSocketResponse, reader, writer) -> None:
    async def guest_to_browser():
        while True:
            data = await reader.read(4096)
            if not data:
                break
            await ws.send_bytes(data)

    async def browser_to_guest():
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                writer.write(msg.data.encode("utf-8", "replace"))
            elif msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
            else:
                break
            await writer.drain()

    tasks = [asyncio.create_task(guest_to_browser()), asyncio.create_task(browser_to_guest())]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    with contextlib.suppress(Exception):
        writer.write_eof()
    with contextlib.suppress(Exception):
        await ws.close()
