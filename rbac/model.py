"""The policy as data: roles, users, assignments, grants, separation sets.

These are the records the builder (``rbac.builder``) validates into a :class:`PolicyModel`, the
engine compiles, and the review and explain functions report.  Pure data and small helpers
only: this module sits below the builder and the engine, and imports neither.  Nothing here is
about speed; the engine is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .selectors import ArgumentValues, Selector

Source = tuple[str | None, int | None]
NOWHERE: Source = (None, None)
#: written as an operation, stands for every operation of the catalogue
ANY_OPERATION = "*"


def where(src: Source) -> str:
    """'pa.xml:12' (base name of the file), or '' when the source is unknown."""
    file, line = src
    if file is None:
        return ""
    name = os.path.basename(file) or file
    return f"{name}:{line}" if line else name


class Assignment(NamedTuple):
    """User-role assignment (UA), optionally in force only until ``expires``.

    Immutable like the other records here, but a named tuple rather than a frozen
    dataclass: a 100k-user UA file makes 133k of them, and a frozen dataclass's __init__
    (one object.__setattr__ per field) took twice as long to build them."""

    user: str
    role: str
    expires: float | None = None  # POSIX time of the first instant it no longer holds
    expires_text: str | None = None  # as written, for messages
    source: Source = NOWHERE
    #: the Unix group the role is assigned to (``<Group name>`` in UA); None: to the user
    group: str | None = None

    def expired(self, t: float) -> bool:
        return self.expires is not None and t >= self.expires


@dataclass(frozen=True, slots=True)
class SeparationSet:
    """A named SSD or DSD role set.

    Convention (as Apache Fortress): with cardinality ``n`` a user may hold (SSD) or activate in
    one session (DSD) **fewer than n** roles of the set; ``n`` is at least 2 and at most the
    number of roles, default 2 ("at most one of these").
    """

    name: str
    kind: str  # "static" or "dynamic"
    roles: frozenset[str]
    cardinality: int = 2
    source: Source = NOWHERE

    def describe(self) -> str:
        return (
            f"{self.kind} separation set '{self.name}' (fewer than {self.cardinality} of: "
            f"{', '.join(sorted(self.roles))})"
        )

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "roles": sorted(self.roles),
            "cardinality": self.cardinality,
            "source": where(self.source),
        }


@dataclass(frozen=True, slots=True)
class Permission:
    """An effective permission: ``operation`` on the objects ``selector`` picks, via ``role``."""

    operation: int
    selector: Selector
    role: str
    source: str = ""
    #: the grant's argument constraint (None: the operation takes no value through it)
    values: ArgumentValues | None = None

    def sort_key(self):
        return (self.operation, self.selector.kind, repr(self.selector), self.role)

    def as_dict(self) -> dict:
        out = {
            "operation": self.operation,
            "scope": self.selector.as_dict(),
            "role": self.role,
            "source": self.source,
        }
        if self.values is not None:
            out["values"] = self.values.as_dict()
        return out


@dataclass(slots=True)
class RoleDef:
    name: str
    authenticate: bool = False
    source: Source = NOWHERE
    juniors: dict[str, Source] = field(default_factory=dict)


@dataclass(slots=True)
class GrantBlock:
    """One grant as written: operations (each with its own source line) on a selector, and
    the argument constraint of those operations that have one."""

    role: str
    ops: list[tuple[int, Source]]
    selector: Selector
    source: Source = NOWHERE  # where the scope (ManageVM) is written
    values: dict[int, ArgumentValues] = field(default_factory=dict)


@dataclass(slots=True)
class PolicyModel:
    """A validated policy, ready to compile."""

    operations: Mapping[int, str] | None
    roles: dict[str, RoleDef]
    users: dict[str, Source]
    assignments: dict[str, tuple[Assignment, ...]]  # user -> assignments
    grants: list[GrantBlock]
    ssd: tuple[SeparationSet, ...]
    dsd: tuple[SeparationSet, ...]
    closure: dict[str, dict[str, tuple[int, str]]]
    digest: str
    #: Unix group -> its assignments (``<Group>`` in UA), resolved through NSS at decision time
    groups: dict[str, tuple[Assignment, ...]] = field(default_factory=dict)


def as_catalogue(operations) -> Mapping[int, str]:
    """Accept an id -> name mapping (or an object carrying one in ``.names``)."""
    if not isinstance(operations, Mapping) and hasattr(operations, "names"):
        operations = operations.names
    if not isinstance(operations, Mapping):
        raise TypeError("operations must be a mapping of operation id -> name")
    return operations


def id_ranges(ids: Iterable[int]) -> str:
    """[1,2,3,5] -> '1-3, 5' (for 'not in the catalogue (1-63)')."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(ids):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
