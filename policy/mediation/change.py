"""Changes of the whole state: relabel a running domain, update the policy, rebuild from reality.

Owns: ``relabel``/``check_relabel``, ``update_policy``/``check_update`` (with the
:class:`UpdateResult` a committed update reports) and ``rebuild``.  All three compute the new
state aside - renames applied, every running domain started again one by one under the
(new) labels, every channel and attached resource re-checked (``replay``) - and swap it in
with one ``_commit``.  Relabel and update are all-or-nothing: when anything breaks nothing
changes.  Rebuild is the exception on purpose: what really runs is counted even if it breaks
a rule, and the problems are returned.

Why apart: these are the operations that replace the state instead of adding to it; they use
the create rules (authorization) of ``lifecycle`` but none of its counting.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..compiled import CompiledPolicy, LabelInfo
from ..constants import (
    ACM_CHWALL_CONFLICT,
    ACM_INVALID_SSIDREF,
    ACM_SSIDREF_IN_USE,
    INACCESSIBLE,
    UNLABELED,
)
from ..errors import LabelError, MediationDenied, PolicyUpdateRefused, UpdateError, Xserr
from ..labels import Label, parse_label
from ..verdict import RULE_LABEL, RULE_REPLAY, RULE_STATE, Verdict, allow, deny
from .lifecycle import DomainHooks
from .replay import AttachedResource, Dom, replay
from .state import RunningDomain


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


def _invalid_info(label: Any, active: str) -> LabelInfo:
    """A running domain's label the active policy cannot resolve, tracked without types.

    The label is kept as (policy, name) - never as its whole string, which every message
    would prefix with the active policy again (``ACM:p:ACM:p:x``) and no later policy could
    resolve by name."""
    try:
        origin = parse_label(label, active)
    except LabelError:
        origin = None
    name = origin.name if origin is not None else str(label)
    return LabelInfo(
        name, -1, ACM_INVALID_SSIDREF, frozenset(), frozenset(), 0, (), (), False, origin
    )


def _unknown_after(info: LabelInfo, old: str, new: str, vm_after, compiled) -> str | None:
    """The new policy's VM label for a domain tracked with a label the old one did not know:
    a label of the new policy's *name* is resolved there (a host whose domains kept their
    labels while another policy was loaded gets that policy back); a name of the old policy
    follows the update's renames."""
    origin = info.origin
    if origin is None or not origin.valid:
        return None
    if origin.policy == new and origin.policy != old:
        return origin.name if origin.name in compiled.vm else None
    if origin.policy == old:
        return vm_after(origin.name)
    return None


class PolicyChanges(DomainHooks):
    """Relabel, policy update and rebuild: replay everything, then commit or refuse whole."""

    # ----------------------------------------------------------- relabel
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
                        f"domain {dom_key!r} is labeled {self._fmt(d.info)}, not "
                        f"{self._fmt(old)}; pass its current label as the old label",
                        Xserr.BAD_LABEL,
                        {
                            "domain": dom_key,
                            "label": self._fmt(d.info),
                            "old_label_given": self._fmt(old),
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
                    f"relabeling {dom_key!r} from {self._fmt(d.info)} to "
                    f"{self._fmt(info)} is refused: " + "; ".join(e.message for e in errors),
                    code,
                    {
                        "domain": dom_key,
                        "label": self._fmt(d.info),
                        "new_label": self._fmt(info),
                        "errors": [tuple(e) for e in errors],
                    },
                ),
                [],
                None,
            )
        return None, doms, (running, aggregate, d.info, info)

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
                f"{dom_key!r} may be relabeled from {self._fmt(old)} to {self._fmt(new)}",
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

    # ----------------------------------------------------- policy update
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

        def res_after(text: str) -> str | None:
            # a resource tracked under another policy's label (rebuild) carries it whole
            try:
                lab = parse_label(text, oldp.name)
            except LabelError:
                return None
            name = lab.name
            if lab.policy != oldp.name or not lab.valid:
                known = newp.resource_label(name) is not None or name == UNLABELED
                return name if lab.valid and lab.policy == newp.name and known else None
            if name in res_ren:
                return res_ren[name]
            if name in (UNLABELED, INACCESSIBLE):
                return name
            return name if newp.resource_label(name) is not None else None

        doms: list[Dom] = []
        relabeled: dict[Hashable, tuple[str, str]] = {}
        for d in self._domains.values():
            if d.info.index < 0:  # tracked with a label the old policy does not resolve
                nm = _unknown_after(d.info, oldp.name, newp.name, vm_after, new)
                if nm is None:  # the new policy does not resolve it either: stays that way
                    doms.append(Dom(d.key, d.domid, d.info, d.resources))
                    continue
            else:
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

    # ----------------------------------------------------------- rebuild
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
                        info = _invalid_info(label, self._compiled.name)
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
