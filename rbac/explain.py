"""Explanations: the whole reasoning behind one decision, for people and for JSON.

``svirt-admin check USER OP VM --explain`` prints this.  It shows the user's assignments
(expired ones marked), the effective roles with the inheritance path to each, every grant of
those roles for the operation and whether its scope matched the object, and the separation
sets that touch the user's roles.  The decision itself comes from ``decide()``, so the
explanation can never tell a different story from the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .decision import Decision
from .model import where
from .timeutil import iso, to_timestamp


@dataclass(frozen=True)
class Explanation:
    user: str
    operation: int | str
    operation_name: str | None
    object: str
    attrs: dict
    at: str
    decision: Decision
    known_user: bool
    assignments: tuple[dict, ...] = ()
    effective_roles: tuple[dict, ...] = ()
    candidates: tuple[dict, ...] = ()
    separation: tuple[dict, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "operation": self.operation,
            "operation_name": self.operation_name,
            "object": self.object,
            "attrs": dict(self.attrs),
            "at": self.at,
            "decision": self.decision.as_dict(),
            "known_user": self.known_user,
            "assignments": [dict(a) for a in self.assignments],
            "effective_roles": [dict(r) for r in self.effective_roles],
            "candidates": [dict(c) for c in self.candidates],
            "separation": [dict(s) for s in self.separation],
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        op = f"operation {self.operation}"
        if self.operation_name:
            op += f" ({self.operation_name})"
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attrs.items()))
        out = [
            f"user '{self.user}' asks for {op} on '{self.object}'"
            + (f" [{attrs}]" if attrs else "")
            + f" at {self.at}"
        ]
        d = self.decision
        if d.allowed:
            out.append(f"decision: ALLOWED — {d.reason}")
            out.append(f"  rule: {d.rule}")
            if d.requires_auth:
                out.append('  the caller must authenticate first (role has authenticate="true")')
        else:
            out.append(f"decision: DENIED — {d.reason}")
        if not self.known_user:
            out.extend(f"note: {n}" for n in self.notes)
            return out
        out.append("assigned roles:")
        if not self.assignments:
            out.append("  (none)")
        for a in self.assignments:
            line = f"  - {a['role']}"
            if a.get("group"):
                line += f" through group '{a['group']}'"
            if a["source"]:
                line += f" ({a['source']})"
            if a["expires"]:
                line += f", {'EXPIRED' if a['expired'] else 'expires'} {a['expires']}"
            out.append(line)
        out.append("effective roles (through inheritance):")
        if not self.effective_roles:
            out.append("  (none)")
        for r in self.effective_roles:
            via = r["via"]
            extra = f"  via {' -> '.join(via)}" if len(via) > 1 else "  (assigned)"
            auth = "  [needs authentication]" if r["requires_auth"] else ""
            out.append(f"  - {r['role']}{extra}{auth}")
        out.append(f"grants of {op} held by these roles:")
        if not self.candidates:
            out.append("  (none: no role of the user grants this operation on anything)")
        for c in self.candidates:
            mark = "match" if c["matched"] else "no match"
            if c["matched"] and not c["in_force"]:
                mark = "match, but assignment expired"
            out.append(f"  [{mark}] {c['rule']}")
        if self.separation:
            out.append("separation of duty sets touching these roles:")
            for s in self.separation:
                out.append(
                    f"  - {s['kind']} '{s['name']}' ({s['source'] or 'policy'}): fewer than "
                    f"{s['cardinality']} of {', '.join(s['roles'])}; user holds "
                    f"{', '.join(s['user_roles']) or 'none'}"
                )
        out.extend(f"note: {n}" for n in self.notes)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def explain(pol, user, op_id, obj, attrs=None, now=None) -> Explanation:
    t = to_timestamp(now)
    decision = pol.decide(user, op_id, obj, attrs, t)
    op = pol.resolve_operation(op_id)
    name = pol.operations.get(op) if op is not None else None
    base = dict(
        user=user,
        operation=op if op is not None else op_id,
        operation_name=name,
        object=obj,
        attrs=dict(attrs or {}),
        at=iso(t),
        decision=decision,
    )
    u = pol._record(user)
    unresolved = pol.unresolved_groups() if pol.group_assignments else {}
    group_notes = [
        f"group '{g}' of the UA policy cannot be resolved through NSS ({why}): its roles "
        "grant nothing"
        for g, why in sorted(unresolved.items())
    ]
    if u is None:
        why = f"'{user}' has no <User> entry in the UA policy"
        if pol.group_assignments:
            why += (
                " and is a member of none of the groups it gives roles to "
                f"({', '.join(sorted(pol.group_assignments))})"
            )
        return Explanation(**base, known_user=False, notes=(why, *group_notes))
    notes: list[str] = [*group_notes, *u.notes]
    if u.groups:
        notes.append(
            f"'{user}' is a member of {', '.join(repr(g) for g in u.groups)} "
            f"(NSS, as of at most {pol.groups.ttl:g} s ago)"
        )
    if op is None:
        notes.append(f"operation {op_id!r} is not in the catalogue")
    assignments = tuple(
        {
            "role": a.role,
            "expires": a.expires_text,
            "expired": a.expired(t),
            "source": where(a.source),
            "group": a.group,
        }
        for a in u.assignments
    )
    current = pol._current_profile(u, t)
    effective = tuple(
        {
            "role": role,
            "via": list(via),
            "requires_auth": pol._role_auth[role],
        }
        for role, via in current.pairs
    )
    everything = pol._profile_for(frozenset(a.role for a in u.assignments))
    candidates = []
    if op is not None:
        for role, via in everything.pairs:
            in_force = role in current.roles
            for block, opmap in pol._blocks.get(role, ()):
                gr = opmap.get(op)
                if gr is None:
                    continue
                matched = block.selector.matches(obj, attrs, user)
                candidates.append(
                    {
                        "role": role,
                        "via": list(via),
                        "rule": gr.text(obj if matched else None),
                        "scope": block.selector.as_dict(),
                        "matched": matched,
                        "in_force": in_force,
                        "requires_auth": gr.auth,
                        "source": where(gr.source),
                    }
                )
    held = everything.roles
    separation = tuple(
        dict(s.as_dict(), user_roles=sorted(s.roles & held))
        for s in (*pol.ssd_sets, *pol.dsd_sets)
        if s.roles & held
    )
    if pol.dsd_sets and separation:
        notes.append(
            "decide() activates only the granting role; dynamic separation limits which roles "
            "a session may activate together"
        )
    return Explanation(
        **base,
        known_user=True,
        assignments=assignments,
        effective_roles=effective,
        candidates=tuple(candidates),
        separation=separation,
        notes=tuple(notes),
    )
