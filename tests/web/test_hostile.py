"""Hostile HTTP against the real svirt-web (as svt-web) and svirtd: CSRF without a token,
forged and replayed cookies, oversized requests, slowloris, a thousand WebSockets.  After each,
the server still serves, nothing happened that the gate did not allow, and the audit chain
verifies."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import ssl
import sys
import time
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_helpers import PASSWORDS, WebEnv

from secured_virt.access import audit

pytestmark = pytest.mark.integration
COOKIE = "__Host-svirt-session"


@pytest.fixture
def hweb(readable_src):
    env = WebEnv(readable_src, web_request_timeout=2, web_max_websockets=1500)
    yield env
    env.stop()


class Browserless:
    """A client that keeps the cookies itself (they are Secure, __Host-, on an IP host)."""

    def __init__(self, web: WebEnv, session: aiohttp.ClientSession):
        self.web, self.s, self.cookies = web, session, {}

    def _hdr(self, extra=None):
        h = (
            {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            if self.cookies
            else {}
        )
        h.update(extra or {})
        return h

    def _keep(self, resp):
        for c in resp.cookies.values():
            if c.value:
                self.cookies[c.key] = c.value
            else:
                self.cookies.pop(c.key, None)

    async def get(self, path, **kw):
        async with self.s.get(self.web.url + path, ssl=self.web.ssl_context(),
                              headers=self._hdr(kw.pop("headers", None)),
                              allow_redirects=False, **kw) as r:  # fmt: skip
            self._keep(r)
            return r.status, r.headers.get("Location"), await r.text()

    async def post(self, path, data, headers=None):
        async with self.s.post(self.web.url + path, data=data, ssl=self.web.ssl_context(),
                               headers=self._hdr(headers), allow_redirects=False) as r:  # fmt: skip
            self._keep(r)
            return r.status, r.headers.get("Location"), await r.text()

    async def login(self, user):
        _, _, page = await self.get("/login")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        status, loc, _ = await self.post(
            "/login", {"csrf": csrf, "user": user, "password": PASSWORDS[user]}
        )
        assert status == 303 and loc == "/vms", status
        _, _, page = await self.get("/vms")
        return re.search(r'data-csrf="([0-9a-f]+)"', page).group(1)


def run(coro):
    return asyncio.run(coro)


async def _client(web, fn):
    async with aiohttp.ClientSession() as s:
        return await fn(Browserless(web, s))


def still_serving(web: WebEnv) -> None:
    async def check(c):
        status, _, page = await c.get("/login")
        return status, page

    status, page = run(_client(web, check))
    assert status == 200 and 'id="login-form"' in page
    assert web.alive()
    if Path(web.env.audit_log).exists():  # nothing audited yet is fine; a broken chain is not
        assert audit.verify(web.env.audit_log).ok


def states(web) -> dict:
    from secured_virt import client
    from secured_virt.requests import Request

    r = client.call(web.env.socket, Request("list", {"all": True}))
    return {d["name"]: d["state"] for d in r.data["domains"]}


def test_csrf_origin_forged_and_replayed_cookies(hweb):
    web = hweb

    async def scenario(c):
        csrf = await c.login("svt-alice")
        out = {}
        # no token, a wrong token, a right token from a foreign Origin: all refused, nothing run
        out["none"] = (await c.post("/vm/alice-db", {"op": "start"}))[0]
        out["wrong"] = (await c.post("/vm/alice-db", {"op": "start", "csrf": "0" * 40}))[0]
        out["origin"] = (
            await c.post("/vm/alice-db", {"op": "start", "csrf": csrf},
                         headers={"Origin": "https://evil.example"})
        )[0]  # fmt: skip
        # a login form posted from elsewhere (login CSRF) is refused too
        out["login"] = (await c.post("/login", {"user": "svt-bob", "password": "x"}))[0]
        # forged cookies: random tokens of the right shape, and garbage
        forged = Browserless(web, c.s)
        forged.cookies = {COOKIE: secrets.token_urlsafe(32)}
        out["forged"] = await forged.get("/vms")
        forged.cookies = {COOKIE: "../../etc/passwd"}
        out["garbage"] = await forged.get("/vms")
        # logout, then the old cookie is replayed
        old = c.cookies[COOKIE]
        out["logout"] = (await c.post("/logout", {"csrf": csrf}))[:2]
        replay = Browserless(web, c.s)
        replay.cookies = {COOKIE: old}
        out["replay"] = await replay.get("/vms")
        replay.cookies = {COOKIE: old}  # the redirect above cleared it; send it again
        out["replay_post"] = (await replay.post("/vm/alice-db", {"op": "start", "csrf": csrf}))[:2]
        return out

    out = run(_client(web, scenario))
    assert out["none"] == 403 and out["wrong"] == 403 and out["origin"] == 403
    assert out["login"] == 403
    assert out["forged"][:2] == (303, "/login?why=session")
    assert out["garbage"][:2] == (303, "/login")
    assert out["logout"] == (303, "/login?why=bye")
    assert out["replay"][:2] == (303, "/login?why=session")
    assert out["replay_post"] == (303, "/login?why=session")
    assert states(web)["alice-db"] == "shut off"  # nothing was started
    recs = [r for r in web.audit() if r.get("type") == "decision"]
    assert not [r for r in recs if r["op"] == "start"]
    # svirtd saw the forged and replayed tokens and audited each refusal
    invalid = [r for r in recs if r.get("check") == "session" and r["verdict"] == "denied"]
    assert len(invalid) >= 3, invalid
    still_serving(web)


def test_oversized_requests_are_refused(hweb):
    web = hweb

    async def scenario(c):
        big = await c.post("/login", {"user": "svt-alice", "password": "x" * (2 * 1024 * 1024)})
        huge = await c.get("/login", headers={"X-Junk": "y" * 100_000})
        return big[0], huge[0]

    async def run_it():
        async with aiohttp.ClientSession() as s:
            c = Browserless(web, s)
            try:
                return await scenario(c)
            except aiohttp.ClientError as exc:  # the server may just close on a huge head
                return 413, type(exc).__name__

    big, huge = asyncio.run(run_it())
    assert big == 413
    assert huge in (400, 413, 431) or isinstance(huge, str)
    still_serving(web)


def test_slowloris_is_dropped_and_others_are_served(hweb):
    web = hweb
    ctx = ssl.create_default_context(cafile=str(web.cert))
    slow = []
    for _ in range(60):
        raw = socket.create_connection(("127.0.0.1", web.port), 5)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        slow.append(s)
    t0 = time.monotonic()
    still_serving(web)  # served while 60 connections dangle
    assert time.monotonic() - t0 < 5
    time.sleep(3.5)  # web_request_timeout = 2 s
    closed = 0
    for s in slow:
        s.settimeout(2)
        try:
            s.sendall(b"X-More: 1\r\n")
            closed += s.recv(1) == b""
        except (OSError, ssl.SSLError):
            closed += 1
        finally:
            s.close()
    assert closed == len(slow), f"only {closed} of {len(slow)} slow connections were dropped"
    still_serving(web)


def test_a_thousand_websockets(hweb):
    web = hweb
    n = 1000

    async def scenario(c):
        csrf = await c.login("svt-alice")
        url = web.url.replace("https", "wss") + "/ws/state?csrf=" + csrf
        hdr = {"Cookie": f"{COOKIE}={c.cookies[COOKIE]}", "Origin": web.url}
        sem = asyncio.Semaphore(100)
        ctx = web.ssl_context()
        opened, refused, errors = [], {}, 0

        async def one(headers):
            nonlocal errors
            async with sem:
                try:
                    ws = await c.s.ws_connect(url, ssl=ctx, headers=headers)
                    opened.append(ws)
                except aiohttp.WSServerHandshakeError as exc:
                    refused[exc.status] = refused.get(exc.status, 0) + 1
                except (TimeoutError, aiohttp.ClientError, OSError):
                    errors += 1

        await asyncio.gather(*(one(hdr) for _ in range(n)))
        # and a thousand without a session at all
        await asyncio.gather(*(one({"Origin": web.url}) for _ in range(n)))
        first = await asyncio.wait_for(opened[0].receive_json(), 10) if opened else None
        status, _, page = await c.get("/vms")  # the user's own page still renders
        for ws in opened:
            await ws.close()
        return len(opened), refused, errors, first, status, page

    opened, refused, errors, first, status, page = run(_client(web, scenario))
    assert opened == 16, (opened, refused, errors)  # web_max_websockets_per_session
    assert refused.get(429) == n - 16 and refused.get(401) == n, refused
    assert errors == 0
    assert "alice-web" in first["states"]
    assert status == 200 and 'data-vm="alice-web"' in page
    still_serving(web)
