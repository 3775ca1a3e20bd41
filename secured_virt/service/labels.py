"""The sHype/ACM label commands on domains and resources: getlabel, setlabel, relabel, labels,
resources, dry-run.

Label changes are made under the host-wide ACM lock so a check and the change it allows can
not be separated by another start.  Which labels a caller may give is part of their grant in
PA, and the bootstrap (Domain-0) label is root's alone: see "who may give which label" below.
"""

from __future__ import annotations

from secured_virt.access.gate import acting_as
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_USAGE

from .errors import UserError
from .support import _acm_display, _missing


class LabelCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def _need_acm(self):
        if self.acm is None:
            raise UserError(
                "sHype/ACM is not enabled on this host: set 'acm = yes' in "
                "/etc/secured-virt/secured-virt.conf and load a policy "
                "(svirt-admin policy load FILE)",
                EXIT_FAILED,
            )
        return self.acm

    def _cmd_getlabel(self, ident, args, interaction):
        if args.get("resource") or args.get("vif") is not None:  # one resource or VIF
            return self._getlabel_object(ident, args, interaction)
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
            # seed 000's label record {type, label} for --json and the API
            record = self.acm.host.label_record(sec["display"]) if self.acm is not None else None
            return {"domain": name, **sec, "record": record}

        return self._run(ident, "getlabel", name, interaction, act)

    # -- who may give which label ----------------------------------------------------------
    # A label is a grant of power: it decides what a VM may run beside and which resources it
    # may use.  So for every caller but root acting as itself, the label given *and* the
    # label taken away must both be listed in the granting role's argument constraint in PA
    # (<operation name="setlabel"><Label name="dom_AliceCorp"/></operation>): a grant that
    # lists no label gives none.  The gate checks that as part of the RBAC decision
    # (Target.arguments -> RbacPolicy.decide_values), so a refusal is an audited RBAC denial
    # naming the label.  The bootstrap label (Domain-0's) is root's alone, whatever PA says:
    # that is the mandatory policy's rule, checked as the request's ACM step.

    @staticmethod
    def _label_value(acm, text: str | None) -> str | None:
        """The label name a grant must list for ``text`` (bare or ``ACM:<policy>:<label>``)."""
        import policy

        if text in (None, ""):
            return None
        try:
            lab = policy.parse_label(text, acm.active.name)
        except policy.LabelError:
            return str(text)  # matches no listed name; the label call itself says what is wrong
        return lab.name if lab.policy == acm.active.name else f"{lab.policy}:{lab.name}"

    def _label_arguments(self, acm, label, current) -> dict[str, str] | None:
        new, old = self._label_value(acm, label), self._label_value(acm, current)
        args: dict[str, str] = {}
        if new is not None:
            args["label"] = new
        if old is not None and old != new:
            args["current label"] = old
        return args or None

    def _bootstrap_rule(self, ident, acm, what: str, label, current):
        """The ACM step of a label change: only root, acting as itself, gives or takes away
        the bootstrap label (the one Domain-0 runs with)."""

        def check():
            if ident.uid == 0 and acting_as(ident) is None:
                return True, ""
            boot = acm.active.bootstrap
            for text, verb in ((label, "give it to"), (current, "take it away from")):
                if self._label_value(acm, text) == boot:
                    return False, (
                        f"'{boot}' is the bootstrap label of policy {acm.active.name} (the "
                        f"label Domain-0 runs with): only root may {verb} {what}, whatever "
                        "the role policy grants; ask root to do it"
                    )
            return True, ""

        return check

    def _cmd_setlabel(self, ident, args, interaction):
        acm = self._need_acm()
        label = args.get("label")
        if args.get("vif") is not None:  # a VM's network interface (label_objects)
            return self._setlabel_vif(ident, args, interaction)
        if args.get("resource"):
            return self._setlabel_resource(ident, acm, args.get("domain"), label, interaction)
        return self._label_vm(ident, acm, "setlabel", args.get("domain"), label, interaction)

    def _setlabel_resource(self, ident, acm, res, label, interaction):
        import policy

        if not isinstance(res, str) or not res:
            raise UserError("a resource name is required")
        try:
            current = acm.host.resource_get_label(res)
        except policy.XsmError as exc:
            raise UserError(str(exc)) from None
        target = self.host_target()
        target.arguments = self._label_arguments(acm, label, current)
        target.attrs = {**dict(target.attrs or {}), "resource": res}  # the realm step's

        def act_res():
            # under the host-wide ACM lock (_gated); ``current`` as the old label makes the
            # change compare-and-swap: a label changed since the check fails the request
            try:
                key = acm.host.resource_set_label(res, label, current)
            except policy.XsmError as exc:
                raise UserError(str(exc), _xsm_status(exc, EXIT_FAILED)) from None
            if label in (None, ""):
                return {"message": f"Resource {key} unlabelled"}
            return {"message": f"Resource {key} labelled {_shown(acm, label)}"}

        op = self._op("setlabel-resource")
        check = self._bootstrap_rule(ident, acm, f"resource {res}", label, current)
        return self._gated(ident, op, target, interaction, act_res, check, performs=("acm_label",))

    def _label_vm(self, ident, acm, op_name: str, name, label, interaction):
        """setlabel (inactive VM) and relabel (checked against the running domains)."""
        import policy

        if not isinstance(label, str) or not label.strip():
            raise UserError(f"{op_name}: a label is required (see 'svirsh labels')")
        op = self._op(op_name)
        target, info = self._resolve(name)
        if not target.exists:
            return self._gated(ident, op, target, interaction, _missing(name))
        current = acm.labels.get("vm", name)
        target.arguments = self._label_arguments(acm, label, current)

        def act():
            # under the host-wide ACM lock (_gated); ``current`` as the old label makes the
            # change compare-and-swap: a label changed since the check fails the request
            if op_name == "setlabel" and info.id is not None:
                raise UserError(
                    f"domain '{name}' is running: use 'svirsh relabel {name} "
                    f"{label}' (checked against the running domains)",
                    EXIT_FAILED,
                )
            try:
                ssidref = acm.host.vm_set_label(name, label, current)
            except policy.XsmError as exc:
                if op_name == "relabel":
                    status = _xsm_status(exc, EXIT_DENIED)
                    raise UserError(f"relabel refused: {exc}", status) from None
                raise UserError(str(exc), _xsm_status(exc, EXIT_FAILED)) from None
            if op_name == "setlabel":
                return {"message": f"Domain '{name}' labelled {_shown(acm, label)}"}
            tail = f" (running, ssidref {ssidref:#x})" if ssidref else ""
            return {"message": f"Domain '{name}' relabelled {_shown(acm, label)}{tail}"}

        check = self._bootstrap_rule(ident, acm, f"VM '{name}'", label, current)
        return self._gated(ident, op, target, interaction, act, check, performs=("acm_label",))

    def _cmd_relabel(self, ident, args, interaction):
        acm = self._need_acm()
        return self._label_vm(
            ident, acm, "relabel", args.get("domain"), args.get("label"), interaction
        )

    def _cmd_labels(self, ident, args, interaction):
        acm = self._need_acm()
        kind = args.get("type") or "vm"
        if kind not in ("vm", "res", "any"):
            raise UserError(f"--type {kind}: use vm, res or any")
        return self._host_op(
            ident,
            "policy-show",
            interaction,
            lambda: {
                "policy": acm.active.name,
                "labels": acm.host.label_names(kind),
                # each label with its kind and types (seed 000's policylabel records)
                "records": acm.host.policy().get_labels(kind),
            },
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
        if name is None and isinstance(args.get("label"), str):
            # seed 000's XSPolicy.can_run(label): could a domain with this label start now?
            # No domain: gated as dry-run on the host object (secured_virt.xenapi uses it)
            label = args["label"]

            def act_label():
                with acm.exclusive():
                    v = acm.host.can_run(label)
                return {
                    "label": _shown(acm, label),
                    "can_run": bool(v.allowed),
                    "xserr": int(getattr(v, "code", 0) or 0),
                    "reason": getattr(v, "reason", None) or getattr(v, "rule", ""),
                }

            return self._host_op(ident, "dry-run", interaction, act_label)

        def act(info):
            with acm.exclusive():
                label = acm.vm_label(name)
                report = acm.host.mediator.dry_run(label, acm.resources_of(name), name)
            # a competitor's running VM is named only to who may see it (facade._acm_refusal)
            return {"domain": name, "label": label, **self._acm_report_shown(report, ident)}

        return self._run(ident, "dry-run", name, interaction, act)


def _xsm_status(exc, otherwise: int) -> int:
    """A label the active policy does not define (or cannot be spelled) is the caller's
    mistake, a usage error (2) like an unknown option: the README's exit-code table.  Any
    other refusal keeps ``otherwise`` (1 failed, 3 denied by the policy)."""
    import policy

    bad = (policy.Xserr.BAD_LABEL, policy.Xserr.BAD_LABEL_FORMAT)
    return EXIT_USAGE if getattr(exc, "xserr", None) in bad else otherwise


def _shown(acm, label) -> str:
    """A label as secured-virt writes it back: ``ACM:<policy>:<label>``, whatever spelling
    the caller used (seed 000's ``sHype:res:P:L`` or ``(POLICY_SHYPE, "P:L")`` included)."""
    import policy

    try:
        return str(policy.parse_label(label, acm.active.name))
    except policy.LabelError:
        return f"ACM:{acm.active.name}:{label}"
