"""Simple Type Enforcement hooks: resources, event channels and grant tables.

Owns: ``share_resource`` (may a VM label use a resource label), the STE check of every
resource a starting domain uses (``_share_verdict``, called by the create checks), and the
domain-to-domain hooks - event channels (``check_evtchn``, ``evtchn_bind``) and grant mappings
(``check_grant``, ``grant_map``) - with the channels they leave open, which policy updates and
relabels re-check.  Permitted domain pairs are cached per domain (8 entries, as Xen's
ACM_TE_CACHE_SIZE) and the cache counts hits.

Why apart: STE is the secondary policy and needs only labels and the running set, never the
Chinese Wall counts; its sentences are written only when somebody reads them (the hot path
is two dictionary lookups and one AND of type bitmasks).
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import partial
from typing import Any

from ..compiled import LabelInfo, ResourceInfo
from ..constants import ACM_TE_CACHE_SIZE, INACCESSIBLE
from ..errors import LabelError, MediationDenied, Xserr
from ..labels import Label, format_label
from ..verdict import (
    RULE_ALLOW,
    RULE_INACCESSIBLE,
    RULE_LABEL,
    RULE_STATE,
    RULE_STE,
    Verdict,
    allow,
    allow_lazy,
    deny,
    deny_lazy,
)
from .replay import Dom
from .state import MediatorState

_RES_ACCESS = int(Xserr.RESOURCE_ACCESS)
_EVTCHN_HOOKS = {"unbound": "evtchn_unbound", "interdomain": "evtchn_interdomain"}
_COUNTER_KEYS = {p: (f"{p}_eval", f"{p}_denied", f"{p}_cachehit") for p in ("ec", "gt")}


def _share_text(
    policy: str, info: LabelInfo, rinfo: ResourceInfo, rname: str | None
) -> tuple[str, dict[str, Any]]:
    """Sentence and facts of an STE share decision (written only when someone reads them)."""
    vm_l, res_l = format_label(policy, info.name), format_label(policy, rinfo.name)
    vm_types, res_types = sorted(info.ste_types), sorted(rinfo.ste_types)
    details: dict[str, Any] = {
        "resource": rname,
        "resource_label": res_l,
        "resource_types": res_types,
        "vm_label": vm_l,
        "vm_types": vm_types,
        "ssidrefs": (info.ssidref, rinfo.ssidref),
    }
    if info.ste_mask & rinfo.ste_mask:
        common = sorted(info.ste_types & rinfo.ste_types)
        details["common_types"] = common
        reason = f"VM label {vm_l} may use {_res_phrase(rname, res_l)}: common STE type {common[0]}"
        return reason, details
    fix = (
        f"label the resource with a label whose STE type is one of {', '.join(vm_types)}"
        if vm_types
        else "give the VM a label with STE types"
    )
    reason = (
        f"Simple Type Enforcement: VM label {vm_l} (STE types {', '.join(vm_types) or 'none'}) "
        f"shares no type with {_res_phrase(rname, res_l)} (STE type "
        f"{', '.join(res_types) or 'none'}); access denied. To allow it, {fix}."
    )
    return reason, details


def _pair_text(
    policy: str, hook: str, a: Hashable, ia: LabelInfo, b: Hashable, ib: LabelInfo
) -> tuple[str, dict[str, Any]]:
    """Sentence and facts of a refused event channel / grant mapping between two domains."""
    what = "a grant mapping" if hook == "grant_map" else "an event channel"
    la, lb = format_label(policy, ia.name), format_label(policy, ib.name)
    ta, tb = sorted(ia.ste_types), sorted(ib.ste_types)
    reason = (
        f"Simple Type Enforcement: domains {a!r} ({la}, STE types {', '.join(ta) or 'none'}) "
        f"and {b!r} ({lb}, STE types {', '.join(tb) or 'none'}) share no STE type, so {what} "
        "between them is refused."
    )
    details = {
        "domain": a,
        "remote_domain": b,
        "label": la,
        "remote_label": lb,
        "types": ta,
        "remote_types": tb,
    }
    return reason, details


def _res_phrase(name: str | None, label: str) -> str:
    return f"resource {name!r} ({label})" if name is not None else f"a resource labeled {label}"


class SharingHooks(MediatorState):
    """STE decisions between a VM and a resource, and between two running domains."""

    # ------------------------------------------ STE: a VM and a resource
    def _share_verdict(
        self, hook: str, info: LabelInfo, res_label: Any, res_name: str | None
    ) -> Verdict:
        """STE check of a VM label against a resource label (no counters, no cache)."""
        rname = res_name  # None: a label-only question ("a resource labeled X")
        try:
            rinfo = self._res_info(res_label)
        except LabelError as exc:
            return deny(
                hook,
                RULE_LABEL,
                f"{_res_phrase(rname, str(res_label))}: {exc.message}",
                exc.xserr,
                {
                    "resource": rname,
                    "resource_label": str(res_label),
                    "vm_label": self._fmt(info),
                },
            )
        if rinfo is None:
            return deny(
                hook,
                RULE_INACCESSIBLE,
                f"{_res_phrase(rname, INACCESSIBLE)}: no VM may use a resource labeled "
                f"{INACCESSIBLE}; label it with a resource label of the active policy to make "
                "it usable",
                Xserr.RESOURCE_ACCESS,
                {
                    "resource": rname,
                    "resource_label": INACCESSIBLE,
                    "vm_label": self._fmt(info),
                },
            )
        if info.ste_mask & rinfo.ste_mask:
            return allow_lazy(hook, partial(_share_text, self._compiled.name, info, rinfo, rname))
        return deny_lazy(
            hook,
            RULE_STE,
            Xserr.RESOURCE_ACCESS,
            partial(_share_text, self._compiled.name, info, rinfo, rname),
        )

    def share_resource(
        self,
        vm_label: str | Label | None,
        resource_label: str | Label | None,
        resource: str | None = None,
    ) -> Verdict:
        """STE: may a domain with ``vm_label`` use a resource labeled ``resource_label``?

        Labels only (no running state): two dictionary lookups and one AND of type bitmasks;
        the sentence is written only if someone reads it.  ``resource`` (a name) only improves
        the explanation.
        """
        with self._lock:
            c = self._c
            c["res_eval"] += 1
            try:
                info = self._vm_info(vm_label)
            except LabelError as exc:
                c["res_denied"] += 1
                return self._deny_label("share_resource", None, vm_label, exc)
            try:
                rinfo = self._res_info(resource_label)
            except LabelError:
                rinfo = None
            if rinfo is None:  # unknown or __INACCESSIBLE__ resource label: rare, say it now
                c["res_denied"] += 1
                return self._share_verdict("share_resource", info, resource_label, resource)
            explain = partial(_share_text, self._compiled.name, info, rinfo, resource)
            if info.ste_mask & rinfo.ste_mask:
                return Verdict(True, "share_resource", RULE_ALLOW, None, 0, explain_fn=explain)
            c["res_denied"] += 1
            return Verdict(False, "share_resource", RULE_STE, None, _RES_ACCESS, explain_fn=explain)

    # ----------------------------------------------- STE between domains
    def _ste_pair(self, hook: str, prefix: str, a: Hashable, b: Hashable) -> Verdict:
        c = self._c
        k_eval, k_denied, k_hit = _COUNTER_KEYS[prefix]
        c[k_eval] += 1
        da, db = self._domains.get(a), self._domains.get(b)
        if da is None or db is None:
            c[k_denied] += 1
            missing = a if da is None else b
            return deny(
                hook,
                RULE_STATE,
                f"domain {missing!r} is not running",
                Xserr.VM_WRONG_STATE,
                {"domain": missing},
            )
        cache = self._ste_cache.get(a)
        if cache is not None and b in cache:
            c[k_hit] += 1
            return self._pair_allow(hook, da, db)
        if da.info.ste_mask & db.info.ste_mask:
            if cache is None:
                cache = self._ste_cache[a] = []
            if len(cache) >= ACM_TE_CACHE_SIZE:
                cache.pop(0)
            cache.append(b)
            return self._pair_allow(hook, da, db)
        c[k_denied] += 1
        mk = (hook, a, b)
        v = self._memo.get(mk)
        if v is None:
            v = self._memoize(
                mk,
                deny_lazy(
                    hook,
                    RULE_STE,
                    Xserr.VM_NOT_AUTHORIZED if prefix == "gt" else Xserr.RESOURCE_ACCESS,
                    partial(_pair_text, self._compiled.name, hook, a, da.info, b, db.info),
                ),
            )
        return v

    def _pair_allow(self, hook: str, da: Dom, db: Dom) -> Verdict:
        k = (hook, da.info.name, db.info.name)
        v = self._allow_cache.get(k)
        if v is None:
            v = allow(
                hook,
                f"labels {self._fmt(da.info)} and {self._fmt(db.info)} share an STE type",
            )
            self._allow_cache[k] = v
        return v

    def check_evtchn(self, dom: Hashable, remote: Hashable, kind: str = "interdomain") -> Verdict:
        """Event-channel hook (``kind`` "unbound" or "interdomain"): a common STE type."""
        hook = _EVTCHN_HOOKS.get(kind)
        if hook is None:
            raise ValueError("kind must be 'unbound' or 'interdomain'")
        with self._lock:
            return self._ste_pair(hook, "ec", dom, remote)

    def check_grant(self, dom: Hashable, granting: Hashable) -> Verdict:
        """Grant-table map hook: ``dom`` maps a page granted by ``granting``."""
        with self._lock:
            return self._ste_pair("grant_map", "gt", dom, granting)

    def evtchn_bind(self, dom: Hashable, remote: Hashable) -> int:
        """Establish an interdomain event channel (checked); returns its id for close."""
        with self._lock:
            v = self._ste_pair("evtchn_interdomain", "ec", dom, remote)
            if not v.allowed:
                raise MediationDenied(v)
            return self._new_channel("evtchn", dom, remote)

    def grant_map(self, dom: Hashable, granting: Hashable) -> int:
        """Map a grant (checked) and keep it as an active mapping; returns its id."""
        with self._lock:
            v = self._ste_pair("grant_map", "gt", dom, granting)
            if not v.allowed:
                raise MediationDenied(v)
            return self._new_channel("grant", dom, granting)

    def evtchn_close(self, channel: int) -> None:
        with self._lock:
            self._channels.pop(channel, None)

    grant_unmap = evtchn_close

    def channels(self) -> list[tuple[int, str, Hashable, Hashable]]:
        """Open channels and mappings: (id, "evtchn"|"grant", domain, remote)."""
        with self._lock:
            return [(cid, k, a, b) for cid, (k, a, b) in self._channels.items()]
