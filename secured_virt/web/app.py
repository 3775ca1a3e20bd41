"""Routes and handlers: every page is one or a few requests on svirtd as the cookie's user.

Nothing here decides who may do what.  A handler checks only what is the web's own business
(the cookie has a token's shape, the CSRF token matches, the Origin is ours, the form is well
formed) and then asks svirtd, which runs the request through ``Service.handle`` as the user
the token names, with ``via=web`` and the browser's address in the audit record.  svirtd's
answer is shown as it comes: a refusal names the check that refused and the gate's reason.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from secured_virt.access.operations import CATALOGUE
from secured_virt.netfront.link import Link, LinkError
from secured_virt.requests import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Reply

from . import pages, security
from .keys import (
    KEY_CSRF,
    KEY_HUB,
    KEY_LINK,
    KEY_NAV,
    KEY_SETTINGS,
    KEY_SOCKETS,
    MAX_NAME,
    WebSettings,
    peer_of,
    token_key,
)
from .security import Csrf

log = logging.getLogger("svirt-web")

STATIC = Path(__file__).resolve().parent / "static"
#: the host operations whose pages the menu offers (each only to users the service allows)
HOST_OPS = [op for op, _href, _text in pages.HOST_PAGES]
#: the VM operations the VM page asks about: its buttons, and the console link
VM_OPS = [*pages.VM_ACTIONS, "console"]
_SAVE_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


async def svirtd(request: web.Request, frame: dict) -> Reply:
    """One frame to svirtd through the shared link; an unreachable svirtd is a 503 page."""
    frame.setdefault("peer", peer_of(request))
    try:
        return await request.app[KEY_LINK].call(frame)
    except LinkError as exc:
        log.error("svirtd: %s", exc)
        raise web.HTTPServiceUnavailable(
            text=f"svirt-web cannot reach svirtd: {exc}", content_type="text/plain"
        ) from None


async def run(request: web.Request, token: str, command: str, args: dict, password=None) -> Reply:
    frame = {
        "type": "session_request",
        "token": token,
        "request": {"command": command, "args": args},
    }
    if password:
        frame["password"] = password
    return await svirtd(request, frame)


def session_invalid(reply: Reply) -> bool:
    return reply.status == EXIT_DENIED and reply.check == "session"


def to_login(request: web.Request, why: str | None = None) -> web.Response:
    """Back to the login page; the stale cookie is removed."""
    resp = web.HTTPSeeOther("/login" + (f"?why={quote(why)}" if why else ""))
    security.clear_cookie(resp)
    return resp


def html(text: str, status: int = 200, csp: str | None = None) -> web.Response:
    resp = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    if csp:
        resp.headers["Content-Security-Policy"] = csp
    return resp


def nav_of(request: web.Request, token: str) -> tuple[str, ...]:
    """Which host pages the menu shows: the VM page's answer, remembered a minute (only for
    the menu: each page asks svirtd, which decides)."""
    hit = request.app[KEY_NAV].get(token_key(token))
    if hit and hit[0] > time.monotonic():
        return hit[1]
    return ()


def remember_nav(request: web.Request, token: str, host_may) -> tuple[str, ...]:
    cache = request.app[KEY_NAV]
    if len(cache) > 10000:
        cache.clear()
    nav = tuple(op for op in HOST_OPS if op in (host_may or ()))
    cache[token_key(token)] = (time.monotonic() + 60, nav)
    return nav


class Who:
    """The cookie's token, its user (from the pages' answers) and CSRF token."""

    def __init__(self, request: web.Request, token: str, user: str):
        self.token = token
        self.user = user
        self.csrf = request.app[KEY_CSRF].token_for(token)
        self.nav = nav_of(request, token)


async def who(request: web.Request) -> Who:
    """The logged-in user, or a redirect to the login page (svirtd says who the token is)."""
    token = security.session_token(request)
    if token is None:
        raise to_login(request)
    reply = await svirtd(request, {"type": "session_info", "token": token})
    if reply.status != EXIT_OK:
        raise to_login(request, "session")
    return Who(request, token, reply.data.get("user", "?"))


async def require_csrf(request: web.Request, token: str | None, form) -> None:
    if not security.same_origin(request):
        raise web.HTTPForbidden(
            text="cross-site request refused (Origin)", content_type="text/plain"
        )
    given = form.get("csrf") if form is not None else None
    given = given or request.headers.get("X-CSRF-Token")
    if not request.app[KEY_CSRF].valid(token, given):
        raise web.HTTPForbidden(
            text="the form's CSRF token is missing or stale: reload the page and try again",
            content_type="text/plain",
        )


# -- login / logout ------------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    resp = html("")
    pre = security.pre_session(request, resp)
    why = request.query.get("why")
    message = {
        "session": "Your session has ended (logged out, expired, or never valid): log in again.",
        "bye": "You are logged out.",
    }.get(why or "")
    resp.text = pages.login_page(request.app[KEY_CSRF].token_for(pre), message, EXIT_DENIED)
    return resp


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    pre = request.cookies.get(security.PRE_COOKIE)
    await require_csrf(request, pre, form)
    user, password = form.get("user", ""), form.get("password", "")
    if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
        return html(
            pages.login_page(
                request.app[KEY_CSRF].token_for(pre),
                "Give your user name and password.",
                EXIT_USAGE,
            ),
            400,
        )
    reply = await svirtd(
        request, {"type": "session_login", "user": user[:256], "password": password[:4096]}
    )
    if reply.status != EXIT_OK or not isinstance(reply.data.get("token"), str):
        status = 429 if reply.check == "rate-limit" else 401 if reply.status == EXIT_DENIED else 503
        return html(
            pages.login_page(
                request.app[KEY_CSRF].token_for(pre), reply.message, reply.status, user[:64]
            ),
            status,
        )
    resp = web.HTTPSeeOther("/vms")
    security.set_session_cookie(resp, reply.data["token"], None)
    security.clear_cookie(resp, security.PRE_COOKIE)
    return resp


async def logout(request: web.Request) -> web.Response:
    token = security.session_token(request)
    form = await request.post()
    await require_csrf(request, token, form)
    await svirtd(request, {"type": "session_logout", "token": token})
    request.app[KEY_NAV].pop(token_key(token), None)
    await request.app[KEY_HUB].end_session(token)
    return to_login(request, "bye")


# -- the VM page ---------------------------------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/vms")


async def vm_listing(request: web.Request, token: str) -> Reply:
    return await run(request, token, "vm-actions", {"ops": VM_OPS, "host_ops": HOST_OPS})


async def vms(
    request: web.Request, result: Reply | None = None, w: Who | None = None, http_status: int = 200
) -> web.Response:
    token = w.token if w else security.session_token(request)
    if token is None:
        raise to_login(request)
    reply = await vm_listing(request, token)
    if session_invalid(reply):
        raise to_login(request, "session")
    w = w or Who(request, token, "")
    user = w.user or await _user(request, token)
    if reply.status != EXIT_OK:
        return html(
            pages.refused_page(
                user, w.csrf, w.nav, "Virtual machines", reply.status, reply.message, reply.check
            ),
            403,
        )
    nav = remember_nav(request, token, reply.data.get("host_may"))
    msg = (result.message or (result.data or {}).get("message")) if result else None
    return html(
        pages.vms_page(
            user,
            w.csrf,
            reply.data.get("domains", []),
            nav,
            message=msg,
            status=result.status if result else None,
            check=result.check if result else None,
        ),
        http_status,
    )


async def _user(request: web.Request, token: str) -> str:
    reply = await svirtd(request, {"type": "session_info", "token": token})
    if reply.status != EXIT_OK:
        raise to_login(request, "session")
    return reply.data.get("user", "?")


async def vm_action(request: web.Request) -> web.Response:
    """POST /vm/NAME with op=start|...: the request as the token's user, through the gate."""
    token = security.session_token(request)
    if token is None:
        raise to_login(request)
    form = await request.post()
    await require_csrf(request, token, form)
    name = request.match_info["name"]
    op = form.get("op")
    if op not in pages.VM_ACTIONS or len(name) > MAX_NAME:
        raise web.HTTPBadRequest(text="unknown operation or VM name", content_type="text/plain")
    args: dict = {"domain": name}
    if op in ("save", "restore"):
        args = {"file": _SAVE_SAFE.sub("_", name)[:200] + ".save"}
        if op == "save":
            args["domain"] = name
    password = form.get("password") or None
    reply = await run(request, token, op, args, password if isinstance(password, str) else None)
    if session_invalid(reply):
        raise to_login(request, "session")
    if not reply.message and reply.status == EXIT_OK:
        reply = Reply(
            EXIT_OK,
            data=reply.data,
            message=(reply.data or {}).get("message") or f"{op} {name}: done",
        )
    await request.app[KEY_HUB].poke(token)
    code = 200 if reply.status == EXIT_OK else 403 if reply.status == EXIT_DENIED else 409
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(
            {"status": reply.status, "message": reply.message, "check": reply.check}, status=code
        )
    w = Who(request, token, await _user(request, token))
    return await vms(request, reply, w, code)


# -- the console page ----------------------------------------------------------------------------
async def console_page(request: web.Request) -> web.Response:
    w = await who(request)
    name = request.match_info["name"]
    if len(name) > MAX_NAME:
        raise web.HTTPBadRequest(text="VM name too long", content_type="text/plain")
    return html(pages.console_page(w.user, w.csrf, name, w.nav), csp=security.CONSOLE_CSP)


# -- auditors, root, policy managers -------------------------------------------------------------
async def audit(request: web.Request) -> web.Response:
    w = await who(request)
    q = request.query
    filters = {k: (q.get(k) or "")[:MAX_NAME] for k in ("user", "vm", "decision")}
    args = {k: v for k, v in filters.items() if v}
    reply = await run(request, w.token, "audit-show", {**args, "limit": 300})
    if reply.status != EXIT_OK:
        return html(
            pages.refused_page(
                w.user, w.csrf, w.nav, "Audit trail", reply.status, reply.message, reply.check
            ),
            403,
        )
    return html(pages.audit_page(w.user, w.csrf, w.nav, filters, reply.data))


async def explain(request: web.Request) -> web.Response:
    w = await who(request)
    q = request.query
    asked = {k: (q.get(k) or "")[:MAX_NAME] for k in ("user", "operation", "vm")}
    ops = [o.name for o in CATALOGUE]
    answer = refusal = None
    if asked["user"] and asked["operation"]:
        args = {"user": asked["user"], "operation": asked["operation"]}
        if asked["vm"]:
            args["domain"] = asked["vm"]
        reply = await run(request, w.token, "explain", args)
        if reply.status == EXIT_OK:
            answer = reply.data
        else:
            refusal = (reply.status, reply.message, reply.check)
    status = 403 if refusal and refusal[0] == EXIT_DENIED else 200
    return html(pages.explain_page(w.user, w.csrf, w.nav, asked, ops, answer, refusal), status)


async def policy(request: web.Request) -> web.Response:
    w = await who(request)
    got = {}
    for command in ("policy-types", "policy-conflicts", "policy-labels"):
        reply = await run(request, w.token, command, {"type": "any"} if "labels" in command else {})
        if reply.status != EXIT_OK:
            code = 403 if reply.status == EXIT_DENIED else 200
            return html(
                pages.policy_page(
                    w.user, w.csrf, w.nav, refusal=(reply.status, reply.message, reply.check)
                ),
                code,
            )
        got[command] = reply.data
    return html(
        pages.policy_page(
            w.user,
            w.csrf,
            w.nav,
            got["policy-types"],
            got["policy-conflicts"],
            got["policy-labels"],
        )
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n", content_type="text/plain")


def build_app(settings: WebSettings, *, client_max_size: int = 64 * 1024) -> web.Application:
    """The aiohttp application (server.py serves it over TLS; tests too)."""
    from . import consolews, live

    app = web.Application(client_max_size=client_max_size)
    app[KEY_SETTINGS] = settings
    app[KEY_CSRF] = Csrf()
    app[KEY_NAV] = {}
    app[KEY_SOCKETS] = {"total": 0, "per": {}}
    app[KEY_LINK] = Link(
        settings.socket,
        program="svirt-web",
        size=settings.link_size,
        timeout=settings.request_timeout,
    )
    app[KEY_HUB] = live.Hub(app, settings.refresh_seconds)
    app.on_response_prepare.append(security.add_headers)

    async def closing(app):
        await app[KEY_HUB].close()
        app[KEY_LINK].close()

    app.on_cleanup.append(closing)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/vms", vms)
    app.router.add_post("/vm/{name}", vm_action)
    app.router.add_get("/console/{name}", console_page)
    app.router.add_get("/ws/state", live.state_socket)
    app.router.add_get("/ws/console/{name}", consolews.console_socket)
    app.router.add_get("/audit", audit)
    app.router.add_get("/explain", explain)
    app.router.add_get("/policy", policy)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    return app
