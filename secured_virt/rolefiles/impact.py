"""What a change of UA/PA does to people: who gains or loses which operations, where.

Root approves a policy change by reading its impact, not a diff of XML: a one-line edit of an
``<Inherits>`` element can hand a dozen users destroy rights on every VM, and a reordered file
can change nothing at all.  So the impact is computed from the *effective* permissions of each
user before and after, through rbac's review functions (the same compiled data the decisions
use), not from the text.  A user's effective permissions are what ``user_permissions`` returns:
the own grants of every role ``authorized_roles`` gives them.  They are assembled here from
per-role grants (``role_permissions``) so that only what can differ is compared — a property
test checks the result against a brute-force comparison of ``user_permissions``.

Scopes are selectors, not VM lists — "alice gains start on pattern web-*" is the honest answer,
because which VMs match a pattern, label or owner is only known when a VM is asked about.

Besides users, the report covers roles (a grant to a role nobody holds yet changes nobody's
permissions but is still worth seeing), separation-of-duty sets, and the small things that
change a user's situation without changing the permission set: an assignment's expiry, and
whether an operation now needs fresh authentication.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from secured_virt.access.operations import CATALOGUE

__all__ = ["Impact", "RoleImpact", "Scope", "UserImpact", "compute", "scope_of"]


@dataclass(frozen=True, order=True, slots=True)
class Scope:
    """The objects a permission covers, as root writes them on the command line.

    ``kind`` is ``vm``, ``pattern``, ``label``, ``all``, ``owned`` (or ``attr`` for an attribute
    other than label, which the PA file cannot express but rbac can).
    """

    kind: str
    value: str = ""
    key: str = ""

    def text(self) -> str:
        if self.kind == "all":
            return "all VMs"
        if self.kind == "owned":
            return "owned VMs" if self.key in ("", "owner") else f"VMs whose {self.key} is the user"
        if self.kind == "attr":
            return f"VMs with {self.key}={self.value}"
        return f"{self.kind} {self.value}"

    def spec(self) -> str:
        """The command-line form: ``vm:NAME``, ``pattern:GLOB``, ``label:L``, ``all``, ``owned``."""
        if self.kind in ("all", "owned"):
            return self.kind
        if self.kind == "attr":
            return f"{self.key}:{self.value}"
        return f"{self.kind}:{self.value}"

    def as_dict(self) -> dict:
        out = {"type": self.kind, "text": self.text(), "spec": self.spec()}
        if self.value:
            out["value"] = self.value
        if self.key:
            out["key"] = self.key
        return out


def scope_of(selector) -> list[Scope]:
    """The scopes of an rbac selector (an individual grant of several VMs is several scopes)."""
    kind = selector.kind
    if kind == "individual":
        return [Scope("vm", name) for name in sorted(selector.names)]
    if kind == "pattern":
        return [Scope("pattern", selector.pattern)]
    if kind == "label":
        if selector.key == "label":
            return [Scope("label", selector.value)]
        return [Scope("attr", selector.value, selector.key)]
    if kind == "owned":
        return [Scope("owned", "", "" if selector.key == "owner" else selector.key)]
    return [Scope("all")]


# -- effective permissions --------------------------------------------------------------------
#: (operation id, scope) -> True when every role granting it wants fresh authentication
Effective = dict[tuple[int, Scope], bool]
Key = tuple[int, Scope]


class _View:
    """One side of the comparison: a policy (or nothing), read through its review functions.

    A user's effective permissions are the union of the *own* grants of the roles they are
    authorized for (``authorized_roles``: assignments in force plus inheritance) — exactly what
    ``user_permissions`` returns.  They are kept per role here so that a change can be compared
    only where it can matter: at 10k users, building every user's full permission set twice
    would take minutes, while an assignment or a grant touches a handful of roles.
    """

    def __init__(self, pol, now):
        self.pol = pol
        self.now = now
        self._own: dict[str, dict[Key, bool]] = {}
        self._closure: dict[str, frozenset[str]] = {}
        self._scopes: dict[object, list[Scope]] = {}
        self.users: frozenset[str] = frozenset(pol.users) if pol is not None else frozenset()
        self.roles: frozenset[str] = frozenset(pol.roles) if pol is not None else frozenset()

    def has_user(self, user: str) -> bool:
        return user in self.users

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def authorized(self, user: str) -> frozenset[str]:
        if not self.has_user(user):
            return frozenset()
        return frozenset(self.pol.authorized_roles(user, self.now))

    def closure(self, role: str) -> frozenset[str]:
        """The role and every role it inherits (what a holder of it is authorized for)."""
        c = self._closure.get(role)
        if c is None:
            c = (
                frozenset((role, *self.pol.inherited_roles(role)))
                if self.has_role(role)
                else (frozenset())
            )
            self._closure[role] = c
        return c

    def own(self, role: str) -> dict[Key, bool]:
        """(operation, scope) -> needs authentication, for the role's own grants."""
        got = self._own.get(role)
        if got is None:
            got = {}
            if self.has_role(role):
                auth = self.pol.role_requires_auth(role)
                for p in self.pol.role_permissions(role):
                    if p.role != role:
                        continue
                    scopes = self._scopes.get(p.selector)
                    if scopes is None:
                        scopes = self._scopes[p.selector] = scope_of(p.selector)
                    for sc in scopes:
                        got[(p.operation, sc)] = auth
            self._own[role] = got
        return got

    def state(self, key: Key, roles: Iterable[str]) -> bool | None:
        """None: ``roles`` do not grant ``key``; else whether it needs authentication (only
        when every granting role asks for it: a decision prefers a grant that does not)."""
        flags = [o[key] for o in (self.own(r) for r in roles) if key in o]
        return all(flags) if flags else None

    def assignments(self, user: str) -> dict[str, str | None]:
        """role -> expiry as written (None: no expiry), expired assignments included."""
        if not self.has_user(user):
            return {}
        return {a.role: a.expires_text for a in self.pol.assignments(user)}

    def authenticate(self, role: str) -> bool | None:
        return self.pol.role_requires_auth(role) if self.has_role(role) else None

    def sets(self) -> dict[tuple[str, str], tuple[tuple[str, ...], int]]:
        if self.pol is None:
            return {}
        return {
            (s.kind, s.name): (tuple(sorted(s.roles)), s.cardinality)
            for s in (*self.pol.ssd_sets, *self.pol.dsd_sets)
        }


def _changed_roles(old: _View, new: _View, candidates=None) -> tuple[set[str], set[Key]]:
    """Roles whose own grants (or their authentication) differ, and the keys that differ.

    ``candidates`` limits the comparison to roles that may have changed (see compute)."""
    changed: set[str] = set()
    delta: set[Key] = set()
    roles = old.roles | new.roles
    if candidates is not None:
        roles = roles & set(candidates)
    for role in roles:
        o, n = old.own(role), new.own(role)
        if o == n:
            continue
        changed.add(role)
        delta.update(k for k in o.keys() | n.keys() if o.get(k) != n.get(k))
    return changed, delta


def _compare(old: _View, new: _View, r_old, r_new, changed, delta):
    """(before, after) effective permissions of a holder of ``r_old`` / ``r_new``, restricted
    to the keys that can differ (all others are equal by construction)."""
    cand: set[Key] = set()
    for r in r_old ^ r_new:
        cand.update(old.own(r))
        cand.update(new.own(r))
    if (r_old | r_new) & changed:
        cand |= delta
    e_old: Effective = {}
    e_new: Effective = {}
    for k in cand:
        b, a = old.state(k, r_old), new.state(k, r_new)
        if b is not None:
            e_old[k] = b
        if a is not None:
            e_new[k] = a
    return e_old, e_new


# -- results ----------------------------------------------------------------------------------
def _group(keys: Iterable[tuple[int, Scope]]) -> dict[Scope, list[int]]:
    out: dict[Scope, list[int]] = {}
    for op, sc in keys:
        out.setdefault(sc, []).append(op)
    return {sc: sorted(ops) for sc, ops in sorted(out.items())}


def _op_list(ops: list[int]) -> str:
    if len(ops) == len(CATALOGUE) and set(ops) == set(CATALOGUE.by_id):
        return "every operation"
    return ", ".join(CATALOGUE.names.get(o, str(o)) for o in ops)


def _merged(grouped: Mapping[Scope, list[int]]) -> list[tuple[str, str]]:
    """(operations, scopes) text pairs: scopes with the same operations share one line."""
    by_ops: dict[tuple[int, ...], list[Scope]] = {}
    for sc, ops in grouped.items():
        by_ops.setdefault(tuple(ops), []).append(sc)
    return [
        (_op_list(list(ops)), ", ".join(sc.text() for sc in scopes))
        for ops, scopes in by_ops.items()
    ]


def _roles(names: list[str]) -> str:
    return ("role " if len(names) == 1 else "roles ") + ", ".join(names)


def _rows(grouped: Mapping[Scope, list[int]], auth: Mapping[Scope, list[int]] | None = None):
    """JSON rows; with ``auth``, each operation says whether it needs fresh authentication."""

    def op(sc, o):
        row = {"id": o, "name": CATALOGUE.names.get(o)}
        if auth is not None:
            row["requires_auth"] = o in auth.get(sc, ())
        return row

    return [
        {"operations": [op(sc, o) for o in ops], "scope": sc.as_dict()}
        for sc, ops in grouped.items()
    ]


@dataclass(slots=True)
class UserImpact:
    user: str
    added: bool = False
    removed: bool = False
    assigned: list[str] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)
    expiry: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    #: expiry of newly assigned roles, as written
    until: dict[str, str] = field(default_factory=dict)
    gains: dict[Scope, list[int]] = field(default_factory=dict)
    loses: dict[Scope, list[int]] = field(default_factory=dict)
    #: the part of ``gains`` that needs fresh authentication
    gains_auth: dict[Scope, list[int]] = field(default_factory=dict)
    auth_now: dict[Scope, list[int]] = field(default_factory=dict)
    auth_no_longer: dict[Scope, list[int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.assigned
            or self.unassigned
            or self.expiry
            or self.gains
            or self.loses
            or self.auth_now
            or self.auth_no_longer
        )

    def lines(self) -> list[str]:
        u = self.user
        out = []
        held = [r + (f" (until {self.until[r]})" if r in self.until else "") for r in self.assigned]
        if self.added:
            out.append(f"{u} is added to the UA policy with {_roles(held)}")
        elif self.removed:
            out.append(f"{u} is removed from the UA policy (held {_roles(self.unassigned)})")
        else:
            out.extend(f"{u} is assigned role {r}" for r in held)
            out.extend(f"{u} is no longer assigned role {r}" for r in self.unassigned)
        for role, old, new in self.expiry:
            if new is None:
                out.append(f"{u}: role {role} no longer expires (was until {old})")
            elif old is None:
                out.append(f"{u}: role {role} now expires {new}")
            else:
                out.append(f"{u}: role {role} now expires {new} (was {old})")
        plain = {}
        for sc, ops in self.gains.items():
            rest = [o for o in ops if o not in self.gains_auth.get(sc, ())]
            if rest:
                plain[sc] = rest
        for ops, scopes in _merged(plain):
            out.append(f"{u} gains {ops} on {scopes}")
        for ops, scopes in _merged(self.gains_auth):
            out.append(f"{u} gains {ops} on {scopes} (with authentication)")
        for ops, scopes in _merged(self.loses):
            out.append(f"{u} loses {ops} on {scopes}")
        for ops, scopes in _merged(self.auth_now):
            out.append(f"{u}: {ops} on {scopes} now requires authentication")
        for ops, scopes in _merged(self.auth_no_longer):
            out.append(f"{u}: {ops} on {scopes} no longer requires authentication")
        return out

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "added": self.added,
            "removed": self.removed,
            "assigned": self.assigned,
            "unassigned": self.unassigned,
            "expiry": [{"role": r, "before": o, "after": n} for r, o, n in self.expiry],
            "until": self.until,
            "gains": _rows(self.gains, self.gains_auth),
            "loses": _rows(self.loses),
            "auth_now_required": _rows(self.auth_now),
            "auth_no_longer_required": _rows(self.auth_no_longer),
        }


@dataclass(slots=True)
class RoleImpact:
    role: str
    added: bool = False
    removed: bool = False
    authenticate: tuple[bool | None, bool | None] | None = None
    inherits_added: list[str] = field(default_factory=list)
    inherits_removed: list[str] = field(default_factory=list)
    gains: dict[Scope, list[int]] = field(default_factory=dict)
    loses: dict[Scope, list[int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.authenticate
            or self.inherits_added
            or self.inherits_removed
            or self.gains
            or self.loses
        )

    def lines(self) -> list[str]:
        r = self.role
        out = []
        if self.added:
            extra = [f"inherits {', '.join(self.inherits_added)}"] if self.inherits_added else []
            if self.authenticate and self.authenticate[1]:
                extra.append("requires authentication")
            out.append(f"role {r} is new" + (f" ({'; '.join(extra)})" if extra else ""))
        elif self.removed:
            out.append(f"role {r} is removed")
        else:
            if self.authenticate:
                now = "now requires" if self.authenticate[1] else "no longer requires"
                out.append(f"role {r} {now} authentication")
            if self.inherits_added:
                out.append(f"role {r} now inherits {', '.join(self.inherits_added)}")
            if self.inherits_removed:
                out.append(f"role {r} no longer inherits {', '.join(self.inherits_removed)}")
        for ops, scopes in _merged(self.gains):
            out.append(f"role {r} gains {ops} on {scopes}")
        for ops, scopes in _merged(self.loses):
            out.append(f"role {r} loses {ops} on {scopes}")
        return out

    def as_dict(self) -> dict:
        auth = None
        if self.authenticate:
            auth = {"before": self.authenticate[0], "after": self.authenticate[1]}
        return {
            "role": self.role,
            "added": self.added,
            "removed": self.removed,
            "authenticate": auth,
            "inherits_added": self.inherits_added,
            "inherits_removed": self.inherits_removed,
            "gains": _rows(self.gains),
            "loses": _rows(self.loses),
        }


@dataclass(slots=True)
class Impact:
    """The whole report; ``bool(impact)`` says whether anything effective changed."""

    users: list[UserImpact] = field(default_factory=list)
    roles: list[RoleImpact] = field(default_factory=list)
    separation: list[str] = field(default_factory=list)
    #: why there is no "before" policy (it did not load), if so: everything counts as new
    before_error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.users or self.roles or self.separation)

    def gains_of(self, user: str) -> dict[Scope, list[int]]:
        return next((u.gains for u in self.users if u.user == user), {})

    def loses_of(self, user: str) -> dict[Scope, list[int]]:
        return next((u.loses for u in self.users if u.user == user), {})

    def render(self) -> str:
        out: list[str] = []
        if self.before_error:
            out.append(
                "note: the current policy does not load, so everything is compared with an "
                "empty policy:"
            )
            out.extend("  " + line for line in self.before_error.splitlines())
        if not self:
            out.append("Impact: no user, role or separation set changes effectively.")
            return "\n".join(out) + "\n"
        out.append("Impact on users:")
        lines = [line for u in self.users for line in u.lines()]
        if lines:
            out.extend("  " + line for line in lines)
        else:
            out.append("  no user's permissions change")
        role_lines = [line for r in self.roles for line in r.lines()]
        if role_lines:
            out.append("Impact on roles:")
            out.extend("  " + line for line in role_lines)
        if self.separation:
            out.append("Separation of duty:")
            out.extend("  " + line for line in self.separation)
        return "\n".join(out) + "\n"

    def as_dict(self) -> dict:
        return {
            "changed": bool(self),
            "before_error": self.before_error,
            "users": [u.as_dict() for u in self.users],
            "roles": [r.as_dict() for r in self.roles],
            "separation": self.separation,
        }


# -- computation ------------------------------------------------------------------------------
def compute(
    before, after, *, now=None, before_error: str | None = None, roles_changed=None
) -> Impact:
    """Compare two RbacPolicy objects (``before`` may be None: nothing was in force).

    ``roles_changed``, when given, names every role whose PA definition may differ (for
    instance from :func:`secured_virt.rolefiles.edit.roles_differing`; empty when only the UA
    changed).  The grants of other roles are then taken as equal instead of being compared,
    which is what makes a change to a large policy quick to assess.
    """
    old, new = _View(before, now), _View(after, now)
    imp = Impact(before_error=before_error)
    hint = roles_changed if before is not None else None
    changed, delta = _changed_roles(old, new, hint)
    for user in sorted(old.users | new.users):
        imp_u = _user_impact(user, old, new, changed, delta)
        if imp_u:
            imp.users.append(imp_u)
    for role in sorted(old.roles | new.roles):
        imp_r = _role_impact(role, old, new, changed, delta)
        if imp_r:
            imp.roles.append(imp_r)
    imp.separation = _separation(old.sets(), new.sets())
    return imp


def _diff_effective(target, e_old: Effective, e_new: Effective, *, auth_detail: bool) -> None:
    target.gains = _group(k for k in e_new if k not in e_old)
    target.loses = _group(k for k in e_old if k not in e_new)
    if auth_detail:
        target.gains_auth = _group(k for k in e_new if k not in e_old and e_new[k])
        both = [k for k in e_new if k in e_old and e_new[k] != e_old[k]]
        target.auth_now = _group(k for k in both if e_new[k])
        target.auth_no_longer = _group(k for k in both if not e_new[k])


def _user_impact(user: str, old: _View, new: _View, changed, delta) -> UserImpact:
    u = UserImpact(user)
    # a user that appears or disappears with no roles changes nothing worth a line
    a_old, a_new = old.assignments(user), new.assignments(user)
    u.added = not old.has_user(user) and bool(a_new)
    u.removed = not new.has_user(user) and bool(a_old)
    u.assigned = sorted(set(a_new) - set(a_old))
    u.unassigned = sorted(set(a_old) - set(a_new))
    u.expiry = [(r, a_old[r], a_new[r]) for r in sorted(set(a_old) & set(a_new))]
    u.expiry = [e for e in u.expiry if e[1] != e[2]]
    u.until = {r: a_new[r] for r in u.assigned if a_new[r]}
    r_old, r_new = old.authorized(user), new.authorized(user)
    if r_old != r_new or (r_old | r_new) & changed:
        e_old, e_new = _compare(old, new, r_old, r_new, changed, delta)
        _diff_effective(u, e_old, e_new, auth_detail=True)
    return u


def _role_impact(role: str, old: _View, new: _View, changed, delta) -> RoleImpact:
    r = RoleImpact(role)
    a_old, a_new = old.authenticate(role), new.authenticate(role)
    r.added, r.removed = a_old is None, a_new is None
    if a_old != a_new:
        r.authenticate = (a_old, a_new)
    c_old, c_new = old.closure(role), new.closure(role)
    if not r.removed:
        r.inherits_added = sorted(c_new - c_old - {role})
    if not r.added:
        r.inherits_removed = sorted(c_old - c_new - {role})
    if c_old != c_new or (c_old | c_new) & changed:
        e_old, e_new = _compare(old, new, c_old, c_new, changed, delta)
        _diff_effective(r, e_old, e_new, auth_detail=False)
    return r


def _separation(old: dict, new: dict) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        kind, name = key

        def words(v):
            return f"fewer than {v[1]} of {', '.join(v[0])}"

        if key not in old:
            out.append(f"{kind} separation set '{name}' is new: {words(new[key])}")
        elif key not in new:
            out.append(f"{kind} separation set '{name}' is removed (was {words(old[key])})")
        elif old[key] != new[key]:
            out.append(
                f"{kind} separation set '{name}' changes: {words(old[key])} -> {words(new[key])}"
            )
    return out
