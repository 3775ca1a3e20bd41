"""Filesystem primitives for code that runs as root on behalf of other users.

Four jobs, the first three done the way sudo does it for sudoers and its timestamp directory:

* ``read_trusted_file`` — read a file root depends on (the config, the label store) only if the
  *open descriptor* is a regular file owned by the expected uid and writable by nobody else
  (delegates to ``rbac.read_trusted``, which does the same for UA/PA).
* ``atomic_write`` — replace a file so that a crash leaves the old or the new content, never
  half: a temporary file in the same directory, fsync, rename, fsync of the directory.
* ``open_secure_dir`` / ``ensure_secure_dir`` — a state directory (credential cache, audit log,
  users' save images) must be root's alone: the directory itself is opened with O_NOFOLLOW and
  checked on the fd, and every ancestor must be owned by root (or the expected owner) and not
  writable by others unless sticky, so nobody but root could have swapped a path component.
  ``check_entry`` then refuses an entry in it that is a symlink, not a regular file, owned by
  someone else or hard-linked — what a file that root writes or reads by path must not be.
* ``HostLock`` — one holder at a time on the whole host: among this process's threads and
  every other process (svirtd's threads, root's direct svirsh), for a check-then-act that must
  not interleave with another one anywhere (a realm's quota).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading

__all__ = [
    "HostLock",
    "UnsafeFileError",
    "atomic_write",
    "check_ancestors",
    "check_entry",
    "ensure_secure_dir",
    "open_secure_dir",
    "read_trusted_file",
]


class UnsafeFileError(Exception):
    """A file or directory failed an ownership/permission/type check; the caller must not use it.

    ``path`` names what was refused; ``str(exc)`` says why and what to do.
    """

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def read_trusted_file(path: str, *, max_size: int, owner_uid: int = 0) -> bytes:
    """Read ``path`` if the open file is regular, owned by ``owner_uid``, not group/world-writable.

    The checks are ``rbac.read_trusted``'s (one implementation for UA/PA, the config and the
    label store: O_NOFOLLOW, O_NONBLOCK against planted FIFOs, fstat on the fd, size limit).
    This wrapper only keeps the front-end's contract: FileNotFoundError when the file does not
    exist (callers may fall back to defaults), UnsafeFileError for everything else.
    """
    from rbac.errors import UntrustedFileError
    from rbac.trusted_file import read_trusted

    try:
        return read_trusted(path, max_size=max_size, owner_uid=owner_uid)
    except UntrustedFileError as exc:
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
        raise UnsafeFileError(path, str(exc)) from None


def check_ancestors(path: str, *, owner_uid: int = 0, strict_parent: bool = False) -> None:
    """Every directory above ``path`` must be owned by root (or owner_uid) and not writable by
    group/others unless it is sticky (like /tmp).  Otherwise someone else could rename a component
    and point us at their own files.  Symlinks among the ancestors are resolved first; the
    resolved components are what gets checked.

    ``strict_parent``: the directory holding ``path`` may not be group/world-writable even if
    sticky -- for files whose *siblings* matter (a policy file: nobody may even add a name
    next to it), the way sudo wants the sudoers directory.
    """
    comp = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    parent = comp
    while True:
        try:
            st = os.stat(comp)
        except FileNotFoundError:  # not created yet: we will create it, as root, 0755
            comp = os.path.dirname(comp)
            continue
        if st.st_uid not in (0, owner_uid):
            raise UnsafeFileError(
                path,
                f"{path}: directory {comp} is owned by uid {st.st_uid}; every directory above "
                f"it must be owned by root",
            )
        sticky_ok = st.st_mode & stat.S_ISVTX and not (strict_parent and comp == parent)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_ok:
            raise UnsafeFileError(
                path,
                f"{path}: directory {comp} is writable by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); fix with: chmod go-w {comp}",
            )
        if comp == "/":
            return
        comp = os.path.dirname(comp)


def check_entry(dir_fd: int, name: str, *, where: str, owner_uid: int = 0):
    """The ``os.stat_result`` of entry ``name`` in the directory ``dir_fd`` (not following a
    symlink), None when there is none; UnsafeFileError when root must not open it by path.

    For files that something else (libvirt, QEMU) opens by path on root's behalf: together
    with a directory from ``open_secure_dir`` nobody else can change the entry between this
    check and that open.  ``where`` is the full path, for messages."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} must be a plain file name")
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif st.st_uid != owner_uid:
        problem = f"is owned by uid {st.st_uid}, not {owner_uid}"
    elif st.st_nlink != 1:
        problem = f"has {st.st_nlink} hard links"
    if problem:
        raise UnsafeFileError(
            where,
            f"{where} {problem}; refusing to open it as root (an administrator must remove it)",
        )
    return st


def _makedirs(path: str, mode: int) -> None:
    """Create path and missing parents; parents get 0755, the leaf exactly ``mode``."""
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        _makedirs(parent, 0o755)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    os.chmod(path, mode, follow_symlinks=False)  # mkdir is subject to the umask


def open_secure_dir(
    path: str,
    mode: int = 0o700,
    *,
    owner_uid: int = 0,
    create: bool = True,
    create_mode: int | None = None,
) -> int:
    """Open ``path`` as a directory fd after checking it is safe; create it if missing (with
    ``create_mode``, default ``mode``).

    Safe means: not a symlink (O_NOFOLLOW), a directory, owned by ``owner_uid``, permission bits
    a subset of ``mode`` (so a 0700 directory may not be 0750, a 0750 one may be 0700), and its
    ancestors pass ``check_ancestors``.  The caller owns (and must close) the returned fd and
    should do all further work relative to it (``dir_fd=``).
    """
    path = os.path.abspath(path)
    check_ancestors(path, owner_uid=owner_uid)
    if create and not os.path.lexists(path):
        _makedirs(path, mode if create_mode is None else create_mode)
        if os.geteuid() == 0 and owner_uid != 0:
            os.chown(path, owner_uid, -1, follow_symlinks=False)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFileError(
                path, f"{path} is a symbolic link or not a directory; refusing to use it"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != owner_uid:
            raise UnsafeFileError(
                path,
                f"{path} is owned by uid {st.st_uid}, should be {owner_uid}; refusing to use it "
                f"(fix with: chown {owner_uid} {path})",
            )
        extra = stat.S_IMODE(st.st_mode) & ~mode
        if extra:
            raise UnsafeFileError(
                path,
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, which grants more than "
                f"{mode:04o}; refusing to use it (fix with: chmod {mode:04o} {path})",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_secure_dir(
    path: str, mode: int = 0o700, *, owner_uid: int = 0, create: bool = True
) -> None:
    """``open_secure_dir`` for callers that only need the check (and creation)."""
    os.close(open_secure_dir(path, mode, owner_uid=owner_uid, create=create))


def atomic_write(
    path: str,
    data: bytes | str,
    *,
    mode: int = 0o600,
    uid: int | None = 0,
    gid: int | None = 0,
    dir_fd: int | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The temporary file is created O_EXCL|O_NOFOLLOW next to the target (rename is only atomic
    within one filesystem), gets its owner and mode on the fd before any data is visible under
    the final name, is fsynced, renamed over the target, and the directory is fsynced so the
    rename itself survives a crash.  ``uid``/``gid`` None leaves them as created.  With
    ``dir_fd`` the ``path`` is a plain name inside that already-checked directory.
    ``durable=False`` skips both fsyncs (still atomic: a reader sees the old or the new file)
    for state that is rebuilt from the truth after a crash anyway.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if dir_fd is None:
        directory, name = os.path.split(os.path.abspath(path))
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        if "/" in path:
            raise ValueError(f"with dir_fd, {path!r} must be a plain file name")
        name, dfd = path, dir_fd
    import secrets  # here: hmac, random and base64 are not worth loading for every reader

    tmp = f".{name}.tmp-{secrets.token_hex(6)}"
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        if durable:
            os.fsync(dfd)
    finally:
        if dir_fd is None:
            os.close(dfd)


class HostLock:
    """A lock held across threads *and* processes: a thread lock, then ``flock`` on ``path``.

    A thread lock alone is per process, and svirtd runs beside root's direct svirsh (and any
    other process that checks the same thing); an flock alone does not exclude two threads of
    one process that share the descriptor.  The lock file is opened afresh on every
    acquisition (0600, O_NOFOLLOW, its directory created 0700 if missing), so no descriptor is
    ever inherited across a fork: an flock taken through an open file description shared with
    another process would not exclude that process.  Not re-entrant."""

    __slots__ = ("_fd", "_thread", "path")

    def __init__(self, path: str):
        self.path = path
        self._thread = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> HostLock:
        self._thread.acquire()
        try:
            _makedirs(os.path.dirname(self.path), 0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            self._thread.release()
            raise OSError(
                exc.errno,
                f"cannot open the lock file {self.path}: {exc.strerror} (it must be a regular "
                "file in a directory root can write)",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            self._thread.release()
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)  # releases the flock
        finally:
            self._thread.release()
