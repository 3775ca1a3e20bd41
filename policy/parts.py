"""What an sHype/ACM policy says: header, types, conflict sets, labels, and all of them together.

Why a module of its own: the reader builds these, the writer and the compiler read them, and
:class:`~policy.model.AcmPolicy` ties reading, writing and compiling together on top of them.
Keeping the plain data (and the questions one asks of it) below all three is what lets
``model`` import ``reader``, ``writer`` and ``compiler`` without any of them importing back.

Why immutable: a policy is shared between the compiler, the mediation module and the XSM API,
possibly across threads; edits (XSM addType, addLabel ...) build a new policy, which is
serialised and parsed again so that it passes through exactly the same validation as a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import DEFAULT_POLICY_NAME, UNLABELED


def parse_version(text: str) -> tuple[int, int]:
    """``"1.10"`` -> ``(1, 10)``; versions compare as (major, minor) integers, as in xend."""
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


@dataclass(frozen=True)
class FromPolicy:
    """The policy an update replaces: its name and version must match the loaded policy."""

    name: str
    version: str


@dataclass(frozen=True)
class PolicyHeader:
    name: str
    version: str = "1.0"
    url: str | None = None
    reference: str | None = None
    date: str | None = None
    namespace_url: str | None = None
    from_policy: FromPolicy | None = None

    def as_record(self) -> dict[str, str]:
        """The Xen-API header record (policyname, policyurl, reference, date, ...)."""
        return {
            "policyname": self.name,
            "policyurl": self.url or "",
            "reference": self.reference or "",
            "date": self.date or "",
            "namespaceurl": self.namespace_url or "",
            "version": self.version,
            "frompolicy": (
                f"{self.from_policy.name}/{self.from_policy.version}" if self.from_policy else ""
            ),
        }


@dataclass(frozen=True)
class VmLabel:
    """A VM (subject) label: STE types for sharing, CHWALL types for run-time exclusion."""

    name: str
    ste_types: tuple[str, ...] = ()
    chwall_types: tuple[str, ...] = ()
    from_name: str | None = None
    line: int = field(default=0, compare=False)

    def as_record(self) -> dict:
        return {
            "type": "vm",
            "name": self.name,
            "stetypes": list(self.ste_types),
            "chwalltypes": list(self.chwall_types),
        }


@dataclass(frozen=True)
class ResourceLabel:
    """A resource (object) label: exactly one STE type."""

    name: str
    ste_type: str
    from_name: str | None = None
    line: int = field(default=0, compare=False)

    @property
    def ste_types(self) -> tuple[str, ...]:
        return (self.ste_type,)

    def as_record(self) -> dict:
        return {"type": "res", "name": self.name, "stetypes": [self.ste_type], "chwalltypes": []}


@dataclass(frozen=True)
class ConflictSet:
    """A named Chinese Wall conflict set: running domains may hold at most one of its types."""

    name: str
    types: tuple[str, ...]
    line: int = field(default=0, compare=False)

    def as_record(self) -> dict:
        return {"name": self.name, "chwalltypes": list(self.types)}


@dataclass(frozen=True)
class PolicyContent:
    """Everything a policy says, and the questions asked of it; no reading, writing, compiling.

    Code uses the subclass :class:`~policy.model.AcmPolicy`, which adds those; this class is
    what the reader fills in (it is told which class to build) and what the writer and the
    compiler take.  ``xml`` holds the exact bytes the policy was read from: the binary policy
    carries their SHA-1, as Xen's does.
    """

    header: PolicyHeader
    ste_types: tuple[str, ...]
    chwall_types: tuple[str, ...]
    conflict_sets: tuple[ConflictSet, ...]
    vm_labels: tuple[VmLabel, ...]
    resource_labels: tuple[ResourceLabel, ...]
    bootstrap: str
    has_ste: bool = True
    has_chwall: bool = True
    chwall_primary_attr: bool = False
    ste_primary_attr: bool = False
    xml: bytes = field(default=b"", compare=False, repr=False)
    source: str = field(default="<policy>", compare=False)

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def version(self) -> str:
        return self.header.version

    @property
    def version_tuple(self) -> tuple[int, int]:
        return parse_version(self.header.version)

    @property
    def from_policy(self) -> FromPolicy | None:
        return self.header.from_policy

    def vm_label(self, name: str) -> VmLabel | None:
        for lbl in self.vm_labels:
            if lbl.name == name:
                return lbl
        return None

    def resource_label(self, name: str) -> ResourceLabel | None:
        for lbl in self.resource_labels:
            if lbl.name == name:
                return lbl
        return None

    @property
    def vm_label_names(self) -> list[str]:
        return [lbl.name for lbl in self.vm_labels]

    @property
    def resource_label_names(self) -> list[str]:
        return [lbl.name for lbl in self.resource_labels]

    def is_default(self) -> bool:
        """True for Xen's DEFAULT policy (by name *and* shape; a ``from`` rename is allowed)."""
        if self.name != DEFAULT_POLICY_NAME:
            return False
        vms = {lbl.name: (set(lbl.ste_types), set(lbl.chwall_types)) for lbl in self.vm_labels}
        res = {lbl.name: lbl.ste_type for lbl in self.resource_labels}
        return (
            set(self.ste_types) == {"SystemManagement", UNLABELED}
            and set(self.chwall_types) == {"SystemManagement"}
            and not self.conflict_sets
            and self.bootstrap == "SystemManagement"
            and vms
            == {
                "SystemManagement": ({"SystemManagement", UNLABELED}, set()),
                UNLABELED: ({UNLABELED}, set()),
            }
            and res in ({UNLABELED: UNLABELED}, {})
        )
