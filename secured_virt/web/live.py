"""Live VM states over a WebSocket: one svirtd poll per session, however many tabs are open.

Why polling and why shared: svirtd has no event stream for front-ends, and every look at the
VMs is a ``list`` the gate decides and audits as the user (via=web).  So each session that has
a page open gets one poller, which asks every ``refresh_seconds`` and sends only changes to
that session's sockets; ten tabs cost what one does, and a page in the background closes its
socket (static/app.js) so nothing is polled for nobody.  An action made through the console
pokes the poller, so its result shows at once.

Limits: at most ``max_websockets`` sockets in all and ``max_websockets_per_session`` per
session (beyond them the upgrade is refused with 429/503 before any svirtd request), Origin
must be ours, and the CSRF token must come with the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from secured_virt.requests import EXIT_OK

from . import security
from .keys import KEY_CSRF, KEY_HUB, KEY_LINK, KEY_SETTINGS, KEY_SOCKETS, peer_of
from .keys import token_key as _key

log = logging.getLogger("svirt-web")


class _Feed:
    def __init__(self, token: str):
        self.token = token
        self.sockets: set[web.WebSocketResponse] = set()
        self.states: dict[str, str] | None = None
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()


class Hub:
    def __init__(self, app: web.Application, interval: float):
        self.app = app
        self.interval = max(1.0, float(interval))
        self.feeds: dict[str, _Feed] = {}

    async def subscribe(self, token: str, ws: web.WebSocketResponse, peer) -> None:
        feed = self.feeds.get(_key(token))
        if feed is None:
            feed = self.feeds[_key(token)] = _Feed(token)
            feed.task = asyncio.create_task(self._poll(feed, peer))
        feed.sockets.add(ws)
        if feed.states is not None:
            await ws.send_json({"states": feed.states})

    def unsubscribe(self, token: str, ws: web.WebSocketResponse) -> None:
        feed = self.feeds.get(_key(token))
        if feed is None:
            return
        feed.sockets.discard(ws)
        if not feed.sockets and feed.task is not None:
            feed.task.cancel()
            self.feeds.pop(_key(token), None)

    async def poke(self, token: str) -> None:
        feed = self.feeds.get(_key(token))
        if feed is not None:
            feed.wake.set()

    async def end_session(self, token: str) -> None:
        """Logout: the session's sockets close now, not at the next poll."""
        feed = self.feeds.pop(_key(token), None)
        if feed is None:
            return
        if feed.task is not None:
            feed.task.cancel()
        for ws in list(feed.sockets):
            with contextlib.suppress(Exception):
                await ws.send_json({"session": "ended"})
                await ws.close()

    async def close(self) -> None:
        for key in list(self.feeds):
            feed = self.feeds.pop(key)
            if feed.task is not None:
                feed.task.cancel()

    async def _poll(self, feed: _Feed, peer) -> None:

        link = self.app[KEY_LINK]
        while feed.sockets:
            frame = {
                "type": "session_request",
                "token": feed.token,
                "request": {"command": "list", "args": {"all": True}},
                "peer": peer,
            }
            try:
                reply = await link.call(frame)
            except Exception as exc:  # svirtd away: say so, keep trying
                log.warning("live states: %s", exc)
                await self._send(feed, {"error": "svirtd is not reachable"})
            else:
                if reply.status != EXIT_OK:
                    ended = reply.check == "session"
                    await self._send(
                        feed, {"session": "ended"} if ended else {"error": reply.message}
                    )
                    if ended:
                        for ws in list(feed.sockets):
                            with contextlib.suppress(Exception):
                                await ws.close()
                        self.feeds.pop(_key(feed.token), None)
                        return
                else:
                    states = {d["name"]: d["state"] for d in reply.data.get("domains", ())}
                    if states != feed.states:
                        feed.states = states
                        await self._send(feed, {"states": states})
            feed.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(feed.wake.wait(), self.interval)

    @staticmethod
    async def _send(feed: _Feed, msg: dict) -> None:
        for ws in list(feed.sockets):
            try:
                await ws.send_json(msg)
            except Exception:
                feed.sockets.discard(ws)


def admit(request: web.Request, token: str) -> web.Response | None:
    """The socket limits: None when this upgrade may go on, else the refusal."""

    settings, count = request.app[KEY_SETTINGS], request.app[KEY_SOCKETS]
    if count["total"] >= settings.max_websockets:
        return web.Response(status=503, text="too many live connections; try again later")
    if count["per"].get(_key(token), 0) >= settings.max_websockets_per_session:
        return web.Response(
            status=429,
            text=f"at most {settings.max_websockets_per_session} live connections per session",
        )
    return None


@contextlib.contextmanager
def counted(request: web.Request, token: str):

    count, key = request.app[KEY_SOCKETS], _key(token)
    count["total"] += 1
    count["per"][key] = count["per"].get(key, 0) + 1
    try:
        yield
    finally:
        count["total"] -= 1
        left = count["per"].get(key, 1) - 1
        if left > 0:
            count["per"][key] = left
        else:
            count["per"].pop(key, None)


def check_upgrade(request: web.Request) -> str:
    """The token of a WebSocket upgrade that may go on (cookie, Origin, CSRF), else raise."""

    token = security.session_token(request)
    if token is None:
        raise web.HTTPUnauthorized(text="log in first", content_type="text/plain")
    if not security.same_origin(request):
        raise web.HTTPForbidden(text="cross-site WebSocket refused (Origin)")
    if not request.app[KEY_CSRF].valid(token, request.query.get("csrf")):
        raise web.HTTPForbidden(text="missing or stale CSRF token: reload the page")
    return token


async def state_socket(request: web.Request) -> web.StreamResponse:

    token = check_upgrade(request)
    refused = admit(request, token)
    if refused is not None:
        return refused
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096, compress=False)
    with counted(request, token):
        await ws.prepare(request)
        hub = request.app[KEY_HUB]
        await hub.subscribe(token, ws, peer_of(request))
        try:
            async for msg in ws:  # the page only listens; "poke" asks for a poll now
                if msg.type == WSMsgType.TEXT and msg.data == "poke":
                    await hub.poke(token)
        finally:
            hub.unsubscribe(token, ws)
    return ws
