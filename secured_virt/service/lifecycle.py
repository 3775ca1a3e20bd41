"""Bringing domains into and out of existence and running state: start, shutdown, reboot,
reset, destroy, suspend, resume, undefine, define, create, autostart, console.

define and create take the caller's domain XML through ``vmmeta.prepare_user_domain_xml``, so
owner, label and the disk fence are applied in one place; a label recorded for the XML's UUID
(``shype.bound``) comes back with it.  What each command must pass is its row in
``mediation``; the commands here only say what the request would reach (an ``Effect``).
"""

from __future__ import annotations

import dataclasses

from secured_virt.access.gate import acting_as
from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, Reply

from . import mediation
from .errors import NullInteraction, UserError
from .support import _with_flags


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

        # the definition that will run: its disks are fenced again and checked by the ACM
        return self._run(
            ident,
            "start",
            name,
            interaction,
            act,
            effect=lambda info: mediation.Effect(domain_xml=self.backend.dumpxml(name)),
        )

    def _cmd_shutdown(self, ident, args, interaction):
        """virsh's line (byte for byte), and a note for the caller's terminal: shutdown only
        *asks* the guest (ACPI power button), so a guest without an OS or ACPI never stops,
        and nothing else would tell them why it keeps running."""
        name = args.get("domain")

        def act(info):
            self.backend.shutdown(name)
            return {
                "message": f"Domain '{name}' is being shutdown",
                "note": (
                    f"shutdown asks the guest to power off (ACPI); a guest without an "
                    f"operating system or ACPI support ignores it and keeps running.  "
                    f"'svirsh destroy {name}' stops it at once, like pulling the plug."
                ),
            }

        return self._run(ident, "shutdown", name, interaction, act)

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
        name = args.get("domain")

        def act(info):
            meta = self._meta(name)
            if meta.label and info.uuid:  # the label outlives the definition (shype.bound)
                self._bound_labels().bind(info.uuid, name, meta)
            self.backend.undefine(name)
            return {"message": f"Domain '{name}' has been undefined"}

        return self._run(ident, "undefine", name, interaction, act, performs=(mediation.OWNERSHIP,))

    def _from_xml(self, ident, args, interaction, op_name: str, method: str, verb: str):
        xml = args.get("xml")
        if not isinstance(xml, str):
            raise UserError(f"{op_name}: the domain XML must be given (svirsh reads FILE as you)")
        owner = acting_as(ident) or (None if ident.uid == 0 else ident.user)
        src_name = args.get("file") or "domain XML"
        try:
            root = vmmeta.parse_domain_xml(xml)
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"{src_name}: {exc}") from None
        name = root.findtext("name").strip()
        uuid = (root.findtext("uuid") or "").strip() or None
        target, _info = self._resolve(name)
        # redefining (or creating from) an existing domain keeps its owner and label: a new
        # XML must not shed the label the ACM checks, nor move the VM to the caller
        keep = self._meta(name) if target.exists else None
        refusal = None
        if keep is None:
            keep, refusal = self._bound_meta(ident, uuid, owner)
        realm = None  # a new VM goes into the caller's realm (secured_virt.tenancy)
        if not target.exists:
            realm = (keep.realm if keep is not None else None) or self._realm_for_new(ident, name)
            if keep is not None and realm != keep.realm:
                keep = dataclasses.replace(keep, realm=realm)
        try:
            name, prepared = vmmeta.prepare_user_domain_xml(
                xml,
                owner,
                privileged=self._privileged(ident),
                keep=keep,
                disk_dirs=self._disk_dirs(),
                reserved_names=(getattr(self.config, "host_object", "Domain-0"),),
                realm=realm,
            )
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"{src_name}: {exc}") from None
        if not target.exists:
            # a new VM: the prospective owner is the caller, so "owned" scopes grant creation
            target.attrs = (keep or vmmeta.VmMeta(owner=owner, realm=realm)).attrs()
        src = args.get("file") or "XML"
        # sVirt made real: a VM of a set-up realm runs as the realm's QEMU user (static DAC)
        dac_realm = realm if not target.exists else self._realm_of_row(name, keep)
        dac_label = self._realm_dac(dac_realm)

        def act():
            if refusal is not None:  # after the (audited) decision, so it is on record
                raise UserError(refusal, EXIT_DENIED)
            self._check_image_sharing(ident, name, prepared)  # another owner's image: exit 3
            final = prepared
            if dac_label is not None:  # after the checks, which saw the caller's XML
                from secured_virt.confinement import dac  # only for a realm's VM (issue 18)

                final = dac.apply_dac(prepared, dac_label.uid, dac_label.gid)
                self._dac_images(final, dac_realm, dac_label)
            call = lambda: getattr(self.backend, method)(final)  # noqa: E731
            if dac_label is not None:  # the kernel's EACCES, in words
                call = self._dac_explained(call, name, dac_label)
            call()
            return {"message": f"Domain '{name}' {verb} from {src}"}

        effect = mediation.Effect(
            domain_xml=prepared, meta=vmmeta.from_domain_xml(prepared)[2], running=False
        )
        return self._gated(
            ident,
            self._op(op_name),
            target,
            interaction,
            act,
            effect=lambda: effect,
            performs=(mediation.OWNERSHIP,),
        )

    def _bound_meta(self, ident, uuid: str | None, owner: str | None):
        """(metadata to keep, refusal or None) for a new definition with ``uuid``.

        A label recorded for that UUID (the VM was labelled, then undefined) comes back with
        it: that is what "labels stay bound to the UUID" means.  Giving it back to a caller
        who did not own that VM would hand them the label's STE types (its tenant's data), so
        only root acting as itself, or the VM's recorded owner, may define that UUID again;
        anyone else is refused and told to leave out <uuid> (a new VM, unlabelled)."""
        from secured_virt.shype.bound import BoundLabelsError

        try:
            rec = self._bound_labels().get(uuid)
        except BoundLabelsError as exc:
            raise UserError(
                f"the labels bound to UUIDs cannot be read: {exc}", EXIT_FAILED
            ) from None
        if rec is None:
            return None, None
        old_name, meta = rec
        if self._privileged(ident):
            return meta, None
        if meta.owner and meta.owner == owner:
            return vmmeta.VmMeta(owner, meta.label_policy, meta.label, realm=meta.realm), None
        return None, (
            f"UUID {uuid} belonged to VM '{old_name}', labelled "
            f"ACM:{meta.label_policy}:{meta.label}; that label stays bound to the UUID, so "
            f"only root{' or ' + meta.owner if meta.owner else ''} may define it again. Leave "
            "out <uuid> to define a new VM"
        )

    def _cmd_define(self, ident, args, interaction):
        return self._from_xml(ident, args, interaction, "define", "define", "defined")

    def _cmd_create(self, ident, args, interaction):
        return self._from_xml(ident, args, interaction, "create", "create", "created")

    def _cmd_autostart(self, ident, args, interaction):
        """Enabling records a wish that svirtd starts the VM at host boot, as this user and
        through the gate; libvirt's own flag is never set (service.autostart says why).
        Disabling forgets the wish and clears libvirt's flag too."""
        from .autostart import AutostartError

        name, flag = args.get("domain"), not args.get("disable")
        user = acting_as(ident) or ident.user

        def act(info):
            try:
                if not flag:
                    self.autostart.forget(info.uuid)
                    if self.backend.get_autostart(name):  # root's, set with virsh
                        self.backend.set_autostart(name, False)
                    return {"message": f"Domain '{name}' unmarked as autostarted"}
                if not _with_flags(self.backend, name, info).persistent:  # as libvirt: a
                    # transient domain has nothing to start at boot
                    raise UserError(
                        f"cannot set autostart for transient domain '{name}'", EXIT_FAILED
                    )
                self.autostart.record(info.uuid, info.name, user)
            except AutostartError as exc:
                raise UserError(str(exc), EXIT_FAILED) from None
            return {"message": f"Domain '{name}' marked as autostarted"}

        return self._run(ident, "autostart", name, interaction, act)

    def open_console(self, ident, name: str, interaction=None):
        """Gate-check 'console' on name (its row in the mediation table, like every other
        command); returns (reply, stream or None).  The console is opened on the VM with the
        UUID the decision saw (pinned), never on one defined under its name since."""
        interaction = interaction or NullInteraction()
        op = self._op("console")
        target, _info = self._resolve(name)
        opened = []

        def act():
            opened.append(self.backend.open_console(name))
            return {"message": f"Connected to domain '{name}'"}

        if not target.exists:
            from .support import _missing

            act = _missing(name)  # a VM that is not there is told after the gate
        reply = self._gated(ident, op, target, interaction, act)
        return reply, (opened[0] if opened and reply.ok else None)
