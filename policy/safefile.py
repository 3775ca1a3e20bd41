"""Crash-safe writes and trust-checked reads of the XSM state files.

Why: the state directory decides which mandatory policy a root daemon enforces.  A crash must
leave the old file or the new one, never half of one (temp file in the same directory, fsync,
rename, fsync the directory); and a file that someone else could have written (wrong owner,
group/world-writable, not a regular file, a symlink) must not be trusted.  Checks are made on
the open file descriptor, so the file cannot be swapped between check and read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from .errors import Xserr, XsmError


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (same-directory temp file, fsync, rename)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def atomic_remove(path: str | os.PathLike) -> bool:
    """Remove ``path`` if present and make the removal durable; True if it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(os.path.dirname(os.fspath(path)) or ".")
    return True


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def check_trusted_dir(path: str | os.PathLike) -> None:
    """Refuse a state directory that is a symlink, foreign-owned or group/world-writable."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise XsmError(Xserr.FILE_ERROR, f"{path} is not a directory")
    if not _trusted_owner(st.st_uid) or st.st_mode & 0o022:
        raise XsmError(
            Xserr.FILE_ERROR,
            f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}; a "
            "policy state directory must belong to root (or this user) and not be writable by "
            f"group or others (chown root {path}; chmod go-w {path})",
        )


def read_trusted(path: str | os.PathLike, max_bytes: int) -> bytes:
    """Read a state file only if it is a regular file we own that nobody else can write."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise XsmError(Xserr.FILE_ERROR, f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise XsmError(Xserr.FILE_ERROR, f"{path} is not a regular file")
        if not _trusted_owner(st.st_uid) or st.st_mode & 0o022:
            raise XsmError(
                Xserr.FILE_ERROR,
                f"{path} is owned by uid {st.st_uid} with mode "
                f"{stat.S_IMODE(st.st_mode):04o}; refusing to trust it (it must belong to root "
                "and not be writable by group or others)",
            )
        if st.st_size > max_bytes:
            raise XsmError(Xserr.FILE_ERROR, f"{path} is larger than {max_bytes} bytes")
        os.set_blocking(fd, True)
        chunks, left = [], max_bytes + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise XsmError(Xserr.FILE_ERROR, f"{path} is larger than {max_bytes} bytes")
        return data
    finally:
        os.close(fd)
