"""Read a file that grants authority only if nobody but its owner could have written it.

The UA/PA files decide who may run what as root, so — like sudo with sudoers — we refuse to
read them unless they are regular files owned by root and writable by nobody else.  The checks
run on the *open descriptor* (``os.fstat``), never on the path, so the file cannot be swapped
between check and read; ``O_NOFOLLOW`` refuses a symlink in the last component and
``O_NONBLOCK`` keeps a FIFO planted at the path from hanging us.  Messages say what is wrong
and the command that fixes it, e.g.::

    /etc/secured-virt/pa.xml is group writable (mode 0664); run: chmod 0644 /etc/secured-virt/pa.xml

The front-end reuses :func:`read_trusted` for its other root-trusted files.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import UntrustedFileError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


def _owner_name(uid: int) -> str:
    """A name for chown: 'root' for 0, else the number (no NSS lookups needed)."""
    return "root" if uid == 0 else str(uid)


def _open_error(path: str, exc: OSError) -> UntrustedFileError:
    if exc.errno == errno.ELOOP:
        msg = (
            f"{path} is a symbolic link; trusted files must be regular files: "
            f"replace the link with the file it points to"
        )
    elif exc.errno == errno.ENOENT:
        msg = f"{path} does not exist; create it (owned by root, mode 0644)"
    elif exc.errno == errno.EACCES:
        msg = f"{path} cannot be read (permission denied); run this as root"
    else:
        msg = f"{path} cannot be opened: {exc.strerror}"
    return UntrustedFileError(msg, path)


def check_trusted_stat(path: str, st: os.stat_result, *, max_size: int, owner_uid: int = 0):
    """Raise UntrustedFileError unless ``st`` (from fstat) describes a trustworthy file."""
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise UntrustedFileError(
            f"{path} is {kind}, not a regular file; put the policy in a regular file", path
        )
    if st.st_uid != owner_uid:
        who = _owner_name(owner_uid)
        raise UntrustedFileError(
            f"{path} is owned by uid {st.st_uid}, should be {owner_uid}; run: chown {who} {path}",
            path,
        )
    perms = stat.S_IMODE(mode)
    fixed = perms & ~0o022
    if perms & 0o002:
        raise UntrustedFileError(
            f"{path} is world writable (mode {perms:04o}); run: chmod {fixed:04o} {path}", path
        )
    if perms & 0o020:
        raise UntrustedFileError(
            f"{path} is group writable (mode {perms:04o}); run: chmod {fixed:04o} {path}", path
        )
    if st.st_size > max_size:
        raise UntrustedFileError(
            f"{path} is {st.st_size} bytes, more than the limit of {max_size} bytes", path
        )


def read_trusted(path: str | os.PathLike, *, max_size: int, owner_uid: int = 0) -> bytes:
    """Return the bytes of ``path`` after checking, on the open descriptor, that it is trusted.

    Trusted means: a regular file (not a symlink, FIFO, device or directory), owned by
    ``owner_uid`` (root unless a test says otherwise), not group- or world-writable, and at most
    ``max_size`` bytes.  Raises :class:`rbac.UntrustedFileError` (a ``PolicyError``) otherwise.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        st = os.fstat(fd)
        check_trusted_stat(path, st, max_size=max_size, owner_uid=owner_uid)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise UntrustedFileError(
                    f"{path} grew beyond the limit of {max_size} bytes while being read", path
                )
        return b"".join(chunks)
    finally:
        os.close(fd)
