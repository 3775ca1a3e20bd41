"""Domain create and destroy: authorization, the Chinese Wall, and the resources a domain uses.

Owns: every check a domain start makes, in Xen's order - the label resolves in the active
policy, the domain is not already running, Domain-0's STE types cover the label's
(``authorization``; xend checked this before every create), no running domain conflicts with
it (Chinese Wall, the primary policy), and every resource it uses shares an STE type with it -
as a verdict (``check_domain_create``, ``can_run``), as a list of all of them (``dry_run``) or
as a start that changes state (``domain_create`` and its aliases ``domain_restore``,
``migrate_in``); and the stop that undoes exactly what the start counted (``domain_destroy``,
``domain_save``, ``migrate_out``).

Why apart: this is the hook the front-end calls on every VM start; the Chinese Wall counts it
keeps are what relabel and policy update replay.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import partial
from typing import Any

from ..compiled import LabelInfo
from ..constants import INACCESSIBLE
from ..errors import LabelError, MediationDenied, Xserr
from ..labels import Label
from ..verdict import (
    RULE_AUTHORIZATION,
    RULE_CHWALL,
    RULE_STATE,
    DryRunReport,
    Verdict,
    allow,
    deny,
    deny_lazy,
)
from .replay import AttachedResource, Dom, find_conflicts
from .sharing import SharingHooks
from .state import RunningDomain


class DomainHooks(SharingHooks):
    """Domain start and stop, and the authorization and Chinese Wall rules they apply."""

    # -------------------------------- authorization and the Chinese Wall
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
            why = f"label {self._fmt(info)} has no STE type at all"
        elif missing:
            why = (
                f"{who}'s label {self._fmt(ref)} lacks STE type(s) "
                f"{', '.join(missing)} of label {self._fmt(info)}"
            )
        else:
            why = f"{who}'s label {self._fmt(ref)} shares no STE type with it"
        return deny(
            hook,
            RULE_AUTHORIZATION,
            f"VM is not authorized to run: {why}. Domain-0's STE types must include every STE "
            f"type of a domain it creates; use another label or relabel {who}.",
            Xserr.VM_NOT_AUTHORIZED,
            {
                "domain": key,
                "label": self._fmt(info),
                "dom0": who,
                "dom0_label": self._fmt(ref),
                "dom0_types": sorted(ref.ste_types),
                "types": sorted(info.ste_types),
                "missing_types": missing,
            },
        )

    def _deny_chwall(self, hook: str, key: Hashable, info: LabelInfo) -> Verdict:
        """The refusal, decided now and explained when someone reads it.

        Naming every conflicting running domain is O(running domains) (~35 us with 100 of
        them); the decision itself is the O(types) counter test already made.  So the verdict
        carries a snapshot of what the explanation needs - the running domains and their type
        counts as they are now, taken once per state (kept in ``_memo``, which every start,
        stop, relabel or policy change clears) - and writes its sentence on first use.  The
        words are those the state had when the decision was made, even if it changed since.
        """
        self._c["chwall_denied"] += 1
        snap = self._memo.get(_SNAPSHOT)
        if snap is None:
            snap = self._memo[_SNAPSHOT] = (
                tuple(self._domains.values()),
                tuple(self._running_types),
                tuple(self._aggregate),
                self._compiled,
                self._tables,
            )
        return deny_lazy(
            hook, RULE_CHWALL, Xserr.VM_IN_CONFLICT, partial(_explain_chwall, snap, key, info)
        )

    # ----------------------------------- create checks (no state change)
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
                        f"label {self._fmt(info)} exists (ssidref {info.ssidref:#010x})",
                        {"label": self._fmt(info), "ssidref": info.ssidref},
                    ),
                )
            )
        if key is not None and key in self._domains:
            v = deny(
                hook,
                RULE_STATE,
                f"domain {key!r} is already running (label "
                f"{self._fmt(self._domains[key].info)}); stop it first",
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
                    allow(hook, f"Domain-0's STE types include those of {self._fmt(info)}"),
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
                        allow(hook, f"no running domain conflicts with {self._fmt(info)}"),
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
                f"label {self._fmt(info)} may run now",
                {"label": self._fmt(info), "ssidref": info.ssidref},
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
                    "authorization", f"Domain-0's STE types include those of {self._fmt(info)}"
                )
            return self._deny_auth("authorization", None, info)

    # --------------------------------------------------------- lifecycle
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


_SNAPSHOT = ("chwall-snapshot",)  # a _memo key no (hook, key, label) tuple can equal


def _explain_chwall(snap: tuple, key: Hashable, info: LabelInfo) -> tuple[str, dict[str, Any]]:
    """The Chinese Wall refusal in words, from the state snapshot taken at decision time."""
    domains, running_types, aggregate, compiled, tables = snap
    others = [d for d in domains if d.key != key]
    conflicts = find_conflicts(compiled, info, others, tables, running_types)
    label = info.display(compiled.name)
    what = f"domain {key!r}" if key is not None else "a domain"
    details: dict[str, Any] = {
        "domain": key,
        "label": label,
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
            f"Chinese Wall: {what} with label {label} cannot run now: its "
            f"type {f['type']} is in conflict set {f['conflict_set']!r} with type "
            f"{f['conflicting_type']}, held by running domain {f['conflicting_domain']!r} "
            f"({f['conflicting_label']}). Stop {', '.join(holders)} first, or use a label "
            f"outside conflict set {f['conflict_set']!r}."
        )
    else:  # cannot happen while counts are consistent; say what we know
        hit = [compiled.chwall_type_order[t] for t in info.chwall_cols if aggregate[t]]
        reason = (
            f"Chinese Wall: {what} with label {label} cannot run now: "
            f"type(s) {', '.join(hit)} are in conflict with running domains"
        )
    return reason, details
