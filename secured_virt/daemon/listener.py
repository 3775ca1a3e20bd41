"""The listening socket (inherited from systemd, or created by svirtd) and systemd notification.

When svirtd creates the socket itself it binds under a temporary name, sets owner, group and
mode, and only then renames it into place, so there is never a moment when the final path
exists with the wrong permissions.  A leftover socket from a crashed daemon is replaced; a live
one (another svirtd answering) is not.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import stat
import struct

log = logging.getLogger("svirtd")

SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """The socket cannot be set up; the message says what to fix."""


def from_systemd(environ: dict[str, str] | None = None) -> socket.socket | None:
    """The socket systemd passed us (LISTEN_FDS/LISTEN_PID, fd 3), or None.

    The variables are removed from the environment either way, so that nothing we start later
    believes the descriptors are meant for it (sd_listen_fds(3) does the same with unset=1).
    """
    env = os.environ if environ is None else environ
    pid, fds = env.pop("LISTEN_PID", None), env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_FDNAMES", None)
    if pid is None or fds is None:
        return None
    try:
        if int(pid) != os.getpid():
            return None
        count = int(fds)
    except ValueError:
        raise ListenError(f"LISTEN_PID={pid!r} / LISTEN_FDS={fds!r} are not numbers") from None
    if count < 1:
        return None
    if count > 1:
        log.warning("systemd passed %d sockets; svirtd uses only the first (fd 3)", count)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise ListenError(
            "the socket systemd passed on fd 3 is not a Unix stream socket; "
            "svirtd.socket must use ListenStream=/path"
        )
    os.set_inheritable(sock.fileno(), False)
    return sock


def bind_unix(path: str, *, mode: int, group: str | int | None, backlog: int = 1024):
    """Create the listening socket at path with owner root (our euid), group and mode."""
    if not os.path.isabs(path):
        raise ListenError(f"socket path {path!r} must be absolute")
    parent = os.path.dirname(path)
    _ensure_parent(parent)
    _remove_stale(path)
    gid = _group_id(group)
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)  # nobody can connect before chmod says so
        try:
            sock.bind(tmp)
        finally:
            os.umask(old)
        os.chown(tmp, os.geteuid(), gid if gid is not None else os.getegid())
        os.chmod(tmp, mode)
        sock.listen(backlog)
        os.rename(tmp, path)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ListenError(f"cannot create the svirtd socket {path}: {exc.strerror}") from None
    return sock


def _ensure_parent(parent: str) -> None:
    """The socket's directory: created 0755 if missing (whatever our umask), so that every
    user can reach the socket and only the socket's own mode decides who may connect."""
    try:
        missing = []
        d = parent
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d, 0o755)
            os.chmod(d, 0o755)  # noqa: S103 - traversable by all, writable by root only
        st = os.stat(parent)
    except OSError as exc:
        raise ListenError(f"cannot create the socket directory {parent}: {exc.strerror}") from None
    if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
        raise ListenError(
            f"socket directory {parent} is world-writable without the sticky bit: anyone could "
            "replace the socket; use a root-owned directory such as /run/secured-virt"
        )
    if st.st_uid != os.geteuid():
        log.warning("socket directory %s is owned by uid %d, not by us", parent, st.st_uid)


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path} exists and is not a socket; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket %s (no daemon behind it)", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise ListenError(f"another svirtd is already serving {path}; stop it first")


def _group_id(group: str | int | None) -> int | None:
    if group is None or group == "":
        return None
    if isinstance(group, int) or (str(group).isascii() and str(group).isdigit()):
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ListenError(
            f"socket_group {group!r} does not exist; create it (groupadd) or fix the config"
        ) from None


def peer_creds(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connecting process as of connect(), from the kernel (SO_PEERCRED).

    Used for connection limits and log lines; the identity a request runs under comes from
    secured_virt.access.identity, which reads the same kernel record.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return _CRED.unpack(raw)


_CRED = struct.Struct("=iII")  # pid_t is signed, uid_t/gid_t unsigned


def sd_notify(state: str) -> None:
    """Tell systemd about our state (READY=1, RELOADING=1, STOPPING=1); no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr[0] == "@":  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", state.split("=")[0], exc)
