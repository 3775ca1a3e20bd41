"""NIST sessions: a user acting with a chosen subset of their authorized roles.

A session is what dynamic separation of duty constrains: the roles *active together* (with
everything they inherit) must not include ``cardinality`` roles of any DSD set.  Checks in a
session use only the active roles; an active role whose assignment has since expired stops
granting at once.  Sessions are cheap views over the immutable policy and are not shared
between threads.
"""

from __future__ import annotations

from .decision import Decision, denied
from .errors import SessionError
from .timeutil import to_timestamp


class Session:
    def __init__(self, policy, user_record, active: frozenset[str]):
        self._policy = policy
        self._u = user_record
        self._active = active
        self._profile = policy._profile_for(active)

    @property
    def user(self) -> str:
        return self._u.name

    @property
    def active_roles(self) -> tuple[str, ...]:
        """The roles activated in this session (NIST SessionRoles)."""
        return tuple(sorted(self._active))

    @property
    def effective_roles(self) -> tuple[str, ...]:
        """Active roles and everything they inherit."""
        return tuple(sorted(self._profile.roles))

    def add_active_role(self, role: str, now=None) -> None:
        """Activate an authorized role; refused (DsdViolation) if it would break a DSD set."""
        if role in self._active:
            raise SessionError(f"role '{role}' is already active in this session")
        pol = self._policy
        authorized = pol._current_profile(self._u, to_timestamp(now)).roles
        pol._require_authorized(self._u, role, authorized)
        new = self._active | {role}
        pol.check_dsd(new)
        self._active = new
        self._profile = pol._profile_for(new)

    def drop_active_role(self, role: str) -> None:
        """Deactivate a role of this session."""
        if role not in self._active:
            raise SessionError(f"role '{role}' is not active in this session")
        self._active = self._active - {role}
        self._profile = self._policy._profile_for(self._active)

    def check_access(self, op_id, obj: str, attrs=None, now=None, values=None) -> Decision:
        """NIST CheckAccess: does some active role (or what it inherits) grant op on obj?

        ``values`` (what -> value): the request's argument values, which the granting grant's
        argument constraint must allow (RbacPolicy.decide_values)."""
        pol = self._policy
        u = self._u
        op = pol.resolve_operation(op_id)
        if op is None:
            return pol.decide(u.name, op_id, obj, attrs, now)  # denies, naming the operation
        p = self._profile
        if u.expiring:
            current = pol._current_profile(u, to_timestamp(now)).roles
            if not self._active <= current:
                p = pol._profile_for(frozenset(r for r in self._active if r in current))
        d = pol._check(p, u.name, op, obj, attrs)
        if d is not None:
            return d if values is None else pol._check_values(p, u.name, op, obj, attrs, values)
        full = pol.decide(u.name, op, obj, attrs, now)
        if full.allowed:
            return denied(
                f"no active role of user '{u.name}' grants {pol.op_label(op)} on '{obj}' "
                f"(role {full.role} would; activate it)"
            )
        return full

    def permissions(self):
        """Permissions of the active roles (NIST SessionPermissions)."""
        return self._policy._permissions_of(self._profile.roles)

    def __repr__(self) -> str:
        return f"<Session of {self.user}: {', '.join(self.active_roles) or 'no roles'}>"
