"""Changing what a domain has: memory, vCPUs, disks and interfaces (attach/detach).

Arguments are checked before anything is decided: a missing or malformed source, target, MAC,
count or size is a usage error (exit 2) with no decision in the audit log, because nothing
was asked that could be allowed.  What the device then reaches is the mediation table's
business (``mediation``: RBAC, ACM on the resource, the disk fence and the device allow-list
of ``secured_virt.confinement.devices``, the same rules as ``define``); on top of that, a disk
image already used by a VM of another owner is refused unless the caller holds rights on that
VM (``_check_image_sharing``): the image directories are shared by every tenant.
"""

from __future__ import annotations

from lxml import etree

from secured_virt.access.gate import Target, acting_as
from secured_virt.backends import domxml
from secured_virt.backends.base import BackendError, NoSuchDomain
from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED

from . import mediation
from .errors import UserError
from .support import _say, parse_size_kib

#: vCPU counts accepted (libvirt's own ceiling is below this for every driver)
MAX_VCPUS = 16384
#: memory sizes accepted, in KiB (1 KiB .. 1 EiB: within libvirt's unsigned long long)
MAX_KIB = 1 << 50
#: operations that let a caller decide which disks a VM has: holding one of them on a VM is
#: holding the right to give its images to a VM (so a share with it is no new right)
_DISK_RIGHTS = ("define", "attach-disk")


class DeviceCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def _flags(self, args) -> dict:
        """virsh's --live/--config/--persistent; none of them means --current (the running
        domain if it runs, else its persistent configuration), which backends take as both
        flags False."""
        live = bool(args.get("live"))
        config = bool(args.get("config") or args.get("persistent"))
        return {"live": live, "config": config}

    @staticmethod
    def _kib(args) -> int:
        """A memory size argument in KiB, or a usage error (never an exception later)."""
        text = args.get("size")
        if isinstance(text, bool) or not isinstance(text, (str, int)):
            raise UserError(f"invalid memory size {text!r}: give a number with K, M or G")
        try:
            kib = parse_size_kib(text)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if not 1 <= kib <= MAX_KIB:
            raise UserError(f"invalid memory size '{text}': between 1 KiB and {MAX_KIB} KiB")
        return kib

    @staticmethod
    def _vcpu_count(args) -> int:
        """The vCPU count, or a usage error.  Only whole decimal numbers: 1e999999 (a float in
        JSON, infinite), True, 2.5 and 10**100 are refused here, before any decision."""
        raw = args.get("count")
        if isinstance(raw, int) and not isinstance(raw, bool):
            count = raw
        elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
            count = int(raw.strip()) if len(raw.strip()) <= 9 else MAX_VCPUS + 1
        else:
            raise UserError(f"invalid vCPU count {raw!r}: give a whole number such as 2")
        if not 1 <= count <= MAX_VCPUS:
            raise UserError(f"invalid vCPU count {raw!r}: between 1 and {MAX_VCPUS}")
        return count

    # setvcpus, setmem, setmaxmem describe their change (``quotas.Resize``) so the realm_quota
    # step checks a raise as define and start check a VM's size
    def _cmd_setmem(self, ident, args, interaction):
        name, kib = args.get("domain"), self._kib(args)
        flags = self._flags(args)
        return self._run(
            ident,
            "setmem",
            name,
            interaction,
            _say("", lambda: self.backend.setmem(name, kib, **flags)),
            effect=_resize("memory", kib * 1024, flags),
        )

    def _cmd_setmaxmem(self, ident, args, interaction):
        name, kib = args.get("domain"), self._kib(args)
        return self._run(
            ident,
            "setmaxmem",
            name,
            interaction,
            _say("", lambda: self.backend.setmaxmem(name, kib, config=True)),
            effect=_resize("maxmem", kib * 1024, {"live": False, "config": True}),
        )

    def _cmd_setvcpus(self, ident, args, interaction):
        name, count = args.get("domain"), self._vcpu_count(args)
        flags = self._flags(args)
        return self._run(
            ident,
            "setvcpus",
            name,
            interaction,
            _say("", lambda: self.backend.setvcpus(name, count, **flags)),
            effect=_resize("vcpus", count, flags),
        )

    @staticmethod
    def _privileged(ident) -> bool:
        """Root acting as itself: the one caller whose domain XML and disks are not limited
        (root acting --as a user is limited like that user)."""
        return ident.uid == 0 and acting_as(ident) is None

    def _disk_dirs(self) -> tuple[str, ...]:
        """disk_dirs, and every realm's storage directory (its volumes are usable disks; the
        realm_resources step, before the fence, keeps each image to its own realm's VMs)."""
        dirs = tuple(getattr(self.config, "disk_dirs", ()) or ())
        tenancy = getattr(self, "tenancy", None)
        if tenancy:
            extra = sorted(r.path for r in tenancy.realms.realms.values() if r.path)
            dirs += tuple(p for p in extra if p not in dirs)
        return dirs

    @staticmethod
    def _device(command: str, build):
        """The device element an attach command would add, or a usage error (exit 2, before
        any decision): an empty source or a bad target is not a request anyone could allow."""
        try:
            return build()
        except BackendError as exc:
            raise UserError(f"{command}: {exc}") from None

    def _cmd_attach_disk(self, ident, args, interaction):
        name = args.get("domain")
        kw = {k: args.get(k) for k in ("driver", "subdriver", "mode") if args.get(k)}
        if args.get("type"):
            kw["type"] = args["type"]
        source, target = args.get("source"), args.get("target")
        disk = self._device("attach-disk", lambda: domxml.disk_element(source, target, **kw))
        privileged = self._privileged(ident)

        def act(info):
            if not privileged:  # after the (audited) decision, so a refusal is on record
                self._user_device("attach-disk", disk)
                self._check_image_sharing(ident, name, _domain_with(disk))
            norelabel = self._dac_attach(name, disk)  # after the checks, which saw the bare disk
            self.backend.attach_disk(
                name, source, target, **kw, **self._flags(args), dac_norelabel=norelabel
            )
            return {"message": "Disk attached successfully"}

        return self._run(
            ident,
            "attach-disk",
            name,
            interaction,
            act,
            effect=lambda info: mediation.Effect(device=domxml.to_text(disk)),
        )

    def _cmd_detach_disk(self, ident, args, interaction):
        name, target = args.get("domain"), args.get("target")
        self._device("detach-disk", lambda: domxml.check_target(target))
        return self._run(
            ident,
            "detach-disk",
            name,
            interaction,
            _say(
                "Disk detached successfully",
                lambda: self.backend.detach_disk(name, target, **self._flags(args)),
            ),
        )

    def _cmd_attach_interface(self, ident, args, interaction):
        name = args.get("domain")
        itype, source, mac, model = (args.get(k) for k in ("type", "source", "mac", "model"))
        iface = self._device(
            "attach-interface",
            lambda: domxml.interface_element(itype, source, mac=mac, model=model),
        )
        privileged = self._privileged(ident)

        def act(info):
            if not privileged:  # the allow-list define applies: no macvtap on a host NIC
                self._user_device("attach-interface", iface)
            self.backend.attach_interface(
                name, itype, source, mac=mac, model=model, **self._flags(args)
            )
            return {"message": "Interface attached successfully"}

        return self._run(
            ident,
            "attach-interface",
            name,
            interaction,
            act,
            effect=lambda info: mediation.Effect(device=domxml.to_text(iface)),
        )

    def _cmd_detach_interface(self, ident, args, interaction):
        name, itype, mac = args.get("domain"), args.get("type"), args.get("mac")
        if not isinstance(itype, str) or not itype:
            raise UserError("detach-interface: the interface type is required")
        if mac is not None:
            self._device("detach-interface", lambda: domxml.check_mac(mac))
        return self._run(
            ident,
            "detach-interface",
            name,
            interaction,
            _say(
                "Interface detached successfully",
                lambda: self.backend.detach_interface(name, itype, mac=mac, **self._flags(args)),
            ),
        )

    def _dac_attach(self, name: str, disk) -> bool:
        """sVirt made real for an attach, as define does it (``lifecycle._from_xml``): a VM
        of a set-up realm (its QEMU runs as the realm's user) gets the disk with
        ``<seclabel model='dac' relabel='no'/>``, and the image, if it lies in the realm's
        storage, is given to the realm's QEMU user (0600) by ``_dac_images``, unless it is a
        read-only disk's shared content, which stays root's.  Returns whether the disk must
        carry that seclabel.

        Why: a bare disk lets libvirt's DAC driver, as root, chown the file to the realm's uid
        (a shared read-only image too, and only the owner, not the mode) and give it back to
        its old owner at detach; the live definition then no longer carries exactly the
        realm's labels, which a save of it brings back to restore.  A VM of no realm, or of a
        realm not set up, keeps libvirt's default, as define leaves it."""
        realm = self._realm_of_row(name, self._meta(name))
        label = self._realm_dac(realm)
        if label is None:
            return False
        holder = _domain_with(disk)
        etree.SubElement(holder, "name").text = name  # what the XML readers ask for
        self._dac_images(domxml.to_text(holder), realm, label)
        return True

    # -- confinement of devices --------------------------------------------------------------
    def _user_device(self, command: str, device) -> list[str]:
        """The device allow-list and disk fence for one device of a non-root caller (the
        same rules as define: secured_virt.confinement.devices); a refusal is exit 3."""
        from secured_virt.confinement import devices as device_rules  # here: issue 18

        try:
            return device_rules.check_user_device(device, self._disk_dirs())
        except device_rules.DevicePolicyError as exc:
            raise UserError(f"{command}: {exc}", EXIT_DENIED) from None

    def _check_image_sharing(self, ident, vm_name: str, domain) -> None:
        """Refuse (exit 3) if a disk of ``domain`` (a parsed domain XML or XML text: what
        ``vm_name`` would have) reaches a file a VM of another owner uses, unless the caller
        may define or attach-disk on that VM.

        Why: every tenant's images share ``disk_dirs``, so the disk fence alone let anyone
        boot, attach or build an overlay on another tenant's image.  "Uses" counts each disk
        of every other domain, persistent and running definition, and its backing chain.  A
        VM owned by the caller is no obstacle; root acting as itself is not checked.  The
        refusal does not name the other VM: who has what is not the caller's to learn."""
        if self._privileged(ident):
            return
        from secured_virt.confinement import sharing  # here: not loaded by every command

        root = domain if not isinstance(domain, str) else vmmeta.parse_domain_xml(domain)
        mine = sharing.files_used(root)
        if not mine:
            return
        caller = acting_as(ident) or ident.user
        for other, meta, theirs in self._other_domains_files(vm_name):
            common = mine & theirs
            if not common or (meta.owner and meta.owner == caller):
                continue
            target = Target(other.name, other.uuid, meta.attrs())
            if any(self.gate.may(ident, self._op(op), target) for op in _DISK_RIGHTS):
                continue
            raise UserError(
                f"{', '.join(sorted(common))} is in use by a VM you have no rights on (you may "
                f"neither define nor attach-disk on it); use an image of your own, or ask "
                "root or that VM's owner",
                EXIT_DENIED,
            )

    def _other_domains_files(self, vm_name: str):
        """(DomainInfo, VmMeta, files its disks reach) of every domain but ``vm_name``."""
        from secured_virt.confinement import sharing

        try:
            domains = self.backend.list_domains(include_inactive=True)
        except BackendError as exc:
            raise UserError(
                f"cannot list the domains to check image sharing: {exc}", EXIT_FAILED
            ) from None
        for info in domains:
            if info.name == vm_name:
                continue
            files: set[str] = set()
            meta = vmmeta.VmMeta()
            try:
                views = [self.backend.dumpxml(info.name, inactive=True)]
                if info.id is not None:  # the running definition may have more (live attach)
                    views.append(self.backend.dumpxml(info.name))
                for xml in views:
                    _n, _uuid, meta = vmmeta.from_domain_xml(xml)
                    files |= sharing.files_used(vmmeta.parse_domain_xml(xml))
            except NoSuchDomain:
                continue  # gone meanwhile: it shares nothing any more
            except (BackendError, vmmeta.DomainXmlError) as exc:  # fail closed
                raise UserError(
                    f"cannot read the disks of the other domains to check image sharing: {exc}",
                    EXIT_FAILED,
                ) from None
            yield info, meta, files


def _resize(what: str, amount: int, flags: dict):
    """The effect of a change of amount, for the realm_quota step (mediation.Effect.resize)."""
    from secured_virt.tenancy.quotas import Resize

    change = Resize(what, amount, live=flags["live"], config=flags["config"])
    return lambda info: mediation.Effect(resize=change)


def _domain_with(device) -> etree._Element:
    """A domain XML holding just ``device``, for the checks that read whole domains."""
    root = etree.Element("domain")
    etree.SubElement(root, "devices").append(etree.fromstring(etree.tostring(device)))
    return root
