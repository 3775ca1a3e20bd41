"""Remember a successful authentication for a while, like sudo's time stamp files.

After a user has typed their password for an operation that needs it, later such operations
from the *same login session* within ``auth_timeout_minutes`` (default 5) are not asked again.
``svirsh -k`` (``forget``) ends that early.

Layout (sudo's ``timestamp_type=tty`` design, see sudoers_timestamp(5)):

* one file per user in ``auth_dir`` (default ``/run/secured-virt/ts``), **named by uid** (a
  user name can be renamed or recycled; cf. sudo-rs CVE-2023-42456);
* the directory must be root-owned and 0700 — it is created so if missing and *refused* (no
  caching: the user is simply asked every time) if it is anything else or a symlink; the files
  are opened with O_NOFOLLOW and must be regular, root-owned, 0600, single-link;
* each record is bound to where the user authenticated:

  - with a terminal: the tty device number **and** the session id and the session leader's
    start time — so another terminal of the same user does not inherit it, and a new login
    on a recycled pty (new session leader) does not either;
  - without a terminal: the parent process id and the parent's start time (sudo's ``ppid``
    type) — so a script can reuse it, another shell of the same user cannot;
  - nothing usable (no /proc, unknown parent): no caching at all.

* time is ``CLOCK_BOOTTIME`` (monotonic, counts suspend) plus the kernel's boot id: a record
  from an earlier boot never matches, and a record dated in the future is ignored (sudo
  tolerates up to 2 x timeout; a monotonic clock never legitimately runs backwards, so we
  tolerate none).

Note for ``sudo svirsh``: sudo (use_pty, the default since 1.9.14) runs each command on a new
pty in a new session, so records made under sudo are not reused — fail safe.

Writes are atomic (temp file + rename) and serialised with flock on the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from dataclasses import dataclass

from secured_virt.fsutil import UnsafeFileError, atomic_write, open_secure_dir
from secured_virt.lazylog import lazy_logger

from .identity import read_proc_stat

log = lazy_logger("secured_virt.access.credcache")  # logging loads at the first message (issue 18)


__all__ = ["CredCache", "CredCacheError", "SessionFiles", "SessionKey", "session_key"]

FORMAT_VERSION = 1
MAX_FILE_BYTES = 64 * 1024
MAX_RECORDS = 64
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


class CredCacheError(Exception):
    """The cache directory or file is unsafe or unwritable; nothing was cached."""


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Where an authentication happened: ("tty", tty_dev, sid, sid_start) or
    ("ppid", ppid, 0, ppid_start)."""

    kind: str
    ident: int
    sid: int
    start: int

    def as_dict(self) -> dict:
        return {"kind": self.kind, "id": self.ident, "sid": self.sid, "start": self.start}


def session_key(identity) -> SessionKey | None:
    """The session an identity belongs to, or None when it cannot be pinned down safely."""
    if getattr(identity, "tty_dev", None) and getattr(identity, "sid", None):
        leader = read_proc_stat(identity.sid)
        if leader is None:
            return None
        return SessionKey("tty", int(identity.tty_dev), int(identity.sid), leader.starttime)
    ppid = getattr(identity, "ppid", None)
    if ppid and ppid > 1:
        parent = read_proc_stat(ppid)
        if parent is None:
            return None
        return SessionKey("ppid", int(ppid), 0, parent.starttime)
    return None


def _boot_id() -> str:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class SessionFiles:
    """Per-uid files of per-login-session records in a root-owned 0700 directory.

    The file layer shared by the credential cache and the DSD role sessions
    (:mod:`secured_virt.access.rolesession`): ``prefix`` keeps their files apart in one directory.
    """

    prefix = ""
    what = "credential cache"

    def __init__(self, directory: str, timeout_minutes: float = 5.0, *, owner_uid: int = 0):
        self.directory = directory
        self.timeout = float(timeout_minutes) * 60.0
        self.owner_uid = owner_uid

    # -- directory and file access, all relative to a checked directory fd --------------------
    def _open_dir(self) -> int:
        try:
            return open_secure_dir(self.directory, 0o700, owner_uid=self.owner_uid)
        except UnsafeFileError as exc:
            raise CredCacheError(f"{self.what} not used: {exc}") from None
        except OSError as exc:
            raise CredCacheError(
                f"{self.what} directory {self.directory} unusable: {exc.strerror}"
            ) from None

    def _load(self, dfd: int, uid: int) -> list[dict]:
        """Records from the uid's file; an unsafe or unreadable file counts as empty."""
        name = f"{self.prefix}{uid}"
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=dfd)  # fmt: skip
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("ignoring %s file %s/%s: %s", self.what, self.directory, name, exc)
            return []
        try:
            st = os.fstat(fd)
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_uid != self.owner_uid
                or stat.S_IMODE(st.st_mode) & 0o077
                or st.st_nlink != 1
                or st.st_size > MAX_FILE_BYTES
            ):
                log.warning("ignoring unsafe %s file %s/%s", self.what, self.directory, name)
                return []
            data = os.read(fd, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        try:
            doc = json.loads(data)
        except ValueError:
            return []
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            return []
        if doc.get("uid") != uid or not isinstance(doc.get("records"), list):
            return []
        return [r for r in doc["records"] if isinstance(r, dict)]

    def _store(self, dfd: int, uid: int, records: list[dict]) -> None:
        doc = {"version": FORMAT_VERSION, "uid": uid, "records": records[-MAX_RECORDS:]}
        atomic_write(
            f"{self.prefix}{uid}",
            json.dumps(doc, separators=(",", ":")),
            mode=0o600,
            uid=self.owner_uid,
            gid=0 if os.geteuid() == 0 else None,
            dir_fd=dfd,
        )

    def forget(self, uid: int) -> None:
        """Drop every record of ``uid`` (``svirsh -k``)."""
        dfd = self._open_dir()
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.prefix}{uid}", dir_fd=dfd)
            os.fsync(dfd)
        finally:
            os.close(dfd)


class CredCache(SessionFiles):
    """Per-uid, per-session record of the last successful authentication."""

    @classmethod
    def from_config(cls, config) -> CredCache:
        return cls(config.auth_dir, config.auth_timeout_minutes)

    # -- the public operations ---------------------------------------------------------------
    def _usable(self, rec: dict, key: SessionKey, boot: str, now: float) -> bool:
        if rec.get("session") != key.as_dict() or rec.get("boot_id") != boot:
            return False
        ts = rec.get("ts")
        if not isinstance(ts, int | float):
            return False
        age = now - ts
        return 0 <= age <= self.timeout

    def check(self, identity) -> bool:
        """True when ``identity`` authenticated in this same session within the timeout.

        Never raises: any doubt (unsafe directory, unreadable file, no session key) means
        "ask for the password again".
        """
        if self.timeout <= 0:
            return False
        key = session_key(identity)
        if key is None:
            return False
        try:
            dfd = self._open_dir()
        except CredCacheError as exc:
            log.warning("%s", exc)
            return False
        try:
            records = self._load(dfd, identity.uid)
        finally:
            os.close(dfd)
        boot, now = _boot_id(), _now()
        return any(self._usable(r, key, boot, now) for r in records)

    def update(self, identity) -> bool:
        """Remember a successful authentication; False if this session cannot be cached.

        Raises CredCacheError when the directory is unsafe (the caller logs it; the operation
        itself goes on — the user did authenticate).
        """
        if self.timeout <= 0:
            return False
        key = session_key(identity)
        if key is None:
            return False
        dfd = self._open_dir()
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
            boot, now = _boot_id(), _now()
            keep = [
                r
                for r in self._load(dfd, identity.uid)
                if r.get("session") != key.as_dict()
                and r.get("boot_id") == boot
                and isinstance(r.get("ts"), int | float)
                and 0 <= now - r["ts"] <= self.timeout
            ]
            keep.append({"session": key.as_dict(), "boot_id": boot, "ts": now})
            try:
                self._store(dfd, identity.uid, keep)
            except OSError as exc:
                raise CredCacheError(f"could not write the credential cache: {exc}") from None
            return True
        finally:
            os.close(dfd)
