"""Unix group membership through NSS, for roles the UA file assigns to a group.

Why resolve at decision time: a group lives in /etc/group, LDAP or SSSD, not in the UA file,
and root expects ``gpasswd -a bob webops`` (or a change in the directory) to take effect
without reloading anything.  Why a cache: ``os.getgrouplist`` walks every NSS source (a file
read, maybe a directory query) and costs tens of microseconds; a decision must not.  So the
answers are kept for ``ttl`` seconds (default 5): a membership change is seen within that time.

Why ``os.getgrouplist`` and not ``grp.getgrnam(g).gr_mem``: ``gr_mem`` lists only explicit
members; a user whose *primary* group it is (``passwd.pw_gid``) is not listed there, and
directory back ends may list members another way.  ``getgrouplist(user, pw_gid)`` is what
``initgroups`` (login) uses, so it gives the groups ``id USER`` shows.

A group that cannot be resolved (no such group anywhere NSS looks) grants nothing; the
resolver remembers why, so ``--explain`` can say it.  A user that NSS does not know is in no
group.  The process's own supplementary groups (``os.getgroups``) are never used: they are
fixed at login and would not follow a change.

Only operating-system concepts here: users and groups by name.  Nothing about VMs.
"""

from __future__ import annotations

import grp
import os
import pwd
import time
import weakref
from collections.abc import Callable, Iterable

#: seconds a membership answer is reused
DEFAULT_TTL = 5.0
#: beyond this many cached users the cache starts afresh (bounded memory under many callers)
_MAX_ENTRIES = 20000


class GroupResolver:
    """Who is in which group, per NSS, cached for ``ttl`` seconds.

    Thread-safe under the GIL: every cache update is one dict item assignment of an
    immutable tuple.
    """

    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = float(ttl)
        self._clock = clock
        self._users: dict[str, tuple[float, frozenset[int] | None]] = {}
        self._groups: dict[str, tuple[float, int | None, str]] = {}
        #: who keeps answers derived from ours (the C index of a policy): told on forget()
        self._subscribers: list[weakref.WeakMethod] = []

    def forget(self) -> None:
        """Drop every cached answer (the next question asks NSS again), and make those who
        keep answers derived from them (see :meth:`subscribe`) drop theirs."""
        self._users = {}
        self._groups = {}
        live = []
        for ref in self._subscribers:
            callback = ref()
            if callback is not None:
                callback()
                live.append(ref)
        self._subscribers = live

    def subscribe(self, callback: weakref.WeakMethod) -> None:
        """Call ``callback()`` (a weak method: a dropped policy is not kept alive) whenever
        :meth:`forget` runs.  Answers :meth:`membership` gave stay valid until the instant it
        returned, unless forgotten."""
        self._subscribers = [r for r in self._subscribers if r() is not None] + [callback]

    # -- NSS, cached ---------------------------------------------------------------------------
    def gids_of(self, user: str) -> frozenset[int] | None:
        """The gids of ``user`` (primary and supplementary), or None if NSS does not know them."""
        return self._user(user)[1]

    def _user(self, user: str) -> tuple[float, frozenset[int] | None]:
        """(until when the answer stands, the gids of ``user`` or None)."""
        now = self._clock()
        hit = self._users.get(user)
        if hit is not None and hit[0] > now:
            return hit
        gids: frozenset[int] | None
        try:
            pw = pwd.getpwnam(user)
            gids = frozenset(os.getgrouplist(user, pw.pw_gid))
        except (KeyError, OSError, ValueError, UnicodeError):
            gids = None
        if len(self._users) > _MAX_ENTRIES:
            self._users = {}
        entry = self._users[user] = (now + self.ttl, gids)
        return entry

    def gid_of(self, group: str) -> int | None:
        """The gid of ``group``, or None if it cannot be resolved (see :meth:`why_unresolved`)."""
        return self._group(group)[1]

    def why_unresolved(self, group: str) -> str | None:
        """Why ``group`` cannot be resolved, in words; None when it can."""
        entry = self._group(group)
        return None if entry[1] is not None else entry[2]

    def _group(self, group: str) -> tuple[float, int | None, str]:
        now = self._clock()
        hit = self._groups.get(group)
        if hit is not None and hit[0] > now:
            return hit
        try:
            entry = (now + self.ttl, grp.getgrnam(group).gr_gid, "")
        except KeyError:
            entry = (now + self.ttl, None, "no such group in /etc/group or any NSS source")
        except (OSError, ValueError, UnicodeError) as exc:
            entry = (now + self.ttl, None, f"NSS lookup failed: {exc}")
        self._groups[group] = entry
        return entry

    # -- the question the policy asks ----------------------------------------------------------
    def member_of(self, user: str, groups: Iterable[str]) -> frozenset[str]:
        """Those of ``groups`` that ``user`` belongs to now (unresolvable ones: never)."""
        return self.membership(user, groups)[0]

    def membership(self, user: str, groups: Iterable[str]) -> tuple[frozenset[str], float]:
        """:meth:`member_of`, and the clock reading until which that answer stands: the
        earliest expiry of the cached entries it was made of.  Whoever keeps the answer
        (the policy's C index) must ask again from then on, so a membership change is seen
        exactly when this cache would see it."""
        until, gids = self._user(user)
        if not gids:
            return frozenset(), until
        out = []
        for g in groups:
            expires, gid, _why = self._group(g)
            until = min(until, expires)
            if gid is not None and gid in gids:
                out.append(g)
        return frozenset(out), until


#: the process-wide resolver policies share unless given their own (a reload keeps the cache)
RESOLVER = GroupResolver()
