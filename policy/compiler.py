"""Compile an AcmPolicy the way Xen 3.3's xend did: ssid numbering, matrices, binary, map.

Numbering (acmpolicy.py, Xen 3.3):
  * VM labels: index 0 is always ``__UNLABELED__`` (present in the policy or not), index 1 the
    bootstrap label (Domain-0's), then the other VM labels in plain, case-sensitive sort order.
    A VM label's ssidref is ``index << 16 | index`` (STE half, CHWALL half).
  * CHWALL matrix rows follow the VM order.  STE matrix rows are the VM rows followed by the
    resource labels, sorted, ``__UNLABELED__`` left out (it is ssid 0); a resource's ssidref is
    ``ste_index << 16`` (no CHWALL half).
  * Type columns are the sorted STE and CHWALL type lists; conflict sets are written sorted by
    name.
One deliberate difference: a VM label without ChineseWallTypes still gets an (all-zero) CHWALL
row, so ``index << 16 | index`` always addresses the same label in both matrices.  Xen 3.3 left
such a label out of the CHWALL matrix; its CHWALL half then pointed at another label's row.  For
every policy in which all VM labels carry ChineseWallTypes (all of Xen's examples) the output is
identical.  A policy without a ChineseWall (or STE) part compiles to an empty component with no
types, so the binary always has the CHWALL-primary/STE-secondary shape Xen runs with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .binfmt import pack_policy
from .constants import MAX_SSID_INDEX, UNLABELED
from .errors import LabelError, PolicyFileError, Xserr
from .mapfile import build_map
from .model import AcmPolicy, ConflictSet
from .names import policy_stem


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

    policy: AcmPolicy
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
        import os

        from .safefile import atomic_write

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


def _mask(types, cols: dict[str, int]) -> int:
    m = 0
    for t in types:
        m |= 1 << cols[t]
    return m


def _row(cols: Iterable[int], width: int) -> tuple[int, ...]:
    row = [0] * width
    for c in cols:
        row[c] = 1
    return tuple(row)


def compile_policy(p: AcmPolicy) -> CompiledPolicy:
    if len(p.vm_labels) + len(p.resource_labels) + 1 > MAX_SSID_INDEX:
        raise PolicyFileError(
            p.source,
            0,
            f"policy has {len(p.vm_labels)} VM and {len(p.resource_labels)} resource labels; "
            f"ssid indexes are 16-bit, so at most {MAX_SSID_INDEX - 1} labels fit",
            Xserr.POLICY_INCONSISTENT,
        )
    others = sorted(n for n in p.vm_label_names if n not in (UNLABELED, p.bootstrap))
    vm_order = (UNLABELED, p.bootstrap, *others)
    res_order = tuple(sorted(n for n in p.resource_label_names if n != UNLABELED))
    ste_order = tuple(sorted(p.ste_types))
    cw_order = tuple(sorted(p.chwall_types))
    ste_cols = {t: i for i, t in enumerate(ste_order)}
    cw_cols = {t: i for i, t in enumerate(cw_order)}
    conflicts = tuple(sorted(p.conflict_sets, key=lambda c: c.name))
    conflict_cols = [frozenset(cw_cols[t] for t in cs.types) for cs in conflicts]

    vm_defs = {lbl.name: lbl for lbl in p.vm_labels}
    res_defs = {lbl.name: lbl for lbl in p.resource_labels}
    vm: dict[str, LabelInfo] = {}
    chwall_rows, ste_rows = [], []
    n_ste, n_cw = len(ste_order), len(cw_order)
    for idx, name in enumerate(vm_order):
        lbl = vm_defs.get(name)
        ste = frozenset(lbl.ste_types) if lbl else frozenset()
        cw = frozenset(lbl.chwall_types) if lbl else frozenset()
        cols = tuple(sorted(cw_cols[t] for t in cw))
        incr: list[int] = []
        for cset in conflict_cols:
            if cset.intersection(cols):
                incr.extend(sorted(cset.difference(cols)))
        vm[name] = LabelInfo(
            name=name,
            index=idx,
            ssidref=(idx << 16) | idx,
            ste_types=ste,
            chwall_types=cw,
            ste_mask=_mask(ste, ste_cols),
            chwall_cols=cols,
            aggregate_incr=tuple(incr),
            defined=lbl is not None,
        )
        chwall_rows.append(_row(cols, n_cw))
        ste_rows.append(_row((ste_cols[t] for t in ste), n_ste))

    res: dict[str, ResourceInfo] = {}
    unl = vm[UNLABELED]
    res_unl = res_defs.get(UNLABELED)
    res[UNLABELED] = ResourceInfo(
        UNLABELED, 0, 0, unl.ste_types, unl.ste_mask, defined=res_unl is not None
    )
    for i, name in enumerate(res_order):
        idx = len(vm_order) + i
        types = frozenset(res_defs[name].ste_types)
        res[name] = ResourceInfo(name, idx, idx << 16, types, _mask(types, ste_cols))
        ste_rows.append(_row((ste_cols[t] for t in types), n_ste))

    conflict_rows = [_row(cols, n_cw) for cols in conflict_cols]
    sha1 = hashlib.sha1(p.xml, usedforsecurity=False).digest()
    binary = pack_policy(
        name=p.name,
        version=p.version_tuple,
        sha1=sha1,
        chwall_types=len(cw_order),
        chwall_rows=chwall_rows,
        conflict_rows=conflict_rows,
        ste_types=len(ste_order),
        ste_rows=ste_rows,
    )
    compiled = CompiledPolicy(
        policy=p,
        vm_order=vm_order,
        res_order=res_order,
        ste_type_order=ste_order,
        chwall_type_order=cw_order,
        conflict_order=conflicts,
        vm=vm,
        res=res,
        chwall_matrix=tuple(chwall_rows),
        conflict_matrix=tuple(conflict_rows),
        ste_matrix=tuple(ste_rows),
        sha1=sha1,
        binary=binary,
        map_text="",
    )
    stem = policy_stem(p.name)
    text = build_map(compiled, stem + "-security_policy.xml", stem + ".bin")
    object.__setattr__(compiled, "map_text", text)
    return compiled
