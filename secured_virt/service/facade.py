"""The use-case layer: one method per svirsh command, called by direct mode and by svirtd.

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
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from secured_virt.access.gate import Gate, Target, Verdict, acting_as
from secured_virt.access.operations import CATALOGUE, Operation
from secured_virt.access.rolesession import ActiveRoles
from secured_virt.backends import domxml
from secured_virt.backends.base import BackendError, NoSuchDomain
from secured_virt.backends.factory import open_backend
from secured_virt.confinement import disks, vmmeta
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

from .errors import NullInteraction, UserError
from .shype_policy import PolicyCommands

_SIZE = re.compile(r"^\s*(\d+)\s*([KkMmGgTt]i?[Bb]?|[Bb])?\s*$")
_SAVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def parse_size_kib(text: str) -> int:
    """virsh-style sizes: a plain number is KiB; K/M/G/T suffixes (binary units)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"invalid size '{text}': use a number with an optional K, M, G suffix")
    n, unit = int(m.group(1)), (m.group(2) or "K").upper()[0]
    factor = {"B": 1 / 1024, "K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}[unit]
    return int(n * factor)


class Service(PolicyCommands):
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

    # -- backend ------------------------------------------------------------------------------
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

    # -- entry point --------------------------------------------------------------------------
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

    # -- helpers ------------------------------------------------------------------------------
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

    # -- ACM ----------------------------------------------------------------------------------
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

    # -- read commands ------------------------------------------------------------------------
    def _cmd_list(self, ident, args, interaction) -> Reply:
        op = self._op("list")
        include_inactive = bool(args.get("all") or args.get("inactive"))
        domains = self.backend.list_domains(include_inactive=include_inactive)
        if args.get("inactive"):
            domains = [d for d in domains if d.id is None]
        user = acting_as(ident) or ident.user
        plain_root = ident.uid == 0 and acting_as(ident) is None
        # metadata is fetched only for domains a scoped rule (owner, label) asks about, and for
        # the rows shown: with 10k domains and name-based roles, list makes no per-domain calls
        metas = {d.name: _LazyAttrs(self._meta, d.name) for d in domains}
        if plain_root or getattr(ident, "as_refused", False):
            visible = [d for d in domains] if plain_root else []
        else:
            try:
                pol = self.store.current()
            except Exception:  # fail closed, and audit it like every other decision
                return self._denied(self.gate.authorize(ident, op, Target("*"), interaction))
            allowed = set(
                pol.filter_visible(user, op.id, ((d.name, metas[d.name]) for d in domains))
            )
            visible = [d for d in domains if d.name in allowed]
        v = self.gate.authorize_listing(ident, op, len(visible), len(domains))
        if not v.allowed:
            return self._denied(v)
        self.gate.finish(v, "ok")
        out = []
        for d in sorted(visible, key=lambda d: (d.id is None, d.id or 0, d.name)):
            row = d.as_dict()
            m = metas[d.name].meta
            row["owner"] = m.owner
            row["acm_label"] = (
                self.acm.vm_label(d.name) if self.acm is not None else _acm_display(m)
            )
            if args.get("long"):
                row["security"] = self._security(m, d.name)
            out.append(row)
        return Reply(EXIT_OK, data={"domains": out})

    def _security(self, m: vmmeta.VmMeta, name: str | None = None) -> dict | None:
        if self.acm is not None and name is not None:
            return self.acm.describe(name)
        if not m.label:
            return None
        return {
            "label": m.label,
            "policy": m.label_policy,
            "display": _acm_display(m),
            "ssidref": None,
        }

    def _cmd_dominfo(self, ident, args, interaction) -> Reply:
        name = args.get("domain")

        def act(info):
            d = info.as_dict()
            m = self._meta(name)
            d["owner"] = m.owner
            d["security"] = self._security(m, name)
            return d

        return self._run(ident, "dominfo", name, interaction, act)

    def _cmd_domstate(self, ident, args, interaction) -> Reply:
        return self._run(
            ident,
            "domstate",
            args.get("domain"),
            interaction,
            lambda info: {"state": info.state, "reason": None},
        )

    def _cmd_domid(self, ident, args, interaction) -> Reply:
        return self._run(
            ident,
            "domid",
            args.get("domain"),
            interaction,
            lambda info: {"id": info.id, "uuid": info.uuid, "name": info.name},
        )

    _cmd_domuuid = _cmd_domid

    def _cmd_dumpxml(self, ident, args, interaction) -> Reply:
        name = args.get("domain")
        return self._run(
            ident,
            "dumpxml",
            name,
            interaction,
            lambda info: {
                "xml": self.backend.dumpxml(
                    name,
                    inactive=bool(args.get("inactive")),
                    security_info=bool(args.get("security_info")),
                )
            },
        )

    def _cmd_snapshot_list(self, ident, args, interaction) -> Reply:
        name = args.get("domain")

        def act(info):
            snaps = self.backend.snapshot_list(name)
            return {
                "snapshots": [
                    {
                        "name": s.name,
                        "creation": time.strftime(
                            "%Y-%m-%d %H:%M:%S %z", time.localtime(s.creation_time)
                        ),
                        "creation_time": s.creation_time,
                        "state": s.state,
                        "description": s.description,
                        "current": s.current,
                    }
                    for s in snaps
                ]
            }

        return self._run(ident, "snapshot-list", name, interaction, act)

    # -- lifecycle ----------------------------------------------------------------------------
    def _cmd_start(self, ident, args, interaction) -> Reply:
        name = args.get("domain")

        def act(info):
            self.backend.start(name)
            if args.get("paused"):
                self.backend.suspend(name)
            return {"message": f"Domain '{name}' started"}

        return self._run(ident, "start", name, interaction, act)

    def _cmd_shutdown(self, ident, args, interaction):
        return self._simple(
            ident, "shutdown", args, interaction, "shutdown", "Domain '%s' is being shutdown"
        )

    def _cmd_reboot(self, ident, args, interaction):
        return self._simple(
            ident, "reboot", args, interaction, "reboot", "Domain '%s' is being rebooted"
        )

    def _cmd_reset(self, ident, args, interaction):
        return self._simple(ident, "reset", args, interaction, "reset", "Domain '%s' was reset")

    def _cmd_destroy(self, ident, args, interaction):
        return self._simple(ident, "destroy", args, interaction, "destroy", "Domain '%s' destroyed")

    def _cmd_suspend(self, ident, args, interaction):
        return self._simple(ident, "suspend", args, interaction, "suspend", "Domain '%s' suspended")

    def _cmd_resume(self, ident, args, interaction):
        return self._simple(ident, "resume", args, interaction, "resume", "Domain '%s' resumed")

    def _cmd_undefine(self, ident, args, interaction):
        return self._simple(
            ident, "undefine", args, interaction, "undefine", "Domain '%s' has been undefined"
        )

    # -- save / restore -----------------------------------------------------------------------
    def save_path(self, ident, path: str) -> str:
        """Where a save image may go.  Root (direct or sudo-less) writes where it says; anyone
        else names a file inside their own save directory, so the root daemon can never be
        used to write (or read) an arbitrary host path."""
        if ident.uid == 0:
            return os.path.abspath(path)
        base = os.path.basename(path)
        if path != base or not _SAVE_NAME.match(base):
            raise UserError(
                f"save file '{path}': through svirtd give a plain file name (letters, digits, "
                "'.', '_', '+', '-'); it is kept in your save directory "
                f"{self._user_save_dir(ident.user)}"
            )
        return os.path.join(self._user_save_dir(ident.user), base)

    def _user_save_dir(self, user: str) -> str:
        root = getattr(self.config, "save_dir", None) or "/var/lib/secured-virt/save"
        return os.path.join(root, user)

    def _cmd_save(self, ident, args, interaction):
        name = args.get("domain")
        path = self.save_path(ident, args.get("file") or "")

        def act(info):
            if ident.uid != 0:  # created only once the save is authorized
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            self.backend.save(name, path)
            return {"message": f"Domain '{name}' saved to {path}"}

        return self._run(ident, "save", name, interaction, act)

    def _cmd_restore(self, ident, args, interaction):
        path = self.save_path(ident, args.get("file") or "")
        try:
            xml = self.backend.saved_image_xml(path)
        except BackendError as exc:
            raise UserError(f"cannot read save image {path}: {exc}", EXIT_FAILED) from None
        try:
            name, uuid, meta = vmmeta.from_domain_xml(xml)
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"save image {path}: {exc}", EXIT_FAILED) from None
        target = Target(name, uuid, meta.attrs(), exists=True)
        acm_check = (lambda: self._acm_for_xml(name, xml, meta)) if self.acm is not None else None
        return self._gated(
            ident,
            self._op("restore"),
            target,
            interaction,
            _say(f"Domain restored from {path}", lambda: self.backend.restore(path)),
            acm_check,
        )

    # -- define / create ----------------------------------------------------------------------
    def _from_xml(self, ident, args, interaction, op_name: str, method: str, verb: str):
        xml = args.get("xml")
        if not isinstance(xml, str):
            raise UserError(f"{op_name}: the domain XML must be given (svirsh reads FILE as you)")
        owner = acting_as(ident) or (None if ident.uid == 0 else ident.user)
        try:
            name = vmmeta.parse_domain_xml(xml).findtext("name").strip()
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"{args.get('file') or 'domain XML'}: {exc}") from None
        target, _info = self._resolve(name)
        # redefining (or creating from) an existing domain keeps its owner and label: a new
        # XML must not shed the label the ACM checks, nor move the VM to the caller
        keep = self._meta(name) if target.exists else None
        try:
            name, prepared = vmmeta.prepare_user_domain_xml(
                xml,
                owner,
                privileged=self._privileged(ident),
                keep=keep,
                disk_dirs=self._disk_dirs(),
            )
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"{args.get('file') or 'domain XML'}: {exc}") from None
        if not target.exists:
            # a new VM: the prospective owner is the caller, so "owned" scopes grant creation
            target.attrs = {"owner": owner} if owner else {}
        src = args.get("file") or "XML"
        acm_check = None
        if self.acm is not None and op_name in INSTANTIATING:
            acm_check = lambda: self._acm_for_xml(  # noqa: E731
                name, prepared, vmmeta.from_domain_xml(prepared)[2]
            )
        return self._gated(
            ident,
            self._op(op_name),
            target,
            interaction,
            _say(
                f"Domain '{name}' {verb} from {src}",
                lambda: getattr(self.backend, method)(prepared),
            ),
            acm_check,
        )

    def _cmd_define(self, ident, args, interaction):
        return self._from_xml(ident, args, interaction, "define", "define", "defined")

    def _cmd_create(self, ident, args, interaction):
        return self._from_xml(ident, args, interaction, "create", "create", "created")

    # -- resources ----------------------------------------------------------------------------
    def _flags(self, args) -> dict:
        """virsh's --live/--config/--persistent; none of them means --current (the running
        domain if it runs, else its persistent configuration), which backends take as both
        flags False."""
        live = bool(args.get("live"))
        config = bool(args.get("config") or args.get("persistent"))
        return {"live": live, "config": config}

    def _cmd_setmem(self, ident, args, interaction):
        name, kib = args.get("domain"), _size(args.get("size"))
        return self._run(
            ident,
            "setmem",
            name,
            interaction,
            _say("", lambda: self.backend.setmem(name, kib, **self._flags(args))),
        )

    def _cmd_setmaxmem(self, ident, args, interaction):
        name, kib = args.get("domain"), _size(args.get("size"))
        return self._run(
            ident,
            "setmaxmem",
            name,
            interaction,
            _say("", lambda: self.backend.setmaxmem(name, kib, config=True)),
        )

    def _cmd_setvcpus(self, ident, args, interaction):
        name = args.get("domain")
        try:
            count = int(args.get("count"))
        except (TypeError, ValueError):
            raise UserError(f"invalid vCPU count '{args.get('count')}'") from None
        return self._run(
            ident,
            "setvcpus",
            name,
            interaction,
            _say("", lambda: self.backend.setvcpus(name, count, **self._flags(args))),
        )

    @staticmethod
    def _privileged(ident) -> bool:
        """Root acting as itself: the one caller whose domain XML and disks are not limited
        (root acting --as a user is limited like that user)."""
        return ident.uid == 0 and acting_as(ident) is None

    def _disk_dirs(self) -> tuple[str, ...]:
        return tuple(getattr(self.config, "disk_dirs", ()) or ())

    def _cmd_attach_disk(self, ident, args, interaction):
        name = args.get("domain")
        kw = {k: args.get(k) for k in ("driver", "subdriver", "mode") if args.get(k)}
        if args.get("type"):
            kw["type"] = args["type"]
        privileged = self._privileged(ident)

        def act(info):
            if not privileged:  # after the (audited) decision, so a refusal is on record
                try:
                    disk = domxml.disk_element(args.get("source"), args.get("target"), **kw)
                    disks.check_disk(disk, self._disk_dirs())
                except disks.DiskPolicyError as exc:
                    raise UserError(f"attach-disk: {exc}", EXIT_DENIED) from None
            self.backend.attach_disk(
                name, args["source"], args["target"], **kw, **self._flags(args)
            )
            return {"message": "Disk attached successfully"}

        return self._run(ident, "attach-disk", name, interaction, act)

    def _cmd_detach_disk(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "detach-disk",
            name,
            interaction,
            _say(
                "Disk detached successfully",
                lambda: self.backend.detach_disk(name, args["target"], **self._flags(args)),
            ),
        )

    def _cmd_attach_interface(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "attach-interface",
            name,
            interaction,
            _say(
                "Interface attached successfully",
                lambda: self.backend.attach_interface(
                    name,
                    args["type"],
                    args["source"],
                    mac=args.get("mac"),
                    model=args.get("model"),
                    **self._flags(args),
                ),
            ),
        )

    def _cmd_detach_interface(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "detach-interface",
            name,
            interaction,
            _say(
                "Interface detached successfully",
                lambda: self.backend.detach_interface(
                    name, args["type"], mac=args.get("mac"), **self._flags(args)
                ),
            ),
        )

    def _cmd_autostart(self, ident, args, interaction):
        name, flag = args.get("domain"), not args.get("disable")
        msg = "Domain '%s' marked as autostarted" if flag else "Domain '%s' unmarked as autostarted"
        return self._run(
            ident,
            "autostart",
            name,
            interaction,
            _say(msg % name, lambda: self.backend.set_autostart(name, flag)),
        )

    def _cmd_migrate(self, ident, args, interaction):
        name, dest = args.get("domain"), args.get("desturi")
        if not dest:
            raise UserError("migrate: a destination URI is required")
        progress = interaction.progress if args.get("verbose") else None

        def act(info):
            if ident.uid != 0:  # after the gate: refused users learn nothing, and it is audited
                self._check_user_destination(dest)
            self.backend.migrate(
                name,
                dest,
                live=bool(args.get("live")),
                persistent=bool(args.get("persistent")),
                undefine_source=bool(args.get("undefinesource")),
                progress=progress,
            )
            return {"message": f"Domain '{name}' migrated to {dest}"}

        acm = self.acm

        def acm_check():
            try:
                return acm.check_migration(name, dest)
            except Exception as exc:  # fail closed
                return False, f"cannot check the destination's sHype/ACM policy: {exc}"

        return self._run(
            ident, "migrate", name, interaction, act, acm_check if acm is not None else None
        )

    def _check_user_destination(self, dest: str) -> None:
        """A destination URI is opened by root (libvirt's ext transport runs its command=,
        socket=/keyfile= name files, test:///FILE reads and quotes a file), so anyone but root
        may only name a destination root listed in acm_peers."""
        allowed = [uri for uri, _dir in getattr(self.config, "acm_peers", ()) or ()]
        if dest not in allowed:
            raise UserError(
                f"migrate: destination {dest!r} is not one the administrator listed; only "
                "root may migrate elsewhere (root: add it to acm_peers = URI=DIR in "
                "/etc/secured-virt/secured-virt.conf)"
            )

    # -- snapshots ----------------------------------------------------------------------------
    def _cmd_snapshot_create_as(self, ident, args, interaction):
        name = args.get("domain")

        def act(info):
            snap = self.backend.snapshot_create_as(
                name, args.get("snapshot"), args.get("description")
            )
            return {"message": f"Domain snapshot {snap} created"}

        return self._run(ident, "snapshot-create", name, interaction, act)

    def _cmd_snapshot_revert(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "snapshot-revert",
            name,
            interaction,
            _say("", lambda: self.backend.snapshot_revert(name, args["snapshot"])),
        )

    def _cmd_snapshot_delete(self, ident, args, interaction):
        name, snap = args.get("domain"), args.get("snapshot")
        return self._run(
            ident,
            "snapshot-delete",
            name,
            interaction,
            _say(
                f"Domain snapshot {snap} deleted", lambda: self.backend.snapshot_delete(name, snap)
            ),
        )

    # -- authentication cache -----------------------------------------------------------------
    def _cmd_forget_credentials(self, ident, args, interaction):
        """svirsh -k through svirtd: forget the *caller's* cached authentication and end the
        roles active in their login sessions."""
        from secured_virt.access.credcache import CredCache

        CredCache.from_config(self.config).forget(ident.uid)
        ActiveRoles.from_config(self.config).forget(ident.uid)
        return Reply(EXIT_OK, data={"message": ""})

    # -- sHype/ACM labels ----------------------------------------------------------------------
    def _need_acm(self):
        if self.acm is None:
            raise UserError(
                "sHype/ACM is not enabled on this host: set 'acm = yes' in "
                "/etc/secured-virt/secured-virt.conf and load a policy "
                "(svirt-admin policy load FILE)",
                EXIT_FAILED,
            )
        return self.acm

    def _host_op(self, ident, op_name, interaction, action):
        v = self.gate.authorize(ident, self._op(op_name), self.host_target(), interaction)
        if not v.allowed:
            return self._denied(v)
        return self._perform(v, action)

    def _cmd_getlabel(self, ident, args, interaction):
        name = args.get("domain")

        def act(info):
            if self.acm is not None:
                sec = self.acm.describe(name)
            else:
                m = self._meta(name)
                sec = {
                    "display": _acm_display(m),
                    "label": m.label,
                    "policy": m.label_policy,
                    "ssidref": None,
                }
            return {"domain": name, **sec}

        return self._run(ident, "getlabel", name, interaction, act)

    def _cmd_setlabel(self, ident, args, interaction):
        acm = self._need_acm()
        label = args.get("label")
        if args.get("resource"):
            res = args.get("domain")

            def act_res():
                import policy

                with acm.exclusive():
                    try:
                        key = acm.host.resource_set_label(
                            res, label, acm.host.resource_get_label(res)
                        )
                    except policy.XsmError as exc:
                        raise UserError(str(exc), EXIT_FAILED) from None
                return {"message": f"Resource {key} labelled ACM:{acm.active.name}:{label}"}

            return self._host_op(ident, "setlabel-resource", interaction, act_res)
        name = args.get("domain")

        def act(info):
            import policy

            if info.id is not None:
                raise UserError(
                    f"domain '{name}' is running: use 'svirsh relabel {name} "
                    f"{label}' (checked against the running domains)",
                    EXIT_FAILED,
                )
            with acm.exclusive():
                current = acm.labels.get("vm", name)
                try:
                    acm.host.vm_set_label(name, label, current)
                except policy.XsmError as exc:
                    raise UserError(str(exc), EXIT_FAILED) from None
            return {"message": f"Domain '{name}' labelled ACM:{acm.active.name}:{label}"}

        return self._run(ident, "setlabel", name, interaction, act)

    def _cmd_relabel(self, ident, args, interaction):
        acm = self._need_acm()
        name, label = args.get("domain"), args.get("label")

        def act(info):
            import policy

            with acm.exclusive():
                current = acm.labels.get("vm", name)
                try:
                    ssidref = acm.host.vm_set_label(name, label, current)
                except policy.XsmError as exc:
                    raise UserError(f"relabel refused: {exc}", EXIT_DENIED) from None
            tail = f" (running, ssidref {ssidref:#x})" if ssidref else ""
            return {"message": f"Domain '{name}' relabelled ACM:{acm.active.name}:{label}{tail}"}

        return self._run(ident, "relabel", name, interaction, act)

    def _cmd_labels(self, ident, args, interaction):
        acm = self._need_acm()
        kind = args.get("type") or "vm"
        if kind not in ("vm", "res", "any"):
            raise UserError(f"--type {kind}: use vm, res or any")
        return self._host_op(
            ident,
            "policy-show",
            interaction,
            lambda: {"policy": acm.active.name, "labels": acm.host.label_names(kind)},
        )

    def _cmd_resources(self, ident, args, interaction):
        acm = self._need_acm()

        def act():
            import policy

            out = []
            for res, text in sorted(acm.host.get_labeled_resources().items()):
                lab = policy.parse_label(text, acm.active.name)
                out.append(
                    {"resource": res, "type": "ACM", "policy": lab.policy, "label": lab.name}
                )
            return {"resources": out}

        return self._host_op(ident, "resources", interaction, act)

    def _cmd_dry_run(self, ident, args, interaction):
        acm = self._need_acm()
        name = args.get("domain")

        def act(info):
            with acm.exclusive():
                label = acm.vm_label(name)
                report = acm.host.mediator.dry_run(label, acm.resources_of(name), name)
            return {"domain": name, "label": label, **report.as_dict()}

        return self._run(ident, "dry-run", name, interaction, act)

    # -- console ------------------------------------------------------------------------------
    def open_console(self, ident, name: str, interaction=None):
        """Gate-check 'console' on name; returns (reply, stream or None)."""
        interaction = interaction or NullInteraction()
        op = self._op("console")
        target, _info = self._resolve(name)
        v = self.gate.authorize(ident, op, target, interaction)
        if not v.allowed:
            return self._denied(v), None
        if not target.exists:
            self.gate.finish(v, "error: no such domain")
            return Reply(EXIT_FAILED, message=f"failed to get domain '{name}'"), None
        try:
            stream = self.backend.open_console(name)
        except BackendError as exc:
            self.gate.finish(v, f"error: {exc}")
            return Reply(EXIT_FAILED, message=str(exc)), None
        self.gate.finish(v, "ok: console opened")
        return Reply(EXIT_OK, data={"message": f"Connected to domain '{name}'"}), stream


def _say(message: str, call: Callable[[], object]) -> Callable[..., dict]:
    """An action that makes one backend call, then reports virsh's message for it."""

    def act(*_info):
        call()
        return {"message": message}

    return act


def _missing(name: str) -> Callable[[], dict]:
    def act():
        raise UserError(f"failed to get domain '{name}'", EXIT_FAILED)

    return act


class _LazyAttrs(Mapping):
    """A domain's RBAC attributes (owner, label), read from its metadata on first use."""

    __slots__ = ("_fetch", "_meta", "_name")

    def __init__(self, fetch, name: str):
        self._fetch, self._name, self._meta = fetch, name, None

    @property
    def meta(self) -> vmmeta.VmMeta:
        if self._meta is None:
            self._meta = self._fetch(self._name)
        return self._meta

    def __getitem__(self, key):
        return self.meta.attrs()[key]

    def __iter__(self):
        return iter(self.meta.attrs())

    def __len__(self) -> int:
        return len(self.meta.attrs())


def _size(text) -> int:
    try:
        return parse_size_kib(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _acm_display(m: vmmeta.VmMeta) -> str | None:
    if not m.label:
        return None
    return f"ACM:{m.label_policy}:{m.label}"
