"""The answer to "may this user do this operation on this object?".

A :class:`Decision` is immutable and has the fields ``allowed``, ``role``, ``rule``, ``reason``,
``requires_auth`` and ``via``; ``bool(d)`` is ``d.allowed``.

Why it is a tuple subclass and not a dataclass: a check must cost well under a microsecond, and
building a frozen dataclass (six ``object.__setattr__`` calls) plus its two texts costs more than
the check itself.  So the hot path packs what it found (the grant, the object, the user) into one
tuple in a single C-level allocation, and ``rule``/``reason`` are worded only when somebody reads
them.  Equality, hashing, ``repr`` and iteration (unpacking) use the public fields only; index
access is internal, and JSON wants ``as_dict()``.
"""

from __future__ import annotations

from operator import itemgetter

_new = tuple.__new__

# layout: allowed, role, rule, reason, requires_auth, via, user, op, obj
# ``rule`` is a str or an object with .text(obj); ``reason`` a str or an object with
# .reason_text(decision) — both worded lazily.


class Decision(tuple):
    """``allowed``; the granting ``role`` and ``rule`` (file:line and wording of the grant);
    ``reason`` in words (for denials: why not); ``requires_auth`` when the granting role wants
    the caller freshly authenticated; ``via``: the inheritance path from the user's assigned
    (or session-active) role to the granting role."""

    __slots__ = ()

    def __new__(
        cls,
        allowed: bool,
        role: str | None = None,
        rule: str = "",
        reason: str = "",
        requires_auth: bool = False,
        via: tuple[str, ...] = (),
    ):
        return _new(
            cls,
            (bool(allowed), role, rule, reason, bool(requires_auth), tuple(via), None, None, None),
        )

    allowed: bool = property(itemgetter(0))  # type: ignore[assignment]
    role: str | None = property(itemgetter(1))  # type: ignore[assignment]
    requires_auth: bool = property(itemgetter(4))  # type: ignore[assignment]
    via: tuple[str, ...] = property(itemgetter(5))  # type: ignore[assignment]

    @property
    def rule(self) -> str:
        r = self[2]
        return r if r.__class__ is str else r.text(self[8])

    @property
    def reason(self) -> str:
        r = self[3]
        return r if r.__class__ is str else r.reason_text(self)

    @property
    def group(self) -> str | None:
        """The Unix group whose UA role granted this (None: the user's own role)."""
        return getattr(self[3], "group", None)

    # the request this decision answers (None when built by hand)
    @property
    def subject(self) -> tuple:
        return self[6:9]

    def fields(self) -> tuple:
        return (self.allowed, self.role, self.rule, self.reason, self.requires_auth, self.via)

    def __bool__(self) -> bool:
        return self[0]

    def __iter__(self):
        return iter(self.fields())

    def __eq__(self, other) -> bool:
        if isinstance(other, Decision):
            return self.fields() == other.fields()
        return NotImplemented

    def __ne__(self, other) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self.fields())

    def __setattr__(self, name, value):
        raise AttributeError("Decision is immutable")

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed!r}, role={self.role!r}, rule={self.rule!r}, "
            f"reason={self.reason!r}, requires_auth={self.requires_auth!r}, via={self.via!r})"
        )

    def __reduce__(self):
        return (Decision, self.fields())

    def as_dict(self) -> dict:
        return {
            "allowed": self.allowed,
            "role": self.role,
            "rule": self.rule,
            "reason": self.reason,
            "requires_auth": self.requires_auth,
            "via": list(self.via),
        }


def denied(reason: str) -> Decision:
    return Decision(False, None, "", reason, False, ())
