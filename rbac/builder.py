"""Building a policy: :class:`PolicyBuilder` collects roles, users, grants and separation sets.

Why a module of its own: the builder is how a policy comes into being, whether from the UA/PA
files (the loader feeds it with file/line sources) or from code (benchmarks, property tests,
tools).  ``build()`` checks the whole policy at once, collecting every problem into one
:class:`PolicyError`, and hands the validated :class:`~rbac.model.PolicyModel` to the engine
that compiles it.  It sits above both the data (``rbac.model``) and the engine, so neither of
those imports the other.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from . import hierarchy
from .engine import RbacPolicy
from .errors import PolicyError
from .model import (
    ANY_OPERATION,
    NOWHERE,
    Assignment,
    GrantBlock,
    PolicyModel,
    RoleDef,
    SeparationSet,
    Source,
    as_catalogue,
    id_ranges,
    where,
)
from .selectors import ArgumentValues, Selector
from .timeutil import ExpiryFormatError, iso, parse_expiry, to_timestamp

#: builds an Assignment (a named tuple) without the Python-level __new__: 133k of them at
#: 100k users
_new = tuple.__new__
#: up to this many assignments of one user, a repeated role is found by a scan, not a dict
_FEW = 16
_MISSING = object()
#: what a role that authorizes no role of any SSD set reaches (see _check_ssd)
_NO_SETS: dict[int, int] = {}


def _cardinality(card) -> int | None:
    """A set's cardinality from the file (text) or the API (int); None when it is not a whole
    number.  Text is ASCII digits only, and absurdly long numbers are clamped rather than
    converted: they fail the range check with a readable message either way."""
    if isinstance(card, bool):
        return None
    if isinstance(card, int):
        return card
    if not isinstance(card, str):
        return None
    text = card.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 9 else 10**9


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class PolicyBuilder:
    """Build a policy in code; every method returns the builder so calls chain.

    >>> pol = (PolicyBuilder({6: "start"})
    ...        .add_role("ops").grant("ops", "start", Glob("web-*"))
    ...        .assign("alice", "ops").build())

    ``source=(file, line)`` on any call makes error messages and decisions cite that place.
    Problems are collected and raised together by :meth:`build`.
    """

    def __init__(
        self,
        operations: Mapping[int, str] | None = None,
        *,
        ua_name: str = "UA",
        pa_name: str = "PA",
    ):
        self._ops = dict(as_catalogue(operations)) if operations is not None else None
        self._op_ids = {name: i for i, name in (self._ops or {}).items()}
        self._names = {"ua": ua_name, "pa": pa_name}
        self._roles: dict[str, RoleDef] = {}
        self._users: dict[str, Source] = {}
        self._groups: dict[str, Source] = {}
        self._assign: list[tuple[str, str, object, Source]] = []
        self._group_assign: list[tuple[str, str, object, Source]] = []
        self._inherit: list[tuple[str, str, Source]] = []
        self._grants: list[GrantBlock] = []
        self._sets: list[tuple[str, str, list[tuple[str, Source]], object, Source]] = []
        self._errors: list[PolicyError] = []
        self._digest: str | None = None

    # -- errors ------------------------------------------------------------------------------
    def error(self, message: str, source: Source = NOWHERE) -> PolicyBuilder:
        """Record a problem found by whoever feeds the builder (e.g. the XML loader)."""
        self._errors.append(PolicyError(message, source[0], source[1]))
        return self

    def set_digest(self, digest: str) -> PolicyBuilder:
        self._digest = digest
        return self

    # -- operations --------------------------------------------------------------------------
    def resolve_op(self, token: int | str, source: Source = NOWHERE) -> int | None:
        """Operation id for an id or a name, or None after recording why it is unknown."""
        if isinstance(token, bool):
            token = str(token)
        if isinstance(token, int) or (
            isinstance(token, str) and token.isascii() and token.isdigit()
        ):
            op = int(token)
            if self._ops is not None and op not in self._ops:
                self.error(
                    f"operation id {op} is not in the catalogue ({id_ranges(self._ops)})", source
                )
                return None
            return op
        if self._ops is None:
            self.error(f"operation name {token!r} cannot be resolved without a catalogue", source)
            return None
        op = self._op_ids.get(token)
        if op is None:
            self.error(
                f"operation name {token!r} is not in the catalogue{_suggest(token, self._op_ids)}",
                source,
            )
        return op

    def all_operations(self) -> list[int]:
        return sorted(self._ops) if self._ops is not None else []

    # -- roles and hierarchy -----------------------------------------------------------------
    def add_role(
        self,
        name: str,
        *,
        authenticate: bool = False,
        inherits: Iterable[str] = (),
        source: Source = NOWHERE,
    ) -> PolicyBuilder:
        old = self._roles.get(name)
        if old is not None:
            first = where(old.source)
            self.error(
                f"role '{name}' is defined twice" + (f" (first at {first})" if first else ""),
                source,
            )
            return self
        self._roles[name] = RoleDef(name, bool(authenticate), source)
        for junior in inherits:
            self.inherit(name, junior, source=source)
        return self

    def role_names(self):
        """The names of the roles added so far (the loader shares their string objects)."""
        return self._roles.keys()

    def inherit(self, senior: str, junior: str, *, source: Source = NOWHERE) -> PolicyBuilder:
        """``senior`` gets every permission of ``junior`` (and of junior's juniors)."""
        self._inherit.append((senior, junior, source))
        return self

    # -- permissions -------------------------------------------------------------------------
    def grant(
        self,
        role: str,
        ops: int | str | Iterable[int | str],
        selector: Selector,
        *,
        values: ArgumentValues | None = None,
        source: Source = NOWHERE,
    ) -> PolicyBuilder:
        """Let ``role`` perform ``ops`` (ids or names, one or many) on what ``selector`` picks;
        ``values``: the argument constraint of these operations (see ArgumentValues)."""
        if isinstance(ops, int | str):
            ops = [ops]
        return self.grant_lines(role, [(o, source, values) for o in ops], selector, source=source)

    def grant_lines(
        self,
        role: str,
        ops: Iterable[tuple[int | str, Source] | tuple[int | str, Source, ArgumentValues | None]],
        selector: Selector,
        *,
        source: Source = NOWHERE,
    ) -> PolicyBuilder:
        """Like :meth:`grant` with a source per operation (the loader cites each line), and
        optionally an argument constraint per operation as a third item."""
        if not isinstance(selector, Selector):
            self.error(f"grant to role '{role}': {selector!r} is not a selector", source)
            return self
        resolved: list[tuple[int, Source]] = []
        constraints: dict[int, ArgumentValues] = {}
        for token, src, *rest in ops:
            values = rest[0] if rest else None
            if values is not None and not isinstance(values, ArgumentValues):
                self.error(f"grant to role '{role}': {values!r} is not an ArgumentValues", src)
                continue
            if token == ANY_OPERATION:
                these = [(o, src) for o in self.all_operations()]
            else:
                op = self.resolve_op(token, src)
                these = [] if op is None else [(op, src)]
            resolved.extend(these)
            if values is not None:  # one operation listed twice: the union of its values
                for op, _src in these:
                    constraints[op] = values.union(constraints.get(op))
        if resolved:
            self._grants.append(GrantBlock(role, resolved, selector, source, constraints))
        return self

    # -- users -------------------------------------------------------------------------------
    def add_user(self, name: str, *, source: Source = NOWHERE) -> PolicyBuilder:
        old = self._users.get(name)
        if old is not None:
            first = where(old)
            self.error(
                f"user '{name}' is defined twice"
                + (f" (first at {first})" if first else "")
                + "; list all of a user's roles in one <User> element",
                source,
            )
            return self
        self._users[name] = source
        return self

    def add_users(
        self,
        users: Mapping[str, Source],
        assignments: Iterable[tuple[str, str, str | datetime | float | None, Source]],
    ) -> PolicyBuilder:
        """add_user() for each of ``users`` (name -> source), then assign() for each of
        ``assignments`` ((user, role, expires, source)), in two calls instead of one per item:
        the loader's path for a 100k-user UA file.  A user the builder already has is
        reported as add_user() would, and its ``assignments`` here are dropped."""
        assignments = list(assignments)
        if not {a[0] for a in assignments}.issubset(users):
            extra: dict[str, Source] = {}  # as assign(): a new user comes with its first role
            for user, _role, _expires, source in assignments:
                if user not in users and user not in self._users:
                    extra.setdefault(user, source)
            users = {**users, **extra}
        return self._add_users(users, assignments)

    def _add_users(self, users: Mapping[str, Source], assignments: list) -> PolicyBuilder:
        """add_users() when every assignment's user is one of ``users`` (the loader's case,
        by construction: it saves a pass over 133k assignments)."""
        known = self._users
        if not known:
            self._users = dict(users)
        else:
            dropped = set()
            for name, source in users.items():
                if name in known:
                    self.add_user(name, source=source)
                    dropped.add(name)
                else:
                    known[name] = source
            if dropped:
                assignments = [a for a in assignments if a[0] not in dropped]
        self._assign.extend(assignments)
        return self

    def assign(
        self,
        user: str,
        role: str,
        *,
        expires: str | datetime | float | None = None,
        source: Source = NOWHERE,
    ) -> PolicyBuilder:
        """Assign ``role`` to ``user`` (adding the user if new), optionally until ``expires``."""
        if user not in self._users:
            self._users[user] = source
        self._assign.append((user, role, expires, source))
        return self

    # -- Unix groups (resolved through NSS when a decision is made: rbac.groups) -------------
    def add_group(self, name: str, *, source: Source = NOWHERE) -> bool:
        """Declare a ``<Group>`` entry; False (after recording why) if it is declared twice."""
        old = self._groups.get(name)
        if old is not None:
            first = where(old)
            self.error(
                f"group '{name}' is defined twice"
                + (f" (first at {first})" if first else "")
                + "; list all of a group's roles in one <Group> element",
                source,
            )
            return False
        self._groups[name] = source
        return True

    def assign_group(
        self,
        group: str,
        role: str,
        *,
        expires: str | datetime | float | None = None,
        source: Source = NOWHERE,
    ) -> PolicyBuilder:
        """Assign ``role`` to every member of the Unix group ``group`` (optionally until
        ``expires``).  Membership is asked of NSS when a decision is made, not now."""
        self._groups.setdefault(group, source)
        self._group_assign.append((group, role, expires, source))
        return self

    # -- separation of duty ------------------------------------------------------------------
    def add_ssd(self, name, roles, cardinality=2, *, source=NOWHERE, role_sources=None):
        """Static separation: no user may be *authorized* for ``cardinality`` roles of the set."""
        return self._add_set("static", name, roles, cardinality, source, role_sources)

    def add_dsd(self, name, roles, cardinality=2, *, source=NOWHERE, role_sources=None):
        """Dynamic separation: no session may have ``cardinality`` roles of the set active."""
        return self._add_set("dynamic", name, roles, cardinality, source, role_sources)

    def _add_set(self, kind, name, roles, cardinality, source, role_sources):
        roles = list(roles)
        srcs = list(role_sources) if role_sources is not None else [source] * len(roles)
        self._sets.append((kind, name, list(zip(roles, srcs, strict=True)), cardinality, source))
        return self

    # -- build -------------------------------------------------------------------------------
    def build(self, *, native: bool = True, groups=None) -> RbacPolicy:
        """Validate everything and compile; raises PolicyError listing every problem.

        ``native=False`` keeps decisions in pure Python even when the C index is built (for
        comparing the two); ``groups``: the rbac.groups.GroupResolver answering who is in the
        groups ``<Group>`` assigns roles to (default: the process-wide one)."""
        return RbacPolicy(self.model(), native=native, groups=groups)

    def model(self) -> PolicyModel:
        """Validate everything and return the plain model (what build() compiles)."""
        pa = self._names["pa"]
        roles = self._roles

        def undefined(role: str) -> str:
            return f"'{role}', which {pa} does not define{_suggest(role, roles)}"

        # hierarchy
        for senior, junior, src in self._inherit:
            if senior not in roles:
                self.error(f"inheritance from undefined role '{senior}'", src)
            elif junior not in roles:
                self.error(f"role '{senior}' inherits undefined role {undefined(junior)}", src)
            elif junior not in roles[senior].juniors:
                roles[senior].juniors[junior] = src
        juniors = {r: tuple(d.juniors) for r, d in roles.items()}
        cycles = hierarchy.find_cycles(juniors)
        for cyc in cycles:
            src = roles[cyc[0]].juniors.get(cyc[1], roles[cyc[0]].source)
            self.error(f"role inheritance cycle: {' -> '.join(cyc)}", src)
        closure = hierarchy.closures(juniors) if not cycles else {}

        # grants
        for block in self._grants:
            if block.role not in roles:
                self.error(f"grant to undefined role {undefined(block.role)}", block.source)

        # users and assignments
        # (a tuple per user grown in place: a 100k-user policy has mostly one or two
        # assignments per user, and lists converted to tuples afterwards cost a pass more)
        assignments: dict[str, tuple[Assignment, ...]] = dict.fromkeys(self._users, ())
        # a role assigned twice to one user is looked for among that user's assignments so
        # far (most users have one or two: no (user, role) dict over all 133k), in a dict of
        # its own for a user with many, and among those refused for their expiry (they count
        # as the first one too)
        refused: dict[tuple[str, str], Source] = {}
        many: dict[str, dict[str, Source]] = {}
        # the roles that authorize a role named in some static set: only users assigned one
        # of them can break a set, so only they are checked (a few % of a large policy)
        named = {
            r for kind, _n, members, _c, _s in self._sets if kind == "static" for r, _ in members
        }
        hot = {r for r, eff in closure.items() if not named.isdisjoint(eff)} if named else ()
        exposed: set[str] = set()
        for user, role, expires, src in self._assign:
            if role not in roles:
                self.error(f"user '{user}' is assigned role {undefined(role)}", src)
                continue
            if role in hot:
                exposed.add(user)
            have = assignments[user]
            index = None
            if have or refused:
                first = refused.get((user, role), _MISSING)
                if first is _MISSING and len(have) <= _FEW:
                    for a in have:
                        if a.role == role:
                            first = a.source
                            break
                elif first is _MISSING:
                    index = many.get(user)
                    if index is None:
                        index = many[user] = {a.role: a.source for a in have}
                    first = index.get(role, _MISSING)
                if first is not _MISSING:
                    at = where(first)
                    self.error(
                        f"role '{role}' is assigned to user '{user}' twice"
                        + (f" (first at {at})" if at else ""),
                        src,
                    )
                    continue
            if expires is None:
                exp = text = None
            else:
                exp, text = self._expiry(expires, user, role, src)
                if exp is False:
                    refused[(user, role)] = src
                    continue
            assignments[user] = (*have, _new(Assignment, (user, role, exp, text, src, None)))
            if index is not None:
                index[role] = src

        # group assignments (same rules; the members are known only at decision time)
        groups: dict[str, list[Assignment]] = {g: [] for g in self._groups}
        gseen: dict[tuple[str, str], Source] = {}
        for group, role, expires, src in self._group_assign:
            if role not in roles:
                self.error(f"group '{group}' is assigned role {undefined(role)}", src)
                continue
            if (group, role) in gseen:
                first = where(gseen[(group, role)])
                self.error(
                    f"role '{role}' is assigned to group '{group}' twice"
                    + (f" (first at {first})" if first else ""),
                    src,
                )
                continue
            gseen[(group, role)] = src
            exp, text = self._expiry(expires, f"group {group}", role, src)
            if exp is False:
                continue
            groups[group].append(Assignment(group, role, exp, text, src, group=group))

        # separation sets
        ssd, dsd = self._separation_sets()
        if closure:
            # (in the users' order, as every user was checked before: same messages, same order)
            self._check_ssd(ssd, {u: a for u, a in assignments.items() if u in exposed}, closure)
            self._check_ssd(ssd, groups, closure, what="group", where_of=self._groups)
            self._check_dsd_roles(dsd, closure)

        if self._errors:
            raise PolicyError.collect(self._errors)
        return PolicyModel(
            operations=self._ops,
            roles=roles,
            users=dict(self._users),
            assignments=assignments,
            grants=list(self._grants),
            ssd=ssd,
            dsd=dsd,
            closure=closure,
            digest=self._digest or self._code_digest(assignments, groups),
            groups={g: tuple(a) for g, a in groups.items()},
        )

    def _expiry(self, expires, user, role, src):
        if expires is None:
            return None, None
        if isinstance(expires, str):
            try:
                return parse_expiry(expires), expires.strip()
            except ExpiryFormatError as exc:
                self.error(f"assignment of role '{role}' to user '{user}': {exc}", src)
                return False, None
        try:
            ts = to_timestamp(expires)
        except (TypeError, ValueError, OverflowError):
            self.error(f"assignment of role '{role}' to '{user}': bad expiry {expires!r}", src)
            return False, None
        return ts, iso(ts)

    def _separation_sets(self):
        out: dict[str, list[SeparationSet]] = {"static": [], "dynamic": []}
        names: dict[tuple[str, str], Source] = {}
        pa = self._names["pa"]
        for kind, name, members, card, src in self._sets:
            if (kind, name) in names:
                first = where(names[(kind, name)])
                self.error(
                    f"{kind} separation set '{name}' is defined twice"
                    + (f" (first at {first})" if first else ""),
                    src,
                )
                continue
            names[(kind, name)] = src
            ok = True
            seen: set[str] = set()
            for role, rsrc in members:
                if role not in self._roles:
                    self.error(
                        f"{kind} separation set '{name}' names role '{role}', which {pa} "
                        f"does not define{_suggest(role, self._roles)}",
                        rsrc,
                    )
                    ok = False
                elif role in seen:
                    self.error(f"{kind} separation set '{name}' lists role '{role}' twice", rsrc)
                    ok = False
                seen.add(role)
            card = _cardinality(card)
            if card is None:
                msg = f"{kind} separation set '{name}': cardinality is not a whole number"
                self.error(msg, src)
                continue
            if card < 2 or card > len(seen):
                self.error(
                    f"{kind} separation set '{name}' has cardinality "
                    f"{card if card < 10**9 else 'over 999999999'}, but it must be "
                    f"between 2 and its number of roles ({len(seen)}): cardinality n means "
                    f"fewer than n of the set's roles",
                    src,
                )
                ok = False
            if ok:
                out[kind].append(SeparationSet(name, kind, frozenset(seen), card, src))
        return tuple(out["static"]), tuple(out["dynamic"])

    def _check_ssd(self, ssd, assignments, closure, *, what="user", where_of=None):
        """SSD over *authorized* roles: assigned roles and everything they inherit.

        Expired assignments count too: the constraint is on what the UA file says, and a
        date should not decide whether a file is valid.  Run for users and for groups (a
        group's own roles must respect the sets; a user whose groups *together* break one is
        handled at decision time, when membership is known: rbac.engine).
        """
        where_of = self._users if where_of is None else where_of
        if not ssd:
            return
        # the sets each role is in: a user whose roles are in no set (most of them) costs one
        # lookup per authorized role, not a scan of every set (100k users x 10 sets: 1.8 s)
        sets_of: dict[str, list[int]] = {}
        for i, s in enumerate(ssd):
            for r in s.roles:
                sets_of.setdefault(r, []).append(i)
        # per role, how many roles of each set it authorizes (itself and what it inherits);
        # a user can break set i only if these counts over the user's assigned roles add up
        # to its cardinality, so every other user is passed over with a lookup per role
        reach: dict[str, dict[int, int]] = {}
        for role, effective in closure.items():
            counts: dict[int, int] = {}
            for r in effective:
                for i in sets_of.get(r, ()):
                    counts[i] = counts.get(i, 0) + 1
            if counts:
                reach[role] = counts
        cards = [s.cardinality for s in ssd]
        for user, assigns in assignments.items():
            if not assigns:
                continue
            if len(assigns) == 1:
                one = reach.get(assigns[0].role)
                if one is None or all(n < cards[i] for i, n in one.items()):
                    continue
            else:
                total: dict[int, int] = {}
                for a in assigns:
                    for i, n in reach.get(a.role, _NO_SETS).items():
                        total[i] = total.get(i, 0) + n
                if all(n < cards[i] for i, n in total.items()):
                    continue
            held: dict[str, str] = {}  # authorized role -> assigned role it comes through
            for a in assigns:
                for r in closure[a.role]:
                    held.setdefault(r, a.role)
            counts: dict[int, int] = {}
            for r in held:
                for i in sets_of.get(r, ()):
                    counts[i] = counts.get(i, 0) + 1
            for i in sorted(counts):
                s = ssd[i]
                if counts[i] < s.cardinality:
                    continue
                hit = sorted(r for r in s.roles if r in held)
                if len(hit) >= s.cardinality:
                    parts = [
                        r
                        if held[r] == r
                        else f"{r} through {' -> '.join(hierarchy.path(closure, held[r], r))}"
                        for r in hit
                    ]
                    self.error(
                        f"{what} '{user}' holds {len(hit)} roles of static separation set "
                        f"'{s.name}' ({', '.join(parts)}), which allows fewer than "
                        f"{s.cardinality}; remove one of the {what}'s roles or change the set"
                        + (f" (defined at {where(s.source)})" if s.source[0] else ""),
                        where_of.get(user, NOWHERE),
                    )

    def _check_dsd_roles(self, dsd, closure):
        """A role that by itself inherits too much of a DSD set could never be activated."""
        names = sorted(self._roles)
        for s in dsd:
            for role in names:
                if s.roles.isdisjoint(closure[role]):
                    continue  # most roles: nothing of the set (1k roles x 10 sets)
                hit = sorted(r for r in s.roles if r in closure[role])
                if len(hit) >= s.cardinality:
                    self.error(
                        f"role '{role}' inherits {len(hit)} roles of dynamic separation set "
                        f"'{s.name}' ({', '.join(hit)}), which allows fewer than "
                        f"{s.cardinality} in one session, so it could never be activated",
                        s.source,
                    )

    def _code_digest(self, assignments, groups=None) -> str:
        """A digest for policies built in code: sha256 over a canonical JSON rendering."""
        doc = {
            "roles": {
                r: [d.authenticate, sorted(d.juniors)] for r, d in sorted(self._roles.items())
            },
            "users": {
                u: sorted((a.role, a.expires) for a in assigns)
                for u, assigns in sorted(assignments.items())
            },
            "grants": [
                [b.role, sorted(o for o, _ in b.ops), b.selector.as_dict()] for b in self._grants
            ],
            "sets": [[k, n, sorted(r for r, _ in m), str(c)] for k, n, m, c, _ in self._sets],
        }
        if groups:
            doc["groups"] = {
                g: sorted((a.role, a.expires) for a in assigns)
                for g, assigns in sorted(groups.items())
            }
        blob = json.dumps(doc, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()
