"""The serial console in the browser: a WebSocket relayed byte for byte to svirtd's console.

svirtd does the work (docs/protocol.md, "Console"): ``session_console`` is gate-checked as
operation ``console`` for the token's user and, if allowed, the connection turns into the raw
byte stream of libvirt's console relay (the same relay ``svirsh console`` uses).  This module
only joins that stream to the browser's socket: guest bytes go out as binary messages, keys
come in as text or binary messages.  Either side ending ends both, and svirtd releases the
console for the next user.  Each console holds one svirtd connection of its own (a console
cannot share one), counted against the socket limits of ``live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import WSMsgType, web

from secured_virt.client import MAX_REPLY_BYTES, PROTOCOL_VERSION
from secured_virt.requests import EXIT_OK, Reply

from . import live
from .keys import KEY_SETTINGS, MAX_NAME, peer_of

#: the most a browser may send in one message (keys, a paste)
MAX_INPUT = 16 * 1024


async def _frame(writer: asyncio.StreamWriter, msg: dict) -> None:
    body = json.dumps(msg, separators=(",", ":")).encode()
    writer.write(len(body).to_bytes(4, "big") + body)
    await writer.drain()


async def _read_frame(reader: asyncio.StreamReader) -> dict:
    n = int.from_bytes(await reader.readexactly(4), "big")
    if n > MAX_REPLY_BYTES:
        raise ValueError("svirtd sent an oversized frame")
    msg = json.loads(await reader.readexactly(n))
    if not isinstance(msg, dict):
        raise ValueError("svirtd sent something that is not a frame")
    return msg


async def open_console(socket_path: str, token: str, name: str, peer: str | None):
    """(reader, writer, Reply): the svirtd connection in raw mode when the reply is 0."""
    reader, writer = await asyncio.open_unix_connection(socket_path, limit=1 << 16)
    try:
        await _frame(writer, {"type": "hello", "version": PROTOCOL_VERSION, "client": "svirt-web"})
        await _frame(
            writer, {"type": "session_console", "token": token, "name": name, "peer": peer}
        )
        while True:
            msg = await asyncio.wait_for(_read_frame(reader), 60)
            kind = msg.get("type")
            if kind == "hello":
                continue
            if kind == "ask_password":  # the console asked for PAM: the web has no prompt here
                await _frame(writer, {"type": "password", "password": None})
                continue
            if kind == "reply":
                return reader, writer, Reply.from_dict(msg["reply"])
            if kind == "error":
                return reader, writer, Reply(1, message=f"svirtd: {msg.get('message')}")
    except BaseException:
        writer.close()
        raise


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
            reader, writer, reply = await open_console(
                request.app[KEY_SETTINGS].socket, token, name, peer_of(request)
            )
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
            await ws.send_json({"status": 1, "message": f"cannot reach svirtd: {exc}"})
            await ws.close()
            return ws
        try:
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
            await _relay(ws, reader, writer)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
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
