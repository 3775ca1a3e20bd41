"""Putting new UA/PA files in place: the edit lock, trusted reads, backups, atomic install.

The rules are visudo's, tightened where secured-virt can afford it:

* **Nothing beside the policy.**  Locks and backups live in a root-only state directory
  (``rolefile_state_dir``, default /var/lib/secured-virt/rolefiles, 0700, checked like every
  root state directory), named after the policy file's path.  A ``.bak`` or ``.lock`` left next
  to UA/PA was a root-owned file that anyone able to rename in that directory could swap in for
  the real one; and the directories holding UA/PA themselves must be root's alone
  (``store.check_policy_dirs``).
* **One editor at a time.**  ``<state>/<file>-<hash>.lock`` for each policy file is locked with a
  non-blocking ``flock``; a second editor is refused at once and told who holds the lock (the
  pid comes from the kernel's ``/proc/locks``, the user and start time from the lock file the
  holder wrote).  The lock dies with its holder, so a crashed editor never leaves the files
  locked; the lock files themselves stay (removing them would race with the next locker).
  Both files are locked for every change: an edit of one is validated together with the other,
  so the other must not change underneath it.
* **Read only what could be trusted.**  The current files are read through
  ``rbac.read_trusted`` (root-owned, not group/world-writable, regular, checked on the fd).
* **Crash leaves old or new.**  Each file is written with ``fsutil.atomic_write`` (temp file
  in the same directory, owner root:root, mode 0644, fsync, rename, fsync of the directory).
  Before that, the version being replaced is kept as ``<state>/<file>-<hash>.bak`` (root:root
  0600, written the same way), so root can always go one step back.  A temporary file left
  behind by a crash (``.<file>.tmp-XXXXXXXXXXXX``) is removed by the next install, under the
  lock.
* **Both files change?**  Two renames cannot be one atomic step, so they are ordered so that
  the state in between is itself a valid policy whenever such an order exists (e.g. for
  ``rm-role --force``: first the UA without the assignments, then the PA without the role);
  if the second write fails, the first file is put back.
* **Nobody else wrote in between.**  Right before installing, the current bytes are read again
  and compared with what the change was computed from; a difference (someone edited without
  the lock) aborts the install.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import os
import pwd
import re
import stat

import rbac
from secured_virt.fsutil import UnsafeFileError, atomic_write, open_secure_dir

from .store import check_policy_dirs

__all__ = [
    "BACKUP_SUFFIX",
    "DEFAULT_STATE_DIR",
    "ConcurrentChange",
    "InstallError",
    "LockBusy",
    "PolicyLock",
    "backup_path",
    "install",
    "lock_path",
    "read_current",
    "remove_stale_temps",
]

BACKUP_SUFFIX = ".bak"
LOCK_SUFFIX = ".lock"
INSTALL_MODE = 0o644
BACKUP_MODE = 0o600
DEFAULT_STATE_DIR = "/var/lib/secured-virt/rolefiles"


def _state_name(path: str, suffix: str) -> str:
    """``ua.xml-<12 hex of the absolute path>.lock``: one name per policy file, readable."""
    full = os.path.abspath(path)
    tag = hashlib.sha256(full.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{os.path.basename(full)}-{tag}{suffix}"


def lock_path(path: str, state_dir: str = DEFAULT_STATE_DIR) -> str:
    """Where the edit lock of policy file ``path`` lives."""
    return os.path.join(state_dir, _state_name(path, LOCK_SUFFIX))


def backup_path(path: str, state_dir: str = DEFAULT_STATE_DIR) -> str:
    """Where the version of ``path`` replaced by the last install is kept."""
    return os.path.join(state_dir, _state_name(path, BACKUP_SUFFIX))


def _open_state_dir(state_dir: str, owner_uid: int) -> int:
    return open_secure_dir(state_dir, 0o700, owner_uid=owner_uid, create=True)


class LockBusy(Exception):
    """Someone else holds the edit lock; ``str()`` names the file, the pid and the user."""

    def __init__(
        self,
        path: str,
        pid: int | None,
        user: str | None,
        since: str | None,
        via: str = "",
        lock: str | None = None,
    ):
        self.path, self.pid, self.user, self.since, self.via = path, pid, user, since, via
        who = []
        if pid:
            who.append(f"pid {pid}")
        if user:
            who.append(f"user {user}" + (f" (through {via})" if via else ""))
        if since:
            who.append(f"since {since}")
        held = f" by {', '.join(who)}" if who else " by another process"
        where = f" (lock {lock})" if lock else ""
        super().__init__(f"{path} is being edited{held}{where}; try again later")


class InstallError(Exception):
    """Installing failed; the message says what state the files are in."""


class ConcurrentChange(InstallError):
    """A policy file changed on disk after the change was computed from it."""


# -- the lock ---------------------------------------------------------------------------------
def _proc_lock_holder(st: os.stat_result) -> int | None:
    """The pid holding a flock on the file with ``st``'s device and inode, per /proc/locks."""
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:123456 0 EOF"  ("->" marks waiters)
        if len(parts) < 6 or "->" in parts or parts[1] != "FLOCK":
            continue
        try:
            maj, mnr, ino = parts[5].split(":")
            if (int(maj, 16), int(mnr, 16), int(ino)) == want:
                return int(parts[4])
        except ValueError:
            continue
    return None


def _uid_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _parse_holder(text: str) -> dict[str, str]:
    out = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


class PolicyLock:
    """Exclusive, non-blocking edit lock on several policy files (taken in the order given)."""

    def __init__(
        self,
        paths: list[str],
        *,
        user: str,
        via: str = "",
        owner_uid: int = 0,
        state_dir: str = DEFAULT_STATE_DIR,
    ):
        self.paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
        self.user = "".join(c if c.isprintable() and not c.isspace() else "?" for c in user)
        self.via = via if via.isalnum() else ""
        self.owner_uid = owner_uid
        self.state_dir = os.path.abspath(state_dir)
        self._fds: list[int] = []

    def __enter__(self) -> PolicyLock:
        try:
            check_policy_dirs(self.paths, owner_uid=self.owner_uid)
            sfd = _open_state_dir(self.state_dir, self.owner_uid)
            try:
                for p in self.paths:
                    self._fds.append(self._lock_one(p, sfd))
            finally:
                os.close(sfd)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())

    def _lock_one(self, path: str, sfd: int) -> int:
        name = _state_name(path, LOCK_SUFFIX)
        lock = os.path.join(self.state_dir, name)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(name, flags, 0o600, dir_fd=sfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(lock, f"{lock} is a symbolic link; remove it") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise UnsafeFileError(lock, f"{lock} is not a plain file; remove it")
            if st.st_uid != self.owner_uid or st.st_mode & 0o022:
                raise UnsafeFileError(
                    lock,
                    f"{lock} is owned by uid {st.st_uid} or writable by others; remove it",
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._busy(path, lock, fd, st) from None
            since = _dt.datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
            os.ftruncate(fd, 0)
            via = f" via={self.via}" if self.via else ""
            line = f"pid={os.getpid()} user={self.user}{via} since={since}\n"
            os.pwrite(fd, line.encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _busy(path: str, lock: str, fd: int, st: os.stat_result) -> LockBusy:
        info = _parse_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        pid = _proc_lock_holder(st)
        if pid is None and info.get("pid", "").isascii() and info.get("pid", "").isdigit():
            pid = int(info["pid"])
        if pid is not None and info.get("pid") == str(pid):
            return LockBusy(
                path, pid, info.get("user"), info.get("since"), info.get("via", ""), lock
            )
        user = None
        if pid is not None:  # the lock file is not (yet) written by this holder: ask /proc
            with contextlib.suppress(OSError):
                user = _uid_user(os.stat(f"/proc/{pid}").st_uid)
        return LockBusy(path, pid, user, None, lock=lock)


# -- reading ----------------------------------------------------------------------------------
def read_current(path: str, *, owner_uid: int = 0) -> bytes | None:
    """The installed file's bytes (trusted-file checks on the fd), or None if there is none.

    Raises rbac.PolicyError (UntrustedFileError) for a file that exists but must not be trusted,
    UnsafeFileError for a directory on its path that someone else could change.
    """
    check_policy_dirs((path,), owner_uid=owner_uid)
    if not os.path.lexists(path):
        return None
    return rbac.read_trusted(path, max_size=rbac.MAX_POLICY_BYTES, owner_uid=owner_uid)


def remove_stale_temps(path: str) -> list[str]:
    """Remove temporary files an interrupted install left next to ``path`` (call under lock)."""
    directory, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(
        r"\." + re.escape(name) + r"(" + re.escape(BACKUP_SUFFIX) + r")?\.tmp-[0-9a-f]{12}"
    )
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for entry in names:
        if not pattern.fullmatch(entry):
            continue
        full = os.path.join(directory, entry)
        try:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and st.st_uid == 0:
                os.unlink(full)
                removed.append(full)
        except OSError:
            continue
    return removed


# -- installing -------------------------------------------------------------------------------
def install(
    changes: list[tuple[str, bytes, bytes | None]],
    *,
    owner_uid: int = 0,
    state_dir: str = DEFAULT_STATE_DIR,
) -> list[str]:
    """Install ``(path, new_bytes, expected_current_bytes_or_None)`` in the order given.

    Returns one line per file installed.  Raises ConcurrentChange (nothing written) when a
    file is not what the change was computed from, InstallError when writing failed (files
    already replaced by this call are put back), UnsafeFileError when a directory on the way
    (the policy's or the state directory) could be changed by someone other than root.
    """
    for path, _new, expected in changes:
        check_policy_dirs((path,), owner_uid=owner_uid)
        try:
            now = read_current(path, owner_uid=owner_uid)
        except rbac.PolicyError as exc:
            raise ConcurrentChange(f"{exc}; nothing was installed") from None
        if now != expected:
            raise ConcurrentChange(
                f"{path} was changed by someone else (without svirt-admin's lock) since this "
                "change was prepared; nothing was installed — run the command again"
            )
    sfd = _open_state_dir(state_dir, owner_uid)
    try:
        return _install(changes, sfd, state_dir)
    finally:
        os.close(sfd)


def _install(changes, sfd: int, state_dir: str) -> list[str]:
    done: list[tuple[str, bytes | None]] = []
    lines = []
    for path, new, old in changes:
        backup = backup_path(path, state_dir)
        try:
            if old is not None:
                name = os.path.basename(backup)
                atomic_write(name, old, mode=BACKUP_MODE, uid=0, gid=0, dir_fd=sfd)
            atomic_write(path, new, mode=INSTALL_MODE, uid=0, gid=0)
        except OSError as exc:
            msg = f"could not install {path}: {exc.strerror or exc}; {path} is unchanged"
            msg += _roll_back(done, state_dir)
            raise InstallError(msg) from None
        done.append((path, old))
        lines.append(
            f"installed {path} (root:root {INSTALL_MODE:04o})"
            + (f"; previous version in {backup}" if old is not None else "")
        )
    return lines


def _roll_back(done: list[tuple[str, bytes | None]], state_dir: str) -> str:
    notes = []
    for path, old in reversed(done):
        try:
            if old is None:
                os.unlink(path)
            else:
                atomic_write(path, old, mode=INSTALL_MODE, uid=0, gid=0)
            notes.append(f"; {path} was put back as it was")
        except OSError as exc:
            notes.append(
                f"; {path} is already the NEW version and could not be put back "
                f"({exc.strerror or exc}): restore it from {backup_path(path, state_dir)}"
            )
    return "".join(notes)
