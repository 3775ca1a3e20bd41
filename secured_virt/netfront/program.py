"""A network front-end's process: its start-up rules and its serve loop, written once.

Both front-ends start the same way, because the rules are the trust design's, not theirs:

* refuse to run as root (they need no privilege and must not hold any);
* read the root-owned configuration, and stay off unless ``<prefix> = yes`` says otherwise;
* umask 077, then make the self-signed certificate if none is configured (``--setup`` stops
  there: the systemd unit runs it before each start);
* serve HTTPS on ``<prefix>_listen``:``<prefix>_port`` with the connection cap and deadline of
  ``listener`` until SIGTERM/SIGINT.

Exit codes as everywhere: 0, 1 (cannot serve), 2 (run as root), 4 (configuration or TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import listener, tls


@dataclass(frozen=True)
class Frontend:
    """What tells one front-end from the other."""

    #: the program's name (logs, the hello to svirtd, the unit and the system user)
    program: str
    #: its configuration keys' prefix: ``xenapi`` -> ``xenapi``, ``xenapi_listen``, ...
    prefix: str
    #: what it is, for people ("the Xen-API", "the web console")
    title: str
    #: the self-signed certificate's subject (CN)
    subject: str
    #: argparse's description
    description: str

    def conf(self, config, key: str) -> Any:
        return getattr(config, f"{self.prefix}_{key}")

    def url(self, config) -> str:
        host = self.conf(config, "listen")
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.conf(config, 'port')}/"


async def serve_app(
    fe: Frontend,
    config,
    app: web.Application,
    *,
    extra_fds: int = 0,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (or SIGTERM/SIGINT), then clean up."""
    log = logging.getLogger(fe.program)
    ctx = tls.server_context(fe.conf(config, "cert"), fe.conf(config, "key"))
    limit = fe.conf(config, "max_connections")
    timeout = fe.conf(config, "request_timeout")
    listener.raise_fd_limit(limit + extra_fds + 256)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=timeout, handle_signals=False)
    await runner.setup()
    try:
        srv = await listener.listen(
            runner,
            host=fe.conf(config, "listen"),
            port=fe.conf(config, "port"),
            ssl_context=ctx,
            max_connections=limit,
            timeout=timeout,
        )
    except BaseException:
        await runner.cleanup()
        raise
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "%s serving %s for svirtd at %s (pid %d, uid %d)",
        fe.program,
        fe.url(config),
        config.socket,
        os.getpid(),
        os.getuid(),
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        srv.close()
        await runner.cleanup()
    log.info("%s stopped", fe.program)


#: (code, meaning) of a front-end's exit, shown by --help and read by man/generate.py
EXIT_CODES = (
    (0, "stopped cleanly by SIGTERM/SIGINT, or --setup done"),
    (1, "cannot serve: the address or port cannot be bound"),
    (2, "usage error, or started as root"),
    (4, "bad configuration, the front-end is off, or its TLS certificate or key is unusable"),
)


def _epilog(fe: Frontend, config_path: str) -> str:
    """What --help teaches beyond the options: who runs it, where it is turned on, an example."""
    who = (
        f"It runs as its own unprivileged system user (the one 'frontends = {fe.prefix}:USER' "
        f"names, {fe.program} by default), never as root, and reaches svirtd only through its "
        f"socket.  It is off until '{fe.prefix} = yes' in {config_path}; its other keys are "
        f"{fe.prefix}_*."
    )
    codes = "\n".join(
        textwrap.fill(t, 78, initial_indent=f"  {c}  ", subsequent_indent="     ")
        for c, t in EXIT_CODES
    )
    example = f"systemctl enable --now {fe.program}"
    who = textwrap.fill(who, 78, break_on_hyphens=False)
    return f"{who}\n\nexample:\n  {example}\n\nexit status:\n{codes}"


def build_parser(fe: Frontend) -> argparse.ArgumentParser:
    from secured_virt.config import CONFIG_PATH

    ap = argparse.ArgumentParser(
        prog=fe.program,
        description=textwrap.fill(fe.description, 78, break_on_hyphens=False),
        epilog=_epilog(fe, CONFIG_PATH),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.exit_codes = EXIT_CODES  # read by man/generate.py
    ap.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="root-owned configuration file (default: the one named below)",
    )
    ap.add_argument(
        "--setup", action="store_true", help="make the self-signed certificate if none, and exit"
    )
    ap.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="least severe message logged to stderr (the journal under systemd)",
    )
    return ap


def main(fe: Frontend, serve: Callable[[Any], Any], argv: list[str] | None = None) -> int:
    """The program: ``serve(config)`` is the front-end's coroutine (``serve_app`` inside)."""
    args = build_parser(fe).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s {fe.program}: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger(fe.program)
    if os.geteuid() == 0 or os.getuid() == 0:
        log.error(
            "%s must not run as root: run it as the user named in 'frontends' (%s:%s), "
            "e.g. with the %s.service unit",
            fe.program,
            fe.prefix,
            fe.program,
            fe.program,
        )
        return 2
    from secured_virt.config import ConfigError, load_config

    try:
        # the root-only rule for --config protects root-run programs from a user's file; this
        # process has no privilege to misuse, and the file must still be root-owned
        config = load_config(args.config, caller_uid=0)
    except ConfigError as exc:
        log.error("%s", exc)
        return 4
    if not getattr(config, fe.prefix):
        log.error(
            "%s is off: set '%s = yes' (and frontends = %s:USER) in %s",
            fe.title,
            fe.prefix,
            fe.prefix,
            config.source or "/etc/secured-virt/secured-virt.conf",
        )
        return 4
    os.umask(0o077)
    cert, key = fe.conf(config, "cert"), fe.conf(config, "key")
    try:
        made = tls.ensure_certificate(
            cert,
            key,
            fe.conf(config, "listen"),
            subject=fe.subject,
            keys=f"{fe.prefix}_cert, {fe.prefix}_key",
        )
        if made:
            log.info("made a self-signed certificate %s (key %s)", cert, key)
        if args.setup:
            return 0
        asyncio.run(serve(config))
    except tls.TlsError as exc:
        log.error("%s", exc)
        return 4
    except OSError as exc:
        log.error(
            "cannot serve on %s:%s: %s", fe.conf(config, "listen"), fe.conf(config, "port"), exc
        )
        return 1
    return 0
