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
import os

from secured_virt.access.gate import Target, Verdict, acting_as
from secured_virt.lazylog import lazy_logger
from secured_virt.requests import (
    EXIT_BAD_POLICY,
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Reply,
)

from .errors import UserError

log = lazy_logger("secured_virt.service.realms")  # logging loads at the first message (issue 18)


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
    "setup",
    "move",
    "review",
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
        if op.scope == "pool":  # a volume operation: the pool's realm (service.volumes)
            return self._pool_realm_check(ident, op, target)
        if self.realm_error is not None and not self._privileged(ident):
            why = f"the realms file does not load ({self.realm_error}); only root may act"
            return lambda: why
        if not self.tenancy:
            return None
        host = getattr(self.config, "host_object", "Domain-0")
        vm = None if target.name in (host, "*") or op.scope == "host" else target.name
        label = (target.arguments or {}).get("label") if target.arguments else None
        known = bool((target.attrs or {}).get("realm"))  # the VM's realm is in its attrs
        if vm is not None and not known:
            with contextlib.suppress(Exception):  # the audit record names the realm
                vr = self.tenancy.vm_realm(vm, target.attrs)
                if vr:
                    target.attrs = {**dict(target.attrs or {}), "realm": vr}
                known = True  # (no realm: no claim covers it, the root realm's VM)

        resource = (target.attrs or {}).get("resource") if op.name == "setlabel-resource" else None
        vr = (target.attrs or {}).get("realm") if vm is not None else None
        dac_vm = op.name == "migrate" and not self._privileged(ident) and self._realm_dac(vr)

        def check():
            if resource is not None:  # labels within the realm's labels, resources within it
                args_ = target.arguments or {}
                why = self.tenancy.resource_label_refusal(
                    self._realm_user(ident),
                    root=self._privileged(ident),
                    resource=resource,
                    label=args_.get("label"),
                    current=args_.get("current label"),
                )
                if why:
                    return why
            if dac_vm:  # the destination's uid for this realm is not known here
                return (
                    f"VM '{vm}' of realm '{vr}' runs as the realm's user ({dac_vm}); another "
                    "host may give that uid to someone else, so only root migrates it, after "
                    f"checking that realm '{vr}''s user has the same uid and gid there"
                )
            return self.tenancy.refusal(
                self._realm_user(ident),
                root=self._privileged(ident),
                op_name=op.name,
                op_scope=op.scope,
                vm=vm,
                attrs=target.attrs,
                label=label,
            )

        if (
            vm is not None
            and known
            and label is None
            and resource is None
            and not dac_vm
            and not target.arguments
            and not self._privileged(ident)
        ):
            # what refusal() checks beyond the VM's realm and the caller's is absent here, so
            # the gate may ask rbac's C index for both checks and RBAC in one call (None: it
            # runs check() and then RBAC, as without it; tenancy.check.Tenancy.partitions)
            from secured_virt.access.operations import CATALOGUE

            parts = self.tenancy.partitions(CATALOGUE.names)
            op_id, obj = op.id, target.name

            def fast(pol, user):
                return pol.decide_in(parts, user, op_id, obj, target.attrs)

            check.fast = fast
        return check

    def _realm_resources(self, op_name: str, target: Target, eff) -> None:
        """The ``realm_resources`` step: raise UserError(exit 3) for an image of another
        realm, or outside the VM's realm's storage."""
        if not self.tenancy:
            return
        from secured_virt.confinement import vmmeta

        try:  # file/block paths with their backing chains, and volumes by pool
            paths, pools = self._disk_refs(eff)  # (service.volumes)
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"{op_name}: {exc}", EXIT_DENIED) from None
        meta = eff.meta if eff.meta is not None else self._meta(target.name)
        attrs = dict(target.attrs or {})
        if meta is not None and meta.realm:
            attrs["realm"] = meta.realm
        from secured_virt.tenancy.check import RealmConflict

        try:
            vr = self.tenancy.vm_realm(target.name, attrs)
        except RealmConflict as exc:
            raise UserError(f"{op_name}: {exc}", EXIT_DENIED) from None
        why = self.tenancy.pools_refusal(target.name, vr, pools)
        why = why or self.tenancy.resources_refusal(target.name, vr, paths)
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

    # -- sVirt made real: each realm's QEMU user (DAC) and category -------------------------
    def _realm_categories(self) -> dict[str, int]:
        """realm -> its own MCS category, for shype.categories (its VMs get (r, c_j))."""
        realms = self.tenancy.realms.realms.values()
        return {r.name: r.category for r in realms if r.category is not None}

    def _realm_dac(self, realm: str | None):
        """The DacLabel the QEMU of ``realm``'s VMs runs as; None for the root realm and for a
        realm not set up yet (``svirt-admin realm setup``): those run as libvirt's default."""
        if not realm or not self.tenancy:
            return None
        r = self.tenancy.realms.get(realm)
        if r is None or r.qemu_uid is None:
            return None
        from secured_virt.confinement.dac import DacLabel

        return DacLabel(r.qemu_uid, r.qemu_gid)

    def _vm_realm_of(self, target: Target, meta=None) -> str | None:
        attrs = dict(target.attrs or {})
        if meta is not None and getattr(meta, "realm", None):
            attrs["realm"] = meta.realm
        try:
            return self.tenancy.vm_realm(target.name, attrs) or None
        except Exception:  # a conflicted VM was refused by the realm step already
            return None

    def _dac_images(self, xml: str, realm: str, label) -> None:
        """Give the images of ``xml`` that lie in ``realm``'s storage to the realm's QEMU user,
        mode 0600 (new ones, and any whose owner or mode drifted); images elsewhere were
        refused by the realm_resources step, or are root's and stay as they are.  A read-only
        disk's shared content (``dac.shared_readonly``) stays root's too.  define, create,
        start and attach-disk all come here, so they decide alike."""
        from secured_virt.confinement import dac, vmmeta

        r = self.tenancy.realms.get(realm)
        if r is None or not r.path:
            return
        try:
            found, _n = vmmeta.domain_devices(xml)
            readonly = dac.readonly_sources(xml)
        except vmmeta.DomainXmlError as exc:
            raise UserError(str(exc), EXIT_FAILED) from None
        for res in found:
            path = res.split(":", 1)[1]
            if os.path.normpath(path) in readonly and dac.shared_readonly(path):
                continue
            if r.holds_path(path) and dac.image_drifted(path, label.uid, label.gid):
                try:
                    dac.own_image(path, label.uid, label.gid)
                except dac.DacError as exc:
                    raise UserError(
                        f"cannot give {path} to realm '{realm}''s QEMU user: {exc}", EXIT_FAILED
                    ) from None
                log.info("%s given to realm '%s' (%s, mode 0600)", path, realm, label)

    def _dac_explained(self, action, name: str, label):
        """``action`` with the kernel's EACCES (libvirt's wording) turned into a sentence."""
        from secured_virt.backends.base import BackendError
        from secured_virt.confinement import dac

        def run():
            try:
                return action()
            except BackendError as exc:
                text = dac.explain_start_error(str(exc), name, label)
                if text is None:
                    raise
                raise BackendError(exc.code, text) from None

        return run

    def _dac_before_checks(self, op_name: str, target: Target, lazy):
        """start, restore, snapshot-revert of a VM whose realm is set up: (label, realm, the
        XML that will run), else None.  A definition that carries exactly the realm's DAC
        labels is shown to the fence and the allow-list without them: they are the realm's,
        not the caller's (any other seclabel stays and is refused for non-root callers)."""
        if op_name not in ("start", "restore", "snapshot-revert") or not self.tenancy:
            return None
        import dataclasses

        from secured_virt.confinement import dac

        eff = lazy.get()
        realm = self._vm_realm_of(target, eff.meta)
        label = self._realm_dac(realm)
        if label is None or eff.domain_xml is None:
            return None
        xml = eff.domain_xml
        if dac.dac_problem(xml, label.uid, label.gid) is None:
            lazy._value = dataclasses.replace(eff, domain_xml=dac.strip_dac(xml))
        return label, realm, xml

    def _dac_before_action(self, op_name: str, target: Target, state, action):
        """Right before the hypervisor call: a start runs the definition with the realm's
        labels (re-applied if it lacks them: defined before the realm's set-up, or moved) and
        images the realm's QEMU user owns; a restore or revert must bring back exactly those
        labels (an old or foreign save image is refused, exit 3).  Returns ``action`` with
        the kernel's refusal explained."""
        from secured_virt.confinement import dac

        label, realm, xml = state
        name = target.name
        if op_name == "start":
            pin = (
                self.backend.pinned(name, target.uuid) if target.uuid else contextlib.nullcontext()
            )
            with pin:  # the VM the decision saw, not one defined under its name since
                conf = self.backend.dumpxml(name, inactive=True, security_info=True)
                if dac.dac_problem(conf, label.uid, label.gid) is not None:
                    self.backend.define(dac.apply_dac(conf, label.uid, label.gid))
                log.info("%s: realm '%s' DAC label %s applied before start", name, realm, label)
                xml = conf
        else:
            why = dac.dac_problem(xml, label.uid, label.gid)
            if why is not None:
                raise UserError(
                    f"{op_name}: '{name}' belongs to realm '{realm}', whose guests run as "
                    f"their realm's user ({label}); the definition it would come back with "
                    f"does not ({why}): it was saved before the realm was set up, or elsewhere. "
                    f"Start '{name}' afresh instead",
                    EXIT_DENIED,
                )
        self._dac_images(xml, realm, label)
        return self._dac_explained(action, name, label)

    # -- svirt-admin realm -------------------------------------------------------------------
    def _cmd_realm(self, ident, args, interaction):
        action = args.get("action")
        if action not in ACTIONS:
            return Reply(
                EXIT_USAGE, message=f"realm: unknown action {action!r} ({', '.join(ACTIONS)})"
            )
        if self.realm_error is not None and action != "setup":  # setup repairs a QEMU user
            return Reply(
                EXIT_BAD_POLICY, message=f"realm: the realms file does not load: {self.realm_error}"
            )
        name = args.get("realm")
        if action == "list":
            return self._realm_list(ident)
        if not isinstance(name, str) or not name:
            return Reply(EXIT_USAGE, message=f"realm {action}: a realm name is required")
        if action in ("create", "rm", "setup"):
            return self._realm_root_edit(ident, action, name, args)
        if action == "move":
            return self._realm_move(ident, name, args.get("vm"))
        realm = self.tenancy.realms.get(name)
        if realm is None:
            return Reply(
                EXIT_FAILED, message=f"realm '{name}' does not exist (svirt-admin realm list)"
            )
        if action == "show":
            return self._realm_show(ident, realm)
        if action == "review":
            return self._realm_review(ident, realm)
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

    def _realm_review(self, ident, realm) -> Reply:
        """``svirt-admin review --realm R``: the NIST review functions inside one realm, for
        root and the realm's admins (audited): each realm VM and who may do what on it, split
        into the realm's members and the holders of a grant the realm step refuses (a grant
        that names the VM but whose holder is outside the realm: worth fixing, harmless)."""
        from secured_virt.access.operations import CATALOGUE

        user = self._realm_user(ident)
        if not self._privileged(ident) and not self.tenancy.is_admin(user, realm):
            return self._realm_refuse(
                ident, realm.name, f"'{user}' is not an admin of realm '{realm.name}'"
            )
        v = self._realm_allow(ident, realm.name, f"review of realm '{realm.name}' by {user}")
        if not v.allowed:
            return Reply(EXIT_FAILED, message=v.rule)
        pol = self.store.current()
        vms = {}
        for vm in self._realm_vms(realm.name):
            attrs = self._meta(vm).attrs()
            ops, outside = {}, {}
            for op in CATALOGUE:
                if op.scope != "vm" or (realm.operations and op.name not in realm.operations):
                    continue
                for who in pol.authorized_users_for(op.id, vm, attrs):
                    into = ops if self.tenancy.is_member(who, realm) else outside
                    into.setdefault(op.name, []).append(who)
            vms[vm] = {"operations": ops, "refused_by_realm": outside}
        doc = self.realm_files.docs.get(realm.name)
        members = sorted({*realm.users, *realm.admin_users, *(doc.users if doc else ())})
        people = {m: sorted(pol.authorized_roles(m)) if m in pol.users else [] for m in members}
        self.gate.finish(v, "ok")
        return Reply(
            EXIT_OK,
            data={
                "review": {
                    "realm": realm.name,
                    "members": people,
                    "groups": sorted(
                        {*realm.groups, *realm.admin_groups, *(doc.groups if doc else ())}
                    ),
                    "vms": vms,
                }
            },
        )

    # -- root: create / rm -------------------------------------------------------------------
    def _realm_root_edit(self, ident, action: str, name: str, args) -> Reply:
        if not self._privileged(ident):
            verb = {"create": "create", "rm": "remove", "setup": "set up"}[action]
            return self._realm_refuse(ident, name, f"only root may {verb} realms")
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
        if action in ("create", "setup"):
            if action == "setup" and not existing:
                return Reply(EXIT_FAILED, message=f"realm '{name}' does not exist")
            try:
                did = self._svirt_element(existing[0] if existing else el, name, root)
            except UserError as exc:
                return Reply(exc.status, message=f"realm {action}: {exc}")
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
        gone = None
        if action == "rm":
            self.realm_files.remove(name)
            gone = self._svirt_forget(existing[0], name)
        self._reload_realms()
        self.store.reload()
        self.gate.finish(v, "ok")
        verb = {"create": "created", "rm": "removed", "setup": "set up"}[action]
        msg = f"Realm '{name}' {verb}"
        if action != "rm":
            msg += f": {did}"
            msg += "".join(f"; {x}" for x in self._realm_pool_ready(name))  # service.volumes
        elif gone:
            msg += f"; {gone}"
        return Reply(EXIT_OK, data={"message": msg})

    # -- root: move a VM between realms -----------------------------------------------------
    def _realm_move(self, ident, dest: str, vm) -> Reply:
        """``svirt-admin realm move VM REALM``: root's alone (the issue: "only root moves a VM
        between realms"), audited either way.  The VM must be shut off (its QEMU cannot change
        uid while it runs); its images in the old realm's storage move into the new realm's
        storage directory (same file system: a rename, nothing copied) and are given to the new
        realm's QEMU user, 0600; its definition gets the new realm in its metadata and the new
        realm's DAC label.  Its sHype label must be one the new realm may carry."""
        from dataclasses import replace

        from secured_virt.backends.base import BackendError, NoSuchDomain
        from secured_virt.confinement import dac, vmmeta
        from secured_virt.tenancy.check import RealmConflict, shown

        if not isinstance(vm, str) or not vm:
            return Reply(EXIT_USAGE, message="realm move: give the VM, then the realm")
        if not self._privileged(ident):
            return self._realm_refuse(
                ident,
                dest,
                f"only root moves a VM between realms ('{self._realm_user(ident)}' asked to "
                f"move '{vm}' to realm '{dest}')",
            )
        to = self.tenancy.realms.get(dest)
        if to is None:
            return Reply(EXIT_FAILED, message=f"realm '{dest}' does not exist")
        try:
            info = self.backend.lookup(vm)
        except NoSuchDomain:
            return Reply(EXIT_FAILED, message=f"realm move: domain '{vm}' does not exist")
        meta = self._meta(vm)
        try:
            src = self.tenancy.vm_realm(vm, meta.attrs())
        except RealmConflict as exc:
            src = None
            log.info("moving %s out of a conflict: %s", vm, exc)
        if src == dest:
            return Reply(EXIT_FAILED, message=f"VM '{vm}' already belongs to realm '{dest}'")
        if info.id is not None:
            return Reply(
                EXIT_FAILED,
                message=f"realm move: '{vm}' is running; its QEMU runs as {shown(src or '')}'s "
                "user and cannot change uid: shut it down first",
            )
        if meta.label and meta.label not in to.labels:
            return Reply(
                EXIT_FAILED,
                message=f"realm move: '{vm}' is labelled {meta.label}, which is not one of realm "
                f"'{dest}''s labels ({', '.join(sorted(to.labels)) or 'none'}); relabel it "
                "first or give the realm that label",
            )
        old = self.tenancy.realms.get(src) if src else None
        xml = self.backend.dumpxml(vm, inactive=True, security_info=True)
        found, _n = vmmeta.domain_devices(xml)
        moves: list[tuple[str, str]] = []
        for res in found:
            path = res.split(":", 1)[1]
            if old is not None and old.holds_path(path):
                if not to.path:
                    return Reply(
                        EXIT_FAILED,
                        message=f"realm move: {path} is in realm '{src}''s storage and realm "
                        f"'{dest}' has none to take it (give it a <Storage>)",
                    )
                new_path = os.path.join(to.path, os.path.basename(path))
                if os.path.lexists(new_path):
                    return Reply(
                        EXIT_FAILED,
                        message=f"realm move: {new_path} exists already in realm '{dest}''s "
                        "storage; rename one of the two images first",
                    )
                moves.append((path, new_path))
            elif to.path and not to.holds_path(path):
                return Reply(
                    EXIT_FAILED,
                    message=f"realm move: {path} is not in realm '{src or '-'}''s storage; "
                    f"move it into {to.path} first (realm '{dest}''s VMs use only their "
                    "realm's images)",
                )
        v = self._realm_allow(
            ident, dest, f"root moves VM '{vm}' from {shown(src or '')} to realm '{dest}'"
        )
        if not v.allowed:
            return Reply(EXIT_FAILED, message=v.rule)
        done: list[tuple[str, str]] = []
        try:
            for a, b in moves:
                os.rename(a, b)
                done.append((a, b))
            xml = _with_sources(xml, dict(moves))
            label = self._realm_dac(dest)
            if label is not None:
                xml = dac.apply_dac(xml, label.uid, label.gid)
                self._dac_images(xml, dest, label)
            elif old is not None and old.qemu_uid is not None:
                xml = dac.strip_dac(xml)  # not set up: libvirt's default user, as before
            with self.backend.pinned(vm, info.uuid):
                self.backend.define(xml)
                vmmeta.write(self.backend, vm, replace(meta, realm=dest))
        except (OSError, BackendError, UserError, dac.DacError) as exc:
            for a, b in reversed(done):
                with contextlib.suppress(OSError):
                    os.rename(b, a)
            self.gate.finish(v, f"error: {exc}")
            return Reply(EXIT_FAILED, message=f"realm move: {exc}; nothing was moved")
        self.gate.finish(v, "ok")
        moved = "".join(f"\n  {a} -> {b}" for a, b in moves)
        text = f"Domain '{vm}' moved from {shown(src or '')} to realm '{dest}'"
        return Reply(EXIT_OK, data={"message": text + moved})

    def _svirt_element(self, el, name: str, doc) -> str:
        """The realm's ``<Svirt>``: its QEMU system user (created when missing: idempotent)
        and its own MCS category (drawn once, kept); returns what it did, for people."""
        from lxml import etree

        from secured_virt.confinement import dac

        try:
            user = dac.ensure_realm_user(name)
        except dac.DacError as exc:
            raise UserError(str(exc), EXIT_FAILED) from None
        cur = el.find("Svirt")
        if cur is None:
            cur = etree.SubElement(el, "Svirt")
        cat = cur.get("category")
        if cat is None and self.categories is not None:
            taken = {
                int(c)
                for c in (x.get("category") for x in doc.iter("Svirt") if x is not cur)
                if c is not None
            }
            from policy import mcs

            drawn = self.categories.new_realm_category()
            if drawn in taken:  # recorded in the file but not loaded yet: draw past them
                free = [c for c in range(mcs.MCS_CATS) if c not in taken]
                drawn = free[0]
            cat = str(drawn)
        created = user.created or cur.get("created") in ("true", "1")
        cur.attrib.clear()
        cur.set("user", user.name)
        cur.set("uid", str(user.uid))
        cur.set("gid", str(user.gid))
        if cat is not None:
            cur.set("category", cat)
        if created:
            cur.set("created", "true")
        how = "created" if user.created else "kept"
        text = f"its guests run as {user.name} (uid {user.uid}, gid {user.gid}; {how})"
        return text + (f", category c{cat}" if cat is not None else "")

    def _svirt_forget(self, el, name: str) -> str | None:
        """At ``realm rm``: images left in the realm's storage go back to root (a later
        system user could get the same uid), and a QEMU user set-up created is deleted."""
        from secured_virt.confinement import dac

        sv = el.find("Svirt")
        if sv is None or sv.get("uid") is None:
            return None
        uid = int(sv.get("uid"))
        st = el.find("Storage")
        if st is not None and os.path.isdir(st.get("path")):
            for entry in os.scandir(st.get("path")):
                with contextlib.suppress(OSError):
                    st_e = entry.stat(follow_symlinks=False)
                    if entry.is_file(follow_symlinks=False) and st_e.st_uid == uid:
                        os.chown(entry.path, 0, 0, follow_symlinks=False)
        if sv.get("created") not in ("true", "1"):
            return f"its QEMU user {sv.get('user')} was not made by set-up and stays"
        why = dac.remove_realm_user(sv.get("user"))
        return f"its QEMU user {sv.get('user')} removed" if why is None else why

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


def _with_sources(xml: str, renamed: dict[str, str]) -> str:
    """``xml`` with each disk's file source renamed (realm move)."""
    from lxml import etree

    from secured_virt.confinement import vmmeta

    root = vmmeta.parse_domain_xml(xml)
    for src in root.iterfind("devices/disk/source"):
        if src.get("file") in renamed:
            src.set("file", renamed[src.get("file")])
    return etree.tostring(root, encoding="unicode")


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
