"""The mediation module: Xen 3.3's ACM hypervisor hooks, emulated in-process.

Why emulate: on KVM/QEMU (and in tests) there is no hypervisor ACM to ask, so the front-end asks
this object, under exactly the rules Xen's hooks applied:

* Chinese Wall (primary).  Per CHWALL type, how many running domains hold it
  (``running_types``) and how many running domains conflict with it (``conflict_aggregate``).
  A domain may start only if none of its types has a non-zero aggregate; starting raises the
  aggregate of every *other* type of each conflict set it touches; stopping undoes exactly that.
  Save/restore and migration count as stop/start.
* Simple Type Enforcement (secondary).  Two domains may share (event channels, grant mappings)
  and a domain may use a resource only if their labels have an STE type in common.  Creating a
  domain also needs ``authorization``: Domain-0's STE types must include the new domain's (xend
  checked this before every domain create).  Permitted domain pairs are cached per domain
  (8 entries, as Xen's ACM_TE_CACHE_SIZE) and the cache counts hits.
* Policy update and relabel are all-or-nothing: the new state is computed aside (renames
  applied, every running domain replayed, every channel and attached resource re-checked) and
  only swapped in when nothing breaks.

Labels are always resolved by (policy name, label name) (seed 001); ssidrefs are local numbers
computed from the active compiled policy and only reported.  One lock guards all state.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from .compiled import CompiledPolicy, LabelInfo, ResourceInfo
from .constants import (
    ACM_CHWALL_CONFLICT,
    ACM_INVALID_SSIDREF,
    ACM_POLICY_ID,
    ACM_SSIDREF_IN_USE,
    ACM_TE_CACHE_SIZE,
    INACCESSIBLE,
    INACCESSIBLE_POLICY,
    UNLABELED,
)
from .errors import (
    LabelError,
    MediationDenied,
    PolicyUpdateRefused,
    UpdateError,
    Xserr,
)
from .labels import Label, format_label, parse_label
from .replay import (
    AttachedResource,
    Dom,
    conflict_tables,
    find_conflicts,
    replay,
    start_counts,
)
from .verdict import (
    RULE_ALLOW,
    RULE_AUTHORIZATION,
    RULE_CHWALL,
    RULE_INACCESSIBLE,
    RULE_LABEL,
    RULE_REPLAY,
    RULE_STATE,
    RULE_STE,
    DryRunReport,
    Verdict,
    allow,
    allow_lazy,
    deny,
    deny_lazy,
)

DOM0 = "Domain-0"
_CACHE_LIMIT = 4096  # label-string resolution / memo caches are cleared beyond this
_MISS = object()
_RES_ACCESS = int(Xserr.RESOURCE_ACCESS)
_EVTCHN_HOOKS = {"unbound": "evtchn_unbound", "interdomain": "evtchn_interdomain"}
_COUNTER_KEYS = {p: (f"{p}_eval", f"{p}_denied", f"{p}_cachehit") for p in ("ec", "gt")}

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


@dataclass(frozen=True)
class UpdateResult:
    """What a committed policy update changed (the XSM layer renames stored labels with it)."""

    old_policy: str
    old_version: str
    new_policy: str
    new_version: str
    vm_renames: dict[str, str] = field(default_factory=dict)  # old VM label -> new
    res_renames: dict[str, str] = field(default_factory=dict)  # old resource label -> new
    removed_vm_labels: tuple[str, ...] = ()
    removed_res_labels: tuple[str, ...] = ()
    relabeled: dict[Hashable, tuple[str, str]] = field(default_factory=dict)  # key -> (old, new)

    def vm_label_after(self, name: str) -> str | None:
        """The new name of old VM label ``name`` (None if it is gone)."""
        if name in self.vm_renames:
            return self.vm_renames[name]
        return None if name in self.removed_vm_labels else name

    def res_label_after(self, name: str) -> str | None:
        if name in self.res_renames:
            return self.res_renames[name]
        return None if name in self.removed_res_labels else name


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


def _invalid_info(name: str) -> LabelInfo:
    return LabelInfo(name, -1, ACM_INVALID_SSIDREF, frozenset(), frozenset(), 0, (), (), False)


class Mediator:
    """The emulated ACM hooks over one active compiled policy.  See the module docstring.

    ``dom0``: the key of the management domain (Domain-0), running from the start with the
    bootstrap label (or ``dom0_label``); pass ``dom0=None`` for a host with no such domain, in
    which case ``authorization`` is checked against the bootstrap label.
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

    # ------------------------------------------------------------------ internal state
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

    def _fmt(self, name: str) -> str:
        return format_label(self._compiled.name, name)

    # ------------------------------------------------------------------ label resolution
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

    # ------------------------------------------------------------------ checks (no state change)
    def _authorized(self, info: LabelInfo) -> bool:
        ok = self._auth_cache.get(info.name)
        if ok is None:
            ref = self._auth_reference()
            common = ref.ste_mask & info.ste_mask
            ok = bool(common) and common == info.ste_mask
            self._auth_cache[info.name] = ok
        return ok

    def _auth_reference(self) -> LabelInfo:
        d = self._domains.get(self._dom0) if self._dom0 is not None else None
        return d.info if d is not None else self._compiled.vm[self._compiled.bootstrap]

    def _deny_auth(self, hook: str, key: Hashable, info: LabelInfo) -> Verdict:
        self._c["auth_denied"] += 1
        ref = self._auth_reference()
        missing = sorted(info.ste_types - ref.ste_types)
        who = self._dom0 if self._dom0 is not None else "the management domain"
        if not info.ste_types:
            why = f"label {self._fmt(info.name)} has no STE type at all"
        elif missing:
            why = (
                f"{who}'s label {self._fmt(ref.name)} lacks STE type(s) "
                f"{', '.join(missing)} of label {self._fmt(info.name)}"
            )
        else:
            why = f"{who}'s label {self._fmt(ref.name)} shares no STE type with it"
        return deny(
            hook,
            RULE_AUTHORIZATION,
            f"VM is not authorized to run: {why}. Domain-0's STE types must include every STE "
            f"type of a domain it creates; use another label or relabel {who}.",
            Xserr.VM_NOT_AUTHORIZED,
            {
                "domain": key,
                "label": self._fmt(info.name),
                "dom0": who,
                "dom0_label": self._fmt(ref.name),
                "dom0_types": sorted(ref.ste_types),
                "types": sorted(info.ste_types),
                "missing_types": missing,
            },
        )

    def _deny_chwall(self, hook: str, key: Hashable, info: LabelInfo) -> Verdict:
        self._c["chwall_denied"] += 1
        others = [d for k, d in self._domains.items() if k != key]
        conflicts = find_conflicts(self._compiled, info, others, self._tables, self._running_types)
        what = f"domain {key!r}" if key is not None else "a domain"
        details: dict[str, Any] = {
            "domain": key,
            "label": self._fmt(info.name),
            "types": sorted(info.chwall_types),
            "conflicts": conflicts,
        }
        if conflicts:
            f = conflicts[0]
            details.update(
                conflict_set=f["conflict_set"],
                conflicting_domain=f["conflicting_domain"],
                conflicting_type=f["conflicting_type"],
                conflicting_label=f["conflicting_label"],
            )
            holders = sorted({repr(x["conflicting_domain"]) for x in conflicts})
            reason = (
                f"Chinese Wall: {what} with label {self._fmt(info.name)} cannot run now: its "
                f"type {f['type']} is in conflict set {f['conflict_set']!r} with type "
                f"{f['conflicting_type']}, held by running domain {f['conflicting_domain']!r} "
                f"({f['conflicting_label']}). Stop {', '.join(holders)} first, or use a label "
                f"outside conflict set {f['conflict_set']!r}."
            )
        else:  # cannot happen while counts are consistent; say what we know
            hit = [
                self._compiled.chwall_type_order[t] for t in info.chwall_cols if self._aggregate[t]
            ]
            reason = (
                f"Chinese Wall: {what} with label {self._fmt(info.name)} cannot run now: "
                f"type(s) {', '.join(hit)} are in conflict with running domains"
            )
        return deny(hook, RULE_CHWALL, reason, Xserr.VM_IN_CONFLICT, details)

    def _deny_label(self, hook: str, key: Hashable, label: Any, exc: LabelError) -> Verdict:
        what = f"domain {key!r}" if key is not None else "the domain"
        return deny(
            hook,
            RULE_LABEL,
            f"cannot mediate {what}: {exc.message}",
            exc.xserr,
            {"domain": key, "label": str(label)},
        )

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
                    "vm_label": self._fmt(info.name),
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
                    "vm_label": self._fmt(info.name),
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

    def _check_create(
        self, hook: str, key: Hashable, vm_label: Any, resources: Any, collect: list | None = None
    ) -> Verdict:
        """All create checks; returns the first refusal (or, with ``collect``, appends all)."""
        c = self._c
        c["chwall_eval"] += 1
        try:
            info = self._vm_info(vm_label)
        except LabelError as exc:
            v = self._deny_label(hook, key, vm_label, exc)
            if collect is None:
                return v
            collect.append(("label", v))
            return v
        if collect is not None:
            collect.append(
                (
                    "label",
                    allow(
                        hook,
                        f"label {self._fmt(info.name)} exists (ssidref {info.ssidref:#010x})",
                        {"label": self._fmt(info.name), "ssidref": info.ssidref},
                    ),
                )
            )
        if key is not None and key in self._domains:
            v = deny(
                hook,
                RULE_STATE,
                f"domain {key!r} is already running (label "
                f"{self._fmt(self._domains[key].info.name)}); stop it first",
                Xserr.VM_WRONG_STATE,
                {"domain": key},
            )
            if collect is None:
                return v
            collect.append(("state", v))
        c["auth_eval"] += 1
        if not self._authorized(info):
            v = self._deny_auth(hook, key, info)
            if collect is None:
                return v
            collect.append(("authorization", v))
        elif collect is not None:
            collect.append(
                (
                    "authorization",
                    allow(hook, f"Domain-0's STE types include those of {self._fmt(info.name)}"),
                )
            )
        agg = self._aggregate
        for t in info.chwall_cols:
            if agg[t]:
                mk = ("cw", hook, key, info.name)
                v = self._memo.get(mk)
                if v is None:
                    v = self._memoize(mk, self._deny_chwall(hook, key, info))
                else:
                    c["chwall_denied"] += 1
                if collect is None:
                    return v
                collect.append(("chinese_wall", v))
                break
        else:
            if collect is not None:
                collect.append(
                    (
                        "chinese_wall",
                        allow(hook, f"no running domain conflicts with {self._fmt(info.name)}"),
                    )
                )
        for rname, rlabel in self._norm_resources(resources):
            c["res_eval"] += 1
            v = self._share_verdict(hook, info, rlabel, rname)
            if not v.allowed:
                c["res_denied"] += 1
                if collect is None:
                    return v
            if collect is not None:
                collect.append((f"resource {v.details.get('resource')}", v))
        if collect is not None:
            return next((v for _, v in collect if not v.allowed), collect[-1][1])
        ok = self._allow_cache.get((hook, info.name))
        if ok is None:
            ok = allow(
                hook,
                f"label {self._fmt(info.name)} may run now",
                {"label": self._fmt(info.name), "ssidref": info.ssidref},
            )
            self._allow_cache[(hook, info.name)] = ok
        return ok

    def check_domain_create(
        self, dom_key: Hashable | None, vm_label: str | Label | None, resources: Any = ()
    ) -> Verdict:
        """Dry run of :meth:`domain_create`: the verdict, no state change.

        ``dom_key`` may be None (just "could this label run now", Xen-API ``can_run``).
        ``resources``: a mapping or pairs ``{resource name: resource label}`` (label None =
        unlabeled) the domain would use; each is checked for a common STE type.
        """
        with self._lock:
            return self._check_create("domain_create", dom_key, vm_label, resources)

    def can_run(self, vm_label: str | Label | None) -> Verdict:
        """Xen-API ``XSPolicy.can_run``: could a domain with this label start now?"""
        return self.check_domain_create(None, vm_label)

    def dry_run(
        self, vm_label: str | Label | None, resources: Any = (), dom_key: Hashable | None = None
    ) -> DryRunReport:
        """Every check a start would make, each with its own verdict (``svirsh dry-run``)."""
        with self._lock:
            items: list[tuple[str, Verdict]] = []
            self._check_create("dry_run", dom_key, vm_label, resources, collect=items)
            return DryRunReport(tuple(items))

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

    def authorization(self, vm_label: str | Label | None) -> Verdict:
        """The ``authorization`` decision hook: does Domain-0's label cover ``vm_label``?"""
        with self._lock:
            self._c["auth_eval"] += 1
            try:
                info = self._vm_info(vm_label)
            except LabelError as exc:
                return self._deny_label("authorization", None, vm_label, exc)
            if self._authorized(info):
                return allow(
                    "authorization", f"Domain-0's STE types include those of {self._fmt(info.name)}"
                )
            return self._deny_auth("authorization", None, info)

    # ------------------------------------------------------------------ STE between domains
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
                f"labels {self._fmt(da.info.name)} and {self._fmt(db.info.name)} share an STE type",
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

    def _new_channel(self, kind: str, a: Hashable, b: Hashable) -> int:
        cid = self._next_chan
        self._next_chan += 1
        self._channels[cid] = (kind, a, b)
        return cid

    def evtchn_close(self, channel: int) -> None:
        with self._lock:
            self._channels.pop(channel, None)

    grant_unmap = evtchn_close

    def channels(self) -> list[tuple[int, str, Hashable, Hashable]]:
        """Open channels and mappings: (id, "evtchn"|"grant", domain, remote)."""
        with self._lock:
            return [(cid, k, a, b) for cid, (k, a, b) in self._channels.items()]

    # ------------------------------------------------------------------ lifecycle
    def _create(self, hook: str, key: Hashable, vm_label: Any, resources: Any) -> RunningDomain:
        if key is None:
            raise ValueError("a running domain needs a key (domid or name)")
        with self._lock:
            v = self._check_create(hook, key, vm_label, resources)
            if not v.allowed:
                raise MediationDenied(v)
            info = self._vm_info(vm_label)
            attached = []
            for rname, rlabel in self._norm_resources(resources):
                rinfo = self._res_info(rlabel)
                attached.append(
                    AttachedResource(
                        rname if rname is not None else str(rlabel),
                        rinfo.name if rinfo is not None else INACCESSIBLE,
                        rinfo,
                    )
                )
            d = Dom(key, self._domid_for(key), info, tuple(attached))
            self._add(d)
            self._c["domains_created"] += 1
            return self._running_entry(d)

    def domain_create(
        self, dom_key: Hashable, vm_label: str | Label | None, resources: Any = ()
    ) -> RunningDomain:
        """Start a domain: label resolution, authorization, Chinese Wall, resources (STE).

        Raises MediationDenied (``.hook``, ``.rule``, ``.reason``, ``.details``) on refusal.
        """
        return self._create("domain_create", dom_key, vm_label, resources)

    def domain_restore(
        self, dom_key: Hashable, vm_label: str | Label | None, resources: Any = ()
    ) -> RunningDomain:
        """Restore a saved domain: a create, with the label resolved by name on this host."""
        return self._create("domain_restore", dom_key, vm_label, resources)

    def migrate_in(
        self, dom_key: Hashable, vm_label: str | Label | None, resources: Any = ()
    ) -> RunningDomain:
        """Receive a migrating domain: a create under the local policy."""
        return self._create("migrate_in", dom_key, vm_label, resources)

    def domain_destroy(self, dom_key: Hashable) -> RunningDomain:
        """Stop a domain: undo exactly its Chinese Wall counts, drop its channels and caches."""
        with self._lock:
            d = self._domains.get(dom_key)
            if d is None:
                raise MediationDenied(
                    deny(
                        "domain_destroy",
                        RULE_STATE,
                        f"domain {dom_key!r} is not running",
                        Xserr.VM_WRONG_STATE,
                        {"domain": dom_key},
                    )
                )
            if dom_key == self._dom0 and self._dom0 is not None:
                raise MediationDenied(
                    deny(
                        "domain_destroy",
                        RULE_STATE,
                        f"{dom_key!r} is the management domain and cannot be stopped",
                        Xserr.VM_WRONG_STATE,
                        {"domain": dom_key},
                    )
                )
            entry = self._running_entry(d)
            self._remove(dom_key)
            self._c["domains_destroyed"] += 1
            return entry

    def domain_save(self, dom_key: Hashable) -> RunningDomain:
        """Save a domain: counts as a destroy; the returned entry holds its label by name."""
        return self.domain_destroy(dom_key)

    def migrate_out(self, dom_key: Hashable) -> RunningDomain:
        """Send a domain away: counts as a destroy."""
        return self.domain_destroy(dom_key)

    # ------------------------------------------------------------------ relabel / update
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

    def _plan_relabel(
        self, hook: str, dom_key: Hashable, new_label: Any, old_label: Any
    ) -> tuple[Verdict | None, list[Dom], Any]:
        d = self._domains.get(dom_key)
        if d is None:
            return (
                deny(
                    hook,
                    RULE_STATE,
                    f"domain {dom_key!r} is not running; relabel a stopped VM through its "
                    "stored label instead",
                    Xserr.VM_WRONG_STATE,
                    {"domain": dom_key},
                ),
                [],
                None,
            )
        if old_label is not None:
            try:
                old = self._resolve_vm(old_label)
            except LabelError as exc:
                return self._deny_label(hook, dom_key, old_label, exc), [], None
            if old.name != d.info.name:
                return (
                    deny(
                        hook,
                        RULE_LABEL,
                        f"domain {dom_key!r} is labeled {self._fmt(d.info.name)}, not "
                        f"{self._fmt(old.name)}; pass its current label as the old label",
                        Xserr.BAD_LABEL,
                        {
                            "domain": dom_key,
                            "label": self._fmt(d.info.name),
                            "old_label_given": self._fmt(old.name),
                        },
                    ),
                    [],
                    None,
                )
        try:
            info = self._resolve_vm(new_label)
        except LabelError as exc:
            return self._deny_label(hook, dom_key, new_label, exc), [], None
        if dom_key != self._dom0:
            self._c["auth_eval"] += 1
            if not self._authorized(info):
                return self._deny_auth(hook, dom_key, info), [], None
        doms = [
            Dom(x.key, x.domid, info if x.key == dom_key else x.info, x.resources)
            for x in self._domains.values()
        ]
        running, aggregate, errors = replay(self._compiled, doms, self._channel_list())
        if errors:
            code = (
                Xserr.VM_IN_CONFLICT
                if any(e.code == ACM_CHWALL_CONFLICT for e in errors)
                else Xserr.RESOURCE_ACCESS
            )
            return (
                deny(
                    hook,
                    RULE_REPLAY,
                    f"relabeling {dom_key!r} from {self._fmt(d.info.name)} to "
                    f"{self._fmt(info.name)} is refused: " + "; ".join(e.message for e in errors),
                    code,
                    {
                        "domain": dom_key,
                        "label": self._fmt(d.info.name),
                        "new_label": self._fmt(info.name),
                        "errors": [tuple(e) for e in errors],
                    },
                ),
                [],
                None,
            )
        return None, doms, (running, aggregate, d.info, info)

    def _channel_list(self) -> list[tuple[int, str, Hashable, Hashable]]:
        return [(cid, k, a, b) for cid, (k, a, b) in self._channels.items()]

    def check_relabel(
        self, dom_key: Hashable, new_label: str | Label, old_label: str | Label | None = None
    ) -> Verdict:
        """Dry run of :meth:`relabel`."""
        with self._lock:
            v, _doms, plan = self._plan_relabel("relabel", dom_key, new_label, old_label)
            if v is not None:
                return v
            _r, _a, old, new = plan
            return allow(
                "relabel",
                f"{dom_key!r} may be relabeled from {self._fmt(old.name)} to {self._fmt(new.name)}",
            )

    def relabel(
        self, dom_key: Hashable, new_label: str | Label, old_label: str | Label | None = None
    ) -> RunningDomain:
        """Relabel a running domain, all-or-nothing.

        ``old_label``, when given, must be the domain's current label (Xen-API semantics).
        The new state is replayed (Chinese Wall over all running domains, STE over channels
        and attached resources, authorization by Domain-0); any violation refuses the whole
        relabel with MediationDenied, whose ``details["errors"]`` holds (code, detail, message).
        """
        with self._lock:
            v, doms, plan = self._plan_relabel("relabel", dom_key, new_label, old_label)
            if v is not None:
                self._c["relabels_refused"] += 1
                raise MediationDenied(v)
            running, aggregate, _old, _new = plan
            self._commit(self._compiled, doms, running, aggregate)
            self._c["relabels"] += 1
            return self._running_entry(self._domains[dom_key])

    def _plan_update(self, new: CompiledPolicy) -> tuple[list[UpdateError], Xserr, Any]:
        old = self._compiled
        errors: list[UpdateError] = []
        oldp, newp = old.policy, new.policy
        if not (oldp.is_default() or newp.is_default()):
            fp = newp.from_policy
            want = (
                f"<FromPolicy><PolicyName>{oldp.name}</PolicyName><Version>{oldp.version}"
                "</Version></FromPolicy>"
            )
            if fp is None:
                msg = (
                    f"policy {newp.name} {newp.version} does not say which policy it "
                    f"updates; the loaded policy is {oldp.name} {oldp.version}, so its "
                    f"header needs {want}"
                )
            elif (fp.name, fp.version) != (oldp.name, oldp.version):
                msg = (
                    f"policy {newp.name} {newp.version} updates {fp.name} {fp.version}, but "
                    f"the loaded policy is {oldp.name} {oldp.version}; its header needs "
                    f"{want}"
                )
            elif newp.version_tuple <= oldp.version_tuple:
                msg = (
                    f"version {newp.version} is not higher than the loaded version "
                    f"{oldp.version}; raise <Version>"
                )
            else:
                msg = ""
            if msg:
                return (
                    [UpdateError(int(Xserr.VERSION_PREVENTS_UPDATE), 0, msg)],
                    Xserr.VERSION_PREVENTS_UPDATE,
                    None,
                )

        vm_ren: dict[str, str] = {}
        res_ren: dict[str, str] = {}
        for kind, labels, lookup, ren in (
            ("VM", newp.vm_labels, oldp.vm_label, vm_ren),
            ("resource", newp.resource_labels, oldp.resource_label, res_ren),
        ):
            for lbl in labels:
                if lbl.from_name and lbl.from_name != lbl.name:
                    if lookup(lbl.from_name) is None:
                        errors.append(
                            UpdateError(
                                int(Xserr.BAD_LABEL),
                                0,
                                f"{kind} label {lbl.name!r} is renamed from {lbl.from_name!r}, but "
                                f"the loaded policy {oldp.name} has no {kind} label "
                                f'{lbl.from_name!r}; fix the from="..." attribute',
                            )
                        )
                    else:
                        ren[lbl.from_name] = lbl.name
        if errors:
            return errors, Xserr.BAD_LABEL, None

        def vm_after(name: str) -> str | None:
            if name in vm_ren:
                return vm_ren[name]
            if name == UNLABELED:
                return UNLABELED
            return name if newp.vm_label(name) is not None else None

        def res_after(name: str) -> str | None:
            if name in res_ren:
                return res_ren[name]
            if name in (UNLABELED, INACCESSIBLE):
                return name
            return name if newp.resource_label(name) is not None else None

        doms: list[Dom] = []
        relabeled: dict[Hashable, tuple[str, str]] = {}
        for d in self._domains.values():
            if d.info.index < 0:  # tracked with an unknown label (rebuild): stays that way
                nm = vm_after(d.info.name)
                doms.append(Dom(d.key, d.domid, new.vm[nm] if nm else d.info, d.resources))
                continue
            nm = vm_after(d.info.name)
            if nm is None:
                errors.append(
                    UpdateError(
                        ACM_SSIDREF_IN_USE,
                        d.info.ssidref,
                        f"running domain {d.key!r} uses VM label {d.info.name!r} (ssidref "
                        f"{d.info.ssidref:#010x}), which policy {newp.name} {newp.version} no "
                        f"longer defines; stop or relabel {d.key!r} first, or keep the label (or "
                        f'rename it with from="{d.info.name}")',
                    )
                )
                continue
            if nm != d.info.name:
                relabeled[d.key] = (d.info.name, nm)
            res = []
            for r in d.resources:
                rn = res_after(r.label)
                rinfo = None if rn in (None, INACCESSIBLE) else new.res.get(rn)
                res.append(AttachedResource(r.name, rn or r.label, rinfo))
            doms.append(Dom(d.key, d.domid, new.vm[nm], tuple(res)))
        if errors:
            return errors, Xserr.HV_OP_FAILED, None
        running, aggregate, errors = replay(new, doms, self._channel_list())
        if errors:
            xserr = (
                Xserr.RESOURCE_ACCESS
                if all(e.code == Xserr.RESOURCE_ACCESS for e in errors)
                else Xserr.HV_OP_FAILED
            )
            return errors, xserr, None
        removed_vm = tuple(
            sorted(
                n
                for n in oldp.vm_label_names
                if n not in vm_ren and newp.vm_label(n) is None and n != UNLABELED
            )
        )
        removed_res = tuple(
            sorted(
                n
                for n in oldp.resource_label_names
                if n not in res_ren and newp.resource_label(n) is None and n != UNLABELED
            )
        )
        result = UpdateResult(
            oldp.name,
            oldp.version,
            newp.name,
            newp.version,
            vm_ren,
            res_ren,
            removed_vm,
            removed_res,
            relabeled,
        )
        return [], Xserr.SUCCESS, (doms, running, aggregate, result)

    def check_update(self, new: CompiledPolicy) -> list[UpdateError]:
        """Dry run of :meth:`update_policy`: the reasons it would be refused ([] = fine)."""
        with self._lock:
            errors, _x, _plan = self._plan_update(new)
            return errors

    def update_policy(self, new: CompiledPolicy) -> UpdateResult:
        """Replace the active policy by ``new`` at run time, with Xen's all-or-nothing rules.

        Checks, in Xen's order: FromPolicy names the loaded policy and version and the version
        goes up (skipped when either side is DEFAULT); every ``from`` names an old label; no
        running domain holds a label that disappears; every running domain replayed under the
        new policy (Chinese Wall), every open channel and attached resource re-checked (STE).
        Raises PolicyUpdateRefused (``.errors`` with (code, detail, message), ``.pairs``,
        ``.xserr``) and changes nothing, or commits everything and returns an UpdateResult.
        """
        with self._lock:
            errors, xserr, plan = self._plan_update(new)
            if errors:
                self._c["updates_refused"] += 1
                raise PolicyUpdateRefused(
                    errors,
                    xserr,
                    f"update of policy {self._compiled.name} {self._compiled.version} to "
                    f"{new.name} {new.version} refused",
                )
            doms, running, aggregate, result = plan
            self._commit(new, doms, running, aggregate)
            self._c["updates"] += 1
            return result

    def rebuild(self, running: Iterable[tuple]) -> list[UpdateError]:
        """Reset state from what really runs: items ``(key, label)`` or ``(key, label, resources)``.

        The front-end calls this at start with the hypervisor's running domains.  Reality wins:
        every domain is counted even if it breaks a rule; the returned list says what is wrong
        (unknown labels, Chinese Wall conflicts, resources without a common type).  Channels are
        forgotten (the caller re-binds what it knows).  Domain-0 keeps its label unless listed.
        """
        with self._lock:
            problems: list[UpdateError] = []
            doms: list[Dom] = []
            items = [tuple(it) for it in running]
            dom0 = self._domains.get(self._dom0) if self._dom0 is not None else None
            if dom0 is not None and all(it[0] != self._dom0 for it in items):
                items.insert(0, (self._dom0, None))
            used = {it[0] for it in items if isinstance(it[0], int) and not isinstance(it[0], bool)}
            next_id = 1
            seen: set[Hashable] = set()
            for it in items:
                key, label = it[0], it[1]
                resources = it[2] if len(it) > 2 else ()
                if key in seen:
                    problems.append(
                        UpdateError(
                            int(Xserr.GENERAL_FAILURE),
                            0,
                            f"domain {key!r} is listed twice; counted once",
                        )
                    )
                    continue
                seen.add(key)
                if key == self._dom0 and label is None and dom0 is not None:
                    info = dom0.info
                else:
                    try:
                        info = self._resolve_vm(label)
                    except LabelError as exc:
                        info = _invalid_info(str(label))
                        problems.append(
                            UpdateError(
                                int(exc.xserr),
                                0,
                                f"running domain {key!r}: {exc.message}; it is tracked without "
                                "types until it is relabeled or stopped",
                            )
                        )
                attached = []
                for rname, rlabel in self._norm_resources(resources):
                    try:
                        rinfo = self._resolve_res(rlabel)
                    except LabelError as exc:
                        rinfo = None
                        problems.append(
                            UpdateError(int(exc.xserr), 0, f"domain {key!r}: {exc.message}")
                        )
                    attached.append(
                        AttachedResource(
                            rname if rname is not None else str(rlabel),
                            rinfo.name if rinfo else str(rlabel),
                            rinfo,
                        )
                    )
                if key == self._dom0:
                    domid = 0
                elif key in used:
                    domid = key
                else:
                    while next_id in used:
                        next_id += 1
                    domid = next_id
                    used.add(domid)
                doms.append(Dom(key, domid, info, tuple(attached)))
            counts, aggregate, errors = replay(self._compiled, doms, ())
            problems.extend(errors)
            self._channels.clear()
            self._commit(self._compiled, doms, counts, aggregate)
            self._c["rebuilds"] += 1
            return problems

    # ------------------------------------------------------------------ views
    def _running_entry(self, d: Dom) -> RunningDomain:
        return RunningDomain(
            d.key,
            d.domid,
            self._compiled.name,
            d.info.name,
            d.info.ssidref,
            tuple((r.name, r.label) for r in d.resources),
        )

    def running(self) -> dict[Hashable, RunningDomain]:
        """Running domains (Domain-0 included): key -> RunningDomain (label, ssidref, domid)."""
        with self._lock:
            return {k: self._running_entry(d) for k, d in self._domains.items()}

    def label_of(self, dom_key: Hashable) -> str | None:
        """``ACM:<policy>:<label>`` of a running domain, or None if it is not running."""
        with self._lock:
            d = self._domains.get(dom_key)
            return self._running_entry(d).display if d else None

    @property
    def compiled(self) -> CompiledPolicy:
        return self._compiled

    @property
    def policy_name(self) -> str:
        return self._compiled.name

    @property
    def dom0(self) -> Hashable | None:
        return self._dom0

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the decision counters (evaluations, denials, cache hits ...)."""
        with self._lock:
            return dict(self._c)

    def chwall_state(self) -> dict[str, dict[str, int]]:
        """Per CHWALL type: ``running_types`` and ``conflict_aggregate`` counts (non-zero)."""
        with self._lock:
            names = self._compiled.chwall_type_order
            return {
                "running_types": {names[i]: n for i, n in enumerate(self._running_types) if n},
                "conflict_aggregate": {names[i]: n for i, n in enumerate(self._aggregate) if n},
            }
