"""One client connection to svirtd, served on its own thread.

A session is: who the peer is (SO_PEERCRED, read once at accept time and mapped through the
passwd database), the hello exchange, then requests one at a time.  During a request the
use-case layer may talk back to the human through :class:`SocketInteraction` - a PAM password
prompt or migration progress become frames to the client.  Everything the peer sends is
untrusted: any protocol error ends the session with an error frame that says what was wrong,
and never disturbs another session.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

from secured_virt.requests import EXIT_DENIED, EXIT_OK, Reply, Request

from . import protocol as P

log = logging.getLogger("svirtd")

REQUEST_FIELDS = frozenset({"command", "args", "as_user"})


class SocketInteraction:
    """The service's way back to the human while a request runs: frames on this connection.

    Failures here (client gone, timeout, garbage) never raise into the use-case layer: a
    password that cannot be obtained is simply None, so PAM fails, the gate records an audited
    denial, and the session ends afterwards with the reason kept in ``broken``.
    """

    def __init__(self, session: Session):
        self._s = session
        #: the peer's controlling terminal as the kernel reports it (/proc/<pid>/stat), for PAM
        self.tty = getattr(session.identity, "tty", None)
        self.broken: BaseException | None = None

    def ask_password(self, prompt: str) -> str | None:
        if self.broken is not None:
            return None
        s = self._s
        try:
            s.send({"type": P.ASK_PASSWORD, "prompt": str(prompt), "echo": False})
            msg = s.reader.read(
                s.server.limits.password_timeout, "answer to the password prompt", answer=True
            )
        except (P.ProtocolError, P.PeerClosed, OSError) as exc:
            self.broken = exc
            return None
        if msg["type"] != P.PASSWORD:
            self.broken = P.ProtocolError(
                P.E_UNEXPECTED, f"expected a 'password' frame, got '{msg['type']}'"
            )
            return None
        return msg.get("password")

    def progress(self, done: int, total: int) -> None:
        if self.broken is not None:
            return
        try:
            self._s.send({"type": P.PROGRESS, "done": int(done), "total": int(total)})
        except OSError as exc:
            self.broken = exc


class Session:
    def __init__(self, server, conn: socket.socket, creds: tuple[int, int, int]):
        self.server = server
        self.conn = conn
        self.pid, self.uid, self.gid = creds
        self.reader = P.FrameReader(conn, server.limits.request_max_bytes)
        self.busy = False
        self.identity: Any = None
        self.who = f"pid {self.pid} uid {self.uid}"
        #: frames held back to go out with the next one (see _greet)
        self._ahead = b""

    # -- plumbing -----------------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        ahead, self._ahead = self._ahead, b""
        P.send(self.conn, msg, self.server.limits.write_timeout, ahead)

    def _send_error(self, code: str, message: str) -> None:
        with contextlib.suppress(OSError):
            self.send(P.error_frame(code, message))

    # -- the session --------------------------------------------------------------------------
    def run(self) -> None:
        counters = self.server.counters
        try:
            self._identify()
            self._greet()
            while self.server.mark_idle(self):
                # every frame from here on answers what we sent last (hello, a reply)
                msg = self.reader.read(self.server.limits.idle_timeout, "request", answer=True)
                if not self.server.begin_work(self):
                    self._send_error(P.E_SHUTDOWN, "svirtd is shutting down; try again shortly")
                    return
                try:
                    if not self._dispatch(msg):
                        return
                finally:
                    self.server.end_work(self)
        except P.PeerClosed as exc:
            if exc.partial:
                counters.add("protocol_errors")
                log.info("%s: closed the connection in the middle of a frame", self.who)
        except P.ProtocolError as exc:
            counters.add("idle_timeouts" if exc.code == P.E_TIMEOUT else "protocol_errors")
            log.info("%s: %s: %s", self.who, exc.code, exc)
            self._send_error(exc.code, str(exc))
        except OSError as exc:  # reset, broken pipe, write timeout: the peer went away
            log.info("%s: connection lost: %s", self.who, exc)
        except Exception:
            counters.add("internal_errors")
            log.exception("%s: internal error while serving the connection", self.who)
            self._send_error(P.E_INTERNAL, "internal error in svirtd (logged); please report it")
        finally:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.server.forget(self)

    def _identify(self) -> None:
        try:
            self.identity = self.server.identify(self.conn, None)
        except Exception as exc:  # IdentityError: a uid without a passwd entry, ...
            self.server.counters.add("identity_refused")
            log.warning("%s: refused: %s", self.who, exc)
            self._send_error(P.E_IDENTITY, f"who are you? {exc}")
            raise P.PeerClosed(partial=False) from None
        self.who = f"{self.identity.user} (uid {self.uid}, pid {self.pid})"

    def _greet(self) -> None:
        msg = self.reader.read(self.server.limits.idle_timeout, "hello")
        if msg["type"] != P.HELLO:
            raise P.ProtocolError(
                P.E_UNEXPECTED, f"the first frame must be 'hello', not '{msg['type']}'"
            )
        if msg["version"] != P.PROTOCOL_VERSION:
            raise P.ProtocolError(
                P.E_VERSION,
                f"protocol version {msg['version']} is not supported; this svirtd speaks "
                f"version {P.PROTOCOL_VERSION} (update svirsh and svirtd together)",
            )
        hello = {
            "type": P.HELLO,
            "version": P.PROTOCOL_VERSION,
            "server": "svirtd",
            "user": self.identity.user,
            "uid": self.uid,
        }
        if self.reader.has_frame():
            # The client sent its next frame without waiting for our hello (svirsh writes
            # hello and request at once), so it needs the hello no sooner than the answer to
            # that frame: both leave in one write, one wake-up of the client instead of two.
            # A client that waits for the hello has sent nothing more and gets it now.
            self._ahead = P.encode(hello)
        else:
            self.send(hello)

    def _dispatch(self, msg: dict[str, Any]) -> bool:
        """Serve one client frame; False ends the session (console done, peer gone)."""
        kind = msg["type"]
        started = time.monotonic()
        if kind == P.REQUEST:
            interaction = SocketInteraction(self)
            reply = self._request(msg["request"], interaction)
        elif kind == P.STATUS:
            interaction = SocketInteraction(self)
            reply = self.server.admin(self.identity, "status", interaction)
        elif kind == P.RELOAD:
            interaction = SocketInteraction(self)
            reply = self.server.admin(self.identity, "reload", interaction)
        elif kind == P.CONSOLE:
            return self._console(msg)
        elif kind == P.SESSION_CONSOLE:  # a remote front-end's user (daemon.websessions)
            return self._console(msg, self.server.websessions.console_identity(self, msg))
        elif kind in P.SESSION_FRAMES:
            interaction, reply = self.server.websessions.handle(self, msg)
        else:  # hello twice, or a password nobody asked for
            raise P.ProtocolError(P.E_UNEXPECTED, f"a '{kind}' frame is not expected here")
        self.server.counters.reply(reply.status, time.monotonic() - started)
        if interaction.broken is not None:
            self._broken(interaction.broken)
            return False
        self.send({"type": P.REPLY, "reply": reply.to_dict()})
        return True

    def _broken(self, exc: BaseException) -> None:
        """The client failed us while the service was talking to it (prompt, progress)."""
        log.info("%s: the conversation broke during the request: %s", self.who, exc)
        if isinstance(exc, P.ProtocolError):
            self.server.counters.add(
                "idle_timeouts" if exc.code == P.E_TIMEOUT else "protocol_errors"
            )
            self._send_error(exc.code, str(exc))

    def _request(self, body: dict[str, Any], interaction: SocketInteraction) -> Reply:
        extra = sorted(set(body) - REQUEST_FIELDS)
        if extra:
            raise P.ProtocolError(
                P.E_BAD_FRAME,
                f"request has unknown field(s) {', '.join(map(repr, extra))}; a request is "
                "{command, args, as_user} and identity comes from the kernel",
            )
        try:
            request = Request.from_dict(body)
        except ValueError as exc:
            raise P.ProtocolError(P.E_BAD_FRAME, f"malformed request: {exc}") from None
        ident = self._identity_for(request.as_user)
        if isinstance(ident, Reply):
            return ident
        log.debug("%s: %s %s", self.who, request.command, request.args)
        return self.server.run_service(
            lambda: self.server.service.handle(ident, request, interaction), who=self.uid
        )

    def _identity_for(self, as_user: str | None):
        if as_user is None:
            return self.identity
        try:
            return self.server.identify(self.conn, as_user)
        except Exception as exc:
            return Reply(EXIT_DENIED, message=f"--as {as_user}: {exc}", check="identity")

    # -- console ------------------------------------------------------------------------------
    def _console(self, msg: dict[str, Any], ident=None) -> bool:
        started = time.monotonic()
        ident = self._identity_for(msg.get("as_user")) if ident is None else ident
        interaction = SocketInteraction(self)
        stream = None
        if isinstance(ident, Reply):
            reply = ident
        else:
            result = self.server.run_service(
                lambda: self.server.service.open_console(ident, msg["name"], interaction),
                who=self.uid,
            )
            reply, stream = result if isinstance(result, tuple) else (result, None)
        self.server.counters.reply(reply.status, time.monotonic() - started)
        if interaction.broken is not None:
            _close_stream(stream, abort=True)
            self._broken(interaction.broken)
            return False
        if stream is not None and reply.status != EXIT_OK:  # defensive: never relay a refusal
            _close_stream(stream, abort=True)
            stream = None
        self.send({"type": P.REPLY, "reply": reply.to_dict()})
        if stream is None:
            return True
        log.info("%s: console on '%s' opened", self.who, msg["name"])
        self.server.counters.add("consoles")
        self.server.end_work(self)  # a console may last hours: it must not hold up shutdown
        relay_console(self.conn, stream, self.reader.take_buffered())
        log.info("%s: console on '%s' closed", self.who, msg["name"])
        return False


def _close_stream(stream, *, abort: bool) -> None:
    if stream is None:
        return
    with contextlib.suppress(Exception):
        stream.abort() if abort else stream.finish()


EAGAIN = -2  # what libvirt's virStream.recv/send return on a non-blocking stream with no room


def relay_console(
    conn: socket.socket, stream, early: bytes = b"", *, poll_interval: float = 0.02
) -> None:
    """Copy bytes between the client socket and a libvirt console stream until either ends.

    ``early``: what the client sent after its console request and the frame reader already
    received; it goes to the guest first.

    The socket side is read on a helper thread and written to the stream; the stream side is
    read here and written to the socket.  Both blocking and non-blocking (-2 = try again)
    streams are handled.  Whichever side ends first closes the other - the client leaving
    aborts the stream (which also wakes a blocking recv), the guest side ending shuts the
    socket - so the domain's console is always released for the next user.
    """
    done = threading.Event()
    closed = threading.Lock()
    conn.settimeout(None)

    def close_stream(abort: bool) -> None:
        if closed.acquire(blocking=False):
            _close_stream(stream, abort=abort)

    def client_to_vm() -> None:
        data = early
        try:
            while not done.is_set():
                if not data:
                    data = conn.recv(65536)
                if not data:
                    break
                view = memoryview(data)
                while view and not done.is_set():
                    n = stream.send(bytes(view))
                    if n == EAGAIN:
                        time.sleep(poll_interval)
                        continue
                    if n is None or n <= 0:
                        raise OSError(f"console stream refused the data ({n})")
                    view = view[n:]
                data = b""
        except Exception as exc:
            log.debug("console: client side ended: %s", exc)
        finally:
            if not done.is_set():
                done.set()
                close_stream(abort=True)

    pump = threading.Thread(target=client_to_vm, name="svirtd-console-in", daemon=True)
    pump.start()
    clean = False
    try:
        while not done.is_set():
            data = stream.recv(65536)
            if data == EAGAIN:
                time.sleep(poll_interval)
                continue
            if not data:
                clean = True
                break
            conn.sendall(data)
    except Exception as exc:
        log.debug("console: VM side ended: %s", exc)
    finally:
        done.set()
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        close_stream(abort=not clean)
        pump.join(timeout=5)
