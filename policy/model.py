"""The policy as the rest of the code uses it: :class:`AcmPolicy`, read, written and compiled.

Why this sits on top: ``AcmPolicy`` is :class:`~policy.parts.PolicyContent` (what a policy
says) plus the ways in and out of it - parse a file (``reader``), serialise (``writer``),
compile (``compiler``).  Those modules build on ``parts`` only, so this module imports them and
none of them imports it.  The parts are re-exported here, where they have always been.
"""

from __future__ import annotations

import dataclasses
import os
import stat

from .compiled import CompiledPolicy
from .compiler import compile_policy
from .errors import PolicyFileError, Xserr
from .parts import (
    ConflictSet,
    FromPolicy,
    PolicyContent,
    PolicyHeader,
    ResourceLabel,
    VmLabel,
    parse_version,
)
from .reader import read_policy
from .writer import write_policy
from .xmlsafe import MAX_POLICY_BYTES

__all__ = [
    "AcmPolicy",
    "ConflictSet",
    "FromPolicy",
    "PolicyContent",
    "PolicyHeader",
    "ResourceLabel",
    "VmLabel",
    "parse_version",
]


class AcmPolicy(PolicyContent):
    """A validated policy.  Build it with :meth:`from_xml`, :meth:`from_file` or
    :meth:`from_parts`; never by hand (the constructor does not validate).

    ``xml`` holds the exact bytes the policy was read from: the binary policy carries their
    SHA-1, as Xen's does.
    """

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_xml(
        cls, data: bytes | str, source: str = "<policy>", max_bytes: int | None = None
    ) -> AcmPolicy:
        """Parse, schema-validate and check a policy; raises PolicyFileError (file:line)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        return read_policy(data, source, max_bytes, into=AcmPolicy)

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_bytes: int | None = None) -> AcmPolicy:
        """Read a policy file; an unreadable file is a PolicyFileError (FILE_ERROR) too."""
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
            if not stat.S_ISREG(os.fstat(fd).st_mode):
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
        return write_policy(self)

    def compile(self) -> CompiledPolicy:
        """Compile to ssidrefs, the binary policy and the map (Xen 3.3 rules)."""
        return compile_policy(self)
