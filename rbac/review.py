"""Review functions (NIST RBAC §6, mandatory and advanced review, hierarchical versions).

They answer root's questions — who has this role, what can this user do, who may start this
VM — from the same compiled structures the decisions use, so a review can never disagree with
an actual check.  Questions about the present take ``now`` like decide() does: an expired
assignment no longer makes anyone assigned or authorized.  :meth:`assignments` shows the
assignments as written, expired ones included.
"""

from __future__ import annotations

from .errors import UnknownName
from .model import Permission, where
from .selectors import Exact, Owned
from .timeutil import to_timestamp


class ReviewMixin:
    """Mixed into RbacPolicy; relies on its compiled attributes."""

    # -- lookups -----------------------------------------------------------------------------
    def _user(self, user: str):
        u = self._record(user)
        if u is None:
            raise UnknownName(f"user '{user}' is not in the UA policy (nor in any of its groups)")
        return u

    def _role(self, role: str) -> None:
        if role not in self._role_auth:
            raise UnknownName(f"role '{role}' is not defined in the PA policy")

    def _now_profile(self, u, now):
        return self._current_profile(u, to_timestamp(now)) if u.expiring else u.profile

    def _authorized(self) -> dict[str, frozenset[str]]:
        """role -> users authorized for it by any assignment, expired or not (built once)."""
        idx = self._authorized_index
        if idx is None:
            acc: dict[str, set[str]] = {}
            for name, u in self._users.items():
                for r in u.profile.roles:
                    acc.setdefault(r, set()).add(name)
            idx = self._authorized_index = {r: frozenset(s) for r, s in acc.items()}
        return idx

    # -- users and roles ---------------------------------------------------------------------
    def assignments(self, user: str):
        """Every assignment of ``user`` as written (with expiry and source), expired included."""
        return self._user(user).assignments

    def assigned_groups(self, role: str, now=None) -> tuple[str, ...]:
        """Unix groups to which ``role`` is assigned (in force ``now``)."""
        self._role(role)
        t = to_timestamp(now)
        return tuple(
            sorted(
                g
                for g, assigns in self.group_assignments.items()
                if any(a.role == role and not a.expired(t) for a in assigns)
            )
        )

    def user_groups(self, user: str) -> tuple[str, ...]:
        """The UA groups ``user`` belongs to now (NSS, cached), whose roles they hold."""
        u = self._record(user)
        return u.groups if u is not None else ()

    def unresolved_groups(self) -> dict[str, str]:
        """UA groups NSS cannot resolve -> why (their roles grant nothing to anyone)."""
        out = {}
        for g in self.group_assignments:
            why = self.groups.why_unresolved(g)
            if why is not None:
                out[g] = why
        return out

    def assigned_roles(self, user: str, now=None) -> tuple[str, ...]:
        """Roles assigned to ``user`` directly and in force ``now``."""
        t = to_timestamp(now)
        return tuple(sorted(a.role for a in self._user(user).assignments if not a.expired(t)))

    def assigned_users(self, role: str, now=None) -> tuple[str, ...]:
        """Users to whom ``role`` is assigned directly (in force ``now``)."""
        self._role(role)
        t = to_timestamp(now)
        return tuple(
            sorted(
                name
                for name, u in self._users.items()
                for a in u.assignments
                if a.role == role and not a.expired(t)
            )
        )

    def authorized_roles(self, user: str, now=None) -> tuple[str, ...]:
        """Roles ``user`` holds now: assigned ones and everything they inherit."""
        return tuple(sorted(self._now_profile(self._user(user), now).roles))

    def authorized_users(self, role: str, now=None) -> tuple[str, ...]:
        """Users holding ``role`` now, directly or through a senior role."""
        self._role(role)
        t = to_timestamp(now)
        out = []
        for name in self._authorized().get(role, ()):
            u = self._users[name]
            if not u.expiring or role in self._current_profile(u, t).roles:
                out.append(name)
        return tuple(sorted(out))

    def inherited_roles(self, role: str) -> tuple[str, ...]:
        """Roles whose permissions ``role`` inherits (transitively), itself excluded."""
        self._role(role)
        return tuple(sorted(r for r in self._closure[role] if r != role))

    def inheritance_path(self, senior: str, junior: str) -> tuple[str, ...] | None:
        """The path senior -> ... -> junior, or None if senior does not inherit junior."""
        self._role(senior)
        if junior not in self._closure[senior]:
            return None
        return self._via(senior, junior)

    def role_requires_auth(self, role: str) -> bool:
        self._role(role)
        return self._role_auth[role]

    # -- permissions -------------------------------------------------------------------------
    def _permissions_of(self, roles) -> tuple[Permission, ...]:
        out: set[Permission] = set()
        for r in roles:
            for block, opmap in self._blocks.get(r, ()):
                for op, gr in opmap.items():
                    src = where(gr.source)
                    vals = gr.values
                    if isinstance(block.selector, Exact):
                        out.update(
                            Permission(op, Exact((n,)), r, src, vals) for n in block.selector.names
                        )
                    else:
                        out.add(Permission(op, block.selector, r, src, vals))
        return tuple(sorted(_dedupe(out), key=Permission.sort_key))

    def role_permissions(self, role: str) -> tuple[Permission, ...]:
        """Permissions of ``role`` including inherited ones (each says which role holds it)."""
        self._role(role)
        return self._permissions_of(self._closure[role])

    def user_permissions(self, user: str, now=None) -> tuple[Permission, ...]:
        """Everything ``user`` may do now, through all authorized roles."""
        return self._permissions_of(self._now_profile(self._user(user), now).roles)

    # -- objects -----------------------------------------------------------------------------
    def authorized_users_for(self, op_id, obj: str, attrs=None, now=None) -> tuple[str, ...]:
        """Users who may perform ``op_id`` on ``obj`` (with ``attrs``) now."""
        op = self.resolve_operation(op_id)
        if op is None:
            return ()
        t = to_timestamp(now)
        roles: set[str] = set()
        for role, m in (self._obj_index().get(obj) or {}).items():
            if op in m:
                roles.add(role)
        owner_roles: dict[str, set[str]] = {}
        for role, per_op in self._scoped.items():
            if role in roles:
                continue
            for gr in per_op.get(op, ()):
                sel = gr.selector
                if isinstance(sel, Owned):
                    who = attrs.get(sel.key) if attrs else None
                    if who:
                        owner_roles.setdefault(who, set()).add(role)
                elif sel.matches(obj, attrs, ""):
                    roles.add(role)
                    break
        idx = self._authorized()
        out: set[str] = set()
        for role in roles:
            for name in idx.get(role, ()):
                if name in out:
                    continue
                u = self._users[name]
                if not u.expiring or role in self._current_profile(u, t).roles:
                    out.add(name)
        for who, rs in owner_roles.items():
            u = self._users.get(who)
            if u is not None and who not in out and rs & self._now_profile(u, now).roles:
                out.add(who)
        return tuple(sorted(out))

    def user_operations_on_object(self, user: str, obj: str, attrs=None, now=None):
        """Operation ids ``user`` may perform on ``obj`` now (sorted)."""
        u = self._user(user)
        p = self._now_profile(u, now)
        ops: set[int] = set()
        role_objs = self._role_objs
        for role in p.roles:
            m = role_objs.get(role, {}).get(obj)
            if m is not None:
                ops.update(m)
        for op, grants in p.scoped.items():
            if op not in ops and any(gr.selector.matches(obj, attrs, user) for gr, _ in grants):
                ops.add(op)
        return tuple(sorted(ops))

    operations_of = user_operations_on_object

    def role_operations_on_object(self, role: str, obj: str, attrs=None, user: str = ""):
        """Operation ids ``role`` (with what it inherits) grants on ``obj``."""
        self._role(role)
        ops: set[int] = set()
        role_objs = self._role_objs
        for r in self._closure[role]:
            ops.update(role_objs.get(r, {}).get(obj, ()))
            for op, grants in self._scoped.get(r, {}).items():
                if any(gr.selector.matches(obj, attrs, user) for gr in grants):
                    ops.add(op)
        return tuple(sorted(ops))


def _dedupe(perms: set[Permission]) -> set[Permission]:
    """One Permission per (operation, selector, role): keep the earliest source line, and the
    union of the argument values the merged grants allow."""
    best: dict[tuple, Permission] = {}
    for p in perms:
        key = (p.operation, p.selector, p.role)
        old = best.get(key)
        if old is None:
            best[key] = p
            continue
        first, other = (p, old) if _line(p.source) < _line(old.source) else (old, p)
        vals = first.values
        if other.values is not None:
            vals = other.values.union(vals)
        best[key] = Permission(first.operation, first.selector, first.role, first.source, vals)
    return set(best.values())


def _line(src: str) -> int:
    tail = src.rsplit(":", 1)[-1]
    return int(tail) if tail.isascii() and tail.isdigit() else 0
