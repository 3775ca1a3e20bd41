"""svirtd's frames over asyncio: a small pool of connections from this front-end's user.

Why a pool of plain connections: svirtd serves one frame at a time per connection and gives
each connection its own thread, so a few connections kept open (``hello`` once each) let
calls of many clients overlap without paying a connect and hello per call.  svirtd caps
connections per uid (128 by default), so the pool stays well below that.

A console is different: svirtd turns the connection that asked for it into the raw byte
stream of its console relay, so each console gets a connection of its own (``console()``),
framed here like every other request until svirtd's reply, and never returned to the pool.

The framing is svirtd's (docs/protocol.md): a 4-byte big-endian length, then one JSON object.
Replies are bounded like the svirsh client bounds them.  ``program`` is the name this process
gives in its ``hello`` (svirtd logs it; who we are is still SO_PEERCRED's uid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from secured_virt.client import MAX_REPLY_BYTES, PROTOCOL_VERSION, foreign_server
from secured_virt.requests import EXIT_FAILED, Reply


class LinkError(Exception):
    """svirtd cannot be reached, or broke the protocol; the message says what to do."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
        self.writer.write(len(body).to_bytes(4, "big") + body)
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        head = await self.reader.readexactly(4)
        n = int.from_bytes(head, "big")
        if n > MAX_REPLY_BYTES:
            raise LinkError(f"svirtd sent a frame of {n} bytes; refusing")
        # svirtd's frames are UTF-8 (docs/protocol.md): decoded as such first, json.loads of a
        # str skips its encoding sniffing and surrogatepass decoder (a 1,000-VM list: 0.3 ms)
        msg = json.loads((await self.reader.readexactly(n)).decode("utf-8"))
        if not isinstance(msg, dict):
            raise LinkError("svirtd sent something that is not a frame")
        return msg

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Console:
    """An answered ``session_console``: ``reply``, and when its status is 0 the raw stream
    (``reader``/``writer``) of the guest's console.  ``close()`` ends it either way."""

    def __init__(self, conn: _Conn, reply: Reply):
        self.reader, self.writer, self.reply = conn.reader, conn.writer, reply
        self._conn = conn

    def close(self) -> None:
        self._conn.close()


class Link:
    """``await link.call(frame)`` -> the ``reply`` frame's Reply; at most ``size`` at once."""

    def __init__(self, socket_path: str, *, program: str, size: int = 32, timeout: float = 120.0):
        self.socket_path = socket_path
        self.program = program
        self.size = size
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(size)

    async def call(
        self,
        frame: dict[str, Any],
        rows: Callable[[list], Awaitable[None]] | None = None,
    ) -> Reply:
        """svirtd's reply to ``frame``.  ``rows``: where the ``rows`` frames of a streamed
        ``list`` go, in order, before the reply (without it such a frame is a protocol
        error).  A kept connection that turns out closed is retried once on a new one,
        never after rows were handed on (the caller would get them twice)."""
        handed = [False]

        async def hand(part: list) -> None:
            handed[0] = True
            await rows(part)

        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            for attempt in (1, 2):
                fresh = conn is None
                if conn is None:
                    conn = await self._connect()
                try:
                    await conn.send(frame)
                    async with asyncio.timeout(self.timeout):  # no task per call (wait_for's)
                        reply = await self._answer(conn, hand if rows is not None else None)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    conn.close()
                    conn = None
                    if fresh or attempt == 2 or handed[0]:  # a kept one may have been closed idle
                        raise LinkError(f"svirtd connection failed: {exc}") from None
                    continue
                except BaseException:
                    conn.close()
                    raise
                self._idle.append(conn)
                return reply
        raise LinkError("svirtd connection failed")  # not reached

    async def console(self, token: str, name: str, peer: str | None) -> Console:
        """``session_console`` on a connection of its own (not from the pool, not counted
        against ``size``: a console lasts as long as the user watches it).  A refusal or
        svirtd's error frame is the Console's ``reply``; LinkError when svirtd is away."""
        conn = await self._connect()
        try:
            await conn.send({"type": "session_console", "token": token, "name": name,
                             "peer": peer})  # fmt: skip
            while True:
                msg = await asyncio.wait_for(conn.recv(), 60)
                kind = msg.get("type")
                if kind == "reply" and isinstance(msg.get("reply"), dict):
                    return Console(conn, Reply.from_dict(msg["reply"]))
                if kind == "ask_password":  # PAM for the console: no prompt here, fail closed
                    await conn.send({"type": "password", "password": None})
                    continue
                if kind == "error":
                    why = f"svirtd: {msg.get('message')}"
                    return Console(conn, Reply(EXIT_FAILED, message=why))
                if kind != "progress":
                    raise LinkError(f"svirtd sent an unexpected frame {kind!r}")
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            conn.close()
            raise LinkError(f"svirtd connection failed: {exc}") from None
        except BaseException:
            conn.close()
            raise

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=1 << 16)
        except OSError as exc:
            raise LinkError(
                f"cannot reach svirtd at {self.socket_path}: {exc.strerror or exc}; "
                "is svirtd running?"
            ) from None
        conn = _Conn(reader, writer)
        served_by = foreign_server(writer.get_extra_info("socket"))
        if served_by is not None:
            conn.close()  # not svirtd: it must never see a login's password
            raise LinkError(
                f"{self.socket_path} is served by uid {served_by}, not by root, so it is not "
                "svirtd; refusing to talk to it (check 'socket' in secured-virt.conf)"
            )
        try:
            await conn.send({"type": "hello", "version": PROTOCOL_VERSION, "client": self.program})
            msg = await asyncio.wait_for(conn.recv(), 30)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            conn.close()
            raise LinkError(f"svirtd connection failed at hello: {exc}") from None
        if msg.get("type") != "hello":
            conn.close()
            raise LinkError(f"svirtd refused us: {msg.get('message') or msg}")
        return conn

    async def _answer(self, conn: _Conn, rows=None) -> Reply:
        while True:
            msg = await conn.recv()
            kind = msg.get("type")
            if kind == "reply" and isinstance(msg.get("reply"), dict):
                return Reply.from_dict(msg["reply"])
            if kind == "rows" and rows is not None and isinstance(msg.get("rows"), list):
                await rows(msg["rows"])
                continue
            if kind == "ask_password":  # a request whose PAM prompt we cannot answer
                await conn.send({"type": "password", "password": None})
                continue
            if kind == "progress":
                continue
            if kind == "error":  # svirtd closes the connection after an error frame
                raise LinkError(f"svirtd: {msg.get('code')}: {msg.get('message')}")
            raise ValueError(f"unexpected frame {kind!r}")

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
