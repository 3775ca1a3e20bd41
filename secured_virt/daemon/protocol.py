"""svirtd's wire protocol, server side: frames, message shapes, and the errors that end a session.

The protocol is deliberately small so that it can be audited by reading one page
(docs/protocol.md).  Every message is a *frame*: a 4-byte unsigned big-endian length N followed by
N bytes of UTF-8 JSON holding one object with a ``"type"`` string.  Frames are validated strictly
here — unknown types and unknown fields are refused — because the daemon runs as root and reads
from anyone allowed to connect: a field the server does not understand (say a ``"uid"`` the
client hopes will be believed) must fail loudly, not be half-honoured.

The client (``secured_virt.client``) has its own copy of the framing because it must import
nothing beyond the standard library and ``secured_virt.requests``; the constants here and there
are checked against each other by the tests.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from typing import Any

PROTOCOL_VERSION = 1
HEADER_BYTES = 4
#: smallest legal frame body: "{}"
MIN_FRAME = 2

# -- message types ----------------------------------------------------------------------------
# client -> server
HELLO = "hello"
REQUEST = "request"
CONSOLE = "console"
STATUS = "status"
RELOAD = "reload"
PASSWORD = "password"  # noqa: S105 - a frame type, not a secret
# client -> server, from a remote front-end's own user only (daemon.websessions)
SESSION_LOGIN = "session_login"
SESSION_REQUEST = "session_request"
SESSION_CONSOLE = "session_console"
SESSION_LOGOUT = "session_logout"
SESSION_INFO = "session_info"
SESSION_FRAMES = frozenset(
    {SESSION_LOGIN, SESSION_REQUEST, SESSION_CONSOLE, SESSION_LOGOUT, SESSION_INFO}
)
# server -> client (HELLO is answered with HELLO)
REPLY = "reply"
ERROR = "error"
ASK_PASSWORD = "ask_password"  # noqa: S105 - a frame type
PROGRESS = "progress"
#: part of a list's rows, ahead of its reply: only to a front-end's ``session_request`` whose
#: ``list`` asks for it (``stream``), after the decision is on disk (docs/protocol.md)
ROWS = "rows"

#: the fields each client frame may carry ("type" is implied); anything else is refused
CLIENT_FIELDS: dict[str, frozenset[str]] = {
    HELLO: frozenset({"version", "client"}),
    REQUEST: frozenset({"request"}),
    CONSOLE: frozenset({"name", "as_user"}),
    STATUS: frozenset(),
    RELOAD: frozenset(),
    PASSWORD: frozenset({"password"}),
    # field types are checked by daemon.websessions.check_fields
    SESSION_LOGIN: frozenset({"user", "password", "peer"}),
    SESSION_REQUEST: frozenset({"token", "request", "peer", "password"}),
    SESSION_CONSOLE: frozenset({"token", "name", "peer"}),
    SESSION_LOGOUT: frozenset({"token", "peer"}),
    SESSION_INFO: frozenset({"token", "peer"}),
}

# -- error codes (the "code" of an error frame) -------------------------------------------------
E_BAD_FRAME = "bad-frame"  # not JSON, not an object, wrong types, unknown fields
E_TOO_LARGE = "too-large"  # length prefix above the limit
E_VERSION = "version"  # hello with a protocol version the server does not speak
E_UNEXPECTED = "unexpected"  # a valid frame at the wrong moment (e.g. request before hello)
E_TIMEOUT = "timeout"  # nothing (or not a whole frame) within the idle timeout
E_IDENTITY = "identity"  # the peer's uid has no passwd entry
E_BUSY = "busy"  # connection limit reached
E_SHUTDOWN = "shutting-down"  # the daemon is stopping
E_INTERNAL = "internal"  # a bug in svirtd; logged with a traceback


class ProtocolError(Exception):
    """The peer broke the protocol; the session ends with an error frame carrying ``code``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class PeerClosed(Exception):
    """The peer closed the connection (cleanly between frames, or in the middle of one)."""

    def __init__(self, partial: bool):
        super().__init__("peer closed the connection" + (" mid-frame" if partial else ""))
        self.partial = partial


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


# one encoder and one decoder for every frame: json.dumps/json.loads with options build a new
# JSONEncoder/JSONDecoder on every call (both keep no state between calls)
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_DECODE = json.JSONDecoder(parse_constant=_no_constants).decode


def encode(msg: dict[str, Any]) -> bytes:
    body = _ENCODE(msg).encode()
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def decode(body: bytes) -> dict[str, Any]:
    """Parse and type-check one client frame body; ProtocolError on anything malformed."""
    try:
        msg = _DECODE(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(E_BAD_FRAME, f"frame is not valid UTF-8 (byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(E_BAD_FRAME, f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(E_BAD_FRAME, "frame nests JSON too deeply") from None
    if not isinstance(msg, dict):
        raise ProtocolError(E_BAD_FRAME, "a frame must be a JSON object with a 'type' field")
    kind = msg.get("type")
    allowed = CLIENT_FIELDS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        known = ", ".join(sorted(CLIENT_FIELDS))
        raise ProtocolError(E_BAD_FRAME, f"unknown frame type {kind!r} (known: {known})")
    extra = sorted(set(msg) - allowed - {"type"})
    if extra:
        raise ProtocolError(
            E_BAD_FRAME,
            f"'{kind}' frame has unknown field(s) {', '.join(map(repr, extra))}; identity comes "
            "from the kernel (SO_PEERCRED), never from the message",
        )
    _check_types(kind, msg)
    return msg


def _check_types(kind: str, msg: dict[str, Any]) -> None:
    def want(field: str, types: tuple[type, ...], what: str, required: bool = True) -> None:
        if field not in msg:
            if required:
                raise ProtocolError(E_BAD_FRAME, f"'{kind}' frame needs a '{field}' ({what})")
            return
        value = msg[field]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ProtocolError(E_BAD_FRAME, f"'{kind}'.{field} must be {what}")

    if kind == HELLO:
        want("version", (int,), "an integer protocol version")
        want("client", (str,), "a string", required=False)
    elif kind == REQUEST:
        want("request", (dict,), "an object {command, args, as_user}")
    elif kind == CONSOLE:
        want("name", (str,), "a domain name")
        want("as_user", (str, type(None)), "a user name or null", required=False)
    elif kind == PASSWORD:
        want("password", (str, type(None)), "a string, or null when no password was entered")


def error_frame(code: str, message: str) -> dict[str, Any]:
    return {"type": ERROR, "code": code, "message": message}


class FrameReader:
    """Reads whole frames from a socket, each within a deadline.

    The deadline is per frame, not per recv(): a client that trickles one byte every few
    seconds cannot hold a thread longer than the idle timeout.

    One recv takes whatever has arrived, up to ``CHUNK`` bytes past the frame being read, and
    what follows that frame waits here for the next ``read``: svirsh writes its hello and its
    request at once, and the two frames then cost one recv, not four (each recv hands the GIL
    to another of svirtd's threads under load).  Whoever takes the socket over after the last
    frame (the console relay) takes those bytes first (``take_buffered``).
    """

    #: how much one recv may take beyond the frame it is reading
    CHUNK = 65536

    def __init__(self, sock: socket.socket, max_bytes: int):
        self.sock = sock
        self.max_bytes = max_bytes
        self._what: tuple[str, float | None] = ("frame", None)
        self._buf = b""  # received, not yet returned as a frame

    def read(
        self, timeout: float | None, waiting_for: str = "request", *, answer: bool = False
    ) -> dict[str, Any]:
        """The next frame.  ``answer``: the peer has to answer something we just sent, so
        nothing is there yet unless it is buffered: a non-blocking socket is polled before
        its first recv instead of after a recv that finds nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._what = (waiting_for, timeout)
        buf = self._buf
        if len(buf) < HEADER_BYTES:
            buf = self._fill(HEADER_BYTES, deadline, started=False, answer=answer)
        n = int.from_bytes(buf[:HEADER_BYTES], "big")
        if n > self.max_bytes:
            raise ProtocolError(
                E_TOO_LARGE,
                f"frame of {n} bytes exceeds the limit of {self.max_bytes} bytes "
                "(request_max_bytes in the svirtd configuration)",
            )
        if n < MIN_FRAME:
            raise ProtocolError(E_BAD_FRAME, f"frame length {n} is too small for a JSON object")
        end = HEADER_BYTES + n
        if len(buf) < end:
            buf = self._fill(end, deadline, started=True, answer=False)
        self._buf = buf[end:]
        return decode(buf[HEADER_BYTES:end])

    def has_frame(self) -> bool:
        """Whether a whole frame has arrived already (the next ``read`` will not wait)."""
        buf = self._buf
        return len(buf) >= HEADER_BYTES and len(buf) >= HEADER_BYTES + int.from_bytes(
            buf[:HEADER_BYTES], "big"
        )

    def take_buffered(self) -> bytes:
        """The bytes received after the last frame read; the caller now owns them."""
        buf, self._buf = self._buf, b""
        return buf

    def _fill(self, want: int, deadline: float | None, *, started: bool, answer: bool) -> bytes:
        """Receive until ``want`` bytes are buffered; returns the buffer."""
        chunks = [self._buf]
        have = len(self._buf)
        sock = self.sock
        nonblocking = sock.gettimeout() == 0.0  # svirtd's sessions: see below
        try:
            if nonblocking and answer and not have and not wait_for(sock, select.POLLIN, deadline):
                raise self._timeout(started)
            while have < want:
                size = max(want - have, self.CHUNK)
                if nonblocking:
                    # A socket with a timeout makes Python poll before every recv and switch
                    # the file's blocking mode at every settimeout; svirtd's sessions keep
                    # their socket non-blocking and wait here, so a frame that has arrived
                    # costs one recv, and the deadline per frame is the same.
                    try:
                        data = sock.recv(size)
                    except BlockingIOError:
                        if not wait_for(sock, select.POLLIN, deadline):
                            raise self._timeout(started or have > 0) from None
                        continue
                else:
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise self._timeout(started or have > 0)
                        sock.settimeout(left)
                    try:
                        data = sock.recv(size)
                    except TimeoutError:
                        raise self._timeout(started or have > 0) from None
                if not data:
                    raise PeerClosed(partial=started or have > 0)
                chunks.append(data)
                have += len(data)
        finally:
            self._buf = b"".join(chunks)
        return self._buf

    def _timeout(self, partial: bool) -> ProtocolError:
        what, seconds = self._what
        if partial:
            return ProtocolError(
                E_TIMEOUT, f"a frame was started but not completed within {seconds:g}s; closing"
            )
        return ProtocolError(E_TIMEOUT, f"no {what} within {seconds:g}s; closing")


def send(
    sock: socket.socket, msg: dict[str, Any], timeout: float | None, ahead: bytes = b""
) -> None:
    """Send one frame (after ``ahead``, frames already encoded and held back, in the same
    write); a client that stops reading cannot block us past ``timeout``."""
    data = ahead + encode(msg) if ahead else encode(msg)
    if sock.gettimeout() != 0.0:
        sock.settimeout(timeout)
        sock.sendall(data)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    view = memoryview(data)
    while view:
        with contextlib.suppress(BlockingIOError):
            view = view[sock.send(view) :]
        if view and not wait_for(sock, select.POLLOUT, deadline):
            raise TimeoutError(f"the peer did not read its reply for {timeout}s")


def wait_for(sock: socket.socket, events: int, deadline: float | None) -> bool:
    """Poll one socket until it is ready for ``events`` (or hung up), or the deadline passed."""
    if deadline is None:
        ms = None
    else:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ms = max(1, int(left * 1000 + 0.999))
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(ms))
