"""The compiled policy: a decision is a handful of dict lookups, whatever the policy size.

Compilation turns the model into:

* per role, ``{object name: {operation: grant}}`` for grants that list objects by name (the
  seed's ``type="individual"``).  The inner ``{operation: grant}`` maps are shared by every
  object of one grant block, so 100k VMs cost 100k small dict entries, not 100k x operations.
* per role, the scoped grants (all / pattern / label / owned) by operation; they are tested
  one by one, and there are few of them.
* a *profile* per distinct set of assigned (or session-active) roles: the effective roles in
  preference order, each with its inheritance path, the by-name maps of those roles, and their
  scoped grants by operation.  Users with the same assignments share one profile.
* ``_fast``: user -> the by-name maps of their profile, for the commonest kind of user (a few
  roles, no expiring assignment, no scoped grant), so that without the C index decide()
  answers them in one dict lookup for the user and one per role for the object (only when no
  role is given to a Unix group: then every call asks _decide, which knows the caller's groups).
* when the C extension ``rbac._native`` is built, every user's profile, the by-name maps and
  the scoped grants copied into flat C tables; ``decide`` is then the C index's method.  It
  answers every call it can answer exactly -- by-name and scoped grants (all, pattern, label,
  owned), any number of roles, roles needing authentication, expiring assignments within
  their current window, callers without a record, and group roles: when a group role could
  grant a request, it uses the profile of the caller's groups that _record() told it when it
  last asked NSS, for exactly as long as the resolver's cached answer stands -- and hands
  every other call, unchanged, to ``_decide``.  At 10k users and 100k objects a Python dict
  lookup misses the CPU caches three or four times; the C tables keep hash, key and value in
  one slot, which halves the cache lines a decision touches (numbers in bench/RESULTS.md).
  ``RbacPolicy(model, native=False)`` keeps everything in Python (the reference:
  tests/rbac/test_native_differential.py holds the two to identical Decisions).
* with the C index, ``decide_in(parts, ...)`` / ``partitioned(parts, otherwise)``: decide()
  behind a check of generic *partitions* (``Partitions``: an object attribute names the
  object's partition, each user's partitions are told by the caller until a deadline, a
  partition may restrict the operations allowed in it), both in one C call when the check
  passes; otherwise None (or the caller's ``otherwise``), so that the caller's own check runs
  and words its refusal.  rbac knows nothing of what the partitions stand for (the
  front-end's realms: secured_virt.tenancy.check.Tenancy.partitions).
* on first need, an object -> {role: ...} index, used for users with very many roles (walking
  from the object is then shorter) and by review functions.

Checks go from the user's few roles to the object: the maps touched are small, which matters
more than the number of lookups once the policy no longer fits in the CPU caches.  The Decision
is one tuple allocation holding the grant; its texts are worded only when read (rbac.decision).

Which grant is reported when several allow: one that needs no fresh authentication if any; a
by-name grant before a scoped one; then the nearest role (fewest inheritance steps), then the
role name.

The policy is immutable once built.  A few caches fill on first use (profiles for new role
sets, the object index, a user's profile between two expiry instants, the C index's group
answers); each is a single reference assignment or one C call under the GIL, so sharing a
policy between threads is safe.
"""

from __future__ import annotations

import os
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping

from . import hierarchy
from .decision import Decision, denied
from .errors import DsdViolation, SessionError
from .explain import Explanation
from .explain import explain as explain_decision
from .groups import RESOLVER, GroupResolver
from .model import Assignment, GrantBlock, PolicyModel, SeparationSet, id_ranges, where
from .review import ReviewMixin
from .selectors import AnyObject, Attribute, Glob, Owned
from .session import Session
from .timeutil import to_timestamp

#: the interface of rbac/_native.c this engine calls (the module's API constant)
NATIVE_API = 3

try:  # the C index (rbac/_native.c); optional: without it every decision is answered in Python
    from . import _native
except ImportError:  # pragma: no cover - built without a compiler
    _native = None
if _native is not None and getattr(_native, "API", 1) != NATIVE_API:  # pragma: no cover
    # a build older than this engine: calling it the new way would fail at every load
    warnings.warn(
        f"rbac._native ({_native.__file__}) is a stale build (interface "
        f"{getattr(_native, 'API', 1)}, not {NATIVE_API}); deciding in pure Python. "
        "Rebuild it: make native (or python setup.py build_ext --inplace)",
        RuntimeWarning,
        stacklevel=1,
    )
    _native = None


class _PythonPartitions:
    """Partitions without the C index: holds nothing, so decide_in() always says "ask your
    own check" (None) and the caller's Python checks answer every request."""

    def __init__(self, key: str, restrict: Mapping[str, frozenset]):
        self.key = key

    def tell(self, user: str, partitions: frozenset, until: float) -> None:
        pass

    def forget(self) -> None:
        pass

    def allows(self, user: str, op, attrs) -> bool:
        return False

    def known(self) -> int:
        return 0


#: Partitions(key, restrict): a check the C index runs before a decision (decide_in).
#: Objects are split into partitions, an object's named by its attribute ``key`` (absent or
#: "": in no partition); each user belongs to a set of partitions, which the caller tells it
#: (``tell(user, frozenset, until)``, valid while time.monotonic() < until, like the group
#: answers of the index); ``restrict`` maps a partition to the frozenset of operation ids
#: allowed in it (a partition not in it allows every operation).  The check passes when the
#: object's partition is among the user's (or the object is in none and the user in none)
#: and the operation is allowed there.  rbac knows nothing of what the partitions stand for.
Partitions = _native.Partitions if _native is not None else _PythonPartitions

_INF = float("inf")
#: beyond this many effective roles with by-name grants, checks go from the object side
MANY_ROLES = 16
#: profiles of group members the C index is given at most (one per combination of own and
#: group roles, not per user); beyond, such users are answered in Python
_MAX_NATIVE_PROFILES = 100000
_new = tuple.__new__

# selector kinds of rbac/_native.c (enum K_*)
_K_ALL, _K_GLOB, _K_MATCH, _K_ATTR, _K_OWNED, _K_PYTHON = range(6)


def _selector_data(sel, auth) -> tuple[int, bool]:
    """(kind, needs_auth) of a scoped grant's selector for the C index: the selector classes
    it can test itself; anything else (a subclass, another Selector) it leaves to Python."""
    t = type(sel)
    if t is AnyObject:
        kind = _K_ALL
    elif t is Glob and type(sel.pattern) is str:
        # '*' and '?' C matches itself; bracket sets have fnmatch's own rules: its regex
        kind = _K_MATCH if "[" in sel.pattern else _K_GLOB
    elif t is Attribute and type(sel.key) is str and type(sel.value) is str:
        kind = _K_ATTR
    elif t is Owned and type(sel.key) is str:
        kind = _K_OWNED
    else:
        kind = _K_PYTHON
    return kind, bool(auth)


def _sel_ab(gr) -> tuple:
    """The data C tests a scoped grant's selector with (see _selector_data)."""
    sel = gr.selector
    t = type(sel)
    if t is Glob:
        return (sel._match, None) if "[" in sel.pattern else (sel.pattern, None)
    if t is Attribute:
        return sel.key, sel.value
    if t is Owned:
        return sel.key, None
    return None, None


class _UnknownUser:
    """The reason of a denial to a user without a <User> entry (nor a group role that
    grants), worded when read."""

    __slots__ = ("policy",)

    def __init__(self, policy):
        self.policy = policy

    def reason_text(self, d: Decision) -> str:
        user, op, obj = d.subject
        pol = self.policy
        if pol.group_assignments:
            groups = ", ".join(sorted(pol.group_assignments))
            return (
                f"user '{user}' has no <User> entry, and no role the UA policy gives to "
                f"its groups ({groups}) grants {pol.op_label(op)} on '{obj}' to them"
            )
        return f"user '{user}' unknown"


class _NoRoles:
    """The reason of a denial to a user whose <User> entry holds no role."""

    __slots__ = ()

    def reason_text(self, d: Decision) -> str:
        return f"user '{d.subject[0]}' has no roles"


_NO_ROLES = _NoRoles()


class _ThroughGroup:
    """The reason of a decision allowed through a role of a Unix group, worded when read:
    the grant's own reason and the group it came through (one per group, shared)."""

    __slots__ = ("group",)

    def __init__(self, group: str):
        self.group = group

    def reason_text(self, d: Decision) -> str:
        return (
            f"{d[2].reason_text(d)} (assigned to group '{self.group}', of which "
            f"'{d[6]}' is a member)"
        )


class Grant:
    """One operation granted to one role on one selector, with its source line."""

    __slots__ = ("auth", "block", "op", "role", "selector", "source", "values")

    def __init__(self, role, op, selector, source, auth, block, values=None):
        self.role = role
        self.op = op
        self.selector = selector
        self.source = source
        self.auth = auth
        self.block = block
        #: the argument constraint (ArgumentValues) or None; read only by decide_values()
        self.values = values

    def text(self, obj: str | None = None) -> str:
        """'pa.xml:12: role R accepts operation 16 on individual VM Domain-0' (and, for a grant
        with an argument constraint, '... with the values: a, b')."""
        loc = where(self.source)
        body = f"role {self.role} accepts operation {self.op} on {self.selector.describe(obj)}"
        if self.values is not None:
            body += f" with the values: {self.values.describe()}"
        return f"{loc}: {body}" if loc else body

    def reason_text(self, d: Decision) -> str:
        """The reason of a decision this grant allowed (worded when read)."""
        via = d.via
        reason = f"granted by role '{self.role}'"
        if len(via) > 1:
            reason += f" (inherited: {' -> '.join(via)})"
        if self.auth:
            reason += "; the role requires fresh authentication"
        return reason


class Profile:
    """Effective roles of one set of assigned (or active) roles, ready for checking."""

    __slots__ = ("exact", "pairs", "rank", "roles", "roots", "scoped")

    def __init__(self, roots, pairs, scoped, exact):
        self.roots: frozenset[str] = roots
        # (effective role, inheritance path from the assigned/active role to it)
        self.pairs: tuple[tuple[str, tuple[str, ...]], ...] = pairs
        self.rank = {r: i for i, (r, _via) in enumerate(pairs)}
        self.roles = frozenset(self.rank)
        self.scoped: dict[int, tuple[tuple[Grant, tuple[str, ...]], ...]] = scoped
        # ({object: {op: grant}}, role, via) for each effective role with by-name grants, in
        # preference order; None when there are too many (then the object index is used)
        self.exact: tuple[tuple[dict, str, tuple[str, ...]], ...] | None = exact


class UserRecord:
    __slots__ = (
        "assignments",
        "exact",
        "expiring",
        "groups",
        "name",
        "notes",
        "profile",
        "scoped",
        "source",
        "window",
    )

    def __init__(self, name, assignments, profile, source, groups=(), notes=()):
        self.name = name
        #: the UA groups the user belongs to now (roles through them are in ``assignments``)
        self.groups: tuple[str, ...] = tuple(groups)
        #: why some group roles do not count (for explanations)
        self.notes: tuple[str, ...] = tuple(notes)
        self.assignments: tuple[Assignment, ...] = assignments
        self.profile: Profile = profile  # all assignments in force
        self.source = source
        exp = [a.expires for a in assignments if a.expires is not None]
        self.expiring = bool(exp)
        # (from, until, profile): the profile in force between two expiry instants
        self.window = (-_INF, min(exp), profile) if exp else (-_INF, _INF, profile)


class RbacPolicy(ReviewMixin):
    """A loaded, validated and compiled UA/PA policy.  Immutable; safe to share."""

    def __init__(
        self, model: PolicyModel, *, native: bool = True, groups: GroupResolver | None = None
    ):
        self.operations: Mapping[int, str] = dict(model.operations or {})
        self._op_ids = {n: i for i, n in self.operations.items()}
        self.digest: str = model.digest
        self.ssd_sets: tuple[SeparationSet, ...] = model.ssd
        self.dsd_sets: tuple[SeparationSet, ...] = model.dsd
        self._closure = model.closure
        self._role_auth = {r: d.authenticate for r, d in model.roles.items()}
        self.roles: tuple[str, ...] = tuple(sorted(model.roles))
        self.users: tuple[str, ...] = tuple(sorted(model.users))
        self._compile_grants(model.grants)
        self._profiles: dict[frozenset[str], Profile] = {}
        self._users: dict[str, UserRecord] = {}
        for name in model.users:
            assigns = model.assignments.get(name, ())
            prof = self._profile_for(frozenset(a.role for a in assigns))
            self._users[name] = UserRecord(name, assigns, prof, model.users[name])
        # roles given to Unix groups: who holds them is asked of NSS at decision time
        self.group_assignments: dict[str, tuple[Assignment, ...]] = {
            g: a for g, a in model.groups.items() if a
        }
        self.groups: GroupResolver = groups if groups is not None else RESOLVER
        self._composite: dict[tuple[str, frozenset[str]], UserRecord] = {}
        #: every role some group holds (with what it inherits), as one profile: a request no
        #: role of it could grant never needs to know the caller's groups (no NSS lookup)
        self._group_any: Profile | None = None
        #: operations a by-name miss of a _fast user denies outright: those no group role
        #: grants on anything (for the others the user's groups may still grant: _decide asks)
        self._miss_denies = self.operations
        if self.group_assignments:
            self._group_any = self._profile_for(
                frozenset(a.role for g in self.group_assignments.values() for a in g)
            )
            granted = set(self._group_any.scoped)
            for objmap, _role, _via in self._group_any.exact or ():
                for opmap in objmap.values():
                    granted.update(opmap)
            if self._group_any.exact is None:
                granted = set(self.operations)
            self._miss_denies = {o: n for o, n in self.operations.items() if o not in granted}
        # users decide() can answer with nothing but their by-name grants
        self._fast: dict[str, tuple] = {
            name: u.profile.exact
            for name, u in self._users.items()
            if u.assignments
            and not u.expiring
            and u.profile.exact is not None
            and not u.profile.scoped
        }
        self._authorized_index: dict[str, frozenset[str]] | None = None
        self._exact: dict[str, dict[str, dict[int, Grant]]] | None = None
        #: users decide() answers inline in Python (pure-Python mode): with group roles, none,
        #: since the caller's groups may hold a nearer role (_decide asks)
        self._inline = self._fast if not self.group_assignments else {}
        #: group -> the lazily worded reason of a grant through it (see _ThroughGroup)
        self._through: dict[str, _ThroughGroup] = {}
        self._unknown = _UnknownUser(self)
        #: whether decide() is the C index's (see _native_index); False: pure Python
        self.native = bool(native and _native is not None)
        self._index = None
        #: the resolver's membership() when the C index keeps its answers: only for a resolver
        #: whose clock the index can read too (answers expire on that clock)
        self._membership = None
        if self.native:
            self._index, self._index_profiles = self._build_index()
            # an instance attribute shadows the method: callers reach C in one call
            self.decide = self._index.decide
            self.decide_in = self._index.decide_in
            self.partitioned = self._index.partitioned
            if hasattr(self.groups, "_clock"):
                self._membership = getattr(self.groups, "membership", None)
            if self.group_assignments:
                subscribe = getattr(self.groups, "subscribe", None)
                if subscribe is not None:
                    subscribe(weakref.WeakMethod(self._forget_native_groups))

    def _native_index(self):
        """A C index answering what decide() answers, from the same compiled maps; anything
        it cannot answer exactly it hands to ``_decide`` (rbac/_native.c says how)."""
        return self._build_index()[0]

    def _build_index(self):
        """(the C index, {profile key: its number}): every user with roles, their profile
        (with its validity window when assignments expire), and the profile of every role
        a group holds; the profiles of users' group roles are added as NSS answers come."""
        role_objs = self._role_objs
        self._role_numbers = numbers = {role: i for i, role in enumerate(role_objs)}
        roles = [(bool(self._role_auth[role]), objmap) for role, objmap in role_objs.items()]
        profiles: list[tuple] = []
        numbered: dict[tuple, int] = {}  # (roots, group naming) -> profile number
        desc = self._native_profile

        def number(prof: Profile) -> int:
            key = (prof.roots, ())
            k = numbered.get(key)
            if k is None:
                k = numbered[key] = len(profiles)
                profiles.append(desc(prof, numbers))
            return k

        users: dict[str, int | tuple] = {}
        for name, u in self._users.items():
            if not u.assignments:  # "has no roles"
                users[name] = (number(u.profile), None, None)
            elif u.expiring:
                lo, hi, prof = u.window
                users[name] = (number(prof), float(lo), float(hi))
            else:
                users[name] = number(u.profile)
        ga = number(self._group_any) if self._group_any is not None else -1
        # a miss of a catalogue operation is a plain denial; without a catalogue, of any
        known = sum(1 << op for op in self.operations if op >= 0) if self.operations else None
        clock = getattr(self.groups, "_clock", None)
        index = _native.Index(
            self._decide,
            self,
            Decision,
            users,
            profiles,
            roles,
            known,
            group_any=ga,
            clock=None if clock is time.monotonic else clock,
            unknown=self._unknown,
            no_roles=_NO_ROLES,
        )
        return index, numbered

    def _native_profile(self, prof: Profile, numbers, naming=None) -> tuple:
        """A profile as the C index takes it: the roles with by-name grants in preference
        order, and the scoped grants by operation with what C needs to test their selector;
        ``naming``: {assigned role: the group it comes through} (reasons that say so)."""
        role_objs = self._role_objs

        def why(via):
            g = naming.get(via[0]) if naming else None
            return self._through_group(g) if g else None

        members = tuple((numbers[r], r, via, why(via)) for r, via in prof.pairs if r in role_objs)
        scoped = tuple(
            (op, *_selector_data(gr.selector, gr.auth), gr.role, via, why(via), gr, *_sel_ab(gr))
            for op, grants in prof.scoped.items()
            for gr, via in grants
        )
        return members, scoped

    def _forget_native_groups(self) -> None:
        """The resolver forgot its answers: so does the C index (the next call asks)."""
        if self._index is not None:
            self._index.forget_groups()

    def _remember(self, user, until, rec: UserRecord | None, own: bool) -> None:
        """Tell the C index which record answers for ``user`` until the resolver's clock
        reads ``until`` (its cached NSS answer expires): their own (``own``), or ``rec``
        with their groups' roles."""
        if type(user) is not str or until is None:
            return
        if own:
            k = -1
        elif rec is None or rec.expiring or not rec.assignments:
            k = -2  # Python words these (windows, "has no roles")
        else:
            naming = {a.role: self.group_of(rec, a.role) for a in rec.assignments}
            naming = {r: g for r, g in naming.items() if g is not None}
            key = (rec.profile.roots, tuple(sorted(naming.items())))
            k = self._index_profiles.get(key)
            if k is None:
                if len(self._index_profiles) > _MAX_NATIVE_PROFILES:
                    k = -2  # bounded: beyond this many role combinations, Python answers
                else:
                    desc = self._native_profile(rec.profile, self._role_numbers, naming)
                    k = self._index_profiles[key] = self._index.add_profile(desc)
        self._index.remember(user, k, until)

    # -- compilation -------------------------------------------------------------------------
    def _compile_grants(self, blocks: list[GrantBlock]) -> None:
        role_objs: dict[str, dict[str, dict[int, Grant]]] = {}
        scoped: dict[str, dict[int, list[Grant]]] = {}
        by_role: dict[str, list[tuple[GrantBlock, dict[int, Grant]]]] = {}
        for block in blocks:
            auth = self._role_auth[block.role]
            opmap: dict[int, Grant] = {}
            for op, src in block.ops:
                if op not in opmap:
                    vals = block.values.get(op)
                    opmap[op] = Grant(block.role, op, block.selector, src, auth, block, vals)
            by_role.setdefault(block.role, []).append((block, opmap))
            if block.selector.exact:
                objmap = role_objs.setdefault(block.role, {})
                get = objmap.get
                for name in block.selector.names:
                    cur = get(name)
                    # several blocks of one role name this object: merge, first line wins
                    objmap[name] = opmap if cur is None else {**opmap, **cur}
            else:
                mine = scoped.setdefault(block.role, {})
                for op, g in opmap.items():
                    mine.setdefault(op, []).append(g)
        self._role_objs = role_objs
        self._scoped = scoped
        self._blocks = by_role

    def _obj_index(self) -> dict[str, dict[str, dict[int, Grant]]]:
        """object -> {role: {op: grant}}; built on first use (users with very many roles,
        reviews), since ordinary checks go from the user's few roles to the object."""
        idx = self._exact
        if idx is None:
            idx = {}
            for role, objmap in self._role_objs.items():
                for name, opmap in objmap.items():
                    per = idx.get(name)
                    if per is None:
                        idx[name] = {role: opmap}
                    else:
                        per[role] = opmap
            self._exact = idx
        return idx

    def _profile_for(self, roots: frozenset[str]) -> Profile:
        prof = self._profiles.get(roots)
        if prof is not None:
            return prof
        best: dict[str, tuple[int, str]] = {}  # role -> (distance, root)
        closure = self._closure
        for root in sorted(roots):
            for role, (dist, _hop) in closure[root].items():
                old = best.get(role)
                if old is None or dist < old[0]:
                    best[role] = (dist, root)
        order = sorted(best.items(), key=lambda kv: (kv[1][0], kv[0]))
        pairs = tuple(
            (role, (role,) if dist == 0 else hierarchy.path(closure, root, role))
            for role, (dist, root) in order
        )
        scoped: dict[int, list[tuple[Grant, tuple[str, ...]]]] = {}
        for role, via in pairs:
            for op, grants in self._scoped.get(role, {}).items():
                lst = scoped.setdefault(op, [])
                lst.extend((g, via) for g in grants)
        role_objs = self._role_objs
        exact = tuple((role_objs[r], r, via) for r, via in pairs if r in role_objs)
        prof = Profile(
            roots,
            pairs,
            {op: tuple(v) for op, v in scoped.items()},
            exact if len(exact) <= MANY_ROLES else None,
        )
        self._profiles[roots] = prof
        return prof

    def _current_profile(self, u: UserRecord, t: float) -> Profile:
        """The profile of the assignments of ``u`` in force at time ``t``."""
        lo, hi, prof = u.window
        if lo <= t < hi:
            return prof
        live = [a for a in u.assignments if not a.expired(t)]
        prof = self._profile_for(frozenset(a.role for a in live))
        past = [a.expires for a in u.assignments if a.expires is not None and a.expires <= t]
        future = [a.expires for a in live if a.expires is not None]
        u.window = (max(past, default=-_INF), min(future, default=_INF), prof)
        return prof

    def _via(self, root: str, role: str) -> tuple[str, ...]:
        return hierarchy.path(self._closure, root, role)

    # -- the decision ------------------------------------------------------------------------
    def decide(self, user: str, op_id: int, obj: str, attrs=None, now=None) -> Decision:
        """May ``user`` perform operation ``op_id`` on object ``obj`` (with ``attrs``) now?

        ``now`` (datetime or POSIX time; default the clock) only matters for assignments with
        an expiry.  Never raises for unknown users, roles or operations: it denies and says why.
        """
        ex = self._inline.get(user)
        if ex is not None and type(op_id) is int:
            # the common case, inlined from _check(): a user holding few roles, without
            # expiring assignments or scoped grants
            for objmap, role, via in ex:
                m = objmap.get(obj)
                if m is not None:
                    gr = m.get(op_id)
                    if gr is not None:
                        if not gr.auth:
                            return _new(
                                Decision, (True, role, gr, gr, False, via, user, op_id, obj)
                            )
                        break  # needs authentication: _check() prefers a role that does not
            else:
                if op_id in self._miss_denies:
                    return _new(Decision, (False, None, "", self, False, (), user, op_id, obj))
        return self._decide(user, op_id, obj, attrs, now)

    # -- group roles ---------------------------------------------------------------------------
    def _record(self, user: str) -> UserRecord | None:
        """The user's record with the roles of the groups they are in *now* (NSS, cached by
        ``self.groups``); their own record when no group of theirs has roles.  With the C
        index, it is told the answer for as long as the resolver's cached one stands."""
        u = self._users.get(user)
        if not self.group_assignments:
            return u
        membership = self._membership
        if membership is not None:
            groups, until = membership(user, self.group_assignments)
        else:
            groups, until = self.groups.member_of(user, self.group_assignments), None
        if not groups:
            if until is not None:
                self._remember(user, until, u, own=True)
            return u
        key = (user, groups)
        rec = self._composite.get(key)
        if rec is None:
            rec = self._composite_record(user, u, groups)
            if len(self._composite) > 10000:
                self._composite = {}
            self._composite[key] = rec
        if until is not None:
            self._remember(user, until, rec, own=False)
        return rec

    def _composite_record(self, user: str, u: UserRecord | None, groups) -> UserRecord:
        own = u.assignments if u is not None else ()
        through = tuple(a for g in sorted(groups) for a in self.group_assignments[g])
        notes: list[str] = []
        broken = self._ssd_broken(own + through)
        if broken:  # fail closed: the group roles that would break the set grant nothing
            notes.append(
                f"the roles of groups {', '.join(sorted(groups))} together with the user's own "
                f"would break {broken}; the group roles grant nothing to '{user}'"
            )
            through = ()
        assigns = own + through
        prof = self._profile_for(frozenset(a.role for a in assigns))
        src = u.source if u is not None else through[0].source if through else (None, None)
        return UserRecord(user, assigns, prof, src, groups=sorted(groups), notes=notes)

    def _ssd_broken(self, assigns) -> str | None:
        if not self.ssd_sets:
            return None
        held = set()
        for a in assigns:
            held.update(self._closure[a.role])
        for s in self.ssd_sets:
            if len(s.roles & held) >= s.cardinality:
                return s.describe()
        return None

    def group_of(self, u: UserRecord, root: str) -> str | None:
        """The group an assigned (root) role of ``u`` comes through; None if assigned to the
        user directly (a direct assignment wins)."""
        group = None
        for a in u.assignments:
            if a.role == root:
                if a.group is None:
                    return None
                group = group or a.group
        return group

    def _name_group(self, u: UserRecord, d: Decision) -> Decision:
        """An allowed decision through a group role says so in its reason (audit, --explain)."""
        if not d.allowed or not u.groups or not d.via:
            return d
        g = self.group_of(u, d.via[0])
        if g is None:
            return d
        why = self._through_group(g)
        return _new(Decision, (True, d[1], d[2], why, d[4], d[5], d[6], d[7], d[8]))

    def _through_group(self, group: str) -> _ThroughGroup:
        why = self._through.get(group)
        if why is None:
            why = self._through[group] = _ThroughGroup(group)
        return why

    def _decide(self, user: str, op_id, obj: str, attrs=None, now=None) -> Decision:
        """decide() for everything but the commonest case (same parameters, so the C index can
        hand over its call unchanged)."""
        if type(op_id) is not int and not isinstance(op_id, str):  # True, 1.0: no operation
            return self._deny(None, user, op_id, obj, attrs, now)
        ga = self._group_any
        if ga is not None and self._check(ga, user, op_id, obj, attrs) is None:
            u = self._users.get(user)  # no group role could grant this: groups do not matter
        else:
            u = self._record(user)
        if u is None:
            return self._deny(None, user, op_id, obj, attrs, now)
        p = u.profile
        if u.expiring:
            t = time.time() if now is None else to_timestamp(now)
            lo, hi, p = u.window
            if not lo <= t < hi:
                p = self._current_profile(u, t)
        d = self._check(p, user, op_id, obj, attrs)
        if d is None:
            return self._deny(u, user, op_id, obj, attrs, now)
        return self._name_group(u, d) if u.groups else d

    def _check(self, p: Profile, user: str, op, obj: str, attrs) -> Decision | None:
        """The hot path: a Decision if some effective role of ``p`` grants, else None."""
        fallback = None  # (grant, via) of a grant that needs authentication
        ex = p.exact
        if ex is not None:
            # from the user's few roles to the object: small dicts, few cache misses
            for objmap, role, via in ex:
                m = objmap.get(obj)
                if m is not None:
                    gr = m.get(op)
                    if gr is not None:
                        if not gr.auth:
                            return _new(Decision, (True, role, gr, gr, False, via, user, op, obj))
                        if fallback is None:
                            fallback = (gr, via)
        else:
            # very many roles: from the object to the roles granting it, best rank wins
            g = self._obj_index().get(obj)
            if g is not None:
                pairs = p.pairs
                fallback_rank = best_rank = len(pairs)
                best = None
                rank = p.rank
                for role, m in g.items():
                    i = rank.get(role)
                    if i is None:
                        continue
                    gr = m.get(op)
                    if gr is None:
                        continue
                    if not gr.auth:
                        if i < best_rank:
                            best_rank, best = i, gr
                    elif i < fallback_rank:
                        fallback_rank, fallback = i, (gr, pairs[i][1])
                if best is not None:
                    via = pairs[best_rank][1]
                    return _new(Decision, (True, best.role, best, best, False, via, user, op, obj))
        sc = p.scoped.get(op)
        if sc is not None:
            for gr, via in sc:
                if gr.selector.matches(obj, attrs, user):
                    if not gr.auth:
                        return _new(Decision, (True, gr.role, gr, gr, False, via, user, op, obj))
                    if fallback is None:
                        fallback = (gr, via)
        if fallback is not None:
            gr, via = fallback
            return _new(Decision, (True, gr.role, gr, gr, True, via, user, op, obj))
        return None

    # -- argument constraints (not hot: only requests that carry values) --------------------
    def decide_in(self, parts, user: str, op_id: int, obj: str, attrs=None) -> Decision | None:
        """decide(), for a request that passes the Partitions check ``parts`` (see
        Partitions) -- or None: the check does not pass, or the index does not know (the
        user was not told, their answer expired, no C index).  The caller then runs its own
        check, which words its refusal, and decide() as before; a Decision here is exactly
        what that pair would give when its own check passes."""
        return None

    def partitioned(self, parts, otherwise=None):
        """decide_in() bound to ``parts``, as one callable ``(user, op_id, obj, attrs=None)``
        that calls ``otherwise`` with the same arguments where decide_in() says None (or
        returns None when ``otherwise`` is None): with the C index, a caller's whole decision
        -- both checks, or its own fallback -- is one C call."""

        def decide(user, op_id, obj, attrs=None):
            return None if otherwise is None else otherwise(user, op_id, obj, attrs)

        return decide

    def decide_values(
        self,
        user: str,
        op_id,
        obj: str,
        values: Mapping[str, str],
        attrs=None,
        now=None,
    ) -> Decision:
        """decide(), for a request that also carries argument ``values``: allowed only through
        a grant that covers ``obj`` *and* whose argument constraint allows every value.

        ``values`` maps what each value is, in words, to the value (``{"label": "dom_A"}``);
        the words only shape the denial.  Kept apart from decide() so grants without a
        constraint, and requests without values, cost nothing extra.
        """
        d = self.decide(user, op_id, obj, attrs, now)
        if not d.allowed:
            return d
        u = self._record(user)
        p = self._current_profile(u, to_timestamp(now)) if u.expiring else u.profile
        return self._check_values(p, user, self.resolve_operation(op_id), obj, attrs, values)

    def _check_values(self, p: Profile, user: str, op: int, obj: str, attrs, values) -> Decision:
        """Among the grants of profile ``p`` covering (op, obj), the one to act through: one
        that allows every value, preferring (as _check) no authentication, then the nearest
        role.  Denied, saying which value no grant allows and where to add it, otherwise."""
        fallback = None
        covering: list[Grant] = []
        for role, via in p.pairs:
            for block, opmap in self._blocks.get(role, ()):
                gr = opmap.get(op)
                if gr is None or not block.selector.matches(obj, attrs, user):
                    continue
                covering.append(gr)
                vals = gr.values
                if vals is not None and all(vals.allows(v) for v in values.values()):
                    if not gr.auth:
                        return _new(Decision, (True, role, gr, gr, False, via, user, op, obj))
                    if fallback is None:
                        fallback = (gr, via)
        if fallback is not None:
            gr, via = fallback
            return _new(Decision, (True, gr.role, gr, gr, True, via, user, op, obj))
        return denied(self._values_refusal(user, op, obj, values, covering))

    def _values_refusal(self, user, op, obj, values, covering) -> str:
        refused = [
            (what, v)
            for what, v in values.items()
            if not any(g.values is not None and g.values.allows(v) for g in covering)
        ]
        grants = "; ".join(
            f"role {g.role} at {where(g.source) or 'policy'} lists "
            + (g.values.describe() if g.values is not None else "none")
            for g in covering
        )
        files = sorted({os.path.basename(g.source[0]) for g in covering if g.source[0]})
        pa = " or ".join(files) or "the PA file"
        grant = f"{self.operations.get(op) or f'operation {op}'} grant in {pa}"
        head = f"user '{user}' may perform {self.op_label(op)} on '{obj}', but"
        if refused:
            shown = " or ".join(f"{what} '{v}'" for what, v in refused)
            it = "it" if len(refused) == 1 else "them"
            return (
                f"{head} not with the {shown}: no grant there lists {it} ({grants}); "
                f"ask root to add {it} to your role's {grant}"
            )
        shown = " and ".join(f"{what} '{v}'" for what, v in values.items())
        return (
            f"{head} no single grant there lists the {shown} together ({grants}); "
            f"ask root to list them in one {grant}"
        )

    # -- denials (not hot: say precisely why) ------------------------------------------------
    def op_label(self, op) -> str:
        name = self.operations.get(op)
        return f"operation {op} ({name})" if name else f"operation {op}"

    def resolve_operation(self, op: int | str) -> int | None:
        """Operation id for an id (int or digit string) or a catalogue name; None if unknown
        (and for anything else: True is not operation 1, nor is 1.0)."""
        if type(op) is not int and not isinstance(op, str):
            return None
        if isinstance(op, str):
            if op.isascii() and op.isdigit():
                op = int(op)
            else:
                return self._op_ids.get(op)
        if isinstance(op, int) and (not self.operations or op in self.operations):
            return op
        return None

    def _deny(self, u, user, op, obj, attrs, now) -> Decision:
        if type(op) is not int or (self.operations and op not in self.operations):
            resolved = self.resolve_operation(op)
            if resolved is None:
                known = f" ({id_ranges(self.operations)})" if self.operations else ""
                return denied(f"operation {op!r} is not in the catalogue{known}")
            if u is not None:
                return self.decide(user, resolved, obj, attrs, now)
            op = resolved
        if u is None:  # worded when read (the C index returns the same)
            return _new(Decision, (False, None, "", self._unknown, False, (), user, op, obj))
        if not u.assignments:
            return _new(Decision, (False, None, "", _NO_ROLES, False, (), user, op, obj))
        if not u.expiring:
            return _new(Decision, (False, None, "", self, False, (), user, op, obj))
        t = to_timestamp(now)
        expired = [a for a in u.assignments if a.expired(t)]
        if expired:
            for a in sorted(expired, key=lambda a: -a.expires):
                if self._check(self._profile_for(frozenset([a.role])), user, op, obj, attrs):
                    return denied(self._expired_text(a, user))
            if len(expired) == len(u.assignments):
                latest = max(expired, key=lambda a: a.expires)
                return denied(
                    f"no role of user '{user}' grants {self.op_label(op)} on '{obj}'; "
                    f"{self._expired_text(latest, user)}"
                )
        return _new(Decision, (False, None, "", self, False, (), user, op, obj))

    def reason_text(self, d: Decision) -> str:
        """The reason of a plain "nothing grants it" denial (worded when read)."""
        user, op, obj = d.subject
        return f"no role of user '{user}' grants {self.op_label(op)} on '{obj}'"

    @staticmethod
    def _expired_text(a: Assignment, user: str) -> str:
        return f"assignment of role {a.role} to {user} expired on {a.expires_text}"

    # -- list filtering ----------------------------------------------------------------------
    def filter_visible(
        self,
        user: str,
        op_id: int,
        objects: Iterable[tuple[str, Mapping[str, str] | None]],
        now=None,
    ) -> list[str]:
        """Names of ``objects`` ((name, attrs) pairs) on which ``user`` may do ``op_id``."""
        u = self._record(user)
        if u is None:
            return []
        op = self.resolve_operation(op_id)
        if op is None:
            return []
        p = self._current_profile(u, to_timestamp(now)) if u.expiring else u.profile
        if not p.pairs:
            return []
        if p.exact is not None:
            maps = [objmap for objmap, _role, _via in p.exact]
        else:
            idx = self._obj_index()
            roles = p.roles
            maps = [_RolesView(idx, roles)]
        scoped = [gr.selector for gr, _via in p.scoped.get(op, ())]
        out = []
        append = out.append
        for name, attrs in objects:
            for objmap in maps:
                m = objmap.get(name)
                if m is not None and op in m:
                    append(name)
                    break
            else:
                for sel in scoped:
                    if sel.matches(name, attrs, user):
                        append(name)
                        break
        return out

    # -- sessions ----------------------------------------------------------------------------
    def create_session(
        self, user: str, active_roles: Iterable[str] | None = None, now=None
    ) -> Session:
        """A NIST session: ``active_roles`` (default: every authorized role) checked against DSD."""
        u = self._record(user)
        if u is None:
            raise SessionError(
                f"user '{user}' unknown: no <User> entry in the UA policy and in no group of it"
            )
        authorized = self._current_profile(u, to_timestamp(now)).roles
        if active_roles is None:
            active = frozenset(authorized)
        else:
            active = frozenset(active_roles)
            for r in sorted(active):
                self._require_authorized(u, r, authorized)
        self.check_dsd(active)
        return Session(self, u, active)

    def _require_authorized(self, u: UserRecord, role: str, authorized) -> None:
        if role in authorized:
            return
        if role not in self._role_auth:
            raise SessionError(f"role '{role}' is not defined in the PA policy")
        for a in u.assignments:
            if role in self._closure[a.role] and a.expires is not None:
                raise SessionError(
                    f"role '{role}' is not authorized for user '{u.name}': "
                    f"{self._expired_text(a, u.name)}"
                )
        raise SessionError(f"role '{role}' is not authorized for user '{u.name}'")

    def check_dsd(self, active: Iterable[str]) -> None:
        """Raise DsdViolation if roles active together (with what they inherit) break a DSD set."""
        effective: dict[str, str] = {}
        for root in sorted(active):
            for r in self._closure[root]:
                effective.setdefault(r, root)
        for s in self.dsd_sets:
            hit = sorted(r for r in s.roles if r in effective)
            if len(hit) >= s.cardinality:
                shown = [r if effective[r] == r else f"{r} (through {effective[r]})" for r in hit]
                raise DsdViolation(
                    f"roles {', '.join(shown)} cannot be active in one session: dynamic "
                    f"separation set '{s.name}' allows fewer than {s.cardinality} of "
                    f"{', '.join(sorted(s.roles))}; activate fewer of them",
                    s.source[0],
                    s.source[1],
                    set_name=s.name,
                    roles=tuple(hit),
                )

    # -- explanation -------------------------------------------------------------------------
    def explain(self, user: str, op_id: int, obj: str, attrs=None, now=None) -> Explanation:
        """The whole reasoning behind ``decide(user, op_id, obj, attrs, now)``."""
        return explain_decision(self, user, op_id, obj, attrs, now)

    def __repr__(self) -> str:
        return (
            f"<RbacPolicy {len(self.users)} users, {len(self.roles)} roles, "
            f"digest {self.digest[:12]}>"
        )


class _RolesView:
    """objmap-like view for filter_visible with very many roles: object -> merged {op: grant}."""

    __slots__ = ("idx", "roles")

    def __init__(self, idx, roles):
        self.idx = idx
        self.roles = roles

    def get(self, name):
        per = self.idx.get(name)
        if per is None:
            return None
        ops: dict = {}
        for role, m in per.items():
            if role in self.roles:
                ops.update(m)
        return ops or None
