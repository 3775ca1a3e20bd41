"""Decisions of the mediation module, in a form a human can read and a program can use.

Why an object and not a bool: the front-end must tell a user *why* something was refused (which
conflict set, which running domain, which types), audit it, and show it in ``svirsh dry-run``.
A Verdict is immutable; permitted verdicts are shared and cached, so returning one is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


class Verdict:
    """One decision.

    ``allowed``; ``hook`` (the operation asked for: domain_create, share_resource,
    evtchn_interdomain, grant_map, relabel ...); ``rule`` (which check decided, see RULE_*);
    ``reason`` (a full sentence: what, why, what to do); ``code`` (the XSERR code xend would
    report, 0 when allowed); ``details`` (structured facts: labels, types, conflict set,
    conflicting domain ...).  ``bool(verdict)`` is ``allowed``.

    Treat it as immutable (verdicts are cached and shared).  Decisions that depend only on
    labels may defer writing their sentence: ``explain_fn`` returns (reason, details) on first
    use, so a hot check pays for the decision, not for the prose.
    """

    __slots__ = ("_details", "_explain_fn", "_reason", "allowed", "code", "hook", "rule")

    def __init__(
        self,
        allowed: bool,
        hook: str,
        rule: str,
        reason: str | None = None,
        code: int = 0,
        details: Mapping[str, Any] | None = None,
        *,
        explain_fn: Callable[[], tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.allowed = allowed
        self.hook = hook
        self.rule = rule
        self.code = code
        self._reason = reason
        self._details = details if details is not None else _EMPTY
        self._explain_fn = explain_fn

    def _materialize(self) -> None:
        fn = self._explain_fn
        if fn is not None:
            reason, details = fn()
            self._reason = reason
            self._details = MappingProxyType(details) if details else _EMPTY
            self._explain_fn = None

    @property
    def reason(self) -> str:
        if self._explain_fn is not None:
            self._materialize()
        return self._reason or ""

    @property
    def details(self) -> Mapping[str, Any]:
        if self._explain_fn is not None:
            self._materialize()
        return self._details

    def __repr__(self) -> str:
        return (
            f"Verdict(allowed={self.allowed}, hook={self.hook!r}, rule={self.rule!r}, "
            f"code={self.code:#x}, reason={self.reason!r})"
        )

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


def allow(hook: str, reason: str, details: dict[str, Any] | None = None) -> Verdict:
    """A permitting verdict; ``details`` (a fresh dict) is wrapped read-only, not copied."""
    return Verdict(
        True, hook, RULE_ALLOW, reason, 0, MappingProxyType(details) if details else _EMPTY
    )


def deny_lazy(
    hook: str, rule: str, code: int, explain_fn: Callable[[], tuple[str, dict[str, Any]]]
) -> Verdict:
    """A refusal whose sentence and details are written only when someone reads them."""
    return Verdict(False, hook, rule, None, int(code), explain_fn=explain_fn)


def allow_lazy(hook: str, explain_fn: Callable[[], tuple[str, dict[str, Any]]]) -> Verdict:
    return Verdict(True, hook, RULE_ALLOW, None, 0, explain_fn=explain_fn)


def deny(
    hook: str, rule: str, reason: str, code: int, details: dict[str, Any] | None = None
) -> Verdict:
    """A refusing verdict; ``details`` (a fresh dict) is wrapped read-only, not copied."""
    return Verdict(
        False, hook, rule, reason, int(code), MappingProxyType(details) if details else _EMPTY
    )


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
