"""The façade's mediation steps (see ``mediation``): what each named step checks.

``Service._gated`` reads an operation's row and calls these; commands only describe what a
request would make the VM reach (a ``mediation.Effect``), so no command can skip a step by
forgetting to call it.  ACM steps run inside the gate (their refusal is the audited decision,
check ``acm``); the fence and the allow-list run right after the decision, before the action
(their refusal is the audited outcome, exit 3), as the disk fence always did.
"""

from __future__ import annotations

from lxml import etree

from secured_virt.confinement import vmmeta
from secured_virt.lazylog import lazy_logger
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED

from . import mediation as M
from .errors import UserError

log = lazy_logger("secured_virt.service.steps")  # logging loads at the first message (issue 18)


class _LazyEffect:
    """The request's Effect, computed once, on first use (after RBAC allowed), on the VM the
    decision saw."""

    def __init__(self, service, target, make):
        self._service, self._target, self._make = service, target, make
        self._value = None

    def get(self) -> M.Effect:
        if self._value is None:
            if self._make is None:
                raise UserError(
                    "internal error: this operation's mediation needs to know what the request "
                    "would reach, and its command did not say; refusing",
                    EXIT_FAILED,
                )
            if self._target.exists and self._target.uuid:
                with self._service.backend.pinned(self._target.name, self._target.uuid):
                    self._value = self._make()
            else:
                self._value = self._make()
        return self._value


class MediationSteps:
    """Mixed into ``Service``: the steps of ``mediation.STEPS`` the façade performs."""

    # -- the label a step checks --------------------------------------------------------------
    def _label_for(self, name: str, eff: M.Effect) -> str | None:
        import policy

        meta = eff.meta
        if meta is not None:
            if not meta.label:
                return None
            return policy.format_label(meta.label_policy or "", meta.label)
        return self.acm.vm_label(name)

    # -- ACM (inside the gate, under the lock) -----------------------------------------------
    def _acm_steps(self, name: str, steps, effect: _LazyEffect, acm_check, ident=None):
        """One gate check for every ACM step of the row, in table order (``ident``: the
        caller, for what a refusal may tell them; facade._acm_refusal)."""

        def check():
            try:
                if M.ACM_VM in steps:
                    r = self._step_acm_vm(name, effect.get(), ident)
                    if not r[0]:
                        return r
                if M.ACM_RESOURCES in steps:
                    r = self._step_acm_resources(name, effect.get())
                    if not r[0]:
                        return r
            except UserError as exc:
                return False, str(exc)
            except Exception as exc:  # fail closed: what cannot be read cannot be allowed
                log.warning("ACM step on %s failed: %s", name, exc, exc_info=True)
                return False, f"cannot check '{name}' against the sHype/ACM policy: {exc}"
            if acm_check is not None:
                return acm_check()
            return True, f"ACM {self.acm.active.name}: {name} admitted"

        return check

    def _step_acm_vm(self, name: str, eff: M.Effect, ident=None):
        if eff.domain_xml is None:
            raise UserError("internal error: no definition to check against the ACM", EXIT_FAILED)
        if not eff.instantiates:
            return self._step_acm_resources(name, eff)
        label = self._label_for(name, eff)
        resources = self.acm.resources_of_xml(name, eff.domain_xml)
        if eff.replaces_running:
            self.acm.sync(exclude=(name,))
        return self._acm_verdict(name, label, resources, ident)

    def _step_acm_resources(self, name: str, eff: M.Effect):
        from secured_virt.shype.enforcer import verdict_text

        label = self._label_for(name, eff)
        meta = eff.meta if eff.meta is not None else self._meta(name)
        running = eff.running
        if not running and eff.device is not None:  # an attach: does the VM run now?
            running = self.backend.lookup(name).id is not None
        if not running and not meta.label:
            return True, f"'{name}' is unlabelled and inactive: its resources are checked at start"
        if eff.device is not None:
            resources = self.acm.resources_of_device(name, eff.device)
        elif eff.domain_xml is not None:
            resources = self.acm.resources_of_xml(name, eff.domain_xml)
        else:
            raise UserError("internal error: nothing to check against the ACM", EXIT_FAILED)
        v = self.acm.check_resources(name, label, resources)
        if v is not None:
            return False, verdict_text(v)
        return True, f"ACM {self.acm.active.name}: {label} may use {', '.join(resources) or 'it'}"

    # -- after the decision, before the action ----------------------------------------------
    def _confinement_steps(
        self, ident, op_name: str, vm_name: str, steps, effect: _LazyEffect
    ) -> None:
        """The disk fence and the device allow-list; a refusal is UserError(exit 3).

        For a whole definition (start, restore, revert) the fence re-reads every image header
        and then asks again whether any file the disks reach is another owner's: an image the
        guest can write may have been given a backing file since it was defined, and a chain
        that stays inside ``disk_dirs`` can still end in another tenant's image."""
        if M.DISK_FENCE not in steps and M.DEVICE_ALLOWLIST not in steps:
            return
        # loaded here, not at the top: a read has neither step (issue 18)
        from secured_virt.confinement import devices as device_rules
        from secured_virt.confinement import disks

        eff = effect.get()
        dirs = self._disk_dirs()
        try:
            if eff.device is not None:  # one device: the same allow-list and fence as define
                device_rules.check_user_device(etree.fromstring(eff.device.encode()), dirs)
                return
            if eff.domain_xml is None:
                raise UserError(f"internal error: {op_name} gave nothing to fence", EXIT_FAILED)
            root = vmmeta.parse_domain_xml(eff.domain_xml)
            if M.DEVICE_ALLOWLIST in steps:
                for el in _interpreted(root):
                    why = device_rules.device_problem(el)
                    if why:
                        raise device_rules.DevicePolicyError(
                            f"<{etree.QName(el).localname}> ({why}) is only allowed in "
                            "definitions made by root"
                        )
            if M.DISK_FENCE in steps:
                disks.check_domain_images(root, dirs)
                self._check_image_sharing(ident, vm_name, root)
        except (disks.DiskPolicyError, device_rules.DevicePolicyError) as exc:
            raise UserError(f"{op_name}: {exc}", EXIT_DENIED) from None

    # -- after the action ---------------------------------------------------------------------
    def _keep_current_label(self, name: str, eff: M.Effect) -> None:
        """label_current: the domain carries the owner and label it had before the request
        (not the ones in the image or snapshot it came back from).  If that cannot be written,
        a running instance is destroyed: it must not run under a label nobody checked."""
        meta = eff.meta if eff.meta is not None else vmmeta.VmMeta()
        try:
            info = self.backend.lookup(name)
            if info.uuid:
                self._bound_labels().bind(info.uuid, name, meta)
            vmmeta.write(self.backend, name, meta)
        except Exception as exc:
            try:
                if self.backend.lookup(name).id is not None:
                    self.backend.destroy(name)
            except Exception:  # noqa: S110 - reported below either way
                pass
            raise UserError(
                f"'{name}' could not be given back its current label ({exc}); it was stopped "
                "rather than left running under an old one",
                EXIT_FAILED,
            ) from None


def _interpreted(root):
    """Every element libvirt interprets (all but <metadata>'s content)."""
    yield root
    for child in root.iterchildren(tag=etree.Element):
        if child.tag != "metadata":
            yield from child.iter(tag=etree.Element)
