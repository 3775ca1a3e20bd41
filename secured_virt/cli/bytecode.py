"""Root's bin/svirsh keeps the byte-code of the client path fresh and readable for users.

A user's svirsh from the source tree (bin/svirsh) reads the byte-code caches root's runs left
there; it can write none itself (the tree is root's).  A cache that is missing, stale, or
readable by root alone makes every user's start compile that module again: client.py and
render.py alone cost ~9 ms a call, which was the whole gap between bin/svirsh and an installed
svirsh (issue 18).  Such caches come from root processes that imported the module under a
strict umask without ``hardening.bytecode_readable_like_source`` (a root shell with umask 077,
an in-process test, a daemon started some other way), and once written they stay until the
source changes.  So each root run of bin/svirsh checks the few modules a user's svirsh
loads (``CLIENT_PATH``) and compiles or re-shares only what needs it.

Safety: only regular files and directories owned by this (root) process, reached without
following symbolic links, are changed, and only to the read bits their source has (a .pyc
holds nothing its source does not show); a cache directory writable by others is left alone.
Nothing here can fail the command: a cache that cannot be fixed is only slower.
"""

from __future__ import annotations

import os
import stat

#: the tree's modules a user's ``svirsh`` loads talking to svirtd (relative to the tree);
#: tests/daemon/test_client_startup.py checks this against what the client really imports
CLIENT_PATH = (
    "secured_virt/__init__.py",
    "secured_virt/requests.py",
    "secured_virt/sizes.py",
    "secured_virt/hardening.py",
    "secured_virt/client.py",
    "secured_virt/cli/__init__.py",
    "secured_virt/cli/svirsh.py",
    "secured_virt/cli/commands.py",
    "secured_virt/cli/render.py",
)


def _fresh(fd: int, st_src: os.stat_result, magic: bytes) -> bool:
    """Does the cache's header match the source (timestamp-based .pyc, PEP 552)?"""
    head = os.read(fd, 16)
    if len(head) < 16 or head[:4] != magic:
        return False
    flags = int.from_bytes(head[4:8], "little")
    if flags:  # hash-based: whoever chose that checks it; nothing to judge here
        return True
    mtime = int.from_bytes(head[8:12], "little")
    size = int.from_bytes(head[12:16], "little")
    return mtime == int(st_src.st_mtime) & 0xFFFFFFFF and size == st_src.st_size & 0xFFFFFFFF


def _share_dir(cache: str, package_mode: int) -> bool:
    """Give ``cache`` (a __pycache__ root made) the package directory's r-x; False when it is
    not ours to touch (a link, someone else's, writable by others)."""
    try:
        st = os.lstat(cache)
    except FileNotFoundError:
        return True  # py_compile creates it under the launcher's umask 022
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return False
    share = package_mode & 0o055
    if st.st_mode & 0o055 != share:
        os.chmod(cache, (st.st_mode & 0o700) | share, follow_symlinks=False)
    return True


def refresh(root: str) -> list[str]:
    """Compile or re-share the client path's caches under ``root``; returns what it fixed."""
    from importlib import _bootstrap_external as bx  # frozen, already loaded: free

    fixed = []
    for rel in CLIENT_PATH:
        src = os.path.join(root, rel)
        try:
            st_src = os.stat(src)
            pyc = bx.cache_from_source(src)
            cache = os.path.dirname(pyc)
            if not _share_dir(cache, os.stat(os.path.dirname(src)).st_mode):
                continue
            want = stat.S_IMODE(st_src.st_mode) & 0o644
            try:
                fd = os.open(pyc, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                        continue
                    if _fresh(fd, st_src, bx.MAGIC_NUMBER):
                        if stat.S_IMODE(st.st_mode) != want:
                            os.fchmod(fd, want)
                            fixed.append(rel)
                        continue
                finally:
                    os.close(fd)
            import py_compile  # only when a cache is missing or stale

            # written by rename under the launcher's umask 022, with the source's mode
            py_compile.compile(src, cfile=pyc, doraise=True)
            fixed.append(rel)
        except Exception:  # noqa: S112 - a cache we cannot fix is only slower, never fatal
            continue
    return fixed
