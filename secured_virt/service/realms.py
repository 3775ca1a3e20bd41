"""Realms in the service: the realm steps of the mediation table, and ``svirt-admin realm``.

Why here: the realm of a VM is in its metadata (the backend), the caller's realms come from the
realms file and NSS, and the checks must run for every operation the same way; the façade
calls ``_realm_check`` for the ``realm`` step (before RBAC, inside the gate) and
``_realm_resources`` for ``realm_resources`` (beside the disk fence).

``svirt-admin realm ACTION`` is administrative RBAC in the spirit of ARBAC97 with the realm as
the range: root may do everything; a realm's admins (the realms file's ``<Admin>``) may, in
their realm only, add and remove members (can-assign's prerequisite: nobody who is a member
of another realm), define realm roles whose grants name only the realm's VMs and the
operations root allows the realm (PRA), and assign and revoke those roles to the realm's
members (URA; revocation is the explicit assignment only).  Anything naming a user, group,
role, VM or label outside the realm is refused (exit 3) and audited; create and rm are
root's.  Every change shows its impact (who gains or loses what, as ``svirt-admin edit``
does), is written to the realm's own file by svirtd (root-owned, atomic), and takes effect at
once (the role files are reloaded).
"""

from __future__ import annotations

import contextlib
import logging

from secured_virt.access.gate import Target, Verdict, acting_as
from secured_virt.requests import (
    EXIT_BAD_POLICY,
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Reply,
)

from .errors import UserError

log = logging.getLogger("secured_virt.service.realms")

ACTIONS = (
    "list",
    "show",
    "create",
    "rm",
    "add-member",
    "rm-member",
    "assign",
    "deassign",
    "grant",
    "revoke",
)


class RealmCommands:
    """Mixed into ``Service``."""

    # -- set-up and reload -------------------------------------------------------------------
    def _init_tenancy(self) -> None:
        from secured_virt.tenancy.check import Tenancy
        from secured_virt.tenancy.realmfiles import RealmFiles

        self.tenancy = Tenancy()
        self.realm_error: str | None = None
        self.realm_files = RealmFiles(
            getattr(self.config, "realm_state_dir", "/var/lib/secured-virt/realms")
        )
        self._reload_realms()

    def _reload_realms(self) -> list[str]:
        """Re-read root's realms file; a bad one keeps the last good realms (fail closed on
        the first load: with a realms file that does not load, nobody but root acts)."""
        from secured_virt.access.operations import CATALOGUE
        from secured_virt.tenancy.model import RealmsError, load_realms

        path = getattr(self.config, "realms", None)
        try:
            realms = load_realms(path, CATALOGUE.names)
        except RealmsError as exc:
            self.realm_error = str(exc)
            log.error("realms file: %s", exc)
            return [f"realms: {exc}"]
        self.realm_error = None
        self.tenancy.realms = realms
        for w in realms.warnings:
            log.warning("realms file: %s", w)
        return []

    def _realm_extend(self, builder):
        """rbac.load's ``extend``: the realms' own files merged with root's UA/PA."""
        from secured_virt.access.operations import CATALOGUE

        if not self.tenancy:
            self.realm_files.docs, self.realm_files.errors = {}, {}
            return ""
        text = self.realm_files.merge(builder, self.tenancy, CATALOGUE.names)
        for realm, err in self.realm_files.errors.items():
            log.error("realm '%s': %s", realm, err)
        return text

    # -- the mediation steps -----------------------------------------------------------------
    def _realm_user(self, ident) -> str:
        return acting_as(ident) or ident.user

    def _realm_check(self, ident, op, target: Target):
        """The ``realm`` step as the gate's callable (None when there is nothing to check)."""
        if self.realm_error is not None and not self._privileged(ident):
            why = f"the realms file does not load ({self.realm_error}); only root may act"
            return lambda: why
        if not self.tenancy:
            return None
        host = getattr(self.config, "host_object", "Domain-0")
        vm = None if target.name in (host, "*") or op.scope == "host" else target.name
        label = (target.arguments or {}).get("label") if target.arguments else None
        if vm is not None and not (target.attrs or {}).get("realm"):
            with contextlib.suppress(Exception):  # the audit record names the realm
                vr = self.tenancy.vm_realm(vm, target.attrs)
                if vr:
                    target.attrs = {**dict(target.attrs or {}), "realm": vr}

        def check():
            return self.tenancy.refusal(
                self._realm_user(ident),
                root=self._privileged(ident),
                op_name=op.name,
                op_scope=op.scope,
                vm=vm,
                attrs=target.attrs,
                label=label,
            )

        return check

    def _realm_resources(self, op_name: str, target: Target, eff) -> None:
        """The ``realm_resources`` step: raise UserError(exit 3) for an image of another
        realm, or outside the VM's realm's storage."""
        if not self.tenancy:
            return
        from secured_virt.confinement import vmmeta

        paths: list[str] = []
        try:
            if eff.device is not None:
                xml = f"<domain><name>x</name><devices>{eff.device}</devices></domain>"
                found, _n = vmmeta.domain_devices(xml)
            elif eff.domain_xml is not None:
                found, _n = vmmeta.domain_devices(eff.domain_xml)
            else:
                found = []
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"{op_name}: {exc}", EXIT_DENIED) from None
        paths = [r.split(":", 1)[1] for r in found]
        meta = eff.meta if eff.meta is not None else self._meta(target.name)
        attrs = dict(target.attrs or {})
        if meta is not None and meta.realm:
            attrs["realm"] = meta.realm
        from secured_virt.tenancy.check import RealmConflict

        try:
            vr = self.tenancy.vm_realm(target.name, attrs)
        except RealmConflict as exc:
            raise UserError(f"{op_name}: {exc}", EXIT_DENIED) from None
        why = self.tenancy.resources_refusal(target.name, vr, paths)
        if why:
            raise UserError(f"{op_name}: {why}", EXIT_DENIED)

    def _realm_for_new(self, ident, name: str) -> str | None:
        """The realm a new VM named ``name`` is recorded in (None: no realm)."""
        if not self.tenancy:
            return None
        from secured_virt.tenancy.check import RealmConflict

        try:
            realm = self.tenancy.realm_for_new(
                self._realm_user(ident), name, root=self._privileged(ident)
            )
        except RealmConflict as exc:
            raise UserError(str(exc), EXIT_DENIED) from None
        return realm or None

    def _realm_visible(self, ident, domains, metas):
        """``list``: only the VMs of the caller's realms (root: all)."""
        if not self.tenancy or self._privileged(ident):
            return domains
        mine = set(self.tenancy.realms_of(self._realm_user(ident)))
        out = []
        for d in domains:
            try:
                vr = self.tenancy.vm_realm(d.name, metas[d.name])
            except Exception:  # noqa: S112 - a conflicted VM is shown to nobody but root
                continue
            if vr in mine or (not vr and not mine):
                out.append(d)
        return out

    def _realm_of_row(self, name: str, meta) -> str | None:
        if not self.tenancy:
            return meta.realm if meta is not None else None
        try:
            return self.tenancy.vm_realm(name, meta.attrs() if meta is not None else {}) or None
        except Exception:
            return None

    # -- svirt-admin realm -------------------------------------------------------------------
    def _cmd_realm(self, ident, args, interaction):
        action = args.get("action")
        if action not in ACTIONS:
            return Reply(
                EXIT_USAGE, message=f"realm: unknown action {action!r} ({', '.join(ACTIONS)})"
            )
        if self.realm_error is not None:
            return Reply(
                EXIT_BAD_POLICY, message=f"realm: the realms file does not load: {self.realm_error}"
            )
        name = args.get("realm")
        if action == "list":
            return self._realm_list(ident)
        if not isinstance(name, str) or not name:
            return Reply(EXIT_USAGE, message=f"realm {action}: a realm name is required")
        if action in ("create", "rm"):
            return self._realm_root_edit(ident, action, name, args)
        realm = self.tenancy.realms.get(name)
        if realm is None:
            return Reply(
                EXIT_FAILED, message=f"realm '{name}' does not exist (svirt-admin realm list)"
            )
        if action == "show":
            return self._realm_show(ident, realm)
        return self._realm_admin_edit(ident, action, realm, args)

    def _realm_target(self, name: str) -> Target:
        return Target(f"realm:{name}", None, {"realm": name})

    def _realm_refuse(self, ident, name: str, why: str, status: int = EXIT_DENIED) -> Reply:
        op = self._op("realm-admin")
        v = self.gate.record(
            ident, op, self._realm_target(name), Verdict(False, "realm", why, status)
        )
        if v.check == "audit":
            return Reply(EXIT_FAILED, message=v.rule)
        return Reply(status, message=v.denial_message(), check="realm")

    def _realm_allow(self, ident, name: str, rule: str) -> Verdict:
        op = self._op("realm-admin")
        return self.gate.record(ident, op, self._realm_target(name), Verdict(True, "realm", rule))

    def _realm_list(self, ident) -> Reply:
        user = self._realm_user(ident)
        t = self.tenancy
        rows = []
        for r in sorted(t.realms.realms.values(), key=lambda r: r.name):
            if not self._privileged(ident) and not t.is_member(user, r):
                continue
            rows.append(
                {
                    "name": r.name,
                    "admin": t.is_admin(user, r) or self._privileged(ident),
                    "pool": r.pool,
                    "path": r.path,
                }
            )
        return Reply(EXIT_OK, data={"realms": rows, "configured": bool(t)})

    def _realm_vms(self, name: str) -> list[str]:
        out = []
        for d in self.backend.list_domains(include_inactive=True):
            meta = self._meta(d.name)
            with contextlib.suppress(Exception):
                if self.tenancy.vm_realm(d.name, meta.attrs()) == name:
                    out.append(d.name)
        return sorted(out)

    def _realm_show(self, ident, realm) -> Reply:
        user = self._realm_user(ident)
        if not self._privileged(ident) and not self.tenancy.is_member(user, realm):
            return self._realm_refuse(
                ident, realm.name, f"'{user}' is not a member of realm '{realm.name}'"
            )
        doc = self.realm_files.docs.get(realm.name)
        data = realm.as_dict()
        data["vms_now"] = self._realm_vms(realm.name)
        data["file"] = {
            "members": {"users": sorted(doc.users), "groups": sorted(doc.groups)} if doc else {},
            "roles": {
                r: {"vms": sorted(v), "operations": sorted(o)}
                for r, (v, o) in (doc.roles.items() if doc else ())
            },
            "assignments": [list(a) for a in sorted(doc.assigns)] if doc else [],
            "error": self.realm_files.errors.get(realm.name),
        }
        return Reply(EXIT_OK, data={"realm": data})

    # -- root: create / rm -------------------------------------------------------------------
    def _realm_root_edit(self, ident, action: str, name: str, args) -> Reply:
        if not self._privileged(ident):
            return self._realm_refuse(
                ident, name, f"only root may {'create' if action == 'create' else 'remove'} realms"
            )
        from lxml import etree

        from secured_virt.access.operations import CATALOGUE
        from secured_virt.fsutil import atomic_write
        from secured_virt.tenancy.model import NAME_RE, RealmsError, parse_realms

        path = self.config.realms
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            data = b"<Realms>\n</Realms>\n"
        root = etree.fromstring(data)
        existing = [el for el in root.iterchildren("Realm") if el.get("name") == name]
        if action == "create":
            if not NAME_RE.fullmatch(name):
                return Reply(
                    EXIT_USAGE,
                    message=f"realm create: '{name}' is not a realm name "
                    "([a-z][a-z0-9_-]*, at most 32 characters)",
                )
            if existing:
                return Reply(EXIT_FAILED, message=f"realm '{name}' already exists")
            el = etree.SubElement(root, "Realm", name=name)
            el.tail = "\n"
            if args.get("pool") and args.get("path"):
                etree.SubElement(el, "Storage", pool=args["pool"], path=args["path"])
        else:
            if not existing:
                return Reply(EXIT_FAILED, message=f"realm '{name}' does not exist")
            vms = self._realm_vms(name)
            if vms:
                return self._realm_refuse(
                    ident,
                    name,
                    f"realm '{name}' still has VMs: {', '.join(vms)}; undefine them or have "
                    "root move them first",
                    EXIT_FAILED,
                )
            root.remove(existing[0])
        new = etree.tostring(root, encoding="utf-8")
        try:
            parse_realms(new, path, CATALOGUE.names)
        except RealmsError as exc:
            return Reply(
                EXIT_BAD_POLICY, message=f"realm {action}: the result would not load: {exc}"
            )
        v = self._realm_allow(ident, name, f"root {action}s realm '{name}'")
        if not v.allowed:
            return Reply(EXIT_FAILED, message=v.rule)
        atomic_write(path, new, mode=0o644)
        if action == "rm":
            self.realm_files.remove(name)
        self._reload_realms()
        self.store.reload()
        self.gate.finish(v, "ok")
        verb = "created" if action == "create" else "removed"
        return Reply(EXIT_OK, data={"message": f"Realm '{name}' {verb}"})

    # -- realm admins: members, roles, grants, assignments -----------------------------------
    def _realm_admin_edit(self, ident, action: str, realm, args) -> Reply:
        import copy

        user = self._realm_user(ident)
        t = self.tenancy
        if not self._privileged(ident) and not t.is_admin(user, realm):
            return self._realm_refuse(
                ident, realm.name, f"'{user}' is not an admin of realm '{realm.name}'"
            )
        from secured_virt.tenancy.realmfiles import RealmDoc, check_doc

        doc = copy.deepcopy(self.realm_files.docs.get(realm.name) or RealmDoc(realm.name))
        try:
            change = self._realm_apply(action, realm, doc, args)
        except _Refused as exc:
            return self._realm_refuse(ident, realm.name, str(exc))
        except UserError as exc:
            return Reply(exc.status, message=str(exc))
        from secured_virt.access.operations import CATALOGUE

        errs = check_doc(doc, t.realms, CATALOGUE.names)
        if errs:
            return self._realm_refuse(ident, realm.name, "; ".join(errs))
        preview, err = self._realm_impact(realm.name, doc)
        if err:
            return Reply(EXIT_BAD_POLICY, message=f"realm {action}: {err}")
        if args.get("dry_run"):
            return Reply(EXIT_OK, data={"message": f"(dry run) {change}", "impact": preview})
        v = self._realm_allow(ident, realm.name, f"{change} (realm '{realm.name}', by {user})")
        if not v.allowed:
            return Reply(EXIT_FAILED, message=v.rule)
        try:
            self.realm_files.write(doc)
        except OSError as exc:
            self.gate.finish(v, f"error: {exc}")
            return Reply(EXIT_FAILED, message=f"realm {action}: cannot write the realm file: {exc}")
        res = self.store.reload()
        self.gate.finish(v, "ok" if res.ok else f"error: {'; '.join(res.errors)}")
        if not res.ok:
            return Reply(
                EXIT_BAD_POLICY,
                message=f"written, but the policy did not reload: {'; '.join(res.errors)}",
            )
        return Reply(EXIT_OK, data={"message": change, "impact": preview})

    def _realm_impact(self, realm: str, doc):
        """What the change does to people (as ``svirt-admin edit`` shows it)."""
        import rbac
        from secured_virt.access.operations import CATALOGUE
        from secured_virt.rolefiles import impact
        from secured_virt.tenancy.realmfiles import RealmFiles

        trial = RealmFiles(self.realm_files.dir)

        def extend(b):
            saved = dict(self.tenancy.extra)
            try:
                return _merge_override(trial, b, self.tenancy, CATALOGUE.names, realm, doc)
            finally:
                self.tenancy.extra = saved

        try:
            after = rbac.load(
                self.store.ua_path, self.store.pa_path, CATALOGUE.names, extend=extend
            )
        except rbac.PolicyError as exc:
            return None, f"the result would not load: {exc}"
        before = self.store.policy
        return impact.compute(before, after).render(), None

    def _realm_apply(self, action: str, realm, doc, args) -> str:
        t = self.tenancy
        who_user, who_group = args.get("user"), args.get("group")
        role = args.get("role")
        if action in ("add-member", "rm-member", "assign", "deassign") and (
            (who_user is None) == (who_group is None)
        ):
            raise UserError(f"realm {action}: give exactly one of --user or --group", EXIT_USAGE)
        if action == "add-member":
            if who_user is not None:
                for other in t.realms.realms.values():
                    if other.name != realm.name and t.is_member(who_user, other):
                        raise _Refused(
                            f"user '{who_user}' is a member of realm '{other.name}'; a realm "
                            "admin may add only users of no other realm"
                        )
                doc.users.add(who_user)
                return f"user '{who_user}' added to realm '{realm.name}'"
            if t.groups.gid_of(who_group) is None:
                raise _Refused(f"group '{who_group}' cannot be resolved through NSS")
            for other in t.realms.realms.values():
                _eu, eg = t.extra.get(other.name, ((), ()))
                if other.name != realm.name and who_group in (
                    *other.groups,
                    *other.admin_groups,
                    *eg,
                ):
                    raise _Refused(f"group '{who_group}' belongs to realm '{other.name}'")
            doc.groups.add(who_group)
            return f"group '{who_group}' added to realm '{realm.name}'"
        if action == "rm-member":
            pool = doc.users if who_user is not None else doc.groups
            who = who_user or who_group
            if who not in pool:
                raise _Refused(
                    f"'{who}' is not a member the realm's admins added (members root lists in "
                    "the realms file are root's to remove)"
                )
            pool.discard(who)
            kind = "user" if who_user is not None else "group"
            doc.assigns = {a for a in doc.assigns if (a[0], a[1]) != (kind, who)}
            return f"{kind} '{who}' removed from realm '{realm.name}' (with its realm roles)"
        if action in ("assign", "deassign"):
            if not role or role not in doc.roles:
                raise _Refused(
                    f"role '{role}' is not a role of realm '{realm.name}' (its roles: "
                    f"{', '.join(sorted(doc.roles)) or 'none'})"
                )
            kind, who = ("user", who_user) if who_user is not None else ("group", who_group)
            if action == "assign":
                member = (
                    t.is_member(who, realm) or who in doc.users
                    if kind == "user"
                    else who in (*realm.groups, *realm.admin_groups) or who in doc.groups
                )
                if not member:
                    raise _Refused(f"{kind} '{who}' is not a member of realm '{realm.name}'")
                doc.assigns.add((kind, who, role))
                return f"role '{role}' of realm '{realm.name}' assigned to {kind} '{who}'"
            if (kind, who, role) not in doc.assigns:
                raise UserError(
                    f"{kind} '{who}' is not assigned role '{role}' in realm '{realm.name}'",
                    EXIT_FAILED,
                )
            doc.assigns.discard((kind, who, role))
            return f"role '{role}' of realm '{realm.name}' revoked from {kind} '{who}'"
        # grant / revoke
        if not role or "/" in role:
            raise UserError(f"realm {action}: a role name (without '/') is required", EXIT_USAGE)
        ops = list(args.get("operations") or ())
        vms = list(args.get("vms") or ())
        from secured_virt.access.operations import CATALOGUE

        for op in ops:
            try:
                o = CATALOGUE.get(op)
            except KeyError:
                raise UserError(
                    f"realm {action}: operation '{op}' is not in the catalogue", EXIT_USAGE
                ) from None
            if realm.operations and o.name not in realm.operations:
                raise _Refused(f"root does not allow realm '{realm.name}' the operation '{o.name}'")
            if not realm.operations and o.scope != "vm":
                raise _Refused(
                    f"'{o.name}' is a host operation; root has not allowed it to "
                    f"realm '{realm.name}'"
                )
        ops = [CATALOGUE.get(op).name for op in ops]
        if action == "grant":
            for vm in vms:
                vr = self._vm_realm_now(vm)
                if vr != realm.name:
                    from secured_virt.tenancy.check import shown

                    raise _Refused(f"VM '{vm}' belongs to {shown(vr)}, not to realm '{realm.name}'")
            cur_v, cur_o = doc.roles.get(role, (set(), set()))
            doc.roles[role] = (cur_v | set(vms), cur_o | set(ops))
            what, where = ", ".join(ops) or "nothing new", ", ".join(vms) or "no new VM"
            return f"role '{role}' of realm '{realm.name}' may {what} on {where}"
        if role not in doc.roles:
            raise _Refused(f"role '{role}' is not a role of realm '{realm.name}'")
        cur_v, cur_o = doc.roles[role]
        if not ops and not vms:
            del doc.roles[role]
            doc.assigns = {a for a in doc.assigns if a[2] != role}
            return f"role '{role}' of realm '{realm.name}' removed"
        doc.roles[role] = (cur_v - set(vms), cur_o - set(ops))
        what, where = ", ".join(ops) or "-", ", ".join(vms) or "-"
        return f"role '{role}' of realm '{realm.name}' no longer has {what} / {where}"

    def _vm_realm_now(self, vm: str) -> str:
        """The realm of VM ``vm``: its metadata when it exists, else the claims (a VM that
        does not exist yet and no realm claims goes nowhere: refused)."""
        from secured_virt.backends.base import NoSuchDomain

        try:
            self.backend.lookup(vm)
            attrs = self._meta(vm).attrs()
        except NoSuchDomain:
            attrs = {}
        return self.tenancy.vm_realm(vm, attrs)


class _Refused(Exception):
    """A realm admin's change that reaches outside the realm (exit 3, audited)."""


def _merge_override(files, builder, tenancy, catalogue, realm, doc):
    """RealmFiles.merge with ``doc`` in place of ``realm``'s file (for the impact preview)."""
    from secured_virt.tenancy import realmfiles

    orig = files.load_doc

    def load_doc(name, realms, cat, data=None):
        if name == realm:
            return doc, None
        return orig(name, realms, cat, data)

    files.load_doc = load_doc
    try:
        return realmfiles.RealmFiles.merge(files, builder, tenancy, catalogue)
    finally:
        files.load_doc = orig
