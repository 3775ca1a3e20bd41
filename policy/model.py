"""The in-memory form of an sHype/ACM security policy (Xen's XML format).

Why immutable: a policy object is shared between the compiler, the mediation module and the
XSM API, possibly across threads; edits (XSM addType, addLabel ...) build a new policy, which is
serialised and parsed again so that it passes through exactly the same validation as a file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .constants import DEFAULT_POLICY_NAME, UNLABELED

if TYPE_CHECKING:
    from .compiler import CompiledPolicy


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
class AcmPolicy:
    """A validated policy.  Build it with :meth:`from_xml`, :meth:`from_file` or
    :meth:`from_parts`; never by hand (the constructor does not validate).

    ``xml`` holds the exact bytes the policy was read from: the binary policy carries their
    SHA-1, as Xen's does.
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

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_xml(
        cls, data: bytes | str, source: str = "<policy>", max_bytes: int | None = None
    ) -> AcmPolicy:
        """Parse, schema-validate and check a policy; raises PolicyFileError (file:line)."""
        from .reader import read_policy

        if isinstance(data, str):
            data = data.encode("utf-8")
        return read_policy(data, source, max_bytes)

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_bytes: int | None = None) -> AcmPolicy:
        """Read a policy file; an unreadable file is a PolicyFileError (FILE_ERROR) too."""
        from .errors import PolicyFileError, Xserr
        from .xmlsafe import MAX_POLICY_BYTES

        limit = max_bytes or MAX_POLICY_BYTES
        path = os.fspath(path)
        try:
            # O_NONBLOCK: opening a FIFO must not hang; the fd is checked to be a regular file.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise PolicyFileError(
                path, 0, f"cannot read policy file: {exc.strerror}", Xserr.FILE_ERROR
            ) from None
        try:
            if not _is_regular(os.fstat(fd).st_mode):
                raise PolicyFileError(
                    path, 0, "not a regular file; give the path of a policy file", Xserr.FILE_ERROR
                )
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise PolicyFileError(
                path, 0, f"cannot read policy file: {exc.strerror}", Xserr.FILE_ERROR
            ) from None
        finally:
            os.close(fd)
        return cls.from_xml(data, source=path, max_bytes=limit)

    @classmethod
    def from_parts(
        cls,
        header: PolicyHeader,
        *,
        ste_types=(),
        chwall_types=(),
        conflict_sets=(),
        vm_labels=(),
        resource_labels=(),
        bootstrap: str,
        has_ste: bool | None = None,
        has_chwall: bool | None = None,
        source: str = "<generated>",
    ) -> AcmPolicy:
        """Build a policy from parts: serialised to XML and read back, so it is validated."""
        draft = cls(
            header=header,
            ste_types=tuple(ste_types),
            chwall_types=tuple(chwall_types),
            conflict_sets=tuple(conflict_sets),
            vm_labels=tuple(vm_labels),
            resource_labels=tuple(resource_labels),
            bootstrap=bootstrap,
            has_ste=bool(ste_types) if has_ste is None else has_ste,
            has_chwall=bool(chwall_types) if has_chwall is None else has_chwall,
        )
        return cls.from_xml(draft.to_xml(), source=source)

    def evolve(self, source: str = "<edited>", **changes) -> AcmPolicy:
        """A changed copy (``header=``, ``vm_labels=`` ...), validated like a file."""
        draft = dataclasses.replace(self, **changes)
        return AcmPolicy.from_xml(draft.to_xml(), source=source)

    def to_xml(self) -> bytes:
        from .writer import write_policy

        return write_policy(self)

    # -- queries ------------------------------------------------------------------------
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

    def compile(self) -> CompiledPolicy:
        """Compile to ssidrefs, the binary policy and the map (Xen 3.3 rules)."""
        from .compiler import compile_policy

        return compile_policy(self)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
