"""Compile a policy the way Xen 3.3's xend did: ssid numbering, matrices, binary, map.

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

from .binfmt import pack_policy
from .compiled import CompiledPolicy, LabelInfo, ResourceInfo
from .constants import MAX_SSID_INDEX, UNLABELED
from .errors import PolicyFileError, Xserr
from .mapfile import build_map
from .names import policy_stem
from .parts import PolicyContent

# The result types live in ``compiled`` (the map writer needs them too); they are exported
# here as well, where callers have always found them.
__all__ = ["CompiledPolicy", "LabelInfo", "ResourceInfo", "compile_policy"]


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


def compile_policy(p: PolicyContent) -> CompiledPolicy:
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
