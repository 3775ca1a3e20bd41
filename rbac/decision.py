"""The answer to "may this user do this operation on this object?".

A :class:`Decision` is immutable and small.  Allowed decisions are cached per grant, so the hot
path hands out the same object again instead of allocating; that is why it carries no user,
operation or object — the caller has those.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``; the granting ``role`` and ``rule`` (file:line and wording of the grant);
    ``reason`` in words (for denials: why not); ``requires_auth`` when the granting role wants
    the caller freshly authenticated; ``via``: the inheritance path from the user's assigned
    (or session-active) role to the granting role."""

    allowed: bool
    role: str | None = None
    rule: str = ""
    reason: str = ""
    requires_auth: bool = False
    via: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed

    def as_dict(self) -> dict:
        return {
            "allowed": self.allowed,
            "role": self.role,
            "rule": self.rule,
            "reason": self.reason,
            "requires_auth": self.requires_auth,
            "via": list(self.via),
        }


def granted(role: str, rule: str, requires_auth: bool, via: tuple[str, ...]) -> Decision:
    reason = f"granted by role '{role}'"
    if len(via) > 1:
        reason += f" (inherited: {' -> '.join(via)})"
    if requires_auth:
        reason += "; the role requires fresh authentication"
    return Decision(True, role, rule, reason, requires_auth, via)


def denied(reason: str) -> Decision:
    return Decision(False, None, "", reason, False, ())
