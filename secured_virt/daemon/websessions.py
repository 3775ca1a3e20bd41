"""Sessions for remote front-ends (the Xen-API, the web console), served inside svirtd.

The trust design (issue 16): the network-facing process runs as its own unprivileged system
user and holds no privilege.  It reaches svirtd over the Unix socket like svirsh does, and the
kernel tells svirtd who it is (SO_PEERCRED).  Only a uid named in ``frontends`` may send the
``session_*`` frames, and each such uid has exactly one ``via`` (``xenapi`` or ``web``), chosen
by svirtd from the uid, never by the message.  Then:

* ``session_login {user, password, peer}``: svirtd asks PAM (its own stack, like every other
  password check) and, if PAM agrees, issues a token (access.tokens).  Failed logins are
  throttled per user and per client address before PAM is asked, and every attempt is audited.
* ``session_request {token, request, peer, password?}``: the request runs through the same
  ``Service.handle`` as svirsh's, as the user the token names, with ``via`` and the client
  address in the audit record.  The frame has no user field: svirtd never takes a user name
  from a front-end, so a compromised front-end can act only for users whose valid tokens it
  holds.  ``password`` (optional) answers the PAM prompt of an operation that requires fresh
  authentication (the web console asks its user); without it such operations are refused.
* ``session_console {token, name, peer}``: the console relay of docs/protocol.md as that user.
* ``session_logout {token, peer}``: the token is invalid from that moment on.
* ``session_info {token, peer}``: who the token names and when it expires.

Every answer is an ordinary ``reply`` frame; a refusal is a reply with status 3 and ``check``
``identity`` (not a front-end), ``rate-limit``, ``pam`` or ``session`` (no valid token).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import threading
from typing import Any

from secured_virt.access import pamauth
from secured_virt.access.tokens import Account, LoginThrottle, RemoteIdentity, TokenStore
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Reply, Request

from . import protocol as P

log = logging.getLogger("svirtd")

#: PAM conversations at once (pam_unix sleeps ~2 s after a failure; the rest wait their turn)
PAM_SLOTS = 8
PAM_WAIT = 30.0
_USER_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}")
_PEER_RE = re.compile(r"[0-9A-Za-z.:\[\]%_-]{1,80}")
MAX_TOKEN_CHARS = 256
MAX_PASSWORD_CHARS = 4096


class _NoInteraction:
    """The human behind a front-end cannot be asked anything mid-request; a password given
    with the request answers the first PAM prompt, and that is all.  What can go back before
    the reply is the parts of a streamed list (``rows``)."""

    tty = None

    def __init__(self, password: str | None, session=None):
        self._password = password
        self._session = session
        self.broken: BaseException | None = None
        #: the rows handed to the front-end ahead of the reply so far
        self.sent = 0

    def rows(self, rows: list) -> bool:
        """Send part of a list's rows ahead of its reply (``list`` with ``stream``: the
        Xen-API's get_all_records, so the client parses while svirtd still builds rows).
        False when this conversation cannot carry them (nobody to send to, or broken)."""
        if self._session is None or self.broken is not None:
            return False
        self.sent += len(rows)  # counted before: a failed send may have delivered a part
        try:
            self._session.send({"type": P.ROWS, "rows": rows})
        except OSError as exc:
            self.broken = exc
            return False
        return True

    def ask_password(self, prompt: str) -> str | None:
        password, self._password = self._password, None
        return password

    def progress(self, done: int, total: int) -> None:
        return None


def check_fields(msg: dict[str, Any]) -> None:
    """Type-check a session frame (protocol.decode has checked the field names)."""
    kind = msg["type"]

    def want(field: str, types: tuple[type, ...], what: str, limit: int | None = None) -> None:
        value = msg.get(field)
        if field not in msg or not isinstance(value, types) or isinstance(value, bool):
            raise P.ProtocolError(P.E_BAD_FRAME, f"'{kind}'.{field} must be {what}")
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise P.ProtocolError(P.E_BAD_FRAME, f"'{kind}'.{field} is longer than {limit}")

    if "peer" in msg and not isinstance(msg["peer"], str | type(None)):
        raise P.ProtocolError(P.E_BAD_FRAME, f"'{kind}'.peer must be a string (host:port)")
    if kind == P.SESSION_LOGIN:
        want("user", (str,), "a user name", 256)
        want("password", (str,), "a string", MAX_PASSWORD_CHARS)
        return
    want("token", (str,), "the session token svirtd issued", MAX_TOKEN_CHARS)
    if kind == P.SESSION_REQUEST:
        want("request", (dict,), "an object {command, args}")
        if msg.get("password") is not None:
            want("password", (str,), "a string or null", MAX_PASSWORD_CHARS)
    elif kind == P.SESSION_CONSOLE:
        want("name", (str,), "a domain name", 1024)


def _account(user: str) -> Account | None:
    """``user``'s account as NSS says now, or None if NSS does not know the name."""
    try:
        return _account_of(pwd.getpwnam(user))
    except KeyError:
        return None


def _account_of(pw: pwd.struct_passwd) -> Account:
    try:
        groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    except OSError:
        groups = (pw.pw_gid,)
    return Account(uid=pw.pw_uid, gid=pw.pw_gid, user=pw.pw_name, groups=groups)


def _peer(value) -> str | None:
    """The client address as the front-end reports it: recorded, never trusted for a decision."""
    if value is None:
        return None
    return value if _PEER_RE.fullmatch(value) else "invalid-address"


class WebSessions:
    """The session frames of one svirtd: who may send them, the token table, the throttle."""

    def __init__(self, service, server):
        self.service = service
        self.server = server
        config = getattr(service, "config", None)
        self.config = config
        self.pam_service = getattr(config, "pam_service", "secured-virt")
        self.allow_root = bool(getattr(config, "session_allow_root", False))
        self._by_uid: dict[int, str] = {}
        for via, user in getattr(config, "frontends", ()) or ():
            try:
                self._by_uid[pwd.getpwnam(user).pw_uid] = via
            except KeyError:
                log.warning("frontends: user %r (for %s) does not exist; ignored", user, via)
        self.store = TokenStore.from_config(config) if self._by_uid else None
        self.throttle = LoginThrottle.from_config(config) if self._by_uid else None
        self._pam_slots = threading.BoundedSemaphore(PAM_SLOTS)

    # -- entry points (from daemon.session) -----------------------------------------------------
    def handle(self, session, msg: dict[str, Any]):
        """(interaction, reply) for one session frame other than session_console."""
        check_fields(msg)
        kind, peer = msg["type"], _peer(msg.get("peer"))
        via = self._via(session, kind, peer)
        if isinstance(via, Reply):
            return _NoInteraction(None), via
        if kind == P.SESSION_LOGIN:
            return _NoInteraction(None), self._login(session, via, msg, peer)
        if kind == P.SESSION_LOGOUT:
            return _NoInteraction(None), self._logout(session, via, msg["token"], peer)
        found = self._identity(session, via, msg["token"], peer)
        if isinstance(found, Reply):
            return _NoInteraction(None), found
        ident, rec = found
        if kind == P.SESSION_INFO:
            data = {
                "user": ident.user,
                "uid": ident.uid,
                "via": via,
                "session": ident.session,
                "expires_in": self.store.expires_in(rec),
            }
            return _NoInteraction(None), Reply(EXIT_OK, data=data)
        interaction = _NoInteraction(msg.get("password"), session)
        body = msg["request"]
        extra = sorted(set(body) - {"command", "args", "as_user"})
        if extra or body.get("as_user") is not None:
            return interaction, Reply(
                EXIT_USAGE,
                message="a session request is {command, args}: it runs as the session's user "
                "and nobody else (no as_user)" + (f"; unknown field(s) {extra}" if extra else ""),
            )
        try:
            request = Request.from_dict(body)
        except ValueError as exc:
            return interaction, Reply(EXIT_USAGE, message=f"malformed request: {exc}")
        reply = self.server.run_service(
            lambda: self.service.handle(ident, request, interaction),
            retry_safe=lambda: interaction.sent == 0,  # rows that left cannot be sent again
            who=ident.uid,  # the session's user takes turns with everyone else
        )
        return interaction, reply

    def console_identity(self, session, msg: dict[str, Any]):
        """The session's user for a console, or the Reply refusing it."""
        check_fields(msg)
        peer = _peer(msg.get("peer"))
        via = self._via(session, msg["type"], peer)
        if isinstance(via, Reply):
            return via
        found = self._identity(session, via, msg["token"], peer)
        return found if isinstance(found, Reply) else found[0]

    # -- the steps ----------------------------------------------------------------------------
    def _via(self, session, kind: str, peer: str | None):
        via = self._by_uid.get(session.uid)
        if via is not None:
            return via
        who = getattr(session.identity, "user", str(session.uid))
        rule = (
            f"uid {session.uid} ({who}) is not a remote front-end's user ('frontends' in "
            "secured-virt.conf): session requests are refused"
        )
        self._audit(session, who, session.uid, None, kind, False, "identity", rule, peer)
        return Reply(EXIT_DENIED, message=f"denied: {rule}", check="identity")

    def _login(self, session, via: str, msg, peer: str | None) -> Reply:
        user, password = msg["user"], msg["password"]
        op = "session-login"
        if not _USER_RE.fullmatch(user):
            self.throttle.failed("?", peer)
            rule = "the user name is not a valid account name"
            self._audit(session, user, session.uid, via, op, False, "pam", rule, peer)
            return Reply(EXIT_DENIED, message=f"login refused: {rule}", check="pam")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            pw = None
        uid = pw.pw_uid if pw is not None else session.uid
        refused = self.throttle.refusal(user, peer)
        if refused is not None:
            why, retry = refused
            self._audit(session, user, uid, via, op, False, "rate-limit", why, peer)
            return Reply(
                EXIT_DENIED,
                data={"retry_after_s": round(retry)},
                message=f"login refused: {why}",
                check="rate-limit",
            )
        if pw is not None and pw.pw_uid == 0 and not self.allow_root:
            rule = "root may not log in through a remote front-end (session_allow_root = no)"
            self._audit(session, user, 0, via, op, False, "identity", rule, peer)
            return Reply(EXIT_DENIED, message=f"login refused: {rule}", check="identity")
        if not self._pam_slots.acquire(timeout=PAM_WAIT):
            return Reply(EXIT_FAILED, message="too many logins at once; try again shortly")
        try:
            res = pamauth.authenticate(user, password, self.pam_service)
        finally:
            self._pam_slots.release()
        if res.ok and pw is None:
            res = pamauth.AuthResult(False, pamauth.PAM_AUTH_ERR, "no passwd entry")
        if not res.ok:
            self.throttle.failed(user, peer)
            rule = f"PAM ({self.pam_service}): {res.reason} (code {res.code})"
            self._audit(session, user, uid, via, op, False, "pam", rule, peer)
            return Reply(
                EXIT_DENIED, message=f"authentication failed for '{user}': {rule}", check="pam"
            )
        self.throttle.succeeded(user)
        try:
            token, rec = self.store.issue(user, pw.pw_uid, via, peer)
        except OverflowError as exc:
            self._audit(session, user, pw.pw_uid, via, op, False, "session", str(exc), peer)
            return Reply(EXIT_FAILED, message=f"login refused: {exc}")
        self.store.keep_account(rec, _account_of(pw))  # its first requests ask NSS nothing
        idle, most = self.store.idle_seconds, self.store.max_seconds
        rule = (
            f"password accepted by PAM ({self.pam_service}); session {rec.sid} issued "
            f"(ends {idle / 60:g} min after last use, at most {most / 60:g} min after login)"
        )
        ref = self._audit(session, user, pw.pw_uid, via, op, True, "pam", rule, peer, rec.sid)
        if ref is None:  # not audited: the session must not exist
            self.store.drop(token, via)
            return Reply(EXIT_FAILED, message="the audit log could not be written; login refused")
        self._outcome(ref, "ok")
        log.info(
            "%s: %s logged in via %s from %s (session %s)", session.who, user, via, peer, rec.sid
        )
        return Reply(
            EXIT_OK,
            data={
                "token": token,
                "session": rec.sid,
                "user": user,
                "uid": pw.pw_uid,
                "via": via,
                "idle_timeout_s": idle,
                "max_age_s": most,
            },
        )

    def _logout(self, session, via: str, token: str, peer: str | None) -> Reply:
        rec = self.store.drop(token, via)
        if rec is None:
            return self._invalid(session, via, "session-logout", "not a live session", peer)
        rule = f"session {rec.sid} ended by logout"
        ref = self._audit(
            session, rec.user, rec.uid, via, "session-logout", True, "session", rule, peer, rec.sid
        )
        self._outcome(ref, "ok")
        log.info("%s: %s logged out (session %s)", session.who, rec.user, rec.sid)
        return Reply(EXIT_OK, data={"message": f"session {rec.sid} ended"})

    def _identity(self, session, via: str, token: str, peer: str | None):
        """(RemoteIdentity, SessionRecord) for a live token, else the Reply refusing it.

        The account is the one kept in the session (looked up at login, again whenever it is
        older than the group-role cache's few seconds: ``TokenStore.account``), so a request
        asks NSS nothing while a membership change or a replaced account is still seen soon."""
        rec, why = self.store.use(token, via)
        if rec is None:
            return self._invalid(session, via, "session", why, peer)
        acct = self.store.account(rec)
        if acct is None:
            acct = _account(rec.user)
            if acct is None or acct.uid != rec.uid:
                self.store.drop(token, via)
                return self._invalid(
                    session, via, "session", f"account '{rec.user}' changed since login", peer
                )
            self.store.keep_account(rec, acct)
        ident = RemoteIdentity(
            uid=acct.uid,
            gid=acct.gid,
            user=acct.user,
            groups=acct.groups,
            via=via,
            pid=session.pid,
            peer=peer or rec.peer,
            session=rec.sid,
        )
        return ident, rec

    def _invalid(self, session, via: str, op: str, why: str, peer: str | None) -> Reply:
        """A token that names no live session: audited (under the front-end's uid, whose
        denials the audit log rate-limits), and told to the client without details."""
        who = getattr(session.identity, "user", str(session.uid))
        self._audit(session, who, session.uid, via, op, False, "session", why, peer)
        return Reply(
            EXIT_DENIED,
            data={"session": "invalid"},
            message="the session is not valid (expired, logged out, or never issued); log in again",
            check="session",
        )

    # -- audit --------------------------------------------------------------------------------
    def _audit(self, session, user, uid, via, op, allowed, check, rule, peer, sid=None):
        """Write one decision; the AuditRef, or None when it could not be written (callers
        of an allowed decision then refuse: nothing happens unaudited)."""
        audit = getattr(self.service, "audit", None)
        if audit is None:
            return None
        try:
            return audit.record_decision(
                uid=int(uid),
                user=str(user),
                op=op,
                vm=None,
                allowed=allowed,
                check=check,
                rule=rule,
                via=via,
                pid=session.pid,
                peer=peer,
                session=sid,
            )
        except Exception as exc:
            log.error("audit of %s for %s failed: %s", op, user, exc)
            return None

    def _outcome(self, ref, outcome: str) -> None:
        audit = getattr(self.service, "audit", None)
        if ref is None or audit is None or not getattr(ref, "seq", 0):
            return
        try:
            audit.record_outcome(ref, outcome)
        except Exception as exc:  # the decision is on disk; the outcome is best effort
            log.warning("could not audit the outcome of %s: %s", ref, exc)
