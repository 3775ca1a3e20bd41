"""The sHype/ACM policy-management requests (``svirt-admin policy ...``), as Service methods.

They live in the use-case layer, not in the CLI, so a delegated policy manager (a non-root user
holding e.g. ``policy-update`` on the host object ``Domain-0``) runs them through svirtd with
the same RBAC check and audit record as root's direct invocation.  The policy XML is read by the
client, as the caller, and travels in the request.
"""

from __future__ import annotations

import base64

from secured_virt.requests import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Reply

from .errors import UserError


class PolicyCommands:
    """Mixed into Service: one ``_cmd_policy_*`` per svirt-admin policy action."""

    def _policy_state(self, st) -> Reply:
        data = {
            "xserr": st.xserr,
            "message": st.message,
            "policy": st.xs_ref,
            "version": st.version,
            "flags": st.flags,
            "errors": [list(e) for e in st.errors],
            "problems": list(st.problems),
        }
        return Reply(
            EXIT_OK if st.xserr == 0 else EXIT_FAILED,
            data=data,
            message="" if st.xserr == 0 else st.message + "".join(f"\n  {p}" for p in st.problems),
        )

    def _cmd_policy_show(self, ident, args, interaction):
        acm = self._need_acm()

        def act():
            st = acm.host.get_policy()
            c = acm.active
            return {
                "xstype": acm.host.get_xstype_name(),
                "policy": c.name,
                "version": c.version,
                "flags": st.flags,
                "loaded": True,
                "boot": bool(st.flags & 1),
                "installed": acm.host.list_policies(),
                "warnings": list(acm.host.warnings),
                "xml": c.xml.decode("utf-8", "replace") if args.get("xml") else None,
                # seed 000's ACMPolicy.get_header record (secured_virt.xenapi)
                "header": c.policy.header.as_record(),
            }

        return self._host_op(ident, "policy-show", interaction, act)

    def _cmd_policy_map(self, ident, args, interaction):
        acm = self._need_acm()
        return self._host_op(
            ident, "policy-show", interaction, lambda: {"map": acm.active.map_text}
        )

    def _cmd_policy_binary(self, ident, args, interaction):
        acm = self._need_acm()
        return self._host_op(
            ident,
            "policy-show",
            interaction,
            lambda: {"binary_b64": base64.b64encode(acm.active.binary).decode()},
        )

    def _cmd_policy_types(self, ident, args, interaction):
        acm = self._need_acm()
        p = acm.active.policy
        return self._host_op(
            ident,
            "policy-show",
            interaction,
            lambda: {"ste": list(p.ste_types), "chwall": list(p.chwall_types)},
        )

    def _cmd_policy_conflicts(self, ident, args, interaction):
        acm = self._need_acm()
        p = acm.active.policy
        return self._host_op(
            ident,
            "policy-show",
            interaction,
            lambda: {
                "conflict_sets": [
                    {"name": cs.name, "types": list(cs.types)} for cs in p.conflict_sets
                ]
            },
        )

    def _cmd_policy_labels(self, ident, args, interaction):
        return self._cmd_labels(ident, args, interaction)

    def _cmd_policy_load(self, ident, args, interaction):
        """Install and load a policy (a new name), or update the loaded one (same name).

        ``dry_run``: only say whether the running domains would allow it, and why not."""
        import policy

        acm = self._need_acm()
        xml = args.get("xml")
        if not isinstance(xml, str):
            return Reply(2, message="the policy XML must be given (svirt-admin reads FILE)")
        host = self.host_target()
        if not any(
            self.gate.may(ident, self._op(n), host) for n in ("policy-load", "policy-update")
        ):
            # refused before the caller's XML is parsed; the denial is audited as usual
            return self._host_op(
                ident, "policy-load", interaction, _policy_changed, performs=("acm_policy",)
            )
        try:
            new = policy.AcmPolicy.from_xml(xml.encode(), source=args.get("file") or "policy")
            compiled = new.compile()
        except policy.PolicyError as exc:
            return Reply(EXIT_FAILED, message=str(exc))
        op_name = "policy-update" if new.name == acm.active.name else "policy-load"
        flags = policy.XS_INST_LOAD | (policy.XS_INST_BOOT if args.get("boot") else 0)

        def act():
            with acm.exclusive():
                if args.get("dry_run"):
                    errors = acm.host.mediator.check_update(compiled)
                    return {
                        "dry_run": True,
                        "policy": new.name,
                        "version": new.version,
                        "would_load": not errors,
                        "errors": [
                            {"code": e.code, "detail": e.detail, "message": e.message}
                            for e in errors
                        ],
                        "hint": load_order_hint(args.get("file")) if errors else "",
                    }
                st = acm.host.set_policy(
                    xml.encode(),
                    flags,
                    bool(args.get("overwrite")),
                    source=args.get("file") or "policy",
                )
            if st.xserr:
                text = st.message + "".join(f"\n  {p}" for p in st.problems)
                if st.problems and st.xserr in _blocked_by_running():
                    text += "\n" + load_order_hint(args.get("file"))
                raise UserError(text, EXIT_FAILED)
            return {
                "message": st.message,
                "policy": st.xs_ref,
                "version": st.version,
                "flags": st.flags,
            }

        return self._host_op(ident, op_name, interaction, act, performs=("acm_policy",))

    _cmd_policy_update = _cmd_policy_load

    # -- editing the loaded policy (seed 000's XSMPolicy calls), operation policy-edit -------
    def _cmd_policy_edit(self, ident, args, interaction):
        """One edit of the loaded policy - header, a type, a conflict set, a label - applied
        as one all-or-nothing update (the editor raises the version and names FromPolicy),
        refused with the same codes as ``policy update``; ``dry_run`` previews it: the old and
        new XML and whether the running domains allow it."""
        acm = self._need_acm()
        edit = args.get("edit")
        call = _EDITS.get(edit) if isinstance(edit, str) else None
        if call is None:
            raise UserError(
                f"policy edit: unknown edit {edit!r} (use {', '.join(sorted(_EDITS))})", EXIT_USAGE
            )
        try:
            apply = call(args)  # arguments checked before any decision: usage errors, exit 2
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"policy {edit}: {exc}", EXIT_USAGE) from None

        def act():
            import policy

            with acm.exclusive():
                old_xml = acm.active.xml.decode("utf-8", "replace")
                try:
                    handle = acm.host.policy(dry_run=bool(args.get("dry_run")))
                    st = apply(handle)
                except policy.XsmError as exc:
                    raise UserError(str(exc), EXIT_FAILED) from None
            if args.get("dry_run"):
                return {
                    "dry_run": True,
                    "edit": edit,
                    "policy": handle.preview.name if handle.preview else acm.active.name,
                    "version": handle.preview.version if handle.preview else "",
                    "would_load": st.xserr == 0,
                    "message": st.message,
                    "errors": [
                        {"code": c, "detail": d, "message": m}
                        for (c, d), m in zip(st.errors, st.problems, strict=False)
                    ]
                    or (
                        []
                        if st.xserr == 0
                        else [{"code": st.xserr, "detail": 0, "message": st.message}]
                    ),
                    "old_xml": old_xml,
                    "new_xml": handle.preview.xml.decode("utf-8", "replace")
                    if handle.preview
                    else None,
                }
            if st.xserr:
                raise UserError(st.message + "".join(f"\n  {p}" for p in st.problems), EXIT_FAILED)
            return {
                "message": f"{edit}: {st.message}",
                "policy": st.xs_ref,
                "version": st.version,
                "flags": st.flags,
            }

        return self._host_op(ident, "policy-edit", interaction, act, performs=("acm_policy",))

    def _cmd_policy_reset(self, ident, args, interaction):
        acm = self._need_acm()

        def act():
            with acm.exclusive():
                st = acm.host.reset_policy()
            if st.xserr:
                raise UserError(st.message + "".join(f"\n  {p}" for p in st.problems), EXIT_FAILED)
            return {"message": st.message}

        return self._host_op(ident, "policy-reset", interaction, act, performs=("acm_policy",))

    def _cmd_policy_rm_boot(self, ident, args, interaction):
        acm = self._need_acm()

        def act():
            acm.host.rm_boot_policy()
            return {"message": "boot policy removed: the next boot loads DEFAULT"}

        return self._host_op(ident, "policy-rm-boot", interaction, act)


def _blocked_by_running() -> frozenset[int]:
    """The refusals of a load that name running VMs in the way (not a broken policy file)."""
    import policy

    X = policy.Xserr
    return frozenset({X.RESOURCE_ACCESS, X.BAD_LABEL, X.HV_OP_FAILED, X.VM_IN_CONFLICT})


def load_order_hint(file: str | None) -> str:
    """What to do when running VMs stand in the way of a new policy.

    A policy is checked against every running domain (a VM must not lose its disks or run
    beside a conflict), and a label can only be given once its policy is loaded, so the
    disks of a running VM cannot be labelled first: the VMs in the way are stopped, the
    policy loaded, VMs and disks labelled, and the VMs started again."""
    f = file or "FILE"
    return (
        "The running VMs named above stand in the way: a new policy is checked against "
        "every running VM, and labels of the new policy can be given only once it is "
        "loaded.  The order:\n"
        "  1. stop those VMs: svirsh shutdown VM (or svirsh destroy VM)\n"
        f"  2. load the policy: svirt-admin policy load {f}\n"
        "  3. label each VM and its disks with labels of the new policy: "
        "svirsh setlabel VM LABEL, svirsh setlabel --resource file:/path/disk.img LABEL\n"
        "  4. start them again: svirsh start VM\n"
        f"(svirt-admin policy load {f} --dry-run shows what stands in the way, changing "
        "nothing)"
    )


def _policy_changed():
    """The action of a policy load refused before parsing, if the UA/PA changed meanwhile."""
    raise UserError("the role policy changed while the request was checked; run it again")


def _names(value, what: str) -> list[str]:
    """A list of type names from a request: a list, or one string separated by ','."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"give the {what} as names separated by ','")
    return [v.strip() for v in value]


def _name(args, key: str, what: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"the {what} is required")
    return v.strip()


def _component(args) -> str:
    c = _name(args, "component", "policy component (ste or chwall)").lower()
    if c not in ("ste", "chwall"):
        raise ValueError(f"component {c!r}: use ste or chwall")
    return c


def _header(args):
    fields = {
        k: args[k]
        for k in ("policyurl", "reference", "date", "namespaceurl", "version")
        if isinstance(args.get(k), str)
    }
    if not fields:
        raise ValueError(
            "give at least one of --url, --reference, --date, --namespace-url, --version"
        )
    return lambda h: h.set_header(**fields)


def _label(args):
    kind = _name(args, "kind", "label kind (vm or res)").lower()
    if kind not in ("vm", "res"):
        raise ValueError(f"label kind {kind!r}: use vm or res")
    record = {
        "type": kind,
        "name": _name(args, "name", "label name"),
        "stetypes": _names(args.get("ste") or [], "STE types") if args.get("ste") else [],
        "chwalltypes": _names(args.get("chwall"), "Chinese Wall types")
        if args.get("chwall")
        else [],
    }
    return lambda h: h.add_label(record)


#: edit name -> (request args -> the call on an XsmPolicy handle); the calls are seed 000's
_EDITS = {
    "set-header": _header,
    "add-type": lambda a: (lambda c, t: lambda h: h.add_type(c, t))(
        _component(a), _name(a, "type", "type name")
    ),
    "rm-type": lambda a: (lambda c, t: lambda h: h.rm_type(c, t))(
        _component(a), _name(a, "type", "type name")
    ),
    "add-conflict": lambda a: (lambda n, ts: lambda h: h.add_conflict_set(n, ts))(
        _name(a, "name", "conflict set name"), _names(a.get("types"), "conflict set's types")
    ),
    "rm-conflict": lambda a: (lambda n: lambda h: h.rm_conflict_set(n))(
        _name(a, "name", "conflict set name")
    ),
    "add-label": _label,
    "rm-label": lambda a: (lambda n, k: lambda h: h.rm_label(n, k))(
        _name(a, "name", "label name"), a.get("kind") or "any"
    ),
}
