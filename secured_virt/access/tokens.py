"""Session tokens for remote front-ends (the Xen-API, the web console), kept in svirtd's memory.

Why here and why like this:

* A remote front-end runs as an unprivileged user and must never be able to act as someone
  who did not log in through it.  So the front-end holds nothing that names a user: svirtd
  checks the password with PAM, issues a random token (256 bits, ``secrets``), and later maps
  a token back to the user.  A compromised front-end can replay only the tokens it was handed,
  i.e. act only for users who logged in while it was compromised, and only until their tokens
  expire or they log out.
* Tokens live only in this process's memory (svirtd's): a restart logs everyone out, which is
  what Xen-API clients expect (``SESSION_INVALID`` then a new login).  Nothing touches disk, so
  there is no file to steal or to forge.  The table is keyed by ``sha256(token)``, so even a
  memory dump of the table alone does not yield usable tokens, and the public id written to
  the audit log (the first 16 hex digits of that hash) cannot be turned back into a token.
* Every token is bound to the front-end (``via``) it was issued to: a token the Xen-API got is
  refused when the web console's user presents it.
* Expiry is both idle (since last use) and absolute (since login), on the monotonic clock.
* Failed logins are counted per user and per client address in a sliding window
  (:class:`LoginThrottle`); beyond the limit a login is refused *before* PAM is asked, so a
  flood costs neither PAM's time nor the account's lockout budget elsewhere.
* The session's account (uid, gid, name, groups as NSS gives them) is kept in its record for
  ``ACCOUNT_SECONDS``, the same short time group roles are cached for (``rbac.groups``): a
  request then costs no ``getpwnam``/``getgrouplist`` (they read /etc/group or ask a directory,
  and were a fifth of svirtd's time per Xen-API call), and a membership change or a removed
  account is still seen within seconds, as it is for svirsh users.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from rbac.groups import DEFAULT_TTL

from .identity import Identity

__all__ = [
    "ACCOUNT_SECONDS",
    "Account",
    "LoginThrottle",
    "RemoteIdentity",
    "SessionRecord",
    "TokenStore",
    "public_id",
]

TOKEN_BYTES = 32  # 256 bits
#: seconds a session's account (uid, gid, name, groups) is reused before NSS is asked again:
#: the group-role cache's time, so a session sees a membership change when svirsh would
ACCOUNT_SECONDS = DEFAULT_TTL
#: what a token looks like (secrets.token_urlsafe): anything else is refused unlooked-at
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class RemoteIdentity(Identity):
    """A user acting through a remote front-end's session.

    ``pid`` is the front-end process (SO_PEERCRED of its svirtd connection); ``peer`` is the
    client address the front-end reported (svirtd cannot check it, so it is recorded, never
    trusted for a decision); ``session`` is the public session id for the audit log.  No tty,
    session leader or parent process: the credential cache and DSD role sessions cannot pin a
    login session for it, so they fail closed (see docs/protocol.md)."""

    peer: str | None = None
    session: str | None = None


def public_id(token: str) -> str:
    """The id of a session that may be shown and logged: it does not reveal the token."""
    return _digest(token)[:16]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Account:
    """Who a session's user is per NSS, as last looked up: uid, primary gid, name, groups."""

    uid: int
    gid: int
    user: str
    groups: tuple[int, ...]


@dataclass(slots=True)
class SessionRecord:
    user: str
    uid: int
    via: str
    created: float
    last_used: float
    peer: str | None
    sid: str  # public id
    #: (until when it may be reused, the account as last looked up): one attribute, so a
    #: thread never pairs one lookup's account with another's deadline (TokenStore.account)
    account: tuple[float, Account] | None = None


class TokenStore:
    """The live sessions: issue, look up (touching the idle clock), drop; thread-safe."""

    def __init__(
        self,
        *,
        idle_seconds: float,
        max_seconds: float,
        max_per_user: int,
        max_total: int,
        account_seconds: float = ACCOUNT_SECONDS,
        clock=time.monotonic,
    ):
        self.idle_seconds = float(idle_seconds)
        self.account_seconds = float(account_seconds)
        self.max_seconds = float(max_seconds)
        self.max_per_user = int(max_per_user)
        self.max_total = int(max_total)
        self.clock = clock
        self._lock = threading.Lock()
        # digest -> record, in least-recently-used order (oldest first)
        self._live: OrderedDict[str, SessionRecord] = OrderedDict()
        self._per_user: dict[str, int] = {}

    @classmethod
    def from_config(cls, config) -> TokenStore:
        return cls(
            idle_seconds=config.session_idle_minutes * 60,
            max_seconds=config.session_max_minutes * 60,
            max_per_user=config.session_max_per_user,
            max_total=config.session_max_total,
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)

    # -- issuing --------------------------------------------------------------------------------
    def issue(self, user: str, uid: int, via: str, peer: str | None) -> tuple[str, SessionRecord]:
        """A new token for ``user`` (already authenticated).  Raises OverflowError when the
        table is full of live sessions; a user over ``max_per_user`` loses their least
        recently used session instead (clients that never log out must not lock themselves
        out, and nobody else's sessions are touched)."""
        now = self.clock()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        digest = _digest(token)
        rec = SessionRecord(user, uid, via, now, now, peer, digest[:16])
        with self._lock:
            self._sweep(now)
            if self._per_user.get(user, 0) >= self.max_per_user:
                oldest = next(d for d, r in self._live.items() if r.user == user)
                self._drop(oldest)
            if len(self._live) >= self.max_total:
                raise OverflowError(
                    f"{len(self._live)} sessions are open, the most svirtd keeps "
                    "(session_max_total); try again later"
                )
            self._live[digest] = rec
            self._per_user[user] = self._per_user.get(user, 0) + 1
        return token, rec

    # -- using ----------------------------------------------------------------------------------
    def use(self, token: object, via: str) -> tuple[SessionRecord | None, str]:
        """(record, "") for a valid token of front-end ``via`` (its idle clock restarts), else
        (None, why).  ``why`` is for the audit log and the front-end's log, not for clients:
        it says "expired" only to someone who holds the token."""
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            return None, "not a session token"
        digest = _digest(token)
        now = self.clock()
        with self._lock:
            rec = self._live.get(digest)
            if rec is None:
                return None, "unknown session (never issued, logged out, or svirtd restarted)"
            if rec.via != via:
                return None, f"the session belongs to the '{rec.via}' front-end, not '{via}'"
            why = self._expired(rec, now)
            if why:
                self._drop(digest)
                return None, why
            rec.last_used = now
            self._live.move_to_end(digest)
            return rec, ""

    def drop(self, token: object, via: str) -> SessionRecord | None:
        """Log out: the token is invalid from this moment on.  Returns the record if it was
        a live session of front-end ``via``."""
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            return None
        digest = _digest(token)
        with self._lock:
            rec = self._live.get(digest)
            if rec is None or rec.via != via:
                return None
            self._drop(digest)
            return rec

    def account(self, rec: SessionRecord) -> Account | None:
        """The session's account if it was looked up less than ``account_seconds`` ago,
        else None (the caller asks NSS and hands the answer to ``keep_account``)."""
        kept = rec.account
        if kept is not None and self.clock() < kept[0]:
            return kept[1]
        return None

    def keep_account(self, rec: SessionRecord, account: Account) -> None:
        """Remember ``account`` for the session for ``account_seconds``."""
        rec.account = (self.clock() + self.account_seconds, account)

    def expires_in(self, rec: SessionRecord) -> dict[str, float]:
        now = self.clock()
        return {
            "idle_s": round(max(0.0, rec.last_used + self.idle_seconds - now), 1),
            "absolute_s": round(max(0.0, rec.created + self.max_seconds - now), 1),
        }

    # -- internals (under the lock) -------------------------------------------------------------
    def _expired(self, rec: SessionRecord, now: float) -> str:
        if now - rec.created >= self.max_seconds:
            return f"session expired: older than {self.max_seconds / 60:g} minutes"
        if now - rec.last_used >= self.idle_seconds:
            return f"session expired: unused for {self.idle_seconds / 60:g} minutes"
        return ""

    def _drop(self, digest: str) -> None:
        rec = self._live.pop(digest, None)
        if rec is None:
            return
        left = self._per_user.get(rec.user, 1) - 1
        if left > 0:
            self._per_user[rec.user] = left
        else:
            self._per_user.pop(rec.user, None)

    def _sweep(self, now: float) -> None:
        """Drop expired sessions; least recently used first, so stop at the first live one
        that is also young enough (older ones by login may hide behind it: bounded work)."""
        for digest, rec in list(self._live.items()):
            if self._expired(rec, now):
                self._drop(digest)
            elif now - rec.last_used < self.idle_seconds / 2:
                break


class LoginThrottle:
    """Failed logins per key (``user:NAME`` / ``addr:HOST``) in a sliding window.

    ``refusal(user, addr)`` says why a login must be refused without asking PAM, or None;
    ``failed`` counts a failure for both keys; ``succeeded`` forgets the user's failures (the
    address keeps its count: one address guessing many accounts stays throttled).  At most
    ``max_keys`` keys are remembered (the oldest are forgotten), so a flood of made-up names
    cannot grow svirtd's memory without bound."""

    def __init__(
        self,
        *,
        per_user: int,
        per_address: int,
        window_seconds: float,
        max_keys: int = 100_000,
        clock=time.monotonic,
    ):
        self.per_user = int(per_user)
        self.per_address = int(per_address)
        self.window = float(window_seconds)
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    @classmethod
    def from_config(cls, config) -> LoginThrottle:
        return cls(
            per_user=config.login_max_failures_user,
            per_address=config.login_max_failures_address,
            window_seconds=config.login_failure_window_minutes * 60,
        )

    def refusal(self, user: str, addr: str | None) -> tuple[str, float] | None:
        """(why, retry after seconds) when this login must not reach PAM, else None."""
        now = self.clock()
        with self._lock:
            for key, limit, what in (
                (f"user:{user}", self.per_user, f"user '{user}'"),
                (f"addr:{_host(addr)}", self.per_address, f"address {_host(addr)}"),
            ):
                q = self._recent(key, now)
                if q is not None and len(q) >= limit:
                    retry = max(1.0, q[0] + self.window - now)
                    return (
                        f"too many failed logins for {what} ({len(q)} within "
                        f"{self.window / 60:g} minutes); try again in {retry:.0f} s",
                        retry,
                    )
        return None

    def failed(self, user: str, addr: str | None) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"user:{user}", f"addr:{_host(addr)}"):
                q = self._recent(key, now)
                if q is None:
                    q = self._fails[key] = deque()
                q.append(now)
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(f"user:{user}", None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and now - q[0] >= self.window:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q


def _host(addr: str | None) -> str:
    """The host part of ``host:port`` / ``[v6]:port`` (the port changes with every
    connection, so counting per port would count nothing)."""
    if not addr:
        return "unknown"
    if addr.startswith("["):
        return addr[1:].partition("]")[0] or "unknown"
    host, sep, port = addr.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host
    return addr
