"""The façade of the use-case layer: what every command shares; the commands are mixins.

Both front doors (``svirsh`` running in-process as root/sudo, and ``svirtd`` serving non-root
users over its socket) call ``Service.handle(identity, request, interaction)``; nothing else
touches the backend.  So the two can never disagree about what is allowed.

Every handler follows the same shape: resolve the target (the VM, or the host object) ->
the operation's row in the mediation table (``mediation``) says which steps it needs ->
``Gate.authorize`` (RBAC, PAM, then under the host-wide ACM lock the ACM steps, audit) ->
fence and allow-list -> backend call pinned to the checked UUID -> ``Gate.finish`` with the
outcome, whatever happened (an unexpected exception included).
Replies carry structured data; ``secured_virt.cli.render`` turns it into virsh-style text on the
client side.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from secured_virt.access.gate import AuditFailure, Gate, Target, Verdict
from secured_virt.access.operations import CATALOGUE, Operation
from secured_virt.access.rolesession import ActiveRoles
from secured_virt.backends.base import BackendError, NoSuchDomain
from secured_virt.backends.factory import open_backend
from secured_virt.confinement import vmmeta
from secured_virt.lazylog import lazy_logger
from secured_virt.requests import (
    EXIT_BAD_POLICY,
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Reply,
    Request,
)
from secured_virt.rolefiles.store import PolicyStore

from . import mediation
from .devices import DeviceCommands
from .errors import NullInteraction, UserError
from .frontend_views import FrontendViewCommands
from .host import HostCommands
from .host_info import HostInfoCommands
from .label_objects import LabelObjectCommands
from .labels import LabelCommands
from .lifecycle import LifecycleCommands
from .queries import QueryCommands
from .realms import RealmCommands
from .saves import SaveImageCommands
from .shype_policy import PolicyCommands
from .steps import MediationSteps, _LazyEffect
from .storage import StorageCommands
from .support import _missing, _say
from .volumes import VolumeCommands

log = lazy_logger("secured_virt.service")  # logging loads at the first message (issue 18)


class Service(
    QueryCommands,
    LifecycleCommands,
    DeviceCommands,
    StorageCommands,
    SaveImageCommands,
    VolumeCommands,
    LabelCommands,
    LabelObjectCommands,
    HostCommands,
    HostInfoCommands,
    PolicyCommands,
    RealmCommands,
    FrontendViewCommands,
    MediationSteps,
):
    """The façade: what every command shares.  The commands are in the mixins above."""

    def __init__(
        self,
        config,
        *,
        backend=None,
        store: PolicyStore | None = None,
        audit=None,
        authenticator: Callable | None = None,
        on_demand: bool = False,
        watch_events: bool = False,
    ):
        """``on_demand`` (svirsh's direct mode, one request per process): the role files, PAM
        and the sVirt categories are loaded at their first use, not here — plain root is
        decided without role files, and list/dominfo/domstate need no password or category,
        so they load neither rbac, PAM (ctypes) nor the policy package (~100 ms of imports).
        svirtd builds them all at its start, where a failure stops it.

        ``watch_events`` (svirtd, a long-lived process): the libvirt backend follows the
        domains' events and keeps their metadata for listings (backends.libvirt_events)."""
        self.config = config
        self._watch_events = watch_events
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._init_tenancy()  # realms first: their own files are merged into the role files
        self.store = store or PolicyStore(
            config.ua, config.pa, extend=self._realm_extend, defer=on_demand
        )
        if audit is None:
            from secured_virt.access.audit import AuditLog

            audit = AuditLog.from_config(config)
        self.audit = audit
        if authenticator is None:
            authenticator = _FirstUse(_authenticator_for, config)
            if not on_demand:
                authenticator = authenticator._get()
        self.gate = Gate(
            self.store,
            audit,
            authenticator=authenticator,
            auth_operations=frozenset(getattr(config, "auth_operations", ()) or ()),
            role_sessions=ActiveRoles.from_config(config),
        )
        self.acm = None
        if getattr(config, "acm", False):
            from secured_virt.shype.enforcer import AcmEnforcer

            self.acm = AcmEnforcer(config, lambda: self.backend)
            self._initial_acm_sync()
        self.categories = None
        if getattr(config, "svirt", False):
            self.categories = _FirstUse(self._host_categories)
            if not on_demand:
                self.categories = self.categories._get()
        self.started = time.time()
        self.counters = {"requests": 0, "allowed": 0, "denied": 0, "errors": 0}
        self._counter_lock = threading.Lock()

    @property
    def autostart(self):
        """The autostart wishes (service.autostart): made at first use, in acm_state_dir with
        the rest of the host's mediation state."""
        wishes = self.__dict__.get("_autostart")
        if wishes is None:
            from .autostart import AutostartWishes

            wishes = self.__dict__["_autostart"] = AutostartWishes(self.config.acm_state_dir)
        return wishes

    def _host_categories(self):
        from secured_virt.shype.categories import HostCategories

        config = self.config
        return HostCategories(
            config.acm_state_dir,
            lambda: self.backend,
            realm_categories=self._realm_categories,  # each realm's own category
            exclude=(getattr(config, "host_object", "Domain-0"),),
        )

    def _initial_acm_sync(self) -> None:
        """Count what really runs now (svirtd's start, each direct invocation); say what is
        wrong with it — the hypervisor is the truth, the mediation state follows it."""
        import logging

        try:
            with self.acm.exclusive():
                problems = self.acm.sync()
        except Exception as exc:  # an unreachable hypervisor is reported by the request itself
            logging.getLogger("secured_virt.shype.enforcer").debug(
                "initial ACM sync skipped: %s", exc
            )
            return
        for p in problems:
            logging.getLogger("secured_virt.shype.enforcer").warning(
                "running domains vs policy: %s", getattr(p, "message", p)
            )

    @classmethod
    def from_config(cls, config, **kw) -> Service:
        return cls(config, **kw)

    @property
    def backend(self):
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = open_backend(
                        self.config.backend,
                        self.config.uri,
                        xl_path=getattr(self.config, "xl_path", None),
                        xl_config_dir=getattr(self.config, "xl_config_dir", None),
                        xl_transient_dir=getattr(self.config, "xl_transient_dir", None),
                        watch_events=self._watch_events or None,
                    )
        return self._backend

    def reconnect(self) -> None:
        with self._backend_lock:
            old, self._backend = self._backend, None
        if old is not None:
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                old.close()

    def reload(self) -> dict:
        """Re-read UA/PA and, with sHype/ACM on, the ACM state (a policy loaded by root's
        svirt-admin in another process).  A bad new RBAC policy is rejected and the last good
        one stays; a broken ACM state keeps the previous enforcer."""
        realm_errors = self._reload_realms()
        res = self.store.reload()
        out = {"ok": res.ok, "errors": list(res.errors), "versions": {"rbac": res.digest}}
        if realm_errors:
            out["ok"] = False
            out["errors"] += [f"{e}; the previous realms stay" for e in realm_errors]
        if self.acm is not None:
            from secured_virt.shype.enforcer import AcmEnforcer

            try:
                fresh = AcmEnforcer(self.config, lambda: self.backend)
            except Exception as exc:
                out["ok"] = False
                out["errors"].append(f"sHype/ACM state: {exc}; the previous policy stays")
            else:
                self.acm = fresh
            out["versions"]["acm"] = f"{self.acm.active.name} {self.acm.active.version}"
        return out

    def watched_paths(self) -> list[str]:
        """Files whose change makes svirtd reload: UA, PA and the loaded-ACM-policy marker."""
        paths = [self.store.ua_path, self.store.pa_path]
        if getattr(self.config, "realms", None) and os.path.exists(self.config.realms):
            paths.append(self.config.realms)  # a realms file created later: svirt-admin reload
        if self.acm is not None:
            paths.append(os.path.join(self.config.acm_state_dir, "loaded_policy"))
        return paths

    def status(self) -> dict:
        pol = self.store.policy
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "uri": self.config.uri,
            "backend": self.config.backend,
            "policy": {
                "ua": self.store.ua_path,
                "pa": self.store.pa_path,
                "digest": pol.digest if pol else None,
                "loaded_at": self.store.loaded_at,
                "error": self.store.error,
                # rbac/_native.c answers the common case when it is built (bench/RESULTS.md)
                "decisions": (None if pol is None else "C index" if pol.native else "pure Python"),
            },
            "counters": dict(self.counters),
            "metadata_kept": self._metadata_kept(),
            "acm": (
                {"policy": self.acm.active.name, "version": self.acm.active.version}
                if self.acm is not None
                else None
            ),
        }

    def _metadata_kept(self) -> dict | None:
        """What the backend keeps of the domains' metadata for listings (svirtd's libvirt
        backend: backends.libvirt_events); None when nothing is kept or no backend is open."""
        cache = getattr(self._backend, "metadata_cache", None)
        if cache is None:
            return None
        out = cache.account()
        rows = getattr(self._backend, "kept_rows", None)
        if rows is not None:
            out["list_rows"] = rows.account()
        return out

    def handle(self, ident, request: Request, interaction=None) -> Reply:
        interaction = interaction or NullInteraction()
        self._count("requests")
        handler = getattr(self, "_cmd_" + request.command.replace("-", "_"), None)
        if handler is None:
            return Reply(EXIT_USAGE, message=f"unknown command '{request.command}'")
        try:
            reply = handler(ident, dict(request.args), interaction)
        except UserError as exc:
            reply = Reply(exc.status, message=str(exc))
        except NoSuchDomain as exc:
            reply = Reply(EXIT_FAILED, message=str(exc))
        except BackendError as exc:
            reply = Reply(EXIT_FAILED, message=str(exc))
        except Exception as exc:  # a bug must not take the front-end down or hide as "denied"
            log.exception("internal error in %s", request.command)
            reply = Reply(
                EXIT_FAILED,
                message=f"{request.command}: internal error ({type(exc).__name__}: {exc}); "
                "nothing more was done — please report it with the svirtd log",
            )
        if reply.status == EXIT_DENIED:
            self._count("denied")
        elif reply.status == EXIT_OK:
            self._count("allowed")
        else:
            self._count("errors")
        return reply

    def _count(self, key: str) -> None:
        with self._counter_lock:
            self.counters[key] += 1

    def _op(self, name: str) -> Operation:
        return CATALOGUE.get(name)

    def host_target(self) -> Target:
        return Target(getattr(self.config, "host_object", "Domain-0"))

    def _resolve(self, name: str) -> tuple[Target, Any]:
        """The request's target (name, UUID, the attributes its metadata gives) and its row
        (None: no such VM)."""
        target, info, _meta = self._resolve_meta(name)
        return target, info

    def _resolve_meta(self, name: str) -> tuple[Target, Any, vmmeta.VmMeta | None]:
        """``_resolve``, and the metadata the target's attributes come from."""
        if not isinstance(name, str) or not name:
            raise UserError("a domain name is required")
        both = getattr(self.backend, "resolve", None)  # the row and its metadata, one lookup
        try:
            if both is not None:
                try:
                    info, raw = both(name, vmmeta.NS)
                except NoSuchDomain:
                    raise
                except BackendError:  # like _meta: unreadable metadata is no metadata
                    info, raw = self.backend.lookup(name), None
                # remembered (vmmeta.parse): lxml lets go of the GIL to parse, and under
                # load each such hand-off cost ~10 ms of waiting on every VM request
                meta = vmmeta.parse(raw)
            else:
                info = self.backend.lookup(name)
        except NoSuchDomain:
            return Target(name, None, {}, exists=False), None, None
        if both is None:
            meta = self._meta(name)
        return Target(name, info.uuid, meta.attrs()), info, meta

    def _meta(self, name: str) -> vmmeta.VmMeta:
        try:
            return vmmeta.parse(self.backend.get_metadata(name, vmmeta.NS))
        except BackendError:
            return vmmeta.VmMeta()

    def _denied(self, v: Verdict) -> Reply:
        status = v.status or EXIT_DENIED
        if v.check == "policy":
            status = EXIT_BAD_POLICY
        if v.check == "state":  # told like the hypervisor's own "already running"
            return Reply(EXIT_FAILED, message=v.rule, check=v.check)
        return Reply(status, message=v.denial_message(), check=v.check)

    def _run(
        self,
        ident,
        op_name: str,
        name: str,
        interaction,
        action: Callable[[Any], Any],
        acm_check=None,
        *,
        effect: Callable[[Any], mediation.Effect] | None = None,
        performs=(),
        with_meta: bool = False,
    ):
        """Authorize op on the named VM, then run action(info) and audit the outcome.

        ``with_meta``: action(info, meta), with the metadata the decision was made on (read
        with the row, before the decision), for a command that shows it: asking libvirt
        again would cost a round trip and could show another state than the one decided on.

        ``effect(info)`` describes what the request would make the VM reach, for the steps of
        the operation's row that inspect it (see ``mediation``); ``performs`` names the command
        steps the command does itself; ``acm_check`` is a command's own ACM check (migration's
        destination).  A VM that does not exist is refused like any other until the gate
        allowed the request, so its absence is only told to those who may act on it."""
        op = self._op(op_name)
        target, info, meta = self._resolve_meta(name)
        if not target.exists:
            return self._gated(
                ident, op, target, interaction, _missing(name), acm_check, performs=performs
            )
        make = (lambda: effect(info)) if effect is not None else None
        return self._gated(
            ident,
            op,
            target,
            interaction,
            (lambda: action(info, meta)) if with_meta else (lambda: action(info)),
            acm_check,
            effect=make,
            performs=performs,
        )

    def _gated(
        self,
        ident,
        op,
        target: Target,
        interaction,
        fn,
        acm_check=None,
        *,
        effect: Callable[[], mediation.Effect] | None = None,
        performs=(),
    ) -> Reply:
        """The one path from a request to the hypervisor, driven by the operation's row.

        Without a row (or with a command that does not claim its command steps) the request
        is refused, audited.  With sHype/ACM on and the row asking for the lock, the caller is
        authenticated first, *then* the host-wide lock is taken and RBAC decided again with the
        ACM steps (nobody's password prompt holds the lock).  fn() runs pinned to the UUID the
        decision saw, after the fence and the allow-list, and its outcome is always audited."""
        # what the steps inspect: an existing VM, or the definition a define/create brings
        subject = target.exists or effect is not None
        try:
            row = mediation.row(op.name)
            if subject:  # a missing VM runs nothing: the action only says it is missing
                mediation.check_claims(row, performs, has_acm_check=acm_check is not None)
        except mediation.Unmediated as exc:
            why = str(exc)
            v = self.gate.authorize(
                ident, op, target, interaction, checks=(("mediation", lambda: (False, why)),)
            )
            return self._denied(v)
        steps = mediation.applicable(
            row,
            acm_on=self.acm is not None,
            privileged=self._privileged(ident),
            exists=target.exists,
            svirt_on=self.categories is not None,
        )
        lazy = _LazyEffect(self, target, effect)
        checks = ()
        if subject and any(s in steps for s in (mediation.ACM_VM, mediation.ACM_RESOURCES)):
            checks = (("acm", self._acm_steps(target.name, steps, lazy, acm_check, ident)),)
        elif acm_check is not None and self.acm is not None:
            checks = (("acm", acm_check),)
        realm = self._realm_check(ident, op, target) if mediation.REALM in steps else None
        defer = self._defers_audit(op)  # a read: decision and outcome with one audit sync
        if mediation.ACM_LOCK not in steps:
            v = self.gate.authorize(
                ident, op, target, interaction, checks=checks, realm=realm, defer_read=defer
            )
            return self._after_decision(v, op, target, steps, lazy, fn, subject, ident)
        pre = self.gate.preauthenticate(ident, op, target, interaction, realm=realm)
        if not pre.allowed:
            return self._denied(pre)
        with self.acm.exclusive():
            v = self.gate.authorize(
                ident,
                op,
                target,
                None,
                checks=checks,
                authenticated=pre.authenticated,
                realm=realm,
                defer_read=defer,
            )
            return self._after_decision(v, op, target, steps, lazy, fn, subject, ident)

    def _after_decision(
        self, v: Verdict, op, target: Target, steps, lazy, fn, subject, ident
    ) -> Reply:
        if not v.allowed:
            return self._denied(v)

        def mediated():
            action = fn
            if subject:
                if mediation.REALM_RESOURCES in steps and self.tenancy:
                    self._realm_resources(op.name, target, lazy.get())
                dac = self._dac_before_checks(op.name, target, lazy)  # realm's QEMU uid
                self._confinement_steps(ident, op.name, target.name, steps, lazy)
                if mediation.LABEL_CURRENT in steps:
                    lazy.get()  # read the current label *before* the action replaces it
                if dac is not None:
                    action = self._dac_before_action(op.name, target, dac, action)
                if mediation.REALM_QUOTA in steps and self.tenancy:  # under the quota lock
                    action = self._quota_guarded(op.name, target, lazy, action)
            if mediation.SVIRT_CATEGORIES in steps and (not subject or lazy.get().instantiates):
                data = self._with_categories(target, lazy if subject else None, action)
            else:
                data = action()
            if subject and mediation.LABEL_CURRENT in steps:
                self._keep_current_label(target.name, lazy.get())
            return data

        # pinned: the steps inspect, and the action acts on, the VM the decision saw (by its
        # UUID), never one that took its name since; and through one handle
        if target.exists and target.uuid:
            return self._perform(v, self._pinned(target, mediated))
        return self._perform(v, mediated)

    def _with_categories(self, target: Target, lazy, action):
        """sVirt: run ``action`` (the start, create, restore or revert) holding a category pair
        no other running VM holds; the pair is written to the VM's live metadata once it runs
        and freed if the hypervisor call fails.  No free pair, or category state that cannot be
        read, refuses the start (fail closed: a VM never runs with a pair handed out blind)."""
        from policy import mcs
        from secured_virt.shype.categories import CategoryStateError

        key = target.uuid
        if not key and lazy is not None:
            xml = lazy.get().domain_xml
            if xml:
                with contextlib.suppress(vmmeta.DomainXmlError):
                    key = vmmeta.from_domain_xml(xml)[1]
        key = key or f"name:{target.name}"
        realm = self._vm_realm_of(target, lazy.get().meta if lazy is not None else None)
        try:
            with self.categories.instantiating(key, target.name, realm) as _pair:
                data = action()
        except mcs.CategoriesExhausted as exc:
            raise UserError(
                f"cannot start '{target.name}': no sVirt category pair is free ({exc}); "
                "stop a VM first",
                EXIT_FAILED,
            ) from None
        except CategoryStateError as exc:
            raise UserError(f"cannot start '{target.name}': {exc}", EXIT_FAILED) from None
        if key.startswith("name:"):  # no UUID known before: the live metadata keeps the pair
            with contextlib.suppress(CategoryStateError, OSError):
                self.categories.release(key)
        return data

    def _pinned(self, target: Target, fn):
        """fn, acting on the VM that was checked, not on whatever bears its name by now."""

        def run():
            with self.backend.pinned(target.name, target.uuid):
                return fn()

        return run

    def _acm_verdict(self, name: str, label: str | None, resources, ident=None) -> tuple:
        from policy.verdict import RULE_STATE
        from secured_virt.shype.enforcer import verdict_text

        v = self.acm.check_instantiate(name, label, resources)
        if v.allowed:
            return True, f"ACM {self.acm.active.name}: {name} may run ({label})"
        if getattr(v, "rule", None) == RULE_STATE:  # "already running": a failure, not a denial
            return False, v.reason, "state"
        return False, self._acm_refusal(verdict_text(v), v, ident)

    def _acm_refusal(self, full: str, v, ident):
        """A Chinese Wall refusal as the caller may be told it: the running domains that hold
        the conflicting type are named only to a caller who may see them (they would be in
        their ``list``); for the others it says that a domain they cannot see holds it.  The
        audit keeps ``full`` (access.gate.Worded).  The conflict set and the types stay in:
        they are the policy's, and the refusal itself already says that such a type runs."""
        hidden = self._hidden_holders(v, ident)
        if not hidden:
            return full
        from secured_virt.access.gate import Worded

        return Worded(full, f"{v.rule}: {self._cw_reason_shown(v, hidden)}")

    def _remote_refusal(self, full: str, v, dest: str, ident):
        """A destination's Chinese Wall refusal of a migration: what runs on another host is
        in nobody's ``list`` here, so only root acting as itself is told its name."""
        holders = _wall_holders(v)
        if not holders or self._privileged(ident):
            return full
        from secured_virt.access.gate import Worded

        shown = self._cw_reason_shown(v, holders, where=f"on {dest}")
        return Worded(full, f"at the destination {dest}: {v.rule}: {shown}")

    def _acm_report_shown(self, report, ident) -> dict:
        """``dry-run``'s report (policy.DryRunReport) as the caller may see it: each Chinese
        Wall verdict worded and detailed without the running domains they may not see (their
        name and label become None), as ``_acm_refusal`` tells a refused start."""
        out = report.as_dict()
        for item, (_name, v) in zip(out["items"], report.items, strict=True):
            hidden = self._hidden_holders(v, ident)
            if not hidden:
                continue
            item["reason"] = self._cw_reason_shown(v, hidden)
            details = item["details"] = dict(item["details"])
            if details.get("conflicting_domain") in hidden:
                details.update(conflicting_domain=None, conflicting_label=None)
            details["conflicts"] = [
                dict(c, conflicting_domain=None, conflicting_label=None)
                if c.get("conflicting_domain") in hidden
                else c
                for c in details.get("conflicts") or ()
            ]
        return out

    def _hidden_holders(self, v, ident) -> set:
        """The running domains a Chinese Wall verdict names that ``ident`` may not see."""
        holders = _wall_holders(v) if ident is not None else set()
        if not holders or self._privileged(ident):
            return set()
        return {h for h in holders if not self._may_see_vm(ident, h)}

    @staticmethod
    def _cw_reason_shown(v, hidden: set, where: str = "you cannot see") -> str:
        """The Chinese Wall sentence of ``v`` with the ``hidden`` holders said to be ``where``
        instead of named."""
        d = v.details
        f = d["conflicts"][0]
        seen = sorted(_wall_holders(v) - hidden, key=str)
        n = len(hidden)
        unseen = "a running domain" if n == 1 else f"{n} running domains"
        by = ", ".join(repr(h) for h in seen) + " and " if seen else ""
        what = f"domain {d['domain']!r}" if d.get("domain") is not None else "a domain"
        return (
            f"Chinese Wall: {what} with label {d.get('label')} cannot run now: its type "
            f"{f['type']} is in conflict set {f['conflict_set']!r} with type "
            f"{f['conflicting_type']}, held by {by}{unseen} {where}; it must stop first "
            f"(ask the host's administrator), or use a label outside conflict set "
            f"{f['conflict_set']!r}."
        )

    def _may_see_vm(self, ident, name: str) -> bool:
        """Whether the VM ``name`` is in the caller's ``list``: RBAC lets them list it, and it
        is in one of their realms.  Unknown or unreadable counts as not seen."""
        try:
            target, info = self._resolve(name)
            if info is None:
                return False
            if not self.gate.may(ident, self._op("list"), target):
                return False
            return bool(self._realm_visible(ident, [info], {name: target.attrs}))
        except Exception:  # fail closed: a name we cannot check is not told
            return False

    def _defers_audit(self, op: Operation) -> bool:
        """Whether an allowed ``op`` may have its decision record written with its outcome,
        one audit sync before the reply (access/audit.py, "Reads"): only an operation that
        reads, by both tables — its catalogue kind is ``read`` and its mediation row's reach
        is ``none``.  Everything else waits for its decision record before it starts."""
        try:
            return op.reads_only and mediation.row(op.name).reach == mediation.NONE
        except mediation.Unmediated:
            return False

    def _perform(self, v: Verdict, fn: Callable[[], Any]) -> Reply:
        """Run an allowed action; its outcome is audited whatever happens, so no allowed
        decision is ever left "pending" (an unexpected exception is a failure, exit 1).  A
        read whose records cannot be written gets no answer: the audit's refusal instead."""
        try:
            return self._perform_audited(v, fn)
        except AuditFailure as exc:
            return Reply(EXIT_FAILED, message=str(exc), check="audit")

    def _perform_audited(self, v: Verdict, fn: Callable[[], Any]) -> Reply:
        try:
            data = fn()
        except BackendError as exc:
            self.gate.finish(v, f"error: {exc}")
            return Reply(EXIT_FAILED, message=str(exc))
        except UserError as exc:
            self.gate.finish(v, f"error: {exc}")
            return Reply(exc.status, message=str(exc))
        except Exception as exc:
            log.exception("internal error performing %s", v.op.name if v.op else "?")
            self.gate.finish(v, f"error: internal: {type(exc).__name__}: {exc}")
            what = v.op.name if v.op else "the request"
            return Reply(
                EXIT_FAILED,
                message=f"{what}: internal error ({type(exc).__name__}: {exc}); the outcome "
                "is recorded in the audit log — please report it with the svirtd log",
            )
        self.gate.finish(v, "ok")
        return Reply(EXIT_OK, data=data)

    def _bound_labels(self):
        """Where labels stay bound to UUIDs (the ACM state directory)."""
        if self.acm is not None:
            return self.acm.bound
        from secured_virt.shype.bound import BoundLabels

        return BoundLabels(self.config.acm_state_dir)

    def _simple(self, ident, op_name, args, interaction, method, message):
        name = args.get("domain")
        return self._run(
            ident,
            op_name,
            name,
            interaction,
            _say(message % name, lambda: getattr(self.backend, method)(name)),
        )


def _wall_holders(v) -> set:
    """The running domains a (Chinese Wall) verdict names as holding a conflicting type."""
    return {c["conflicting_domain"] for c in v.details.get("conflicts") or ()}


def _authenticator_for(config):
    from secured_virt.access.authn import Authenticator

    return Authenticator.from_config(config)


class _FirstUse:
    """An object built when it is first used (``Service(on_demand=True)``): a direct-mode
    command that never asks for a password or starts a VM loads neither PAM (ctypes) nor the
    sVirt categories (the policy package).  Calls and attributes go to the object; building
    it fails like building it eagerly would have, only at that first use."""

    __slots__ = ("_args", "_make", "_obj")

    def __init__(self, make, *args):
        self._make, self._args, self._obj = make, args, None

    def _get(self):
        if self._obj is None:
            self._obj = self._make(*self._args)
        return self._obj

    def __getattr__(self, name):
        return getattr(self._get(), name)

    def __call__(self, *args, **kw):
        return self._get()(*args, **kw)
