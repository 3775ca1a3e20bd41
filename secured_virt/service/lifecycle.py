"""Bringing domains into and out of existence and running state: start, shutdown, reboot,
reset, destroy, suspend, resume, undefine, define, create, autostart, console.

define and create take the caller's domain XML through ``vmmeta.prepare_user_domain_xml``, so
owner, label and the disk fence are applied in one place.
"""

from __future__ import annotations

from secured_virt.access.gate import acting_as
from secured_virt.backends.base import BackendError
from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_FAILED, EXIT_OK, Reply
from secured_virt.shype import INSTANTIATING

from .errors import NullInteraction, UserError
from .support import _say


class LifecycleCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

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
