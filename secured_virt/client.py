"""The thin client of svirtd: what svirsh and svirt-admin use to talk to the daemon.

Why it looks the way it does:

* ``svirsh list`` through the daemon must cost at most 1.3x ``virsh list``; on a slow box the
  interpreter alone is half of that budget.  So this module imports the C halves of the socket
  and JSON modules (``_socket``, ``_json``: ~0.5 ms) rather than ``socket`` and ``json``
  (~10 ms, they drag in ``enum``, ``re``, ``selectors``), and everything used only by the
  console or the password prompt (termios, select, getpass) is imported where it is used.
  It imports nothing of secured-virt but ``secured_virt.requests``, and never libvirt or lxml.
* The wire format is docs/protocol.md.  The server's side lives in
  ``secured_virt.daemon.protocol``; the constants are duplicated here on purpose (importing the
  daemon package would pull the server in) and tests check that the two agree.
* The client never says who it is: the daemon learns that from the kernel (SO_PEERCRED).
  So under sudo (real uid 0, the invoker named by SUDO_UID/SUDO_USER) the socket is
  connected with the *invoker's* effective uid, gid and groups (access.privdrop): svirtd then
  sees, checks and audits the real caller, never root — whichever front-end or subcommand
  asks (``sudo svirsh --daemon``, ``sudo svirt-admin reload``, an edit's reload...).  Cheap
  for everyone else: one getuid() and, for root only, a look at SUDO_UID.

API for the front-ends: :func:`daemon_available`, :func:`connect`, :func:`call`,
:func:`console`, :func:`admin_status`, :func:`admin_reload`; failures to talk to the daemon raise
:class:`ClientError` (the daemon's *answers*, including denials, come back as a ``Reply``).
"""

from __future__ import annotations

import os
import sys
import time

try:  # the C socket module: same names, none of socket.py's import cost
    import _socket as _sock
except ImportError:  # pragma: no cover - other interpreters
    import socket as _sock

from secured_virt.requests import EXIT_OK, Reply, Request

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/secured-virt/svirtd.sock"
HEADER_BYTES = 4
#: replies can be large (a 10k-domain list); this only guards against a corrupt length prefix
MAX_REPLY_BYTES = 256 << 20
DEFAULT_ESCAPE = "^]"


class ClientError(Exception):
    """svirtd could not be reached or did not answer properly.

    ``code`` is the protocol error code sent by the daemon ("busy", "timeout", ...) or a local
    one: "unavailable" (no daemon at the path), "closed" (connection dropped), "protocol"
    (an answer this client does not understand), "untrusted" (the socket is served by a
    user other than root and the caller: not svirtd).
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    @property
    def status(self) -> int:
        """The exit status for it: 3 (denied) when svirtd refused to serve a uid with no
        passwd entry, else 1 (nothing was decided: the daemon was unreachable or broke)."""
        return 3 if self.code == "identity" else 1


# -- JSON without the json package ------------------------------------------------------------
def _build_codec():
    """Return (dumps, loads) on top of the C accelerator; fall back to ``json`` if unavailable."""
    try:
        import _json

        def _default(obj):
            raise TypeError(f"{type(obj).__name__} is not JSON serializable")

        def _constant(name):
            raise ValueError(f"{name} is not valid JSON")

        enc = _json.make_encoder(
            None, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, False
        )

        class _Ctx:
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int
            parse_constant = staticmethod(_constant)
            memo: dict = {}

        scan = _json.make_scanner(_Ctx())

        def dumps(obj) -> bytes:
            return "".join(enc(obj, 0)).encode("ascii")

        def loads(data: bytes):
            text = data.decode("utf-8")
            try:
                obj, end = scan(text, 0)
            except StopIteration as exc:
                raise ValueError(f"invalid JSON at offset {exc.value}") from None
            if text[end:].strip(" \t\r\n"):
                raise ValueError(f"trailing data after JSON at offset {end}")
            return obj

        dumps({"probe": [1, 2.5, None, True, "x"]})
        return dumps, loads
    except (ImportError, TypeError, AttributeError):  # pragma: no cover - other interpreters
        import json

        return (
            lambda obj: json.dumps(obj, separators=(",", ":"), allow_nan=False).encode(),
            lambda data: json.loads(data),
        )


_dumps, _loads = _build_codec()


# -- who connects ---------------------------------------------------------------------------
class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _as_invoker():
    """A context in which connect() carries the real caller's credentials.

    Nothing to do unless this is root with SUDO_UID set; then, if identity.py accepts the sudo
    variables, the invoker's rights for the connect.  A switch that fails raises ClientError:
    never fall back to connecting as root."""
    if os.getuid() != 0 or not os.environ.get("SUDO_UID"):
        return _Nothing()
    from secured_virt.access.identity import sudo_invoker

    pw = sudo_invoker()
    if pw is None:  # SUDO_* that passwd does not confirm: the caller is root itself
        return _Nothing()
    from secured_virt.access.privdrop import caller_rights

    return _Refusing(caller_rights(pw), pw.pw_name)


class _Refusing:
    """caller_rights() whose failure to switch is a ClientError naming the user."""

    def __init__(self, ctx, user: str):
        self.ctx, self.user = ctx, user

    def __enter__(self):
        try:
            return self.ctx.__enter__()
        except OSError as exc:
            raise ClientError(
                "identity",
                f"running through sudo for {self.user}, but cannot connect to svirtd with "
                f"{self.user}'s credentials ({exc}); refusing to connect as root",
            ) from None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


# -- one connection ---------------------------------------------------------------------------
class _Session:
    """A connected, greeted socket to svirtd."""

    def __init__(self, socket_path: str, timeout: float | None, client: str):
        self.sock = _sock.socket(_sock.AF_UNIX, _sock.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            with _as_invoker():
                self._connect(socket_path, timeout)
        except ClientError:
            self.sock.close()
            raise
        except FileNotFoundError:
            self.sock.close()
            raise ClientError(
                "unavailable", f"svirtd is not running: no socket at {socket_path}"
            ) from None
        except ConnectionRefusedError:
            self.sock.close()
            raise ClientError(
                "unavailable",
                f"svirtd is not running: {socket_path} refused the connection "
                "(a stale socket; start svirtd or use --direct as root)",
            ) from None
        except PermissionError:
            self.sock.close()
            raise ClientError(
                "unavailable",
                f"permission denied connecting to {socket_path}: your account may not use "
                "svirtd (ask root to add you to the socket's group)",
            ) from None
        except OSError as exc:
            self.sock.close()
            raise ClientError(
                "unavailable", f"cannot connect to svirtd at {socket_path}: {exc}"
            ) from None
        self._check_server(socket_path)
        self.path = socket_path
        hello = {"type": "hello", "version": PROTOCOL_VERSION, "client": client}
        self._pending = _frame(hello)  # sent together with the first request: one write

    def _check_server(self, path: str) -> None:
        uid = foreign_server(self.sock)
        if uid is not None:
            self.sock.close()
            raise ClientError(
                "untrusted",
                f"{path} is served by uid {uid}, not by root, so it is not svirtd; refusing to "
                "talk to it (check --socket and the socket's directory)",
            )

    def _connect(self, path: str, timeout: float | None) -> None:
        """connect(); with a timeout the fd is non-blocking, and a Unix socket whose listen
        backlog is full then answers EAGAIN instead of waiting - so wait here, briefly."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                return self.sock.connect(path)
            except BlockingIOError:
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise ClientError(
                        "busy", f"svirtd at {path} is not accepting connections (backlog full)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def send(self, msg: dict) -> None:
        data = self._pending + _frame(msg)
        self._pending = b""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self._explain(exc)

    def read(self) -> dict:
        n = int.from_bytes(self._exactly(HEADER_BYTES), "big")
        if n > MAX_REPLY_BYTES:
            raise ClientError("protocol", f"svirtd sent a frame of {n} bytes; giving up")
        try:
            msg = _loads(self._exactly(n))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ClientError("protocol", f"svirtd sent a malformed frame: {exc}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ClientError("protocol", "svirtd sent a frame without a type")
        if msg["type"] == "error":
            raise ClientError(
                str(msg.get("code", "error")), f"svirtd: {msg.get('message', 'error')}"
            )
        if msg["type"] == "hello":
            if msg.get("version") != PROTOCOL_VERSION:
                raise ClientError(
                    "version",
                    f"svirtd speaks protocol {msg.get('version')}, this client {PROTOCOL_VERSION}",
                )
            return self.read()
        return msg

    def _exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            try:
                chunk = self.sock.recv(min(n, 1 << 20))
            except TimeoutError:
                raise ClientError("timeout", "svirtd did not answer in time") from None
            except OSError as exc:
                raise self._lost(exc) from None
            if not chunk:
                raise ClientError("closed", "svirtd closed the connection before answering")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _lost(self, exc: OSError) -> ClientError:
        return ClientError("closed", f"lost the connection to svirtd: {exc}")

    def _explain(self, exc: OSError):
        """A send failed: the daemon probably said why (busy, shutting down) and closed.
        Raise its reason if it is there to read, else the bare connection error."""
        try:
            self.sock.settimeout(0.5)
            self.read()  # raises ClientError for an error frame
        except ClientError as reason:
            if reason.code not in ("closed", "timeout"):
                raise reason from None
        except OSError:
            pass
        raise self._lost(exc) from None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _frame(msg: dict) -> bytes:
    body = _dumps(msg)
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def _converse(session: _Session, password_cb, progress_cb) -> dict:
    """Answer the daemon's questions until the final reply frame arrives."""
    while True:
        msg = session.read()
        kind = msg["type"]
        if kind == "reply":
            return msg
        if kind == "ask_password":
            answer = password_cb(str(msg.get("prompt", "Password: "))) if password_cb else None
            session.send({"type": "password", "password": answer})
        elif kind == "progress":
            if progress_cb is not None:
                progress_cb(int(msg.get("done", 0)), int(msg.get("total", 0)))
        else:
            raise ClientError("protocol", f"svirtd sent an unexpected '{kind}' frame")


def _reply_of(msg: dict) -> Reply:
    body = msg.get("reply")
    if not isinstance(body, dict):
        raise ClientError("protocol", "svirtd sent a reply frame without a reply")
    return Reply.from_dict(body)


def tty_password(prompt: str) -> str | None:
    """Ask on the controlling terminal without echo; without one, read a line from stdin.

    A password piped in (``echo pw | svirsh start web``) is read as one line from stdin with
    the prompt on stderr: nothing echoes there, so getpass's GetPassWarning (printed with its
    own source line) would only alarm.  None on end of input or Ctrl-C.
    """
    try:
        tty = open("/dev/tty", "r+")  # noqa: SIM115 - getpass reopens it; we only probe
    except OSError:
        tty = None
    if tty is not None:
        tty.close()
        import getpass

        try:
            return getpass.getpass(prompt)
        except (EOFError, KeyboardInterrupt, OSError):
            return None
    try:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
    except (KeyboardInterrupt, OSError, ValueError):
        return None
    try:  # noqa: SIM105 - the newline Enter would have echoed (contextlib costs start-up)
        sys.stderr.write("\n")
    except OSError:
        pass
    if not line:
        return None
    return line[:-1] if line.endswith("\n") else line


# -- public API -------------------------------------------------------------------------------
def foreign_server(sock) -> int | None:
    """The uid serving the connected Unix socket ``sock`` when that is neither root nor the
    caller, else None.  svirtd runs as root: a socket served by anyone else (other than the
    caller, who may run a daemon of their own) is not svirtd, and must get neither a request
    nor, above all, a password.  The kernel says who serves it (SO_PEERCRED of the listening
    side, as of its listen()), as it tells svirtd who we are.  For svirsh's session and the
    front-ends' link alike."""
    raw = sock.getsockopt(_sock.SOL_SOCKET, _sock.SO_PEERCRED, 12)
    uid = int.from_bytes(raw[4:8], sys.byteorder)  # struct ucred: pid, uid, gid
    return None if uid in (0, os.getuid(), os.geteuid()) else uid


def daemon_available(path: str = DEFAULT_SOCKET) -> bool:
    """True when a socket exists at path and this (real) uid may connect to it.

    Cheap on purpose (a stat and an access check, no connection): svirsh calls it on every run.
    A stale socket still says True; call() then explains that the daemon is not running.
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170000) == 0o140000 and os.access(path, os.W_OK)


def connect(socket_path: str = DEFAULT_SOCKET, *, client: str = "svirsh") -> _Session | None:
    """One connect attempt: a session for :func:`call` or :func:`console` (``session=``), or
    None when nobody answers at socket_path (no socket, a stale one, not a socket, ...).

    This is how root's svirsh picks its way (svirtd when it is up, else direct mode) without
    paying for a second connection: the probe *is* the request's connection.  Unlike
    :func:`daemon_available` it cannot be fooled by a stale socket left by a dead svirtd.
    Raises ClientError when a sudo process cannot take its invoker's credentials, and when
    the socket is served by someone other than root ("untrusted": never a reason to run
    in-process instead)."""
    try:
        return _Session(socket_path, None, client)
    except ClientError as exc:
        if exc.code == "unavailable":
            return None
        raise


def call(
    socket_path: str,
    request: Request,
    *,
    password_cb=tty_password,
    progress_cb=None,
    timeout: float | None = None,
    client: str = "svirsh",
    session: _Session | None = None,
) -> Reply:
    """Send one request to svirtd and return its Reply.

    password_cb(prompt) -> str | None answers PAM prompts (default: the tty, no echo; pass None
    to refuse).  progress_cb(done, total) receives migrate progress.  timeout bounds each wait
    for the daemon (None: wait, e.g. for a long migration).  session: a connection from
    :func:`connect` to use (and close) instead of opening one.  Raises ClientError when the
    daemon cannot be reached or breaks the protocol.
    """
    with session or _Session(socket_path, timeout, client) as s:
        s.send({"type": "request", "request": request.to_dict()})
        return _reply_of(_converse(s, password_cb, progress_cb))


def admin_status(socket_path: str = DEFAULT_SOCKET, *, timeout: float | None = 30) -> Reply:
    """The daemon's status (uptime, policy versions, last reload, counters) as Reply.data.

    Root, or a user granted 'daemon-admin' on the host object; anyone else gets status 3.
    """
    with _Session(socket_path, timeout, "svirt-admin") as s:
        s.send({"type": "status"})
        return _reply_of(_converse(s, None, None))


def admin_reload(socket_path: str = DEFAULT_SOCKET, *, timeout: float | None = 60) -> Reply:
    """Ask svirtd to re-read UA/PA/ACM now (like SIGHUP); Reply.data is the reload result."""
    with _Session(socket_path, timeout, "svirt-admin") as s:
        s.send({"type": "reload"})
        return _reply_of(_converse(s, None, None))


def parse_escape(spec: str) -> int:
    """'^]' -> 0x1d (virsh's notation), or one ASCII character other than '^' -> its byte."""
    if spec.startswith("^"):
        if len(spec) == 2 and ord(spec[1]) < 0x80:
            code = ord(spec[1].upper()) ^ 0x40
            if 0 <= code < 0x20 or code == 0x7F:
                return code
    elif len(spec) == 1 and ord(spec) < 0x80:
        return ord(spec)
    raise ValueError(f"invalid escape character {spec!r}: use ^X (e.g. ^]) or one ASCII character")


def print_progress(done: int, total: int) -> None:
    """virsh's migration progress line, on stderr."""
    import sys

    pct = int(done * 100 / total) if total else 0
    sys.stderr.write(f"\rMigration: [{pct:3d} %]")
    if total and done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def console(
    socket_path: str,
    name: str,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
    escape: str = DEFAULT_ESCAPE,
    as_user: str | None = None,
    password_cb=tty_password,
    session: _Session | None = None,
) -> int:
    """Attach the terminal to a VM's serial console through svirtd, like ``virsh console``.

    The terminal is put in raw mode (when stdin is one) and restored on exit; typing the escape
    character (default Ctrl-], virsh's ``^]`` notation) detaches.  This is a whole front-end
    action: messages go to stderr_fd ("error: ..." on a refusal) and the exit status is
    returned - the daemon's status on refusal (3 denied, ...), 0 after a session, 1 when the
    daemon cannot be reached or the console breaks.  session: a connection from
    :func:`connect` to use instead of opening one.
    """
    try:
        esc = parse_escape(escape)
    except ValueError as exc:
        os.write(stderr_fd, f"error: {exc}\n".encode())
        if session is not None:
            session.close()
        return 2
    try:
        with session or _Session(socket_path, None, "svirsh") as s:
            msg = {"type": "console", "name": name}
            if as_user is not None:
                msg["as_user"] = as_user
            s.send(msg)
            reply = _reply_of(_converse(s, password_cb, None))
            if reply.status != EXIT_OK:
                os.write(stderr_fd, f"error: {reply.message or 'refused'}\n".encode())
                return reply.status
            os.write(
                stdout_fd,
                f"Connected to domain '{name}'\nEscape character is {escape}\n".encode(),
            )
            status, message = _relay(s.sock, stdin_fd, stdout_fd, esc)
    except ClientError as exc:
        os.write(stderr_fd, f"error: {exc}\n".encode())
        return exc.status
    if message:
        os.write(stderr_fd, f"error: {message}\n".encode())
    return status


def _relay(sock, stdin_fd: int, stdout_fd: int, esc: int) -> tuple[int, str]:
    """Copy bytes both ways until the escape byte, or the daemon ends the console."""
    import select

    saved = None
    try:
        import termios
        import tty

        saved = termios.tcgetattr(stdin_fd)
        tty.setraw(stdin_fd)
    except Exception:  # not a terminal (termios.error), or no termios: relay bytes as they come
        saved = None
    sock.settimeout(None)
    poller = select.poll()
    poller.register(stdin_fd, select.POLLIN)
    poller.register(sock.fileno(), select.POLLIN)
    stdin_open = True
    try:
        while True:
            for fd, _ev in poller.poll():
                if fd == sock.fileno():
                    data = sock.recv(65536)
                    if not data:
                        return 0, ""
                    os.write(stdout_fd, data)
                elif stdin_open:
                    data = os.read(stdin_fd, 4096)
                    if not data:  # end of input: keep showing output until the console ends
                        poller.unregister(stdin_fd)
                        stdin_open = False
                        sock.shutdown(_sock.SHUT_WR)
                        continue
                    cut = data.find(bytes((esc,)))
                    if cut >= 0:
                        if cut:
                            sock.sendall(data[:cut])
                        return 0, ""
                    sock.sendall(data)
    except OSError as exc:
        return 1, f"console connection lost: {exc}"
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
        os.write(stdout_fd, b"\n")
