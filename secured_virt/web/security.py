"""Web hygiene in one place: the session cookie, CSRF tokens, Origin checks, headers.

Why these choices:

* The cookie holds svirtd's session token and nothing else: ``__Host-`` prefix (the browser
  then insists on Secure, Path=/ and no Domain), HttpOnly (no script can read it), SameSite=
  Strict (no other site's page can make the browser send it).  This process keeps no copy:
  svirtd alone says whether a token is live, so logout and expiry take effect at once.
* CSRF: every state-changing request carries a token that only a page of ours can know:
  HMAC-SHA256 of the session token under a key this process draws at start (a restart
  invalidates open forms, which then say so).  Before login, the same scheme binds the login
  form to a random pre-session cookie (double submit), so a foreign page cannot log a
  browser in as someone else.  Origin, when the browser sends it, must be our own.
* Headers on every answer, errors included (``on_response_prepare``): a CSP without inline
  script (``script-src 'self'``), no framing (``frame-ancestors 'none'`` and X-Frame-Options),
  no sniffing, referrers only to ourselves, HSTS, and no caching of pages that show VMs or
  the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from aiohttp import web

SESSION_COOKIE = "__Host-svirt-session"
PRE_COOKIE = "__Host-svirt-pre"
#: what svirtd's tokens look like (secrets.token_urlsafe(32)); anything else is not sent on
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
#: the terminal widget writes its own <style> elements (xterm.js's DOM renderer): on the
#: console page only, styles (never scripts) may be inline
CONSOLE_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chrome send Origin: null
    "Strict-Transport-Security": "max-age=31536000",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class Csrf:
    """CSRF tokens bound to a session token (or a pre-session nonce), under this process's key."""

    def __init__(self, key: bytes | None = None):
        self._key = key or secrets.token_bytes(32)

    def token_for(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).hexdigest()[:40]

    def valid(self, secret: str | None, given: str | None) -> bool:
        if not secret or not given or len(given) != 40:
            return False
        return hmac.compare_digest(self.token_for(secret), given)


def session_token(request: web.Request) -> str | None:
    """The svirtd token from the cookie, if it has a token's shape."""
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and TOKEN_RE.fullmatch(value) else None


def set_session_cookie(response: web.StreamResponse, token: str, max_age: int | None) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=max_age,
    )


def clear_cookie(response: web.StreamResponse, name: str = SESSION_COOKIE) -> None:
    response.set_cookie(
        name, "", path="/", secure=True, httponly=True, samesite="Strict", max_age=0
    )


def pre_session(request: web.Request, response: web.StreamResponse | None = None) -> str:
    """The pre-session nonce (login CSRF): the cookie's, or a new one set on ``response``."""
    value = request.cookies.get(PRE_COOKIE)
    if value and re.fullmatch(r"[A-Za-z0-9_-]{22,64}", value):
        return value
    value = secrets.token_urlsafe(24)
    if response is not None:
        response.set_cookie(
            PRE_COOKIE, value, path="/", secure=True, httponly=True, samesite="Strict"
        )
    return value


def same_origin(request: web.Request) -> bool:
    """Origin (or, failing that, Referer) names this very site, or the browser sent neither.

    Browsers send Origin with every POST and WebSocket upgrade; a request without one did not
    come from a page (curl): the CSRF token still decides for those."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"https://{request.host}"


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, errors included, carries the headers."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", CSP)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Server"] = "svirt-web"
