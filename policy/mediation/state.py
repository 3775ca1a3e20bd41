"""What every mediation hook decides against, and the bookkeeping that keeps it right.

Owns: the active compiled policy and its Chinese Wall tables, the running domains with their
per-type counts (``running_types``, ``conflict_aggregate``), open channels and grant mappings,
the decision counters and every cache (label resolution, allow verdicts, authorization, the
per-domain STE cache, explained refusals).  Also label resolution - a label given as
``"blue"``, ``"ACM:pol:blue"`` or a ``Label`` is looked up by (policy name, label name) in the
active policy, never by ssidref (seed 001).

Why one place: the hook groups (sharing, lifecycle, policy changes) all read and change the
same state under the same lock, and a cache that one of them forgets to clear is a wrong
decision later.  So every change of running state goes through :meth:`_add`, :meth:`_remove`
or :meth:`_commit` here, and those clear what the change invalidates.  The helpers here expect
the caller to hold ``_lock``; the public methods (``resolve`` here, the hooks in the other
modules) take it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

from ..compiled import CompiledPolicy, LabelInfo, ResourceInfo
from ..constants import (
    ACM_INVALID_SSIDREF,
    ACM_POLICY_ID,
    INACCESSIBLE,
    INACCESSIBLE_POLICY,
    UNLABELED,
)
from ..errors import LabelError, Xserr
from ..labels import Label, format_label, parse_label
from ..verdict import RULE_LABEL, Verdict, deny
from .replay import Dom, conflict_tables, start_counts

DOM0 = "Domain-0"
_CACHE_LIMIT = 4096  # label-string resolution / memo caches are cleared beyond this
_MISS = object()

COUNTER_NAMES = (
    "chwall_eval",
    "chwall_denied",
    "auth_eval",
    "auth_denied",
    "res_eval",
    "res_denied",
    "ec_eval",
    "ec_denied",
    "ec_cachehit",
    "gt_eval",
    "gt_denied",
    "gt_cachehit",
    "domains_created",
    "domains_destroyed",
    "relabels",
    "relabels_refused",
    "updates",
    "updates_refused",
    "rebuilds",
)


class RunningDomain(NamedTuple):
    """A running domain as ``Mediator.running()`` reports it."""

    key: Hashable
    domid: int
    policy: str
    label: str
    ssidref: int
    resources: tuple[tuple[str, str], ...]  # (resource name, resource label name)

    @property
    def display(self) -> str:
        """``ACM:<policy>:<label>`` (``INV_ACM:...`` when the label is not in the policy)."""
        kind = ACM_POLICY_ID if self.ssidref != ACM_INVALID_SSIDREF else "INV_ACM"
        return format_label(self.policy, self.label, kind)


class MediatorState:
    """The state of one emulated hypervisor's ACM module; the hook groups build on it.

    ``dom0``: the key of the management domain (Domain-0), running from the start with the
    bootstrap label (or ``dom0_label``); None for a host with no such domain.
    """

    def __init__(
        self,
        compiled: CompiledPolicy,
        *,
        dom0: Hashable | None = DOM0,
        dom0_label: str | Label | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._dom0 = dom0
        self._c = dict.fromkeys(COUNTER_NAMES, 0)
        self._channels: dict[int, tuple[str, Hashable, Hashable]] = {}
        self._next_chan = 1
        self._domains: dict[Hashable, Dom] = {}
        self._set_policy(compiled)
        if dom0 is not None:
            info = (
                self._resolve_vm(dom0_label)
                if dom0_label is not None
                else compiled.vm[compiled.bootstrap]
            )
            self._add(Dom(dom0, 0, info, ()))

    # ---------------------------------------------------- internal state
    def _set_policy(self, compiled: CompiledPolicy) -> None:
        self._compiled = compiled
        self._tables = conflict_tables(compiled)
        n = len(compiled.chwall_type_order)
        self._running_types = [0] * n
        self._aggregate = [0] * n
        self._flush_caches()

    def _flush_caches(self) -> None:
        self._vm_cache: dict[Any, LabelInfo] = {}
        self._res_cache: dict[Any, ResourceInfo | None] = {}
        self._allow_cache: dict[tuple[str, str], Verdict] = {}
        self._auth_cache: dict[str, bool] = {}
        self._ste_cache: dict[Hashable, list[Hashable]] = {}
        # refusals already explained, valid until the running state changes (explanations name
        # running domains, so any start/stop/relabel/update clears this)
        self._memo: dict[tuple, Verdict] = {}

    def _memoize(self, k: tuple, v: Verdict) -> Verdict:
        if len(self._memo) > _CACHE_LIMIT:
            self._memo.clear()
        self._memo[k] = v
        return v

    def _add(self, d: Dom) -> None:
        self._domains[d.key] = d
        start_counts(d.info, self._running_types, self._aggregate, 1)
        self._memo.clear()

    def _remove(self, key: Hashable) -> Dom:
        d = self._domains.pop(key)
        start_counts(d.info, self._running_types, self._aggregate, -1)
        self._memo.clear()
        self._ste_cache.pop(key, None)
        for lst in self._ste_cache.values():
            if key in lst:
                lst.remove(key)
        for cid in [cid for cid, (_k, a, b) in self._channels.items() if key in (a, b)]:
            del self._channels[cid]
        return d

    def _domid_for(self, key: Hashable) -> int:
        if isinstance(key, int) and not isinstance(key, bool):
            return key
        used = {d.domid for d in self._domains.values()}
        n = 1
        while n in used:
            n += 1
        return n

    def _fmt(self, label: str | LabelInfo) -> str:
        """A label for messages: a compiled label as the domain carries it, or a name of the
        active policy."""
        if isinstance(label, LabelInfo):
            return label.display(self._compiled.name)
        return format_label(self._compiled.name, label)

    # -------------------------------------------------- label resolution
    def _resolve_vm(self, label: str | Label | None) -> LabelInfo:
        c = self._compiled
        if label is None or label == "":
            return c.vm[UNLABELED]
        lab = parse_label(label, c.name)
        if not lab.valid:
            raise LabelError(
                f"label {lab} was invalidated by a policy change (its policy no longer defines "
                "it); give the VM a label of the active policy",
                Xserr.BAD_LABEL,
            )
        if lab.policy != c.name:
            raise LabelError(
                f"label {lab} belongs to policy {lab.policy!r}, but the active policy is "
                f"{c.name!r}; a label means something only under its own policy, so relabel "
                f"the VM with a label of {c.name!r}",
                Xserr.BAD_LABEL,
            )
        info = c.vm.get(lab.name)
        if info is None:
            raise LabelError(
                f"{lab.name!r} is not a VM label of the active policy {c.name!r} (VM labels: "
                f"{', '.join(c.vm_order[1:])})",
                Xserr.BAD_LABEL,
            )
        return info

    def _vm_info(self, label: Any) -> LabelInfo:
        try:
            info = self._vm_cache.get(label)
        except TypeError:
            return self._resolve_vm(label)
        if info is None:
            info = self._resolve_vm(label)
            if len(self._vm_cache) > _CACHE_LIMIT:
                self._vm_cache.clear()
            self._vm_cache[label] = info
        return info

    def _resolve_res(self, label: str | Label | None) -> ResourceInfo | None:
        """A resource label's info; None means __INACCESSIBLE__."""
        c = self._compiled
        if label is None or label == "":
            return c.res[UNLABELED]
        if label == INACCESSIBLE:
            return None
        lab = parse_label(label, c.name)
        if lab.name == INACCESSIBLE and lab.policy in (INACCESSIBLE_POLICY, c.name):
            return None
        if not lab.valid:
            raise LabelError(
                f"resource label {lab} was invalidated by a policy change; label the resource "
                "again under the active policy",
                Xserr.BAD_LABEL,
            )
        if lab.policy != c.name:
            raise LabelError(
                f"resource label {lab} belongs to policy {lab.policy!r}, but the active policy "
                f"is {c.name!r}; relabel the resource",
                Xserr.BAD_LABEL,
            )
        info = c.res.get(lab.name)
        if info is None:
            raise LabelError(
                f"{lab.name!r} is not a resource label of the active policy {c.name!r} "
                f"(resource labels: {', '.join(c.res_order) or 'none'})",
                Xserr.BAD_LABEL,
            )
        return info

    def _res_info(self, label: Any) -> ResourceInfo | None:
        try:
            info = self._res_cache.get(label, _MISS)
        except TypeError:
            return self._resolve_res(label)
        if info is not _MISS:
            return info
        info = self._resolve_res(label)
        if len(self._res_cache) > _CACHE_LIMIT:
            self._res_cache.clear()
        self._res_cache[label] = info
        return info

    def resolve(self, vm_label: str | Label | None) -> LabelInfo:
        """The compiled VM label a label (string or Label) stands for; raises LabelError."""
        with self._lock:
            return self._resolve_vm(vm_label)

    def _deny_label(self, hook: str, key: Hashable, label: Any, exc: LabelError) -> Verdict:
        what = f"domain {key!r}" if key is not None else "the domain"
        return deny(
            hook,
            RULE_LABEL,
            f"cannot mediate {what}: {exc.message}",
            exc.xserr,
            {"domain": key, "label": str(label)},
        )

    @staticmethod
    def _norm_resources(resources: Any) -> list[tuple[str | None, Any]]:
        if not resources:
            return []
        if isinstance(resources, Mapping):
            return list(resources.items())
        out: list[tuple[str | None, Any]] = []
        for r in resources:
            if isinstance(r, tuple) and len(r) == 2:
                out.append((r[0], r[1]))
            else:
                out.append((None, r))
        return out

    # -------------------------------------------- committing a new state
    def _commit(
        self, compiled: CompiledPolicy, doms: list[Dom], running: list[int], aggregate: list[int]
    ) -> None:
        if compiled is not self._compiled:
            self._set_policy(compiled)
        else:
            self._flush_caches()
        self._domains = {d.key: d for d in doms}
        self._running_types = running
        self._aggregate = aggregate

    def _channel_list(self) -> list[tuple[int, str, Hashable, Hashable]]:
        return [(cid, k, a, b) for cid, (k, a, b) in self._channels.items()]

    def _new_channel(self, kind: str, a: Hashable, b: Hashable) -> int:
        cid = self._next_chan
        self._next_chan += 1
        self._channels[cid] = (kind, a, b)
        return cid

    def _running_entry(self, d: Dom) -> RunningDomain:
        origin = d.info.origin
        return RunningDomain(
            d.key,
            d.domid,
            origin.policy if origin is not None else self._compiled.name,
            origin.name if origin is not None else d.info.name,
            d.info.ssidref,
            tuple((r.name, r.label) for r in d.resources),
        )
