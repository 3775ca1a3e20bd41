"""The gate: identity -> RBAC decision -> (PAM) -> ACM mediation -> audit, before any backend call.

Every request that names an operation passes through ``Gate.authorize`` exactly once.  The gate
writes the decision to the audit log *before* anything runs; if that write fails the request is
refused (nothing unaudited ever happens).  The backend's outcome is then linked to the decision
record with ``Gate.finish``.

Root (real uid 0, not acting as someone else) is allowed every RBAC operation — root can run
virsh anyway — but is still audited and still subject to the mandatory ACM policy.

Dynamic separation of duty is checked right after RBAC: the role a request would act through is
activated in the caller's login session (:mod:`secured_virt.access.rolesession`) only if the roles
already active there leave room for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secured_virt.lazylog import lazy_logger
from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED
from secured_virt.rolefiles.store import PolicyStore, PolicyUnavailable

from .operations import Operation
from .rolesession import RoleSessionError

log = lazy_logger("secured_virt.access.gate")  # logging loads at the first message (issue 18)


ROOT_RULE = "uid 0 (root) may perform every operation"


@dataclass(slots=True)
class Target:
    """What an operation acts on: a VM (by name) or the host object."""

    name: str
    uuid: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    exists: bool = True
    #: values the request gives (what -> value, e.g. {"label": "dom_A"}): the granting grant's
    #: argument constraint must list each of them (rbac: RbacPolicy.decide_values)
    arguments: Mapping[str, str] | None = None


@dataclass(slots=True)
class Verdict:
    allowed: bool
    check: str  # identity | rbac | dsd | pam | acm | state | audit | policy
    rule: str
    status: int = 0  # exit code when refused
    audit_ref: Any = None
    user: str = ""
    op: Operation | None = None
    target: Target | None = None
    #: PAM was asked (and answered) for this request, before the host-wide ACM lock
    authenticated: bool = False
    #: the refusal as the caller is told it, when it differs from ``rule`` (which the audit
    #: keeps whole): see Worded
    shown: str | None = None

    def denial_message(self) -> str:
        assert self.op is not None and self.target is not None
        return (
            f"denied: '{self.op.name}' (operation {self.op.id}) on '{self.target.name}' for "
            f"user '{self.user}' — refused by the {self.check} check: {self.shown or self.rule}"
        )


class Worded(str):
    """A check's refusal as the audit records it, carrying ``shown``: the same refusal as the
    caller is told it, without what they may not know.  Why: a Chinese Wall refusal names the
    running domain that holds the conflicting type, and that domain is a competitor's — its
    name and label are not the refused tenant's to learn (the audit keeps them for root)."""

    def __new__(cls, full: str, shown: str) -> Worded:
        self = super().__new__(cls, full)
        self.shown = shown
        return self


class AuditFailure(Exception):
    """The decision could not be written to the audit log: the request must be refused."""


class Gate:
    def __init__(
        self,
        store: PolicyStore,
        audit,  # secured_virt.access.audit.AuditLog-like: decision(dict) -> ref ; outcome(ref, str)
        *,
        authenticator: Callable | None = None,  # (identity, interaction, op) -> (ok, reason)
        auth_operations: frozenset[str] = frozenset(),
        role_sessions=None,  # access.rolesession.ActiveRoles; None: DSD is not enforced
    ):
        self.store = store
        self.audit = audit
        self.authenticator = authenticator
        self.auth_operations = auth_operations
        self.role_sessions = role_sessions

    # -- the one entry point ------------------------------------------------------------------
    def authorize(
        self,
        ident,
        op: Operation,
        target: Target,
        interaction=None,
        acm_check=None,
        *,
        checks=(),
        authenticated: bool = False,
        realm=None,
        defer_read: bool = False,
    ) -> Verdict:
        """Decide and audit.  ``acm_check`` (a callable returning (allowed, text), or
        (False, text, "state") when what stops the request is the domain's state rather than
        the policy) is the mandatory-policy check for this request; ``checks`` are more such
        (name, callable) pairs, each refusing under its own name.  They run only after RBAC
        and PAM allowed.  ``authenticated``: ``preauthenticate`` already asked for the
        password in this request, so it is not asked again (see there).  ``realm``: a
        callable returning None or why the request crosses realms (secured_virt.tenancy); it
        runs *before* RBAC, so no grant, however wrong, reaches another realm.
        ``defer_read``: the operation only reads, so an allowed decision is written with its
        outcome by ``finish`` (one sync), which the caller must call before anything leaves
        (access/audit.py, "Reads")."""
        all_checks = (*((("acm", acm_check),) if acm_check is not None else ()), *checks)
        verdict = self._decide(
            ident, op, target, interaction, all_checks, authenticated, realm=realm
        )
        return self._audited(ident, op, target, verdict, defer=defer_read)

    def record(self, ident, op: Operation, target: Target, verdict: Verdict) -> Verdict:
        """Audit a verdict reached outside UA/PA (a realm admin's rights come from the realms
        file: secured_virt.tenancy); like every decision, a failed write refuses."""
        return self._audited(ident, op, target, verdict)

    def preauthenticate(
        self, ident, op: Operation, target: Target, interaction=None, *, realm=None
    ) -> Verdict:
        """RBAC and PAM *before* the caller's request takes the host-wide ACM lock.

        Why: a password prompt can take minutes, or never be answered; holding the lock
        meanwhile blocked every start on the host.  So the service authenticates first (a
        refusal is audited here), then takes the lock and calls ``authorize`` with
        ``authenticated=verdict.authenticated``: RBAC is decided again under the lock (the role
        files may have changed while the user typed) and the ACM checks run, but nobody is
        asked for a password while the lock is held.  An allowed verdict returned here is not
        audited and activates no role: ``authorize`` does both."""
        verdict = self._decide(
            ident, op, target, interaction, (), False, activate_roles=False, realm=realm
        )
        if not verdict.allowed:
            return self._audited(ident, op, target, verdict)
        return verdict

    def authorize_listing(
        self, ident, op: Operation, shown: int, total: int, *, defer_read: bool = False
    ) -> Verdict:
        """Audit a list request: always allowed, filtered per VM by the caller's roles."""
        target = Target("*")
        if getattr(ident, "as_refused", False):
            verdict = self._decide(ident, op, target, None)
        else:
            rule = f"filtered by role policy: {shown} of {total} domains visible"
            if _is_plain_root(ident):
                rule = f"{ROOT_RULE}: all {total} domains visible"
            verdict = Verdict(True, "rbac", rule)
        return self._audited(ident, op, target, verdict, defer=defer_read)

    def _audited(
        self, ident, op: Operation, target: Target, verdict: Verdict, *, defer: bool = False
    ) -> Verdict:
        """Write the decision before anything happens; if that fails, refuse.  ``defer``
        (reads only): an allowed decision is written by ``finish``, with its outcome."""
        verdict.user, verdict.op, verdict.target = _policy_user(ident), op, target
        try:
            if defer and verdict.allowed:
                verdict.audit_ref = self.audit.decision(ident, op, target, verdict, defer=True)
            else:
                verdict.audit_ref = self.audit.decision(ident, op, target, verdict)
        except Exception as exc:  # any failure to audit refuses the request
            return Verdict(
                False,
                "audit",
                f"the audit log could not be written ({exc}); refusing",
                EXIT_FAILED,
                None,
                verdict.user,
                op,
                target,
            )
        return verdict

    def finish(self, verdict: Verdict, outcome: str) -> None:
        """Link the backend's outcome ("ok" or "error: ...") to the decision record.

        A read's decision not written yet (``defer_read``) is written now with the outcome;
        if that fails, AuditFailure: the caller refuses the reply (nothing unaudited leaves)."""
        if getattr(verdict.audit_ref, "unwritten", None) is not None:
            try:
                self.audit.outcome(verdict.audit_ref, outcome)
            except Exception as exc:
                why = f"the audit log could not be written ({exc}); the answer is withheld"
                raise AuditFailure(why) from None
            return
        if verdict.audit_ref is not None:
            try:
                self.audit.outcome(verdict.audit_ref, outcome)
            except Exception as exc:  # the decision itself is on disk; the outcome is best effort
                log.warning("could not audit the outcome of %s: %s", verdict.audit_ref, exc)

    def may(self, ident, op: Operation, target: Target) -> bool:
        """Would RBAC allow this (no PAM, no ACM, nothing audited)?  For refusing a caller
        before doing work on their input; the audited authorize() still decides."""
        if getattr(ident, "as_refused", False):
            return False
        if _is_plain_root(ident):
            return True
        try:
            return bool(self.rbac_decision(_policy_user(ident), op, target).allowed)
        except PolicyUnavailable:
            return False

    def rbac_decision(self, user: str, op: Operation, target: Target):
        pol = self.store.current()
        if target.arguments:
            return pol.decide_values(user, op.id, target.name, target.arguments, target.attrs)
        return pol.decide(user, op.id, target.name, target.attrs)

    # -- the checks, in order -----------------------------------------------------------------
    def _decide(
        self,
        ident,
        op: Operation,
        target: Target,
        interaction,
        checks=(),
        authenticated: bool = False,
        *,
        activate_roles: bool = True,
        realm=None,
    ) -> Verdict:
        if getattr(ident, "as_refused", False):
            return Verdict(
                False,
                "identity",
                f"--as {ident.requested_as} is only accepted from root (uid 0); "
                f"you are uid {ident.uid}",
                EXIT_DENIED,
            )
        user = _policy_user(ident)
        # the realm step and RBAC in one call of the C index (realm.fast: secured_virt.tenancy
        # partitions), for the common request it can answer; None: the two steps below
        fast = None
        if realm is not None and not target.arguments and not _is_plain_root(ident):
            fast = getattr(realm, "fast", None)
            if fast is not None:
                try:
                    fast_pol = self.store.current()
                    fast = fast(fast_pol, user)
                except Exception:  # the separate steps below decide, and word, it
                    fast = None
        if realm is not None and fast is None:
            try:
                crossing = realm()
            except Exception as exc:  # fail closed: a realm that cannot be told is not yours
                crossing = f"the realm check failed ({type(exc).__name__}: {exc}); refusing"
            if crossing:
                return Verdict(False, "realm", crossing, EXIT_DENIED)
        activate = None  # the role to activate in the login session once all is allowed
        if _is_plain_root(ident):
            rbac_ok, rule, needs_auth = True, ROOT_RULE, False
        elif fast is not None:
            pol, d = fast_pol, fast
        else:
            try:
                pol = self.store.current()
            except PolicyUnavailable as exc:
                return Verdict(
                    False,
                    "policy",
                    f"no valid UA/PA policy is loaded, so everything is denied: {exc}",
                    EXIT_BAD_POLICY,
                )
            if target.arguments:  # the grant must also allow the values given (setlabel's label)
                d = pol.decide_values(user, op.id, target.name, target.arguments, target.attrs)
            else:
                d = pol.decide(user, op.id, target.name, target.attrs)
        if not _is_plain_root(ident):
            if not d.allowed:
                from .wording import rbac_reason

                return Verdict(False, "rbac", rbac_reason(user, d.reason), EXIT_DENIED)
            if pol.dsd_sets and self.role_sessions is not None:
                d, activate, refusal = self._dsd(ident, pol, user, op, target, d)
                if refusal is not None:
                    return refusal
            rbac_ok, rule, needs_auth = True, d.rule, bool(d.requires_auth)
            if d.group:  # the audit says which directory group the role came through
                rule += f" (role held through group '{d.group}')"
        needs_auth = needs_auth or (op.name in self.auth_operations and not _is_plain_root(ident))
        if needs_auth and authenticated:
            rule += " (authenticated)"
        elif needs_auth:
            if self.authenticator is None:
                return Verdict(
                    False, "pam", "authentication required but not configured", EXIT_DENIED
                )
            ok, why = self.authenticator(ident, interaction, op)
            if not ok:
                return Verdict(False, "pam", why, EXIT_DENIED)
            rule += " (authenticated)"
            authenticated = True
        for name, check in checks:
            ok, why, *state = check()
            if not ok:
                if state:  # not a policy conflict but the domain's state (already running)
                    return Verdict(False, "state", why, EXIT_FAILED)
                return Verdict(
                    False, name, str(why), EXIT_DENIED, shown=getattr(why, "shown", None)
                )
            if why:
                rule += f"; {why}"
        if activate is not None and not activate_roles:
            activate = None
        if activate is not None:
            try:
                self.role_sessions.activate(ident, user, activate, _dsd_problem(pol))
            except RoleSessionError as exc:  # unrecorded, a later conflicting role would pass
                return Verdict(False, "dsd", f"{exc}; refusing", EXIT_DENIED)
            rule += f" (role {activate} active in this login session)"
        return Verdict(rbac_ok, "rbac", rule, authenticated=authenticated and needs_auth)

    def _dsd(self, ident, pol, user: str, op: Operation, target: Target, d):
        """Dynamic separation: (decision, role to activate, refusal or None).

        Users whose authorized roles cannot break any DSD set are not tracked at all.  Else
        the request may act through a role already active in the login session, or through
        one that DSD lets join them (the decision's own role first, then the others).
        """
        authorized = frozenset(pol.authorized_roles(user))
        if not any(len(s.roles & authorized) >= s.cardinality for s in pol.dsd_sets):
            return d, None, None
        sessions = self.role_sessions
        try:
            used = sessions.active(ident, user)
        except RoleSessionError as exc:
            why = f"dynamic separation of duty cannot be enforced: {exc}; refusing"
            return d, None, Verdict(False, "dsd", why, EXIT_DENIED)
        active = frozenset(r for r in used if r in authorized)
        problem = _dsd_problem(pol)
        granting = sorted(authorized - active, key=lambda r: (r != d.role, r))
        for role in (None, *granting):
            roles = active if role is None else active | {role}
            if not roles or problem(roles):
                continue
            dd = pol.create_session(user, roles).check_access(
                op.id, target.name, target.attrs, values=target.arguments or None
            )
            if dd.allowed:
                fresh = dd.role in used and not sessions.due_for_refresh(used[dd.role])
                return dd, None if fresh else dd.role, None
        why = (
            problem(active | {d.role}) or f"role {d.role} cannot be activated in this login session"
        )
        since = ", ".join(
            f"{r} (last used {sessions.age_minutes(used[r]):.0f} min ago)" for r in sorted(active)
        )
        one = len(active) == 1
        return (
            d,
            None,
            Verdict(
                False,
                "dsd",
                f"{why}. Active in this login session: {since}; "
                f"{'it stays' if one else 'they stay'} active until "
                f"{sessions.timeout / 60:g} minutes after {'its' if one else 'their'} last use. "
                f"To act through {d.role}, end this session's roles with 'svirsh -k' "
                "(or log in afresh)",
                EXIT_DENIED,
            ),
        )


def _dsd_problem(pol):
    """roles -> None if they may be active together, else why not (for ActiveRoles.activate)."""

    import rbac  # here: root's direct mode decides without loading rbac (rolefiles.store)

    def problem(roles) -> str | None:
        try:
            pol.check_dsd(roles)
        except rbac.DsdViolation as exc:
            return exc.message
        return None

    return problem


def acting_as(ident) -> str | None:
    """Root's --as USER (like sudo -u); None for everyone else (their --as is refused)."""
    if ident.uid == 0 and not getattr(ident, "as_refused", False):
        return getattr(ident, "requested_as", None) or None
    return None


def _is_plain_root(ident) -> bool:
    return ident.uid == 0 and acting_as(ident) is None


def _policy_user(ident) -> str:
    """The user the policy is checked for: root's --as target, else the caller."""
    return acting_as(ident) or ident.user
