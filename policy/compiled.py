"""What compiling a policy produces: :class:`CompiledPolicy` and its per-label records.

Why apart from the compiler: the map writer (``mapfile``), the mediation hooks and the XSM
layer all work with compiled policies, but only ``compiler`` knows how to make one.  With the
result types here, the map writer can read a compiled policy without importing the compiler
that calls it.  The numbering rules themselves are documented in ``policy.compiler``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .constants import UNLABELED
from .errors import LabelError
from .labels import Label, format_label
from .names import policy_stem
from .parts import ConflictSet, PolicyContent
from .safefile import atomic_write


@dataclass(frozen=True)
class LabelInfo:
    """A compiled VM label; everything the mediation hooks need, precomputed."""

    name: str
    index: int
    ssidref: int
    ste_types: frozenset[str]
    chwall_types: frozenset[str]
    ste_mask: int  # bit i set = STE type column i
    chwall_cols: tuple[int, ...]
    aggregate_incr: tuple[int, ...]  # CHWALL columns whose conflict count this label raises
    defined: bool = True  # False for an implicit __UNLABELED__ the policy does not define
    #: the label a domain carries when it is *not* one of this policy's (tracked without
    #: types after a rebuild): kept whole, so it is shown as the domain has it and a later
    #: policy that defines it can resolve it by (policy name, label name)
    origin: Label | None = None

    def display(self, policy_name: str) -> str:
        """``ACM:<policy>:<label>`` as the domain carries it: under ``policy_name`` (the
        compiled policy's) for its own labels, under the label's own policy otherwise."""
        if self.origin is not None:
            return str(self.origin)
        return format_label(policy_name, self.name)


@dataclass(frozen=True)
class ResourceInfo:
    """A compiled resource label."""

    name: str
    index: int
    ssidref: int
    ste_types: frozenset[str]
    ste_mask: int
    defined: bool = True


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    """A policy compiled for the (emulated) hypervisor.  Immutable; safe to share.

    ``ssidref(label)``/``label_for(ssidref)``/``resource_ssidref(label)`` translate between
    names and numbers; ``binary`` and ``map_text`` are the files Xen's tools produced.
    """

    policy: PolicyContent  # the AcmPolicy it was compiled from
    vm_order: tuple[str, ...]
    res_order: tuple[str, ...]
    ste_type_order: tuple[str, ...]
    chwall_type_order: tuple[str, ...]
    conflict_order: tuple[ConflictSet, ...]
    vm: dict[str, LabelInfo]
    res: dict[str, ResourceInfo]
    chwall_matrix: tuple[tuple[int, ...], ...]
    conflict_matrix: tuple[tuple[int, ...], ...]
    ste_matrix: tuple[tuple[int, ...], ...]
    sha1: bytes
    binary: bytes = field(repr=False)
    map_text: str = field(repr=False)

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def version(self) -> str:
        return self.policy.version

    @property
    def bootstrap(self) -> str:
        return self.policy.bootstrap

    @property
    def xml(self) -> bytes:
        return self.policy.xml

    def ssidref(self, label: str) -> int:
        """The local ssidref of VM label ``label`` (``__UNLABELED__`` is always 0)."""
        info = self.vm.get(label)
        if info is None:
            raise LabelError(
                f"{label!r} is not a VM label of policy {self.name!r} "
                f"(VM labels: {', '.join(self.vm_order[1:])})"
            )
        return info.ssidref

    def resource_ssidref(self, label: str) -> int:
        info = self.res.get(label)
        if info is None:
            raise LabelError(
                f"{label!r} is not a resource label of policy {self.name!r} "
                f"(resource labels: {', '.join(self.res_order) or 'none'})"
            )
        return info.ssidref

    def label_for(self, ssidref: int) -> str:
        """The VM label an ssidref stands for (Xen looks at the CHWALL half only)."""
        idx = ssidref & 0xFFFF
        if idx >= len(self.vm_order):
            raise LabelError(f"ssidref {ssidref:#x} is not a VM label of policy {self.name!r}")
        return self.vm_order[idx]

    def resource_label_for(self, ssidref: int) -> str:
        idx = ssidref >> 16
        if idx == 0:
            return UNLABELED
        base = len(self.vm_order)
        if not base <= idx < base + len(self.res_order):
            raise LabelError(
                f"ssidref {ssidref:#x} is not a resource label of policy {self.name!r}"
            )
        return self.res_order[idx - base]

    def write_files(self, directory: str) -> dict[str, str]:
        """Write ``<stem>.bin`` and ``<stem>.map`` (Xen's layout) below ``directory``, atomically.

        Returns the paths written.  For ``svirt-admin policy compile``.
        """
        base = os.path.join(directory, self.stem)
        os.makedirs(os.path.dirname(base), exist_ok=True)
        paths = {"binary": base + ".bin", "map": base + ".map"}
        atomic_write(paths["binary"], self.binary)
        atomic_write(paths["map"], self.map_text)
        return paths

    @property
    def stem(self) -> str:
        """``example/client_v1``: where the policy's .xml/.map/.bin live below a policy dir."""
        return policy_stem(self.name)
