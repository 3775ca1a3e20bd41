"""Object selectors: which objects a grant covers.

A permission in NIST RBAC is an (operation, object) pair.  Writing one grant per object does not
scale to "every VM" or "every web-* VM", so a grant names a *selector*.  rbac knows nothing about
what objects are: a selector sees the object's name, a string-to-string attribute mapping the
caller supplies (the front-end passes ``label`` and ``owner``), and the user asking (for
:class:`Owned`).  The PA file's ``<ManageVM type=...>`` maps one-to-one onto these classes.

Selectors are immutable and hashable so permissions can be compared as sets (review functions,
property tests).  ``describe(obj)`` words the selector for decisions and explanations.
"""

from __future__ import annotations

import abc
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Selector(abc.ABC):
    """Abstract base; ``kind`` is the PA file's ManageVM type."""

    __slots__ = ()
    kind = ""
    #: True when the selector is an explicit list of names (indexed by name, not scanned)
    exact = False

    @abc.abstractmethod
    def matches(self, obj: str, attrs: Mapping[str, str] | None, user: str) -> bool:
        """Does this selector cover object ``obj`` (with ``attrs``) for ``user``?"""

    @abc.abstractmethod
    def describe(self, obj: str | None = None) -> str:
        """Human wording, e.g. "VMs matching web-*"."""

    @abc.abstractmethod
    def as_dict(self) -> dict:
        """JSON form for explanations and review output."""

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class Exact(Selector):
    """Objects listed by name (``ManageVM type="individual"``)."""

    names: frozenset[str]
    kind = "individual"
    exact = True

    def __init__(self, names: str | Iterable[str]):
        object.__setattr__(self, "names", frozenset([names] if isinstance(names, str) else names))

    def matches(self, obj, attrs, user):
        return obj in self.names

    def describe(self, obj=None):
        if obj is not None and obj in self.names:
            return f"individual VM {obj}"
        shown = sorted(self.names)
        if len(shown) == 1:
            return f"individual VM {shown[0]}"
        if len(shown) > 5:
            return f"individual VMs {', '.join(shown[:5])} and {len(shown) - 5} more"
        return f"individual VMs {', '.join(shown)}"

    def as_dict(self):
        return {"type": self.kind, "names": sorted(self.names)}


@dataclass(frozen=True, slots=True)
class AnyObject(Selector):
    """Every object (``ManageVM type="all"``)."""

    kind = "all"

    def matches(self, obj, attrs, user):
        return True

    def describe(self, obj=None):
        return "all VMs"

    def as_dict(self):
        return {"type": self.kind}


@dataclass(frozen=True, slots=True)
class Glob(Selector):
    """Objects whose name matches a case-sensitive shell glob (``type="pattern"``)."""

    pattern: str
    _match: object = field(init=False, repr=False, compare=False, hash=False)
    kind = "pattern"

    def __post_init__(self):
        object.__setattr__(self, "_match", re.compile(fnmatch.translate(self.pattern)).match)

    def matches(self, obj, attrs, user):
        return isinstance(obj, str) and self._match(obj) is not None

    def describe(self, obj=None):
        return f"VMs matching '{self.pattern}'"

    def as_dict(self):
        return {"type": self.kind, "pattern": self.pattern}


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is probably not the glob its author meant, or None if it is fine.

    fnmatch never rejects a pattern: an unclosed ``[`` silently becomes a literal and a backwards
    range like ``[z-a]`` silently matches nothing, so a typo in a grant would quietly grant
    nothing (or something else).  The loader refuses these instead.  ``[[]`` still spells a
    literal ``[``.
    """
    if not pattern:
        return "is empty"
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] != "[":
            i += 1
            continue
        start = i
        j = i + 1
        if j < n and pattern[j] == "!":
            j += 1
        if j < n and pattern[j] == "]":  # a leading ']' is a member, not the end
            j += 1
        end = pattern.find("]", j)
        if end < 0:
            return (
                f"has a '[' at position {start + 1} that is never closed with ']' "
                "(write [[] for a literal '[')"
            )
        body = pattern[start + 1 : end].removeprefix("!")
        k = 0
        while k < len(body):
            if k + 2 < len(body) and body[k + 1] == "-" and body[k] > body[k + 2]:
                return f"has the backwards range '{body[k : k + 3]}', which matches nothing"
            k += 3 if k + 2 < len(body) and body[k + 1] == "-" else 1
        i = end + 1
    return None


@dataclass(frozen=True, slots=True)
class Attribute(Selector):
    """Objects whose attribute ``key`` equals ``value`` (``type="label"`` uses key "label")."""

    key: str
    value: str
    kind = "label"

    def matches(self, obj, attrs, user):
        return attrs is not None and attrs.get(self.key) == self.value

    def describe(self, obj=None):
        if self.key == "label":
            return f"VMs labelled '{self.value}'"
        return f"VMs with {self.key}='{self.value}'"

    def as_dict(self):
        return {"type": self.kind, "key": self.key, "value": self.value}


@dataclass(frozen=True, slots=True)
class Owned(Selector):
    """Objects whose attribute ``key`` (default "owner") is the user asking (``type="owned"``)."""

    key: str = "owner"
    kind = "owned"

    def matches(self, obj, attrs, user):
        return attrs is not None and attrs.get(self.key) == user

    def describe(self, obj=None):
        if self.key == "owner":
            return "VMs owned by the user asking"
        return f"VMs whose {self.key} is the user asking"

    def as_dict(self):
        return {"type": self.kind, "key": self.key}


@dataclass(frozen=True, slots=True)
class ArgumentValues:
    """The values a grant lets its operation take (a grant's *argument constraint*).

    Why rbac carries it: some operations take an argument that is itself a grant of power (the
    front-end's ``setlabel`` takes the label a VM will run with), so *which* values a role may
    give must be part of the grant, not of the code.  rbac treats the values as opaque strings;
    the front-end decides which operations carry an argument and what the values mean.  A
    request that carries values is granted only by a grant whose constraint allows every one
    of them; a grant without a constraint allows none (the safe default: root lists them).

    ``names`` are exact values; ``patterns`` case-sensitive shell globs (as VM patterns).
    """

    names: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    _matchers: tuple = field(default=(), init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "names", frozenset(self.names))
        pats = tuple(dict.fromkeys(self.patterns))
        object.__setattr__(self, "patterns", pats)
        object.__setattr__(
            self, "_matchers", tuple(re.compile(fnmatch.translate(p)).match for p in pats)
        )

    def allows(self, value: str) -> bool:
        if not isinstance(value, str):
            return False
        return value in self.names or any(m(value) is not None for m in self._matchers)

    def union(self, other: ArgumentValues | None) -> ArgumentValues:
        if other is None:
            return self
        return ArgumentValues(self.names | other.names, self.patterns + other.patterns)

    def describe(self) -> str:
        """'dom_A, dom_B, dom_Test*' (patterns after names)."""
        return ", ".join([*sorted(self.names), *self.patterns]) or "nothing"

    def as_dict(self) -> dict:
        return {"names": sorted(self.names), "patterns": list(self.patterns)}
