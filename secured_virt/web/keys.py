"""What the handlers share: the settings, the application's keys, the peer address (the
network front-ends' shared ``netfront.listener.peer_of``).

A module of its own so that ``app``, ``live`` and ``consolews`` import it and not each other
(the rooms test refuses import cycles, even inside functions)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web

from secured_virt.netfront.link import Link
from secured_virt.netfront.listener import peer_of

from .security import Csrf

#: the longest VM name a URL may carry (svirtd checks names; this only bounds the work)
MAX_NAME = 256


@dataclass
class WebSettings:
    """What the app needs from the configuration (server.py fills it from secured-virt.conf)."""

    socket: str
    refresh_seconds: float = 5.0
    max_websockets: int = 2000
    max_websockets_per_session: int = 16
    link_size: int = 32
    request_timeout: float = 120.0


KEY_LINK = web.AppKey("link", Link)
KEY_CSRF = web.AppKey("csrf", Csrf)
KEY_SETTINGS = web.AppKey("settings", WebSettings)
KEY_NAV = web.AppKey("nav", dict)
KEY_HUB = web.AppKey("hub", object)
KEY_SOCKETS = web.AppKey("sockets", dict)


def token_key(token: str) -> str:
    """The name a session goes by in this process's tables (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


__all__ = [
    "KEY_CSRF",
    "KEY_HUB",
    "KEY_LINK",
    "KEY_NAV",
    "KEY_SETTINGS",
    "KEY_SOCKETS",
    "MAX_NAME",
    "WebSettings",
    "peer_of",
    "token_key",
]
