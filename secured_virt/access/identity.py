"""Who is really asking: identity from the kernel, never from the environment.

The front-end runs as root on behalf of others, so the caller's identity must come from
something the caller cannot forge:

* a process run directly: the **real** uid (``os.getuid()``), its passwd entry, the kernel's
  supplementary groups, and the *controlling* terminal read from ``/proc/self/stat``;
* a peer of ``svirtd``: ``SO_PEERCRED`` (credentials as of ``connect()``), ``SO_PEERGROUPS``,
  and the peer's terminal and session from ``/proc/<pid>/stat``.

``$USER``, ``$LOGNAME`` and ``$HOME`` are never consulted.  ``SUDO_UID``/``SUDO_USER`` are
honoured only when the real uid is 0 (root can claim to be anyone anyway) *and* both agree with
the passwd database — then the caller is the user who ran sudo (like sudo's own SUDO_USER rule).
``--as USER`` is root's alone (like ``sudo -u``); from anyone else it is recorded
(``requested_as``, ``as_refused=True``) so the gate can deny *and audit* it, not raised here.

``/proc/<pid>/stat`` is parsed from the **last** ``)``: the command name in parentheses may
itself contain spaces and ``)``, which is how CVE-2017-1000367 spoofed sudo's tty lookup.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import struct
import time
from dataclasses import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (svirsh under sudo)
if TYPE_CHECKING:  # socket loads where a peer is read (svirtd), not in direct mode
    import socket

__all__ = [
    "Identity",
    "IdentityError",
    "ProcStat",
    "identify_peer",
    "identify_process",
    "invoking_uid",
    "read_proc_stat",
    "sudo_invoker",
    "tty_device_name",
]

VIA_DIRECT = "direct"
VIA_SUDO = "sudo"
VIA_SVIRTD = "svirtd"

_SO_PEERGROUPS = 59  # socket.SO_PEERGROUPS (Linux >= 4.13), when socket does not name it
_PEERCRED = struct.Struct("=iII")  # pid_t, uid_t, gid_t (uid/gid unsigned: no negative uids)


class IdentityError(Exception):
    """The caller cannot be identified safely; the request must be refused."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller as the kernel knows it.

    ``uid``/``user`` are the caller (for ``via="sudo"`` the user who ran sudo, not root).
    ``requested_as`` is the ``--as`` argument, if any; it is in force only for a root caller
    (``as_refused`` is True for everyone else).  ``tty``/``tty_dev``/``sid`` locate the login
    session for the credential cache; ``pid`` is the process (for a peer: as of connect()).
    """

    uid: int
    gid: int
    user: str
    groups: tuple[int, ...]
    via: str
    requested_as: str | None = None
    tty: str | None = None
    pid: int = 0
    as_refused: bool = False
    as_uid: int | None = None
    tty_dev: int | None = None
    sid: int | None = None
    ppid: int | None = None

    @property
    def acting_as(self) -> str | None:
        """Root's ``--as`` target; None when not acting as anyone (or when --as was refused)."""
        if self.uid == 0 and self.requested_as and not self.as_refused:
            return self.requested_as
        return None

    @property
    def effective_user(self) -> str:
        """The user the policy is checked for: root's --as target, else the caller."""
        return self.acting_as or self.user

    @property
    def is_plain_root(self) -> bool:
        return self.uid == 0 and self.acting_as is None

    def as_dict(self) -> dict:
        return {
            "uid": self.uid,
            "gid": self.gid,
            "user": self.user,
            "groups": list(self.groups),
            "via": self.via,
            "requested_as": self.requested_as,
            "as_refused": self.as_refused,
            "acting_as": self.acting_as,
            "tty": self.tty,
            "pid": self.pid,
        }


# -- /proc parsing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    tty_nr: int
    starttime: int  # clock ticks since boot


def parse_proc_stat(text: str) -> ProcStat:
    """Parse the text of /proc/<pid>/stat; the comm field ends at the LAST ')'."""
    head, sep, tail = text.rpartition(")")
    pid_text, lp, comm = head.partition(" (")
    if not sep or not lp:
        raise ValueError("malformed /proc stat line")
    f = tail.split()
    # after comm: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) ... starttime(22)
    if len(f) < 20:
        raise ValueError("short /proc stat line")
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=f[0],
        ppid=int(f[1]),
        pgrp=int(f[2]),
        session=int(f[3]),
        tty_nr=int(f[4]),
        starttime=int(f[19]),
    )


def read_proc_stat(pid: int | str = "self", *, expect_uid: int | None = None) -> ProcStat | None:
    """Read /proc/<pid>/stat; None if the process is gone or /proc is unavailable.

    With ``expect_uid`` the /proc/<pid> directory (owned by the process's effective uid) is
    opened first and checked, then stat is read *through that directory fd*, so a pid reused
    by some other user's process between the check and the read cannot be mistaken for ours.
    """
    try:
        dfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if expect_uid is not None and os.fstat(dfd).st_uid != expect_uid:
            return None
        fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        return parse_proc_stat(raw.decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(dfd)


def tty_device_name(dev: int) -> str | None:
    """Map a character-device number (tty_nr) to its /dev path, verified by st_rdev."""
    if dev <= 0:
        return None
    major, minor = os.major(dev), os.minor(dev)
    candidates = []
    if 136 <= major <= 143:  # Unix98 pty slaves
        candidates.append(f"/dev/pts/{(major - 136) * 256 + minor}")
    elif major == 4 and minor < 64:
        candidates.append(f"/dev/tty{minor}")
    elif major == 4:
        candidates.append(f"/dev/ttyS{minor - 64}")
    elif major == 5 and minor == 1:
        candidates.append("/dev/console")
    for path in candidates:
        with contextlib.suppress(OSError):
            st = os.stat(path, follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == dev:
                return path
    for directory in ("/dev/pts", "/dev"):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == dev:
                    return entry.path
    return f"tty:{major}:{minor}"  # a terminal we cannot name is still a distinct terminal


def _own_tty() -> tuple[str | None, int | None]:
    """The controlling terminal of this process.

    Taken from /proc/self/stat (the kernel's controlling tty), not from whatever fds 0-2 point
    at: a user can redirect stdin from another terminal of theirs, not change their ctty.
    Without /proc, fall back to ttyname() on fds 0-2.
    """
    ps = read_proc_stat("self")
    if ps is not None:
        return (tty_device_name(ps.tty_nr), ps.tty_nr) if ps.tty_nr else (None, None)
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.ttyname(fd), os.fstat(fd).st_rdev
    return None, None


# -- identification --------------------------------------------------------------------------


def _passwd(uid: int) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        raise IdentityError(f"uid {uid} has no passwd entry; refusing") from None


#: how long svirtd reuses a uid's passwd entry (see _peer_passwd)
PEER_PASSWD_TTL = 2.0
_peer_pw: dict[int, tuple[float, pwd.struct_passwd]] = {}


def _peer_passwd(uid: int) -> pwd.struct_passwd:
    """svirtd's lookup of a peer's passwd entry, reused for ``PEER_PASSWD_TTL`` seconds.

    svirsh opens a connection per command, and each lookup re-read /etc/passwd through NSS
    (five system calls, each a GIL hand-off among svirtd's busy threads).  The uid still comes
    from the kernel on every connection; only its name may be up to two seconds old after an
    admin renamed or removed the account.  A uid without an entry is never remembered."""
    now = time.monotonic()
    hit = _peer_pw.get(uid)
    if hit is not None and now - hit[0] < PEER_PASSWD_TTL:
        return hit[1]
    pw = _passwd(uid)
    if len(_peer_pw) >= 4096:  # a bound, not a policy: many uids just look up again
        _peer_pw.clear()
    _peer_pw[uid] = (now, pw)
    return pw


def _groups_of(pw: pwd.struct_passwd) -> tuple[int, ...]:
    try:
        return tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    except OSError:
        return (pw.pw_gid,)


def _sudo_caller() -> pwd.struct_passwd | None:
    """The sudo invoker, if SUDO_UID and SUDO_USER agree with the passwd database (root only)."""
    sudo_uid, sudo_user = os.environ.get("SUDO_UID"), os.environ.get("SUDO_USER")
    if not sudo_uid or not sudo_user or not sudo_uid.isascii() or not sudo_uid.isdigit():
        return None
    try:
        pw = pwd.getpwnam(sudo_user)
    except (KeyError, ValueError):
        return None
    return pw if pw.pw_uid == int(sudo_uid) else None


def sudo_invoker() -> pwd.struct_passwd | None:
    """The user this root process runs for under sudo, or None when there is none.

    Real uid 0 with SUDO_UID/SUDO_USER agreeing with the passwd database (the rule
    identify_process applies) and naming someone other than root.  Whatever such a process
    does on the caller's behalf must carry the caller's identity and rights, not root's: the
    policy decision (identify_process), the files named on the command line, and every
    connection to svirtd (whose SO_PEERCRED would otherwise say uid 0)."""
    if os.getuid() != 0:
        return None
    pw = _sudo_caller()
    return pw if pw is not None and pw.pw_uid != 0 else None


def invoking_uid() -> int:
    """The uid whose choices the command line carries: under sudo the invoker, else the real
    uid.  Options that are root's alone (``--config``, ``--connect``) are checked against it."""
    pw = sudo_invoker()
    return os.getuid() if pw is None else pw.pw_uid


def _resolve_as(caller_uid: int, as_user: str | None) -> tuple[str | None, bool, int | None]:
    """(requested_as, as_refused, as_uid) for a caller asking ``--as as_user``."""
    if as_user is None:
        return None, False, None
    if caller_uid != 0:
        return as_user, True, None
    try:
        target = pwd.getpwnam(as_user)
    except (KeyError, ValueError):
        raise IdentityError(
            f"--as {as_user!r}: no such user in the passwd database (give a user name)"
        ) from None
    return as_user, False, target.pw_uid


def identify_process(as_user: str | None = None) -> Identity:
    """The identity of the user running this process (direct mode, or under sudo)."""
    ruid = os.getuid()
    pw = _passwd(ruid)
    via, gid = VIA_DIRECT, os.getgid()
    groups = tuple(sorted({gid, *os.getgroups()}))
    if ruid == 0:
        sudo_pw = _sudo_caller()
        if sudo_pw is not None:
            pw, via, gid = sudo_pw, VIA_SUDO, sudo_pw.pw_gid
            groups = _groups_of(sudo_pw)
    requested_as, refused, as_uid = _resolve_as(pw.pw_uid, as_user)
    tty, tty_dev = _own_tty()
    return Identity(
        uid=pw.pw_uid,
        gid=gid,
        user=pw.pw_name,
        groups=groups,
        via=via,
        requested_as=requested_as,
        tty=tty,
        pid=os.getpid(),
        as_refused=refused,
        as_uid=as_uid,
        tty_dev=tty_dev,
        sid=os.getsid(0),
        ppid=os.getppid(),
    )


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of a connected AF_UNIX peer, from the kernel (as of connect())."""
    import socket  # here, not at the top: direct mode reads no peer (issue 18)

    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(raw)


def _peer_groups(sock: socket.socket, gid: int) -> tuple[int, ...] | None:
    import socket

    peergroups = getattr(socket, "SO_PEERGROUPS", _SO_PEERGROUPS)
    size = 64 * 4
    for _ in range(4):
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, peergroups, size)
        except OSError as exc:
            if exc.errno == 34:  # ERANGE: buffer too small
                size *= 8
                continue
            return None
        n = len(raw) // 4
        return tuple(sorted({gid, *struct.unpack(f"={n}I", raw[: n * 4])}))
    return None


def identify_peer(sock: socket.socket, as_user: str | None = None) -> Identity:
    """The identity of the process at the other end of a connected Unix stream socket."""
    pid, uid, gid = peer_credentials(sock)
    if uid == 0xFFFFFFFF:  # overflow uid: the peer's uid is not mapped into our namespace
        raise IdentityError("the peer's uid is not visible from here (user namespace); refusing")
    pw = _peer_passwd(uid)
    groups = _peer_groups(sock, gid)
    if groups is None:
        groups = _groups_of(pw)
    requested_as, refused, as_uid = _resolve_as(uid, as_user)
    tty = tty_dev = sid = ppid = None
    ps = read_proc_stat(pid, expect_uid=uid) if pid > 0 else None
    if ps is not None:
        sid, ppid = ps.session, ps.ppid
        if ps.tty_nr:
            tty, tty_dev = tty_device_name(ps.tty_nr), ps.tty_nr
    return Identity(
        uid=uid,
        gid=gid,
        user=pw.pw_name,
        groups=groups,
        via=VIA_SVIRTD,
        requested_as=requested_as,
        tty=tty,
        pid=pid,
        as_refused=refused,
        as_uid=as_uid,
        tty_dev=tty_dev,
        sid=sid,
        ppid=ppid,
    )
