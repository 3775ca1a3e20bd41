"""The façade of the use-case layer: what every command shares; the commands are mixins.

Both front doors (``svirsh`` running in-process as root/sudo, and ``svirtd`` serving non-root
users over its socket) call ``Service.handle(identity, request, interaction)``; nothing else
touches the backend.  So the two can never disagree about what is allowed.

Every handler follows the same shape: resolve the target (the VM, or the host object) ->
``Gate.authorize`` (RBAC, PAM, ACM, audit) -> backend call -> ``Gate.finish`` with the outcome.
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

from secured_virt.access.gate import Gate, Target, Verdict
from secured_virt.access.operations import CATALOGUE, Operation
from secured_virt.access.rolesession import ActiveRoles
from secured_virt.backends.base import BackendError, NoSuchDomain
from secured_virt.backends.factory import open_backend
from secured_virt.confinement import vmmeta
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
from secured_virt.shype import INSTANTIATING

from .devices import DeviceCommands
from .errors import NullInteraction, UserError
from .host import HostCommands
from .labels import LabelCommands
from .lifecycle import LifecycleCommands
from .queries import QueryCommands
from .shype_policy import PolicyCommands
from .storage import StorageCommands
from .support import _missing, _say


class Service(
    QueryCommands,
    LifecycleCommands,
    DeviceCommands,
    StorageCommands,
    LabelCommands,
    HostCommands,
    PolicyCommands,
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
    ):
        self.config = config
        self._backend = backend
        self._backend_lock = threading.Lock()
        self.store = store or PolicyStore(config.ua, config.pa)
        if audit is None:
            from secured_virt.access.audit import AuditLog

            audit = AuditLog.from_config(config)
        self.audit = audit
        if authenticator is None:
            from secured_virt.access.authn import Authenticator

            authenticator = Authenticator.from_config(config)
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
        self.started = time.time()
        self.counters = {"requests": 0, "allowed": 0, "denied": 0, "errors": 0}
        self._counter_lock = threading.Lock()

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
        res = self.store.reload()
        out = {"ok": res.ok, "errors": list(res.errors), "versions": {"rbac": res.digest}}
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
            "acm": (
                {"policy": self.acm.active.name, "version": self.acm.active.version}
                if self.acm is not None
                else None
            ),
        }

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
        if not isinstance(name, str) or not name:
            raise UserError("a domain name is required")
        try:
            info = self.backend.lookup(name)
        except NoSuchDomain:
            return Target(name, None, {}, exists=False), None
        meta = self._meta(name)
        return Target(name, info.uuid, meta.attrs()), info

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
    ):
        """Authorize op on the named VM, then run action(info) and audit the outcome.

        Operations that instantiate a domain (start, ...) are also checked against the active
        sHype/ACM policy (``acm_check`` replaces that check, e.g. for migration).  A VM that
        does not exist is refused like any other until the gate allowed the request, so its
        absence is only told to those who may act on it."""
        op = self._op(op_name)
        target, info = self._resolve(name)
        if not target.exists:
            return self._gated(ident, op, target, interaction, _missing(name))
        if acm_check is None and self.acm is not None and op_name in INSTANTIATING:
            acm_check = lambda: self._acm_for_domain(name)  # noqa: E731
        return self._gated(ident, op, target, interaction, lambda: action(info), acm_check)

    def _gated(self, ident, op, target: Target, interaction, fn, acm_check=None) -> Reply:
        """The one path from a request to the hypervisor: the gate's decision (audited), then
        fn() with its outcome audited.  With an ACM check, both happen under the host-wide
        instantiation lock, so nothing can start in between.  fn() runs with the target VM
        pinned to the UUID the decision saw (Backend.pinned)."""
        lock = self.acm.exclusive() if acm_check is not None else contextlib.nullcontext()
        with lock:
            v = self.gate.authorize(ident, op, target, interaction, acm_check)
            if not v.allowed:
                return self._denied(v)
            if target.exists:
                fn = self._pinned(target, fn)
            return self._perform(v, fn)

    def _pinned(self, target: Target, fn):
        """fn, acting on the VM that was checked, not on whatever bears its name by now."""

        def run():
            with self.backend.pinned(target.name, target.uuid):
                return fn()

        return run

    def _acm_verdict(self, name: str, label: str | None, resources) -> tuple:
        from policy.verdict import RULE_STATE
        from secured_virt.shype.enforcer import verdict_text

        v = self.acm.check_instantiate(name, label, resources)
        if v.allowed:
            return True, f"ACM {self.acm.active.name}: {name} may run ({label})"
        if getattr(v, "rule", None) == RULE_STATE:  # "already running": a failure, not a denial
            return False, v.reason, "state"
        return False, verdict_text(v)

    def _acm_for_domain(self, name: str) -> tuple[bool, str]:
        try:
            label = self.acm.vm_label(name)
            resources = self.acm.resources_of(name)
        except Exception as exc:  # fail closed: an unreadable label is no label to run with
            return False, f"cannot determine the security label of '{name}': {exc}"
        return self._acm_verdict(name, label, resources)

    def _acm_for_xml(self, name: str, xml: str, meta: vmmeta.VmMeta) -> tuple[bool, str]:
        import policy

        label = policy.format_label(meta.label_policy or "", meta.label) if meta.label else None
        try:
            resources = self.acm.resources_of_xml(name, xml)
        except Exception as exc:
            return False, f"cannot read the devices of '{name}': {exc}"
        return self._acm_verdict(name, label, resources)

    def _perform(self, v: Verdict, fn: Callable[[], Any]) -> Reply:
        try:
            data = fn()
        except BackendError as exc:
            self.gate.finish(v, f"error: {exc}")
            return Reply(EXIT_FAILED, message=str(exc))
        except UserError as exc:
            self.gate.finish(v, f"error: {exc}")
            return Reply(exc.status, message=str(exc))
        self.gate.finish(v, "ok")
        return Reply(EXIT_OK, data=data)

    def _simple(self, ident, op_name, args, interaction, method, message):
        name = args.get("domain")
        return self._run(
            ident,
            op_name,
            name,
            interaction,
            _say(message % name, lambda: getattr(self.backend, method)(name)),
        )
