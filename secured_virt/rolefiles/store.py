"""Holds the RBAC policy in force and swaps it atomically on reload.

The front-end fails closed: if UA/PA cannot be loaded at start, every decision is refused with
the load error (exit code 4).  On reload a bad new file is rejected and the last good policy
stays in force; the error is kept so ``svirt-admin status`` can show it.

Trusted means the whole path, as sudo does for sudoers: besides the file checks on the open
descriptor (``rbac.read_trusted``), every directory above UA and PA must be root-owned and not
writable by group or others (the one holding them not even if sticky).  In a world-writable
directory another user could swap in any root-owned file -- an old backup, say -- and the
watcher would load it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secured_virt.access.operations import CATALOGUE
from secured_virt.fsutil import UnsafeFileError, check_ancestors

if TYPE_CHECKING:
    import rbac


def check_policy_dirs(paths, *, owner_uid: int = 0) -> None:
    """Raise UnsafeFileError (naming the directory and the fix) unless nobody but root could
    have replaced any of ``paths`` or put another file in its place."""
    for path in paths:
        check_ancestors(path, owner_uid=owner_uid, strict_parent=True)


@dataclass(frozen=True, slots=True)
class LoadResult:
    ok: bool
    errors: tuple[str, ...]
    digest: str | None


class PolicyStore:
    def __init__(self, ua_path: str, pa_path: str, *, owner_uid: int = 0, extend=None, defer=False):
        self.ua_path = ua_path
        self.pa_path = pa_path
        self.owner_uid = owner_uid
        #: extend(builder): additions merged with UA/PA at every load (the realms' own files,
        #: secured_virt.tenancy.realmfiles); None: UA/PA alone
        self.extend = extend
        self._lock = threading.Lock()
        self._policy: rbac.RbacPolicy | None = None
        self.error: str | None = None
        self.loaded_at: float | None = None
        #: ``defer``: load at the first use instead (svirsh's direct mode as plain root, whom
        #: no decision asks the role files: list/dominfo/domstate then never load rbac)
        self._deferred = defer
        if not defer:
            self.reload()

    @property
    def policy(self) -> rbac.RbacPolicy | None:
        if self._deferred:
            self._deferred = False
            self.reload()
        return self._policy

    def reload(self) -> LoadResult:
        self._deferred = False
        import rbac  # here, not at the top: a deferred store may never need it (see __init__)

        try:
            check_policy_dirs((self.ua_path, self.pa_path), owner_uid=self.owner_uid)
            new = rbac.load(
                self.ua_path,
                self.pa_path,
                CATALOGUE.names,
                owner_uid=self.owner_uid,
                extend=self.extend,
            )
        except Exception as exc:  # any failure keeps the last good policy in force
            if isinstance(exc, UnsafeFileError):
                msg = f"{exc}; the role files there are not trusted"
            elif isinstance(exc, rbac.PolicyError | OSError):
                msg = str(exc)
            else:  # a loader bug must not take the front-end down; say what happened
                msg = f"{self.ua_path}, {self.pa_path}: cannot load: {type(exc).__name__}: {exc}"
            with self._lock:
                self.error = msg
            return LoadResult(False, (msg,), self._policy.digest if self._policy else None)
        with self._lock:
            self._policy, self.error, self.loaded_at = new, None, time.time()
        return LoadResult(True, (), new.digest)

    def current(self) -> rbac.RbacPolicy:
        """The policy in force; raises PolicyUnavailable when none could ever be loaded."""
        pol = self.policy
        if pol is None:
            raise PolicyUnavailable(self.error or "no RBAC policy loaded")
        return pol


class PolicyUnavailable(Exception):
    """No valid UA/PA policy: everything is denied (fail closed)."""
