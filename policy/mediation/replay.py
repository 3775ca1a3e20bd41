"""Recount Chinese Wall state and re-check STE sharing for a whole set of running domains.

Why a separate, pure module: policy update, relabel and rebuild all need the same thing, "take
these running domains (with their labels under some compiled policy), start them again one by
one, and say what breaks"; the create hook uses its conflict finder to explain a refusal.
Nothing here touches a Mediator's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..compiled import CompiledPolicy, LabelInfo, ResourceInfo
from ..constants import (
    ACM_CHWALL_CONFLICT,
    ACM_DOMAIN_LOOKUP,
    ACM_EVTCHN_SHARING_VIOLATION,
    ACM_GNTTAB_SHARING_VIOLATION,
)
from ..errors import UpdateError, Xserr
from ..labels import format_label


@dataclass(frozen=True, slots=True)
class AttachedResource:
    """A resource a running domain uses: its name and its label (name) under the policy."""

    name: str
    label: str  # resource label name ("__UNLABELED__" for an unlabeled resource)
    info: ResourceInfo | None  # None: the label does not exist (or is __INACCESSIBLE__)


@dataclass(slots=True)
class Dom:
    """A running domain as the mediation module tracks it."""

    key: object
    domid: int
    info: LabelInfo
    resources: tuple[AttachedResource, ...] = ()


def conflict_tables(c: CompiledPolicy) -> tuple[list[frozenset[int]], list[list[int]]]:
    """(columns of each conflict set, conflict sets of each column) for a compiled policy."""
    cols = {t: i for i, t in enumerate(c.chwall_type_order)}
    set_cols = [frozenset(cols[t] for t in cs.types) for cs in c.conflict_order]
    sets_of_col: list[list[int]] = [[] for _ in c.chwall_type_order]
    for si, sc in enumerate(set_cols):
        for col in sc:
            sets_of_col[col].append(si)
    return set_cols, sets_of_col


def find_conflicts(
    c: CompiledPolicy,
    info: LabelInfo,
    running: Iterable[Dom],
    tables=None,
    running_types: Sequence[int] | None = None,
) -> list[dict]:
    """Who stands in the way of ``info`` starting: one entry per (type, set, holder).

    With ``running_types`` (the CHWALL counts), only types some running domain holds are
    looked for, so the scan over running domains is one cheap test per domain.
    """
    set_cols, sets_of_col = tables or conflict_tables(c)
    own = set(info.chwall_cols)
    wanted: list[tuple[int, int, frozenset[int]]] = []  # (own col, set index, other cols)
    for col in info.chwall_cols:
        for si in sets_of_col[col]:
            others = set_cols[si] - own
            if running_types is not None:
                others = frozenset(o for o in others if running_types[o])
            if others:
                wanted.append((col, si, others))
    if not wanted:
        return []
    hot = frozenset().union(*(w[2] for w in wanted))
    found: list[tuple[int, dict]] = []
    for d in running:
        held_any = hot.intersection(d.info.chwall_cols)
        if not held_any:
            continue
        for widx, (col, si, others) in enumerate(wanted):
            for hcol in sorted(others.intersection(held_any)):
                found.append(
                    (
                        widx,
                        {
                            "type": c.chwall_type_order[col],
                            "conflict_set": c.conflict_order[si].name,
                            "conflicting_type": c.chwall_type_order[hcol],
                            "conflicting_domain": d.key,
                            "conflicting_label": d.info.display(c.name),
                        },
                    )
                )
    found.sort(key=lambda x: x[0])  # stable: by (own type, set), then in start order
    return [entry for _w, entry in found]


def start_counts(info: LabelInfo, running: list[int], aggregate: list[int], sign: int = 1) -> None:
    """Apply a domain start (sign=1) or stop (sign=-1) to the CHWALL counters in place."""
    for t in info.aggregate_incr:
        aggregate[t] += sign
    for t in info.chwall_cols:
        running[t] += sign


def replay(
    c: CompiledPolicy, doms: Sequence[Dom], channels: Iterable[tuple[int, str, object, object]] = ()
) -> tuple[list[int], list[int], list[UpdateError]]:
    """Start ``doms`` in order under ``c``; return (running_types, aggregate, errors).

    Counts include every domain, even one found in conflict, so that the result describes
    reality (``rebuild``); callers that must refuse look at ``errors``.
    """
    n = len(c.chwall_type_order)
    running, aggregate = [0] * n, [0] * n
    errors: list[UpdateError] = []
    tables = conflict_tables(c)
    started: list[Dom] = []
    for d in doms:
        hit = [t for t in d.info.chwall_cols if aggregate[t]]
        if hit:
            conf = find_conflicts(c, d.info, started, tables)
            if conf:
                f = conf[0]
                msg = (
                    f"Chinese Wall conflict between domains {f['conflicting_domain']!r} "
                    f"({f['conflicting_label']}) and {d.key!r} "
                    f"({d.info.display(c.name)}): types {f['conflicting_type']} and "
                    f"{f['type']} are both in conflict set {f['conflict_set']!r}"
                )
            else:
                msg = f"Chinese Wall conflict for domain {d.key!r} in type {hit[0]}"
            errors.append(UpdateError(ACM_CHWALL_CONFLICT, hit[0], msg))
        start_counts(d.info, running, aggregate)
        started.append(d)
        for r in d.resources:
            if r.info is None:
                errors.append(
                    UpdateError(
                        int(Xserr.RESOURCE_ACCESS),
                        d.domid,
                        f"domain {d.key!r} uses resource {r.name!r} labeled {r.label!r}, a label "
                        f"policy {c.name!r} does not define; detach the resource or relabel it",
                    )
                )
            elif not d.info.ste_mask & r.info.ste_mask:
                errors.append(
                    UpdateError(
                        int(Xserr.RESOURCE_ACCESS),
                        d.domid,
                        f"domain {d.key!r} ({d.info.display(c.name)}, STE types "
                        f"{', '.join(sorted(d.info.ste_types)) or 'none'}) would lose access to "
                        f"resource {r.name!r} ({format_label(c.name, r.label)}, STE type "
                        f"{', '.join(sorted(r.info.ste_types)) or 'none'}): no common STE type",
                    )
                )
    by_key = {d.key: d for d in doms}
    for _cid, kind, a, b in channels:
        code = ACM_EVTCHN_SHARING_VIOLATION if kind == "evtchn" else ACM_GNTTAB_SHARING_VIOLATION
        da, db = by_key.get(a), by_key.get(b)
        if da is None or db is None:
            missing = a if da is None else b
            errors.append(
                UpdateError(ACM_DOMAIN_LOOKUP, 0, f"{kind} peer domain {missing!r} is not running")
            )
            continue
        if not da.info.ste_mask & db.info.ste_mask:
            what = "event channel" if kind == "evtchn" else "grant mapping"
            errors.append(
                UpdateError(
                    code,
                    ((da.domid & 0xFFFF) << 16) | (db.domid & 0xFFFF),
                    f"the {what} between {a!r} ({da.info.display(c.name)}) and {b!r} "
                    f"({db.info.display(c.name)}) would share no STE type; close it "
                    "first",
                )
            )
    return running, aggregate, errors
