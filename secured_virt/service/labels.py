"""The sHype/ACM label commands on domains and resources: getlabel, setlabel, relabel, labels,
resources, dry-run.

Label changes are made under the host-wide ACM lock so a check and the change it allows can
not be separated by another start.
"""

from __future__ import annotations

from secured_virt.requests import EXIT_DENIED, EXIT_FAILED

from .errors import UserError
from .support import _acm_display


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
