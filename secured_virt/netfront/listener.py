"""The HTTPS listener both front-ends run: TLS, a connection cap, deadlines, the peer.

Why a cap of our own: aiohttp accepts every connection it is offered, and each costs a file
descriptor and some memory; 1,000 idle TLS connections from one peer would otherwise starve
everyone.  Beyond ``max_connections`` a new connection is closed the moment it is accepted
(before TLS), so the process never runs out of descriptors and keeps serving the
connections it has.  The TLS handshake and the request head share one deadline (aiohttp's
keep-alive timeout is set to it by the caller), so slow clients cannot hold a slot forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl

from aiohttp import web


class _Refuse(asyncio.Protocol):
    """What a connection beyond the limit gets: closed at once."""

    def connection_made(self, transport):
        transport.abort()


def peer_of(request: web.BaseRequest) -> str | None:
    """The client's address as ``host:port`` or ``[v6]:port``, for svirtd's audit record
    (recorded and counted for the per-address login limit, never trusted for anything)."""
    info = request.transport.get_extra_info("peername") if request.transport else None
    if not info:
        return None
    host, port = info[0], info[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def raise_fd_limit(want: int) -> None:
    """Room for every allowed connection (and what each may hold open towards svirtd)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def listen(
    runner: web.AppRunner,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    max_connections: int,
    timeout: float,
) -> asyncio.Server:
    """Serve ``runner`` (set up) over TLS with at most ``max_connections`` at once."""
    factory = runner.server

    def protocol():
        if len(factory.connections) >= max_connections:
            return _Refuse()
        return factory()

    loop = asyncio.get_running_loop()
    return await loop.create_server(
        protocol,
        host,
        port,
        ssl=ssl_context,
        backlog=1024,
        reuse_address=True,
        ssl_handshake_timeout=timeout,
        ssl_shutdown_timeout=5,
    )
