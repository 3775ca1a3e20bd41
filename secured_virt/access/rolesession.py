"""The roles a user has active in one login session — what dynamic separation of duty limits.

NIST DSD says a user may hold conflicting roles but not have them *active in one session*.
svirsh is one process per command, so a session is not a process here: it is the user's login
session, pinned the way the credential cache pins it (terminal + session leader, or the parent
process for scripts; see :mod:`secured_virt.access.credcache`).  A role becomes active in that
session when a request is allowed through it and stays active until ``role_session_minutes`` pass
without it being used, or until ``svirsh -k`` ends the session's roles (NIST DropActiveRole).
(The last use of a role already active is recorded at most once a minute.)

So with ``<DynamicSeparation>`` over PolicyAdmin and HostOSManager, erin may edit the policy, and
may run the host, but not both from one login session within the window: the second role is
refused with the set named and what to do.

Only users who could break a DSD set at all (their authorized roles include ``cardinality``
roles of some set) are tracked; everyone else costs nothing.  If the session cannot be
pinned down or the store is unsafe, a tracked user's request is refused: enforcement that
cannot remember is not enforcement.
"""

from __future__ import annotations

import fcntl
import os

from .credcache import (
    CredCacheError,
    SessionFiles,
    SessionKey,
    _boot_id,
    _now,
    session_key,
)

__all__ = ["ActiveRoles", "RoleSessionError"]


class RoleSessionError(Exception):
    """The caller's login session cannot be identified or its roles cannot be read/recorded."""


class ActiveRoles(SessionFiles):
    """Per-uid, per-login-session set of recently used roles (``roles-<uid>`` in auth_dir)."""

    prefix = "roles-"
    what = "role session store"

    @classmethod
    def from_config(cls, config) -> ActiveRoles:
        return cls(config.auth_dir, config.role_session_minutes)

    def _key(self, identity) -> SessionKey:
        key = session_key(identity)
        if key is None:
            raise RoleSessionError(
                "the login session of this request cannot be identified (no terminal session "
                "or parent process)"
            )
        return key

    def _dir(self) -> int:
        try:
            return self._open_dir()
        except CredCacheError as exc:
            raise RoleSessionError(str(exc)) from None

    def _live(self, rec: dict, boot: str, now: float) -> dict[str, float]:
        """The record's roles used within the window (none from an earlier boot)."""
        if rec.get("boot_id") != boot:
            return {}
        roles = rec.get("roles")
        if not isinstance(roles, dict):
            return {}
        return {
            r: ts
            for r, ts in roles.items()
            if isinstance(r, str) and isinstance(ts, int | float) and 0 <= now - ts <= self.timeout
        }

    def active(self, identity, user: str) -> dict[str, float]:
        """Role -> when ``user`` last used it (CLOCK_BOOTTIME seconds) in the caller's session.
        ``user`` is the policy user: root acting --as several users keeps them apart."""
        key = self._key(identity)
        dfd = self._dir()
        try:
            records = self._load(dfd, identity.uid)
        finally:
            os.close(dfd)
        boot, now = _boot_id(), _now()
        out: dict[str, float] = {}
        for rec in records:
            if rec.get("session") == key.as_dict() and rec.get("user") == user:
                out.update(self._live(rec, boot, now))
        return out

    def age_minutes(self, last_used: float) -> float:
        return max(0.0, (_now() - last_used) / 60.0)

    def due_for_refresh(self, last_used: float) -> bool:
        """Rewrite the record of a role already active only when its last use is older than a
        tenth of the window (at most a minute): a burst of requests costs one write, and a role
        still leaves the session no later than a minute after the window says."""
        return _now() - last_used >= min(60.0, self.timeout / 10)

    def activate(self, identity, user: str, role: str, admissible=None) -> None:
        """Mark ``role`` used by ``user`` now in the caller's session; drop stale records.

        ``admissible(active_roles)`` is asked again under the store's lock, with the roles
        active at this moment plus ``role``: a concurrent request of the same session may have
        activated a conflicting role since this one was checked.  If it says no, nothing is
        recorded and RoleSessionError says so.
        """
        key = self._key(identity)
        dfd = self._dir()
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
            boot, now = _boot_id(), _now()
            mine: dict[str, float] = {}
            keep = []
            for rec in self._load(dfd, identity.uid):
                if rec.get("session") == key.as_dict() and rec.get("user") == user:
                    mine.update(self._live(rec, boot, now))
                elif self._live(rec, boot, now):  # another session's, still in its window
                    keep.append(rec)
            if admissible is not None and role not in mine:
                why = admissible(frozenset(mine) | {role})
                if why:
                    raise RoleSessionError(
                        f"meanwhile another request of this login session activated "
                        f"{', '.join(sorted(mine))}: {why}"
                    )
            mine[role] = now
            keep.append({"session": key.as_dict(), "boot_id": boot, "user": user, "roles": mine})
            try:
                self._store(dfd, identity.uid, keep)
            except OSError as exc:
                raise RoleSessionError(f"could not record the active role: {exc}") from None
        finally:
            os.close(dfd)
