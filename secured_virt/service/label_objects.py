"""Labels on single objects: getlabel of one resource or VIF, VIF labels, and ``rmlabel``.

Seed 000 labels three kinds of object - VMs, VBDs (through their backing resource) and VIFs -
and Xen 3.3's ``xm getlabel``/``addlabel``/``rmlabel`` worked on each.  The VM commands live
in ``labels``; this mixin adds the rest with the same rules:

* a label given *or taken away* is a grant of power, so it goes through the same RBAC
  argument constraint (the grant must list it) and the bootstrap rule (Domain-0's label is
  root's alone) as setlabel, under the host-wide ACM lock, and the change is
  compare-and-swap against the label the decision saw;
* which operation decides: a VM's own label is ``setlabel`` on that VM; a resource's or a
  VIF's label is ``setlabel-resource`` on the host object (both are resource labels: they
  decide which domains may use a disk or a network), and reading one resource's label is
  ``resources``, reading a VIF's label ``getlabel`` on its VM;
* the answer carries seed 000's label record ``{type, label}`` beside the ``ACM:…`` string.
"""

from __future__ import annotations

from secured_virt.requests import EXIT_FAILED, EXIT_USAGE

from .errors import UserError
from .support import _missing


def _vif_index(value) -> int:
    """``--vif N`` (or ``vif-N``): a small non-negative interface index, else a usage error."""
    text = str(value).strip()
    text = text.removeprefix("vif-")
    if not (text.isascii() and text.isdigit()) or int(text) > 4096:
        raise UserError(f"--vif {value}: give the interface's index (0, 1, ...)", EXIT_USAGE)
    return int(text)


def _split(text: str | None) -> tuple[str | None, str | None]:
    """(policy, label name) of an ``ACM:<policy>:<label>`` string."""
    if not text:
        return None, None
    import policy

    try:
        lab = policy.parse_label(text)
    except policy.LabelError:
        return None, text
    return lab.policy, lab.name


class LabelObjectCommands:
    """Mixed into ``Service`` (see ``facade``), with ``LabelCommands`` (``_need_acm``,
    ``_label_arguments``, ``_bootstrap_rule``)."""

    # -- reading ----------------------------------------------------------------------------
    def _label_answer(self, acm, key: str, kind: str, text: str | None) -> dict:
        import policy

        pol, name = _split(text)
        try:
            record = acm.host.label_record(text)
        except policy.XsmError:
            record = None
        return {
            "object": key,
            "kind": kind,
            "display": text,
            "label": name,
            "policy": pol,
            "record": record,
        }

    def _getlabel_object(self, ident, args, interaction):
        """``getlabel --resource RES`` / ``getlabel --vif N DOMAIN``."""
        import policy

        acm = self._need_acm()
        if args.get("vif") is not None:
            index = _vif_index(args["vif"])
            name = args.get("domain")

            def act_vif(_info):
                text = acm.host.vif_get_label(name, index)
                return self._label_answer(acm, f"{name}/vif-{index}", "vif", text)

            return self._run(ident, "getlabel", name, interaction, act_vif)
        res = args.get("domain")
        if not isinstance(res, str) or not res:
            raise UserError("getlabel --resource: a resource name is required", EXIT_USAGE)
        try:
            key = policy.xsm.canonical_resource(res)
        except policy.XsmError as exc:
            raise UserError(str(exc), EXIT_USAGE) from None

        def act_res():
            text = acm.host.resource_get_label(key)
            return self._label_answer(acm, key, "resource", text)

        return self._host_op(ident, "resources", interaction, act_res)

    # -- VIF labels -------------------------------------------------------------------------
    def _setlabel_vif(self, ident, args, interaction, remove: bool = False):
        """``setlabel --vif N DOMAIN LABEL`` and ``rmlabel --vif N DOMAIN``."""
        import policy

        acm = self._need_acm()
        index = _vif_index(args["vif"])
        name = args.get("domain")
        label = None if remove else args.get("label")
        if not remove and (not isinstance(label, str) or not label.strip()):
            raise UserError("setlabel --vif: a resource label is required", EXIT_USAGE)
        _target, info = self._resolve(name)
        target = self.host_target()
        op = self._op("setlabel-resource")
        if info is None:
            return self._gated(ident, op, target, interaction, _missing(name))
        current = acm.host.vif_get_label(name, index)
        target.arguments = self._label_arguments(acm, label, current)

        def act():
            n_vifs = max(
                _count_interfaces(self.backend.dumpxml(name, inactive=i)) for i in (True, False)
            )
            if index >= n_vifs:
                raise UserError(
                    f"domain '{name}' has {n_vifs} network interface(s); vif-{index} does "
                    "not exist (attach-interface first)",
                    EXIT_FAILED,
                )
            try:
                if remove:
                    acm.host.vif_rm_label(name, index, current)
                else:
                    acm.host.vif_set_label(name, index, label, current)
            except policy.XsmError as exc:
                bad = exc.xserr in (policy.Xserr.BAD_LABEL, policy.Xserr.BAD_LABEL_FORMAT)
                raise UserError(str(exc), EXIT_USAGE if bad else EXIT_FAILED) from None
            if remove:
                return {"message": f"vif-{index} of '{name}' unlabelled"}
            shown = acm.host.vif_get_label(name, index)
            return {"message": f"vif-{index} of '{name}' labelled {shown}"}

        check = self._bootstrap_rule(ident, acm, f"vif-{index} of '{name}'", label, current)
        return self._gated(ident, op, target, interaction, act, check, performs=("acm_label",))

    # -- rmlabel ----------------------------------------------------------------------------
    def _cmd_rmlabel(self, ident, args, interaction):
        """``rmlabel DOMAIN`` (not running), ``rmlabel --resource RES`` (not in use),
        ``rmlabel --vif N DOMAIN`` (VM not running), like ``xm rmlabel dom|res|vif-N``."""
        if args.get("vif") is not None:
            return self._setlabel_vif(ident, args, interaction, remove=True)
        if args.get("resource"):
            return self._rmlabel_resource(ident, args.get("domain"), interaction)
        return self._rmlabel_vm(ident, args.get("domain"), interaction)

    def _rmlabel_resource(self, ident, res, interaction):
        import policy

        acm = self._need_acm()
        if not isinstance(res, str) or not res:
            raise UserError("rmlabel --resource: a resource name is required", EXIT_USAGE)
        try:
            key = policy.xsm.canonical_resource(res)
        except policy.XsmError as exc:
            raise UserError(str(exc), EXIT_USAGE) from None
        current = acm.host.resource_get_label(key)
        target = self.host_target()
        target.arguments = self._label_arguments(acm, None, current)

        def act():
            try:
                acm.host.resource_rm_label(key, current)
            except policy.XsmError as exc:
                raise UserError(str(exc), EXIT_FAILED) from None
            return {"message": f"Resource {key} unlabelled (was {current})"}

        check = self._bootstrap_rule(ident, acm, f"resource {key}", None, current)
        op = self._op("setlabel-resource")
        return self._gated(ident, op, target, interaction, act, check, performs=("acm_label",))

    def _rmlabel_vm(self, ident, name, interaction):
        import policy

        acm = self._need_acm()
        op = self._op("setlabel")
        target, _info = self._resolve(name)
        if not target.exists:
            return self._gated(ident, op, target, interaction, _missing(name))
        current = acm.labels.get("vm", name)
        target.arguments = self._label_arguments(acm, None, current)

        def act():
            if current is None:
                raise UserError(f"domain '{name}' has no label to remove", EXIT_FAILED)
            try:
                acm.host.vm_rm_label(name, current)
            except policy.XsmError as exc:
                raise UserError(str(exc), EXIT_FAILED) from None
            return {"message": f"Domain '{name}' unlabelled (was {current})"}

        check = self._bootstrap_rule(ident, acm, f"VM '{name}'", None, current)
        return self._gated(ident, op, target, interaction, act, check, performs=("acm_label",))


def _count_interfaces(xml: str) -> int:
    from secured_virt.confinement import vmmeta

    return vmmeta.domain_devices(xml)[1]
