"""Decisions of the mediation module, in a form a human can read and a program can use.

Why an object and not a bool: the front-end must tell a user *why* something was refused (which
conflict set, which running domain, which types), audit it, and show it in ``svirsh dry-run``.
A Verdict is immutable; permitted verdicts are shared and cached, so returning one is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# rule names: which check decided
RULE_ALLOW = "allow"
RULE_LABEL = "label"  # the label could not be resolved under the active policy
RULE_STATE = "state"  # the domain is (not) running, etc.
RULE_AUTHORIZATION = "authorization"  # Domain-0's STE types must cover the new domain's
RULE_CHWALL = "chinese_wall"
RULE_STE = "ste"
RULE_INACCESSIBLE = "inaccessible"
RULE_REPLAY = "replay"  # relabel: the new state failed a CHWALL/STE replay


@dataclass(frozen=True, slots=True)
class Verdict:
    """One decision.

    ``allowed``; ``hook`` (the operation asked for: domain_create, share_resource,
    evtchn_interdomain, grant_map, relabel ...); ``rule`` (which check decided, see RULE_*);
    ``reason`` (a full sentence: what, why, what to do); ``code`` (the XSERR code xend would
    report, 0 when allowed); ``details`` (structured facts: labels, types, conflict set,
    conflicting domain ...).  ``bool(verdict)`` is ``allowed``.
    """

    allowed: bool
    hook: str
    rule: str
    reason: str
    code: int = 0
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __bool__(self) -> bool:
        return self.allowed

    def __str__(self) -> str:
        return self.reason

    def explain(self) -> str:
        """Multi-line explanation: the decision, then the facts it rests on."""
        head = f"{'PERMITTED' if self.allowed else 'DENIED'} ({self.hook}, {self.rule}): "
        lines = [head + self.reason]
        for k, v in self.details.items():
            if k == "conflicts":
                for c in v:
                    lines.append(
                        f"  conflict: type {c['type']} vs {c['conflicting_type']} "
                        f"(set {c['conflict_set']}) held by {c['conflicting_domain']!r} "
                        f"[{c['conflicting_label']}]"
                    )
            elif k == "errors":
                for e in v:
                    lines.append(f"  error {e[0]:#x}/{e[1]:#x}: {e[2]}")
            else:
                lines.append(f"  {k}: {_show(v)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "hook": self.hook,
            "rule": self.rule,
            "reason": self.reason,
            "code": self.code,
            "details": _plain(self.details),
        }


def _show(v: Any) -> str:
    if isinstance(v, list | tuple | frozenset | set):
        return ", ".join(str(x) for x in v) or "(none)"
    return str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, frozenset | set):
        return sorted(_plain(x) for x in v)
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


def allow(hook: str, reason: str, details: Mapping[str, Any] | None = None) -> Verdict:
    return Verdict(True, hook, RULE_ALLOW, reason, 0, MappingProxyType(dict(details or {})))


def deny(
    hook: str, rule: str, reason: str, code: int, details: Mapping[str, Any] | None = None
) -> Verdict:
    return Verdict(False, hook, rule, reason, int(code), MappingProxyType(dict(details or {})))


@dataclass(frozen=True)
class DryRunReport:
    """``svirsh dry-run``: every check a start would make, each with its own verdict."""

    items: tuple[tuple[str, Verdict], ...]

    @property
    def allowed(self) -> bool:
        return all(v.allowed for _, v in self.items)

    def __bool__(self) -> bool:
        return self.allowed

    def lines(self) -> list[str]:
        """``PERMITTED``/``DENIED`` per item, like ``xm dry-run``."""
        return [f"{item}: {'PERMITTED' if v else 'DENIED'} - {v.reason}" for item, v in self.items]

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "items": [{"item": item, **v.as_dict()} for item, v in self.items],
        }
